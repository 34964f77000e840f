/**
 * Builds the Hono application from injected dependencies. No I/O happens at import time, so tests
 * can build as many apps as they like, each with its own database, metrics and limits.
 */
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import type { RequestIdVariables } from 'hono/request-id';
import type { ZodError } from 'zod';
import { HEALTH_PATHS } from './contract.js';
import type { Metrics } from './http/metrics.js';
import { mountDocs } from './http/docs.js';
import { ProblemType, problem, type FieldError } from './http/problem.js';
import { RateLimiter } from './http/rate-limit.js';
import type { Lifecycle } from './lifecycle.js';
import { DatabaseRefusedError, DatabaseUnavailableError } from './db/guard.js';
import { describeError, type Logger } from './logger.js';
import { OverloadedError } from './users/hasher.js';
import type { ActiveSession, SessionService } from './sessions/service.js';
import {
  LoginRequest,
  LoginResult,
  Whoami,
  RegisterRequest,
  User,
  UserIdParam,
  describeCodes,
  problemSchema,
  type FieldCode,
} from './users/schemas.js';
import type { UserService } from './users/service.js';
import { UsernameTakenError } from './users/store.js';

export interface AppOptions {
  bodyLimitBytes: number;
  rateLimit: { windowSeconds: number; register: number; login: number };
  /** How many reverse proxies in front of us append to X-Forwarded-For (0: use the socket address). */
  trustProxyHops: number;
}

export interface AppDeps {
  users: UserService;
  sessions: SessionService;
  metrics: Metrics;
  logger: Logger;
  lifecycle: Lifecycle;
  /** Resolves when the database can serve; rejects with an error whose message says why not. */
  checkDatabase: () => Promise<void>;
  options: AppOptions;
}

type Env = { Variables: RequestIdVariables; Bindings: { incoming?: { socket?: { remoteAddress?: string } } } };

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{8,128}$/;
const PROBE_PATHS = new Set<string>(Object.values(HEALTH_PATHS));

const problemResponse = (description: string, schema: z.ZodType, headers?: z.ZodObject) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { 'application/problem+json': { schema } },
});

const jsonBody = <T extends z.ZodType>(schema: T, description: string) => ({
  required: true,
  description,
  content: { 'application/json': { schema } },
});

// One problem schema per kind of answer, each naming the only types (and field codes) it carries.
const REGISTER_CODES = [
  'invalid_type', 'unknown_field', 'length', 'characters', 'invisible_characters', 'control_characters',
  'same_as_username', 'too_common',
] as const satisfies readonly FieldCode[];
const LOGIN_CODES = ['invalid_type', 'unknown_field', 'length'] as const satisfies readonly FieldCode[];
const RegisterInvalid = problemSchema('RegisterInvalidProblem', [ProblemType.validation, 'about:blank'], REGISTER_CODES);
const LoginInvalid = problemSchema('LoginInvalidProblem', [ProblemType.validation, 'about:blank'], LOGIN_CODES);
const UserIdInvalid = problemSchema('UserIdInvalidProblem', [ProblemType.validation], ['invalid_format']);
const UsernameTaken = problemSchema('UsernameTakenProblem', [ProblemType.usernameTaken], ['taken']);
const InvalidCredentials = problemSchema('InvalidCredentialsProblem', [ProblemType.invalidCredentials]);
const RateLimited = problemSchema('RateLimitedProblem', [ProblemType.rateLimited]);
const HashingOrDatabaseUnavailable = problemSchema('UnavailableProblem', [
  ProblemType.overloaded,
  ProblemType.databaseUnavailable,
  ProblemType.databaseRefused,
]);
const DatabaseUnavailable = problemSchema('DatabaseUnavailableProblem', [ProblemType.databaseUnavailable, ProblemType.databaseRefused]);
const NotReady = problemSchema('NotReadyProblem', [ProblemType.notReady]);
const Unauthenticated = problemSchema('UnauthenticatedProblem', [ProblemType.unauthenticated]);
const HttpProblem = problemSchema('HttpProblem', ['about:blank']);

const retryAfter = z.object({ 'Retry-After': z.string().openapi({ description: 'Seconds to wait before retrying.', example: '1' }) });
const retryAfterIfUseful = z.object({
  'Retry-After': z.string().optional().openapi({ description: 'Seconds to wait; absent when retrying cannot help (credentials refused).' }),
});
const UNAVAILABLE =
  'Cannot serve right now; nothing was changed. `type` says why: `overloaded` (password hashing capacity exhausted) ' +
  'and `database-unavailable` (the database did not answer in time, is restarting or has no connection left) ' +
  "carry Retry-After; `database-refused` (the database refused the service's credentials or privileges, or is " +
  'read-only) does not, since retrying cannot help.';

const noStore = z.object({ 'Cache-Control': z.literal('no-store') });

const registerRoute = createRoute({
  method: 'post',
  path: '/register',
  summary: 'Register a user',
  request: { body: jsonBody(RegisterRequest, 'The new account. Unknown fields are rejected.') },
  responses: {
    201: {
      description: 'Registered. `Location` points at the new user.',
      headers: z.object({ Location: z.string() }),
      content: { 'application/json': { schema: User } },
    },
    400: problemResponse(
      'Malformed JSON (`about:blank`) or invalid fields (`validation-failed`); `errors` lists each field problem ' +
        `with a JSON Pointer and one of these codes:${describeCodes(REGISTER_CODES)}`,
      RegisterInvalid,
    ),
    409: problemResponse(
      `The username is already registered; compared after NFKC and ignoring case.${describeCodes(['taken'])}`,
      UsernameTaken,
    ),
    413: problemResponse('Body larger than the limit.', HttpProblem),
    415: problemResponse('Content-Type is not application/json.', HttpProblem),
    429: problemResponse('Too many registrations from this client; see Retry-After.', RateLimited, retryAfter),
    503: problemResponse(UNAVAILABLE, HashingOrDatabaseUnavailable, retryAfterIfUseful),
  },
});

const loginRoute = createRoute({
  method: 'post',
  path: '/login',
  summary: 'Check a username and password',
  request: { body: jsonBody(LoginRequest, 'Credentials.') },
  responses: {
    200: {
      description: 'Credentials are valid: a new session, its bearer token in `session.token`.',
      headers: noStore,
      content: { 'application/json': { schema: LoginResult } },
    },
    400: problemResponse(
      `Malformed JSON (\`about:blank\`) or invalid fields (\`validation-failed\`), with these codes:${describeCodes(LOGIN_CODES)}`,
      LoginInvalid,
    ),
    401: problemResponse('Unknown user or wrong password (deliberately indistinguishable).', InvalidCredentials),
    413: problemResponse('Body larger than the limit.', HttpProblem),
    415: problemResponse('Content-Type is not application/json.', HttpProblem),
    429: problemResponse('Too many login attempts from this client; see Retry-After.', RateLimited, retryAfter),
    503: problemResponse(UNAVAILABLE, HashingOrDatabaseUnavailable, retryAfterIfUseful),
  },
});

const getUserRoute = createRoute({
  method: 'get',
  path: '/users/{id}',
  summary: 'Read a registered user (the target of the registration Location header)',
  request: { params: UserIdParam },
  responses: {
    200: { description: 'The user.', content: { 'application/json': { schema: User } } },
    400: problemResponse(`The id is not a UUID.${describeCodes(['invalid_format'])}`, UserIdInvalid),
    404: problemResponse('No such user.', HttpProblem),
    503: problemResponse(
      "The database did not answer in time (see Retry-After), or it refused the service's credentials.",
      DatabaseUnavailable,
      retryAfterIfUseful,
    ),
  },
});

const healthResponse = z.object({ status: z.string() });

const wwwAuthenticate = z.object({
  'WWW-Authenticate': z.string().openapi({ description: '`Bearer`, with `error="invalid_token"` when a token was sent.', example: 'Bearer error="invalid_token"' }),
});
const UNAUTHENTICATED =
  'No session: the token is missing, malformed, unknown, expired, idle past its timeout, or revoked (one answer for all).';
const SESSION_UNAVAILABLE =
  'The database did not answer (see Retry-After), or refused the service: the session could not be checked. Never a 401, so a caller can tell an outage from a logout.';

const whoamiRoute = createRoute({
  method: 'get',
  path: '/sessions/whoami',
  summary: 'Who is calling: the user and session a bearer token belongs to (for peer services and forward-auth)',
  security: [{ bearer: [] }],
  responses: {
    200: {
      description: 'A live session. `X-Kreg-User-Id` names the user, for an ingress to pass on.',
      headers: noStore.extend({ 'X-Kreg-User-Id': z.uuid() }),
      content: { 'application/json': { schema: Whoami } },
    },
    401: problemResponse(UNAUTHENTICATED, Unauthenticated, wwwAuthenticate),
    503: problemResponse(SESSION_UNAVAILABLE, DatabaseUnavailable, retryAfterIfUseful),
  },
});

const logoutRoute = createRoute({
  method: 'delete',
  path: '/sessions/current',
  summary: 'Log out: end the session the bearer token belongs to',
  security: [{ bearer: [] }],
  responses: {
    204: { description: 'The session is ended; its token opens nothing any more, on any replica.' },
    401: problemResponse(UNAUTHENTICATED, Unauthenticated, wwwAuthenticate),
    503: problemResponse(SESSION_UNAVAILABLE, DatabaseUnavailable, retryAfterIfUseful),
  },
});

const livezRoute = createRoute({
  method: 'get',
  path: HEALTH_PATHS.liveness,
  summary: 'Liveness: the process is serving requests',
  responses: { 200: { description: 'Alive.', content: { 'application/json': { schema: healthResponse } } } },
});

const readyzRoute = createRoute({
  method: 'get',
  path: HEALTH_PATHS.readiness,
  summary: 'Readiness: started, not draining, and the database answers',
  responses: {
    200: { description: 'Ready to take traffic.', content: { 'application/json': { schema: healthResponse } } },
    503: problemResponse('Starting, draining, the database is unreachable, or its writes are failing.', NotReady),
  },
});

function failureOutcome(err: unknown): string {
  if (err instanceof OverloadedError) return 'overloaded';
  if (err instanceof DatabaseUnavailableError || err instanceof DatabaseRefusedError) return 'unavailable';
  return 'error';
}

/** Maps zod issues to RFC 9457 field errors with JSON Pointers into the body. */
function fieldErrors(error: ZodError): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ pointer: `#/${key}`, code: 'unknown_field', detail: `unknown field "${key}"` });
      }
      continue;
    }
    const pointer = `#/${issue.path.map(String).join('/')}`;
    const params = (issue as { params?: { code?: string } }).params;
    const code = params?.code ?? (issue.code === 'invalid_type' ? 'invalid_type' : issue.code);
    const detail =
      issue.code === 'invalid_type' && issue.path.length > 0
        ? `is required and must be a ${issue.expected}`
        : issue.code === 'invalid_type'
          ? `request body must be a JSON ${issue.expected}`
          : issue.message;
    out.push({ pointer, code, detail });
  }
  return out;
}

/**
 * The headers of every response: Hono's secureHeaders() defaults, and a policy for the API that
 * allows nothing (nothing it answers is a page to render or frame; /docs sets its own, wider one).
 */
const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
  ['Cross-Origin-Resource-Policy', 'same-origin'],
  ['Cross-Origin-Opener-Policy', 'same-origin'],
  ['Origin-Agent-Cluster', '?1'],
  ['Referrer-Policy', 'no-referrer'],
  ['Strict-Transport-Security', 'max-age=15552000; includeSubDomains'],
  ['X-Content-Type-Options', 'nosniff'],
  ['X-DNS-Prefetch-Control', 'off'],
  ['X-Download-Options', 'noopen'],
  ['X-Frame-Options', 'SAMEORIGIN'],
  ['X-Permitted-Cross-Domain-Policies', 'none'],
  ['X-XSS-Protection', '0'],
];

export function buildApp(deps: AppDeps): OpenAPIHono<Env> {
  const { users, sessions, metrics, logger, lifecycle, options } = deps;

  const app = new OpenAPIHono<Env>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const errors = fieldErrors(result.error);
      if (c.req.path === '/register') metrics.registrations.inc({ outcome: 'invalid' });
      if (c.req.path === '/login') metrics.logins.inc({ outcome: 'invalid' });
      return problem(c, {
        status: 400,
        type: ProblemType.validation,
        title: 'Validation failed',
        detail: errors.map((e) => `${e.pointer.slice(2) || 'body'} ${e.detail}`).join('; '),
        errors,
      });
    },
  });

  const clientAddress = (c: Context<Env>): string => {
    if (options.trustProxyHops > 0) {
      const hops = (c.req.header('x-forwarded-for') ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      if (hops.length > 0) return hops[Math.max(0, hops.length - options.trustProxyHops)]!;
    }
    return c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
  };

  const rateLimit = (limiter: RateLimiter, onLimited: () => void, what: string): MiddlewareHandler<Env> => {
    return async (c, next) => {
      if (c.req.method !== 'POST') return next();
      const decision = limiter.take(clientAddress(c));
      if (!decision.allowed) {
        onLimited();
        return problem(c, {
          status: 429,
          type: ProblemType.rateLimited,
          title: 'Too many requests',
          detail: `too many ${what} attempts from this client; retry in ${decision.retryAfterSeconds} s`,
          headers: { 'retry-after': String(decision.retryAfterSeconds) },
        });
      }
      return next();
    };
  };

  // Every response carries the request id and the same security headers. They are set before the
  // handler runs, into the context's prepared headers, which Hono folds into the response as it is
  // built. Set afterwards (as Hono's secureHeaders() does), each header would make @hono/node-server
  // turn its lightweight response into a full web Response and copy it: a tenth of the event
  // loop's time per request, measured under registration load.
  app.use('*', async (c, next) => {
    // Accept a caller's request id only if it is well-formed; otherwise mint one, so logs stay parseable.
    const incoming = c.req.header('x-request-id');
    const id = incoming !== undefined && REQUEST_ID_PATTERN.test(incoming) ? incoming : crypto.randomUUID();
    c.set('requestId', id);
    c.header('X-Request-Id', id);
    for (const [name, value] of SECURITY_HEADERS) c.header(name, value);
    // While draining, every response asks the client to drop its keep-alive connection. The next
    // request then opens a new connection, which the Service routes to a pod that is still ready,
    // instead of riding a socket this process is about to close (a reset the client would see).
    if (lifecycle.phase === 'draining') c.header('Connection', 'close');
    await next();
    if (lifecycle.phase === 'draining' && c.res.headers.get('connection') !== 'close') c.header('Connection', 'close');
  });
  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const line = {
      requestId: c.get('requestId'),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      client: clientAddress(c),
    };
    // Probes arrive every few seconds per replica; keep them out of the default log level.
    if (PROBE_PATHS.has(c.req.path) && c.res.status < 400) logger.debug(line, 'request');
    else logger.info(line, 'request');
  });
  app.use('*', metrics.middleware());

  const tooLarge = (c: Context<Env>) =>
    problem(c, {
      status: 413,
      title: 'Content Too Large',
      detail: `request body exceeds ${options.bodyLimitBytes} bytes`,
    });
  const registerLimiter = new RateLimiter(options.rateLimit.register, options.rateLimit.windowSeconds);
  const loginLimiter = new RateLimiter(options.rateLimit.login, options.rateLimit.windowSeconds);
  app.use('/register', rateLimit(registerLimiter, () => metrics.registrations.inc({ outcome: 'rate_limited' }), 'registration'));
  app.use('/login', rateLimit(loginLimiter, () => metrics.logins.inc({ outcome: 'rate_limited' }), 'login'));
  // Hono's bodyLimit first reads `c.req.raw.body`, which makes @hono/node-server build a full web
  // Request and later parse the JSON through Web Streams instead of reading the socket directly:
  // measured at about a fifth of the event loop's time per login. A declared Content-Length (what
  // every client sends for a small JSON body) is enough to decide; only a chunked body is counted.
  const countingLimit = bodyLimit({ maxSize: options.bodyLimitBytes, onError: tooLarge });
  const limitBody: MiddlewareHandler<Env> = async (c, next) => {
    const declared = c.req.header('content-length');
    if (declared !== undefined && c.req.header('transfer-encoding') === undefined) {
      return Number(declared) > options.bodyLimitBytes ? tooLarge(c) : next();
    }
    return countingLimit(c, next);
  };
  app.use('/register', limitBody);
  app.use('/login', limitBody);

  app.openapi(registerRoute, async (c) => {
    const input = c.req.valid('json');
    try {
      const user = await users.register(input);
      metrics.registrations.inc({ outcome: 'created' });
      logger.info({ requestId: c.get('requestId'), userId: user.id, event: 'user_registered' }, 'user registered');
      c.header('Location', `/users/${user.id}`);
      return c.json({ id: user.id, username: user.username, createdAt: user.createdAt.toISOString() }, 201);
    } catch (err) {
      if (err instanceof UsernameTakenError) {
        metrics.registrations.inc({ outcome: 'duplicate' });
        return problem(c, {
          status: 409,
          type: ProblemType.usernameTaken,
          title: 'Username taken',
          detail: 'this username is already registered (usernames are compared case-insensitively)',
          errors: [{ pointer: '#/username', code: 'taken', detail: 'is already registered' }],
        }) as never;
      }
      metrics.registrations.inc({ outcome: failureOutcome(err) });
      throw err;
    }
  });

  app.openapi(loginRoute, async (c) => {
    try {
      const user = await users.login(c.req.valid('json'));
      if (!user) {
        metrics.logins.inc({ outcome: 'failure' });
        return problem(c, {
          status: 401,
          type: ProblemType.invalidCredentials,
          title: 'Invalid credentials',
          detail: 'unknown username or wrong password',
        }) as never;
      }
      const session = await sessions.issue(user.id);
      metrics.logins.inc({ outcome: 'success' });
      logger.info({ requestId: c.get('requestId'), userId: user.id, sessionId: session.id, event: 'session_created' }, 'session created');
      c.header('Cache-Control', 'no-store');
      return c.json(
        {
          id: user.id,
          username: user.username,
          session: {
            id: session.id,
            token: session.token,
            tokenType: 'Bearer' as const,
            createdAt: session.createdAt.toISOString(),
            expiresAt: session.expiresAt.toISOString(),
            idleTimeoutSeconds: sessions.settings.idleSeconds,
          },
        },
        200,
      );
    } catch (err) {
      metrics.logins.inc({ outcome: failureOutcome(err) });
      throw err;
    }
  });

  app.openapi(getUserRoute, async (c) => {
    const user = await users.get(c.req.valid('param').id);
    if (!user) {
      return problem(c, { status: 404, title: 'Not Found', detail: 'no user with this id' }) as never;
    }
    return c.json({ id: user.id, username: user.username, createdAt: user.createdAt.toISOString() }, 200);
  });

  /** The session of the request's bearer token, or the 401 to answer (the same for every reason). */
  const authenticate = async (c: Context<Env>): Promise<ActiveSession | Response> => {
    const header = c.req.header('authorization');
    const token = header && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
    const session = await sessions.authenticate(token);
    if (session) return session;
    return problem(c, {
      status: 401,
      type: ProblemType.unauthenticated,
      title: 'Unauthenticated',
      detail: 'a live session token is needed: log in and send it as Authorization: Bearer <token>',
      headers: { 'www-authenticate': token === undefined ? 'Bearer' : 'Bearer error="invalid_token"' },
    });
  };

  app.openapi(whoamiRoute, async (c) => {
    const session = await authenticate(c);
    if (session instanceof Response) return session as never;
    c.header('Cache-Control', 'no-store');
    c.header('X-Kreg-User-Id', session.user.id);
    return c.json(
      {
        user: session.user,
        session: {
          id: session.id,
          createdAt: session.createdAt.toISOString(),
          expiresAt: session.expiresAt.toISOString(),
          idleExpiresAt: session.idleExpiresAt.toISOString(),
        },
      },
      200,
    );
  });

  app.openapi(logoutRoute, async (c) => {
    const session = await authenticate(c);
    if (session instanceof Response) return session as never;
    await sessions.revoke(session.id);
    logger.info({ requestId: c.get('requestId'), userId: session.user.id, sessionId: session.id, event: 'session_revoked' }, 'session ended (logout)');
    return c.body(null, 204);
  });

  app.openapi(livezRoute, (c) => c.json({ status: 'alive' }, 200));

  app.openapi(readyzRoute, async (c) => {
    const notReady = (detail: string) =>
      problem(c, { status: 503, type: ProblemType.notReady, title: 'Not ready', detail }) as never;
    if (lifecycle.phase === 'starting') return notReady('starting');
    if (lifecycle.phase === 'draining') return notReady('shutting down');
    try {
      await deps.checkDatabase();
    } catch (err) {
      return notReady(err instanceof Error ? err.message : String(err));
    }
    return c.json({ status: 'ready' }, 200);
  });

  app.get(HEALTH_PATHS.metrics, async (c) => {
    c.header('content-type', metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'A session token from POST /login (`kreg_st_…`).',
  });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'kreg registration service',
      version: '1.0.0',
      description:
        'User registration and credential checks. Every error is application/problem+json (RFC 9457).\n\n' +
        'Storage is chosen by `DATABASE_URL`: an embedded libsql file (the default; one replica, for development ' +
        'and small installs), PostgreSQL (`postgres://…`; any number of stateless replicas behind a load balancer, ' +
        'the scale-out store), or a libsql server (sqld, Turso; also many replicas). The API is the same in every ' +
        'mode: a name is taken by exactly one registration however many replicas race for it.',
    },
  });
  mountDocs(app);

  // Known paths answer other methods with 405 + Allow rather than a misleading 404.
  const allowedMethods = (path: string): string[] => {
    const methods = new Set<string>();
    for (const route of app.routes) {
      if (route.method === 'ALL') continue;
      const pattern = new RegExp(`^${route.path.replace(/:[^/]+/g, '[^/]+')}$`);
      if (pattern.test(path)) methods.add(route.method);
    }
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods].sort();
  };

  app.notFound((c) => {
    const allow = allowedMethods(c.req.path);
    // A route that exists for this method but found nothing (an unknown /docs asset) is a 404.
    if (allow.length > 0 && !allow.includes(c.req.method)) {
      return problem(c, {
        status: 405,
        title: 'Method Not Allowed',
        detail: `${c.req.method} is not supported on ${c.req.path}; use ${allow.join(', ')}`,
        headers: { allow: allow.join(', ') },
      });
    }
    return problem(c, { status: 404, title: 'Not Found', detail: `no route for ${c.req.method} ${c.req.path}` });
  });

  app.onError((err, c) => {
    if (err instanceof OverloadedError) {
      return problem(c, {
        status: 503,
        type: ProblemType.overloaded,
        title: 'Service overloaded',
        detail: `password hashing capacity is exhausted; retry in ${err.retryAfterSeconds} s`,
        headers: { 'retry-after': String(err.retryAfterSeconds) },
      });
    }
    if (err instanceof DatabaseUnavailableError) {
      // Not logged per request: the guard logs once when writes start and stop failing, and a
      // flood of identical lines during an outage would hide everything else.
      return problem(c, {
        status: 503,
        type: ProblemType.databaseUnavailable,
        title: 'Database unavailable',
        detail: `the database did not answer in time; nothing was changed; retry in ${err.retryAfterSeconds} s`,
        headers: { 'retry-after': String(err.retryAfterSeconds) },
      });
    }
    if (err instanceof DatabaseRefusedError) {
      // Logged once by the guard when it starts (an outage of credentials is one event, not one per request).
      return problem(c, {
        status: 503,
        type: ProblemType.databaseRefused,
        title: 'Database refused the request',
        detail: 'the service cannot use its database right now (its credentials were refused); nothing was changed',
      });
    }
    if (err instanceof HTTPException && err.status < 500) {
      const detail =
        err.status === 400 && /json/i.test(err.message)
          ? 'request body is not valid JSON'
          : err.status === 415
            ? 'Content-Type must be application/json'
            : err.message;
      return problem(c, { status: err.status, title: err.status === 415 ? 'Unsupported Media Type' : 'Bad Request', detail });
    }
    logger.error({ requestId: c.get('requestId'), path: c.req.path, ...describeError(err) }, 'unhandled error');
    return problem(c, {
      status: 500,
      title: 'Internal Server Error',
      detail: 'the request failed on the server; quote the requestId when reporting it',
    });
  });

  return app;
}
