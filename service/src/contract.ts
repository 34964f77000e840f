/**
 * The small contract between the service and whatever runs it (the cdk8s charts, tests, the CLI).
 * It is deliberately dependency-free so `charts/` can import it without pulling in the service.
 */

/** Port the HTTP server listens on unless `PORT` says otherwise. */
export const DEFAULT_PORT = 8080;

/** Paths the platform probes. */
export const HEALTH_PATHS = {
  liveness: '/livez',
  readiness: '/readyz',
  metrics: '/metrics',
} as const;

/** Default location of the embedded libsql database, relative to the working directory. */
export const DEFAULT_DATABASE_URL = 'file:./data/registrations.db';

/** Environment variables the service reads (all optional; see config.ts for defaults and validation). */
export const ENV = {
  port: 'PORT',
  host: 'HOST',
  databaseUrl: 'DATABASE_URL',
  databaseAuthToken: 'DATABASE_AUTH_TOKEN',
  databaseMigrate: 'DATABASE_MIGRATE',
  databaseTimeoutMs: 'DATABASE_TIMEOUT_MS',
  databaseStartupWaitSeconds: 'DATABASE_STARTUP_WAIT_SECONDS',
  databasePoolSize: 'DATABASE_POOL_SIZE',
  logLevel: 'LOG_LEVEL',
  bodyLimitBytes: 'BODY_LIMIT_BYTES',
  rateLimitWindowSeconds: 'RATE_LIMIT_WINDOW_SECONDS',
  rateLimitRegister: 'RATE_LIMIT_REGISTER',
  rateLimitLogin: 'RATE_LIMIT_LOGIN',
  trustProxyHops: 'TRUST_PROXY_HOPS',
  hashMemoryKib: 'HASH_MEMORY_KIB',
  hashIterations: 'HASH_ITERATIONS',
  hashParallelism: 'HASH_PARALLELISM',
  hashConcurrency: 'HASH_CONCURRENCY',
  hashQueueLimit: 'HASH_QUEUE_LIMIT',
  shutdownDrainSeconds: 'SHUTDOWN_DRAIN_SECONDS',
  shutdownGraceSeconds: 'SHUTDOWN_GRACE_SECONDS',
  sessionTtlSeconds: 'SESSION_TTL_SECONDS',
  sessionIdleSeconds: 'SESSION_IDLE_SECONDS',
} as const;

/** Entry points, relative to the package root, in source and in the built image. */
export const ENTRY_POINTS = {
  server: { source: 'service/src/server.ts', built: 'build/service/src/server.js' },
  migrate: { source: 'service/src/migrate.ts', built: 'build/service/src/migrate.js' },
} as const;
