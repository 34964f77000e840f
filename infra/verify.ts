/**
 * `kreg verify`: proves a deployed registration service works end to end, from outside the cluster,
 * through a port-forward over the Kubernetes API (engine/tunnel.ts; no kubectl, no Ingress needed):
 *
 *   readyz          GET  /readyz                         → 200
 *   register        POST /register  (throwaway user)      → 201 {id, username}
 *   duplicate       POST /register  (same user)           → 409 problem+json
 *   login           POST /login     (right password)      → 200 {id} with the same id
 *   wrong-password  POST /login     (wrong password)      → 401 problem+json
 *
 * Each request uses a fresh connection (`node:http`, `agent: false`). A request that fails at the
 * connection level (reset, closed before a response: e.g. its pod was deleted) is retried through a
 * fresh connection while the time budget lasts; the tunnel routes that connection to a ready pod. A
 * retried registration that answers 409 counts as created only if the login with our password then
 * succeeds (the lost response may have been our own 201). 429/503 answers with a Retry-After that
 * fits in the budget are waited out and retried; so is a 503 from /readyz (a draining pod).
 *
 * The throwaway user stays in the database (the service has no delete endpoint); its name
 * `kreg-verify-<random>` marks it.
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { KubeClient } from './engine/client.js';
import { openServiceTunnel, type ServiceTunnel, type TunnelError } from './engine/tunnel.js';

export interface VerifyStep {
  name: string;
  ok: boolean;
  ms: number;
  /** One human line: status, time, problem detail on failure, retries. */
  detail: string;
  /** HTTP requests made for the step (retries included); absent for steps that made none. */
  attempts?: number;
}

export interface VerifyReport {
  ok: boolean;
  target: string;
  steps: VerifyStep[];
  tunnel: { connections: number; rerouted: number; pods: string[] };
}

export interface VerifyOptions {
  namespace: string;
  /** Default `registration`. */
  service?: string;
  /** Service port number or name; default the Service's first port. */
  port?: number | string;
  /** Budget for the whole verification; default 60 s. */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export async function verifyRegistration(client: KubeClient, opts: VerifyOptions): Promise<VerifyReport> {
  const service = opts.service ?? 'registration';
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  const target = `service ${opts.namespace}/${service}${opts.port !== undefined ? ` port ${opts.port}` : ''}`;
  let tunnel: ServiceTunnel;
  try {
    tunnel = await openServiceTunnel(client, {
      namespace: opts.namespace,
      service,
      ...(opts.port !== undefined ? { port: opts.port } : {}),
      // A connection waits at most this long for a ready pod (half the budget, at most 30 s), so that
      // "no ready pod" is reported by the tunnel before the request's own timeout fires.
      readyTimeoutMs: Math.max(1000, Math.min(30_000, Math.floor(timeoutMs / 2))),
      ...(opts.log ? { log: opts.log } : {}),
    });
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return {
      ok: false,
      target,
      steps: [{ name: 'tunnel', ok: false, ms: Date.now() - started, detail }],
      tunnel: { connections: 0, rerouted: 0, pods: [] },
    };
  }
  try {
    const steps = await verifyThrough(tunnel.url, {
      deadline: started + timeoutMs,
      ...(opts.log ? { log: opts.log } : {}),
      tunnelError: () => tunnel.lastError(),
    });
    return { ok: steps.every((s) => s.ok), target, steps, tunnel: tunnel.stats() };
  } finally {
    await tunnel.close();
  }
}

export interface VerifyThroughOptions {
  /** Epoch ms by which everything must be done; default now + 60 s. */
  deadline?: number;
  log?: (line: string) => void;
  /** The tunnel's last failure, to explain a closed connection (e.g. "no ready pod ..."). */
  tunnelError?: () => TunnelError | undefined;
  /** Username to register; default `kreg-verify-<random>`. */
  username?: string;
}

/** Runs the steps against a base URL (e.g. a tunnel's); never throws. */
export async function verifyThrough(baseUrl: string, opts: VerifyThroughOptions = {}): Promise<VerifyStep[]> {
  const deadline = opts.deadline ?? Date.now() + 60_000;
  const log = opts.log ?? (() => {});
  const client = new Client(baseUrl, deadline, opts.tunnelError ?? (() => undefined));
  const username = opts.username ?? `kreg-verify-${randomBytes(6).toString('hex')}`;
  const password = strongPassword();
  const steps: VerifyStep[] = [];
  const record = (step: VerifyStep) => {
    steps.push(step);
    log(`verify ${step.ok ? 'ok  ' : 'FAIL'} ${step.name}: ${step.detail}`);
    return step;
  };
  const skipped = (name: string, why: string) => record({ name, ok: false, ms: 0, detail: `skipped: ${why}` });

  // readyz: a 503 means the pod stopped being ready after the tunnel picked it (e.g. draining); ask again.
  const ready = await client.call('GET', '/readyz', undefined, { retryStatus: (s) => s === 503 });
  const readyOk = ready.res?.status === 200;
  record(step('readyz', readyOk, ready, readyOk ? `200 ${JSON.stringify(ready.res!.json ?? ready.res!.text)}` : expected(200, ready)));
  if (!readyOk) {
    for (const name of ['register', 'duplicate', 'login', 'wrong-password']) skipped(name, 'the service is not reachable or not ready');
    return steps;
  }

  // register: 201 with the new user; a 409 after a lost response may be our own registration.
  const reg = await client.call('POST', '/register', { username, password });
  let userId: string | undefined;
  /** Set when a retried registration answered 409: ours only if our password logs in. */
  let registerPending = false;
  const regBody = reg.res?.json as { id?: unknown; username?: unknown } | undefined;
  let registerStep: VerifyStep;
  if (reg.res?.status === 201 && typeof regBody?.id === 'string') {
    userId = regBody.id;
    registerStep = step('register', true, reg, `201 created ${username} (id ${userId})`);
  } else if (reg.res?.status === 409 && reg.connectionErrors > 0) {
    registerPending = true;
    registerStep = step('register', false, reg, '409 on a retry after a lost response; to be confirmed by login');
  } else {
    registerStep = step('register', false, reg, reg.res?.status === 201 ? `201 without a user id: ${reg.res.text.slice(0, 200)}` : expected(201, reg));
  }
  record(registerStep);
  if (!registerStep.ok && !registerPending) {
    for (const name of ['duplicate', 'login', 'wrong-password']) skipped(name, 'registration failed');
    return steps;
  }

  // duplicate: the same name again must be refused with 409 problem+json.
  const dup = await client.call('POST', '/register', { username, password });
  record(step('duplicate', isProblem(dup, 409), dup, isProblem(dup, 409) ? `409 ${problemText(dup)}` : expected(409, dup, true)));

  // login: 200 with the registered id (or, after an unconfirmed register, any id: that confirms it).
  const login = await client.call('POST', '/login', { username, password });
  const loginBody = login.res?.json as { id?: unknown } | undefined;
  const loginId = typeof loginBody?.id === 'string' ? loginBody.id : undefined;
  if (login.res?.status === 200 && loginId && (userId === undefined || loginId === userId)) {
    record(step('login', true, login, `200 id ${loginId}${userId ? ' (same as registered)' : ''}`));
    if (registerPending) {
      Object.assign(registerStep, step('register', true, reg, `409 on a retry after a lost response, confirmed ours by the login (id ${loginId})`));
      log(`verify ok   register: ${registerStep.detail}`);
    }
  } else {
    const detail =
      login.res?.status === 200
        ? `200 but id ${String(loginId)} differs from the registered ${userId}`
        : expected(200, login);
    record(step('login', false, login, detail));
    if (registerPending) {
      Object.assign(
        registerStep,
        step('register', false, reg, '409 on a retry after a lost response, but our password does not log in: the name belongs to someone else'),
      );
    }
  }

  // wrong-password: 401 problem+json.
  const wrong = await client.call('POST', '/login', { username, password: `${password}-wrong` });
  record(step('wrong-password', isProblem(wrong, 401), wrong, isProblem(wrong, 401) ? `401 ${problemText(wrong)}` : expected(401, wrong, true)));
  return steps;
}

interface HttpResult {
  status: number;
  contentType: string;
  text: string;
  json: unknown;
  retryAfterSeconds: number | undefined;
}

interface CallResult {
  res?: HttpResult;
  /** Why no response was accepted, when `res` is absent. */
  error?: string;
  attempts: number;
  connectionErrors: number;
  /** One short note per retried attempt. */
  notes: string[];
  ms: number;
}

const MAX_ATTEMPTS = 6;
const REQUEST_TIMEOUT_MS = 20_000;

class ConnectionError extends Error {}

class Client {
  constructor(
    private readonly baseUrl: string,
    private readonly deadline: number,
    private readonly tunnelError: () => TunnelError | undefined,
  ) {}

  /**
   * One logical request: retried through a fresh connection on a connection error, and on
   * 429/503 (or `retryStatus`) when the Retry-After fits in the budget.
   */
  async call(method: string, path: string, body: unknown, opts: { retryStatus?: (status: number) => boolean } = {}): Promise<CallResult> {
    const started = Date.now();
    const out: CallResult = { attempts: 0, connectionErrors: 0, notes: [], ms: 0 };
    const done = (extra: Partial<CallResult>) => Object.assign(out, extra, { ms: Date.now() - started });
    for (;;) {
      const remaining = this.deadline - Date.now();
      if (remaining <= 0) return done({ error: `verify time budget exhausted${out.notes.length ? ` (${out.notes.join('; ')})` : ''}` });
      out.attempts++;
      const attemptStarted = Date.now();
      try {
        const res = await request(this.baseUrl + path, method, body, Math.min(remaining, REQUEST_TIMEOUT_MS));
        const waitMs = retryWait(res, opts.retryStatus);
        if (waitMs !== undefined && out.attempts < MAX_ATTEMPTS && Date.now() + waitMs < this.deadline) {
          out.notes.push(`attempt ${out.attempts}: ${res.status}${problemSuffix(res)}`);
          await sleep(waitMs);
          continue;
        }
        return done({ res });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        const tunnel = this.tunnelError();
        const fromTunnel = tunnel && tunnel.at >= attemptStarted ? tunnel : undefined;
        if (!(err instanceof ConnectionError)) {
          return done({ error: `${message}${fromTunnel ? ` (tunnel: ${fromTunnel.message})` : ''}` });
        }
        out.connectionErrors++;
        out.notes.push(`attempt ${out.attempts}: ${message}${fromTunnel ? ` (tunnel: ${fromTunnel.message})` : ''}`);
        // The tunnel already waited its full readyTimeout for a pod: another try would wait again.
        if (fromTunnel?.kind === 'no-ready-pod') {
          return done({ error: `${fromTunnel.message} (the tunnel closed the connection without a response)` });
        }
        if (out.attempts >= MAX_ATTEMPTS) return done({ error: `connection failed: ${out.notes.join('; ')}` });
        await sleep(Math.min(200 * out.attempts, Math.max(0, this.deadline - Date.now())));
      }
    }
  }
}

/** How long to wait before retrying this response, or undefined to accept it. */
function retryWait(res: HttpResult, retryStatus?: (status: number) => boolean): number | undefined {
  if (retryStatus?.(res.status)) return (res.retryAfterSeconds ?? 0.5) * 1000;
  if ((res.status === 429 || res.status === 503) && res.retryAfterSeconds !== undefined) return res.retryAfterSeconds * 1000;
  return undefined;
}

/** One request on a fresh connection. Throws ConnectionError for transport failures, Error on timeout. */
function request(url: string, method: string, body: unknown, timeoutMs: number): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const signal = AbortSignal.timeout(timeoutMs);
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      if (signal.aborted) reject(new Error(`no response within ${(timeoutMs / 1000).toFixed(1)} s`));
      else reject(new ConnectionError(connectionErrorText(err)));
    };
    const req = http.request(
      url,
      {
        method,
        agent: false,
        signal,
        headers: {
          accept: 'application/json, application/problem+json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('aborted', () => fail(new Error('response aborted')));
        res.on('end', () => {
          if (settled) return;
          if (!res.complete) return fail(new Error('connection closed in the middle of the response'));
          settled = true;
          const text = Buffer.concat(chunks).toString('utf8');
          const contentType = String(res.headers['content-type'] ?? '');
          let json: unknown;
          if (/json/.test(contentType)) {
            try {
              json = JSON.parse(text);
            } catch {
              /* reported through text */
            }
          }
          const retryAfter = Number(res.headers['retry-after']);
          resolve({
            status: res.statusCode ?? 0,
            contentType,
            text,
            json,
            retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined,
          });
        });
      },
    );
    req.on('error', fail);
    req.end(payload);
  });
}

function connectionErrorText(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNRESET' && /socket hang up/.test(err.message)) return 'connection closed before a response (socket hang up)';
  return code ? `${code}: ${err.message}` : err.message;
}

function step(name: string, ok: boolean, call: CallResult, detail: string): VerifyStep {
  const retried = call.attempts > 1 ? ` after ${call.attempts} attempts (${call.notes.join('; ')})` : '';
  return { name, ok, ms: call.ms, detail: `${detail} in ${call.ms} ms${retried}`, attempts: call.attempts };
}

function isProblem(call: CallResult, status: number): boolean {
  return call.res?.status === status && call.res.contentType.startsWith('application/problem+json');
}

/** `title: detail` of a problem+json body, or a slice of the text. */
function problemText(call: CallResult): string {
  return call.res ? problemOf(call.res) : '';
}

function problemOf(res: HttpResult): string {
  const p = res.json as { title?: unknown; detail?: unknown } | undefined;
  if (p && typeof p === 'object' && (typeof p.title === 'string' || typeof p.detail === 'string')) {
    return [p.title, p.detail].filter((x) => typeof x === 'string' && x).join(': ');
  }
  return res.text.replace(/\s+/g, ' ').slice(0, 200);
}

function problemSuffix(res: HttpResult): string {
  const p = problemOf(res);
  return p ? ` ${p}` : '';
}

/** "expected 201, got 500: Internal error: ..." or "expected 201: <connection error>". */
function expected(status: number, call: CallResult, problemJson = false): string {
  if (!call.res) return `expected ${status}: ${call.error ?? 'no response'}`;
  const res = call.res;
  if (res.status === status && problemJson) {
    return `expected ${status} application/problem+json, got ${status} ${res.contentType || 'without a content type'}`;
  }
  return `expected ${status}, got ${res.status}${problemSuffix(res)}`;
}

/** 24 random base64url characters (144 bits), far from any common-password list. */
function strongPassword(): string {
  return `Kv-${randomBytes(18).toString('base64url')}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
