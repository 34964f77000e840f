/**
 * The one place that reads process.env. Everything else receives a validated `Config`.
 * A bad value stops start-up with one line naming the variable (see `ConfigError`).
 */
import { z } from 'zod';
import { DEFAULT_DATABASE_URL, DEFAULT_PORT, ENV } from './contract.js';
import { redactUrlPasswords } from './redact.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** `RATE_LIMIT_*` values: "<requests>" per window, 0 disables the limit. */
const nonNegativeInt = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const positiveNumber = (max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?$/, 'must be a number')
    .transform(Number)
    .pipe(z.number().min(0).max(max));

/** A URL the service can open: a libsql file or server, or PostgreSQL (libpq's URI form). */
const databaseUrl = z
  .string()
  .trim()
  .min(1)
  .refine((url) => /^(file:|libsql:|https?:|wss?:|postgres(ql)?:\/\/)/.test(url) || url === ':memory:', {
    message: 'must start with file:, libsql:, http(s):, ws(s): or postgres(ql):// (or be :memory:)',
  })
  .superRefine((url, ctx) => {
    if (!/^(libsql:|https?:|wss?:|postgres(ql)?:)/.test(url)) return;
    // A port no client can use ("bad port") failed at the first request, with a stack; say it here.
    const port = /^[a-z]+:\/\/(?:[^/@]*@)?[^/:?#]*:(\d+)/i.exec(url)?.[1];
    if (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535)) {
      ctx.addIssue({ code: 'custom', message: `has port ${port}, which is not 1-65535` });
      return;
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'is not a valid URL' });
      return;
    }
    // A libsql client cannot send credentials in the URL (fetch refuses such a request, with a
    // stack at the first query); the token has its own variable.
    if (!/^postgres/.test(url) && (parsed.username || parsed.password)) {
      ctx.addIssue({ code: 'custom', message: `must not carry a user or password for a libsql server; put the token in ${ENV.databaseAuthToken}` });
    }
    if (/^postgres/.test(url)) {
      if (!parsed.hostname) ctx.addIssue({ code: 'custom', message: 'names no host (postgres://user:password@host:5432/database)' });
      const sslmode = parsed.searchParams.get('sslmode');
      if (sslmode !== null && !['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'].includes(sslmode)) {
        ctx.addIssue({ code: 'custom', message: `has sslmode=${sslmode}; expected disable, allow, prefer, require, verify-ca or verify-full` });
      }
    }
  });

const envSchema = z.object({
  [ENV.port]: nonNegativeInt(0, 65535).default(DEFAULT_PORT),
  [ENV.host]: z.string().trim().min(1).default('0.0.0.0'),
  [ENV.databaseUrl]: databaseUrl.default(DEFAULT_DATABASE_URL),
  [ENV.databaseAuthToken]: z.string().optional(),
  [ENV.databaseMigrate]: z.enum(['auto', 'always', 'never']).default('auto'),
  // Well under a client's patience and the readiness probe's 3 s timeout; see DatabaseGuard.
  [ENV.databaseTimeoutMs]: nonNegativeInt(100, 60_000).default(2000),
  [ENV.databaseStartupWaitSeconds]: nonNegativeInt(0, 600).default(30),
  // PostgreSQL connections per process. A pod has no more registrations in flight than hashes
  // finishing (HASH_CONCURRENCY), and a statement holds a connection for a millisecond or so; 4
  // keeps 11 pods (an HPA's 10 and a surge) plus a migrator at 45 of the server's default 100.
  [ENV.databasePoolSize]: nonNegativeInt(1, 100).default(4),
  [ENV.logLevel]: z.enum(LOG_LEVELS).default('info'),
  [ENV.bodyLimitBytes]: nonNegativeInt(256, 1024 * 1024).default(16 * 1024),
  [ENV.rateLimitWindowSeconds]: nonNegativeInt(1, 86_400).default(60),
  [ENV.rateLimitRegister]: nonNegativeInt(0, 1_000_000).default(10),
  [ENV.rateLimitLogin]: nonNegativeInt(0, 1_000_000).default(30),
  [ENV.trustProxyHops]: nonNegativeInt(0, 10).default(0),
  // ASVS 4.0.3 3.3.2 (level 2) and NIST SP 800-63B rev 3 at AAL2: 12 hours absolute, 30 minutes
  // idle. Up to 30 days is allowed (NIST's AAL1 re-authentication period).
  [ENV.sessionTtlSeconds]: nonNegativeInt(60, 2_592_000).default(43_200),
  [ENV.sessionIdleSeconds]: nonNegativeInt(60, 2_592_000).default(1_800),
  // OWASP minimum for argon2id is m=19 MiB, t=2, p=1; lower values are refused, not silently used.
  [ENV.hashMemoryKib]: nonNegativeInt(19_456, 4 * 1024 * 1024).default(19_456),
  [ENV.hashIterations]: nonNegativeInt(2, 100).default(2),
  [ENV.hashParallelism]: nonNegativeInt(1, 16).default(1),
  [ENV.hashConcurrency]: nonNegativeInt(1, 256).optional(),
  [ENV.hashQueueLimit]: nonNegativeInt(0, 100_000).optional(),
  [ENV.shutdownDrainSeconds]: positiveNumber(300).default(5),
  [ENV.shutdownGraceSeconds]: positiveNumber(3600).default(25),
});

export interface HashConfig {
  memoryKib: number;
  iterations: number;
  parallelism: number;
  /** Hashes computed at the same time; each holds `memoryKib` of memory. */
  concurrency: number;
  /** Requests allowed to wait for a hashing slot before the service answers 503. */
  queueLimit: number;
}

export interface Config {
  port: number;
  host: string;
  database: {
    url: string;
    authToken?: string;
    migrate: 'auto' | 'always' | 'never';
    /** Deadline of every database call (and the embedded busy timeout). */
    timeoutMs: number;
    /** How long start-up keeps trying an unreachable remote database before starting unready. */
    startupWaitSeconds: number;
    /** Most PostgreSQL connections at a time. */
    poolSize: number;
  };
  logLevel: (typeof LOG_LEVELS)[number];
  bodyLimitBytes: number;
  rateLimit: { windowSeconds: number; register: number; login: number };
  trustProxyHops: number;
  hash: HashConfig;
  shutdown: { drainSeconds: number; graceSeconds: number };
  session: { ttlSeconds: number; idleSeconds: number };
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly problem: string,
  ) {
    super(`invalid configuration: ${variable} ${problem}`);
    this.name = 'ConfigError';
  }
}

/**
 * Parses configuration from an environment map. Empty strings count as unset, so
 * `PORT=` in a ConfigMap means "use the default" rather than "port NaN".
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present: Record<string, string> = {};
  for (const name of Object.values(ENV)) {
    const value = env[name];
    if (value !== undefined && value !== '') present[name] = value;
  }
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    // The value is echoed so the mistake can be seen, but never a token, nor a URL's password.
    const shown = variable in present && variable !== ENV.databaseAuthToken ? ` (got "${redactUrlPasswords(present[variable]!)}")` : '';
    throw new ConfigError(variable, `${issue.message}${shown}`);
  }
  const e = parsed.data;

  // Hashing runs on libuv's thread pool, so the pool size (UV_THREADPOOL_SIZE, default 4; raise it
  // on machines with more cores) is the hard cap, and the default fills it. File-database commits
  // are synchronous on the event loop; while the loop waits for an fsync, hashes already handed to
  // the pool keep the cores busy.
  // Measured on 2 cores: 2 slots gave 130 registrations/s, 4 slots 146/s (test/bench).
  const threadPool = Number(env.UV_THREADPOOL_SIZE) || 4;
  const concurrency = e[ENV.hashConcurrency] ?? threadPool;
  if (concurrency > threadPool) {
    throw new ConfigError(
      ENV.hashConcurrency,
      `is ${concurrency} but the libuv thread pool has ${threadPool} threads; raise UV_THREADPOOL_SIZE or lower ${ENV.hashConcurrency}`,
    );
  }
  if (e[ENV.sessionIdleSeconds] > e[ENV.sessionTtlSeconds]) {
    throw new ConfigError(
      ENV.sessionIdleSeconds,
      `must not exceed ${ENV.sessionTtlSeconds} (${e[ENV.sessionIdleSeconds]} > ${e[ENV.sessionTtlSeconds]})`,
    );
  }
  const drainSeconds = e[ENV.shutdownDrainSeconds];
  const graceSeconds = e[ENV.shutdownGraceSeconds];
  if (graceSeconds <= drainSeconds) {
    throw new ConfigError(
      ENV.shutdownGraceSeconds,
      `must be greater than ${ENV.shutdownDrainSeconds} (${graceSeconds} <= ${drainSeconds})`,
    );
  }

  return {
    port: e[ENV.port],
    host: e[ENV.host],
    database: {
      url: e[ENV.databaseUrl],
      ...(e[ENV.databaseAuthToken] ? { authToken: e[ENV.databaseAuthToken] } : {}),
      migrate: e[ENV.databaseMigrate],
      timeoutMs: e[ENV.databaseTimeoutMs],
      startupWaitSeconds: e[ENV.databaseStartupWaitSeconds],
      poolSize: e[ENV.databasePoolSize],
    },
    logLevel: e[ENV.logLevel],
    bodyLimitBytes: e[ENV.bodyLimitBytes],
    rateLimit: {
      windowSeconds: e[ENV.rateLimitWindowSeconds],
      register: e[ENV.rateLimitRegister],
      login: e[ENV.rateLimitLogin],
    },
    trustProxyHops: e[ENV.trustProxyHops],
    hash: {
      memoryKib: e[ENV.hashMemoryKib],
      iterations: e[ENV.hashIterations],
      parallelism: e[ENV.hashParallelism],
      concurrency,
      // Enough waiting work to keep every hashing thread busy between completions, small enough
      // that a waiting request is answered within a few hash times.
      queueLimit: e[ENV.hashQueueLimit] ?? concurrency * 16,
    },
    shutdown: { drainSeconds, graceSeconds },
    session: { ttlSeconds: e[ENV.sessionTtlSeconds], idleSeconds: e[ENV.sessionIdleSeconds] },
  };
}
