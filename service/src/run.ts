/**
 * The running service: database → migrations → app → serving → graceful shutdown. The process entry
 * (server.ts) listens before it loads this; tests call startServer directly.
 *
 * Shutdown on SIGTERM/SIGINT: readiness turns false at once (so the platform stops routing new
 * requests here), the listener stays open for SHUTDOWN_DRAIN_SECONDS (requests already on their
 * way still get served), then it closes; in-flight requests finish, the database closes and the
 * process exits 0. If that takes past SHUTDOWN_GRACE_SECONDS, remaining sockets are destroyed and
 * the exit code is 1, so the forced case is visible.
 */
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { buildApp } from './app.js';
import type { Config } from './config.js';
import { checkDatabase, migrateDatabase, openDatabase, userStoreOf, verifyRemoteAccess, type DatabaseHandle } from './db/client.js';
import { DatabaseGuard } from './db/guard.js';
import { Metrics } from './http/metrics.js';
import { Lifecycle } from './lifecycle.js';
import { describeError, type Logger } from './logger.js';
import type { EarlyServer } from './server.js';
import { PasswordHasher } from './users/hasher.js';
import { SessionService } from './sessions/service.js';
import { LibsqlSessionStore, PostgresSessionStore } from './sessions/store.js';
import { UserService } from './users/service.js';

export interface RunningServer {
  url: string;
  port: number;
  server: Server;
  lifecycle: Lifecycle;
  database: DatabaseHandle;
  /** Drains and closes; resolves with the exit code the process should use. */
  shutdown(reason: string): Promise<number>;
}

/**
 * Wires the service's parts (hasher, metrics, store, users, app) around an open database. No I/O:
 * the server below and the tests share it, so tests exercise exactly the production wiring.
 */
export function assembleApp(opts: {
  config: Config;
  database: DatabaseHandle;
  logger: Logger;
  lifecycle: Lifecycle;
  defaultMetrics?: boolean;
  /** The clock sessions are timed by (tests move it). */
  now?: () => number;
}) {
  const { config, database, logger, lifecycle } = opts;
  const hasher = new PasswordHasher(config.hash);
  const metrics = new Metrics({ hasher, defaultMetrics: opts.defaultMetrics ?? false });
  const guard = new DatabaseGuard(config.database.timeoutMs, {
    // Logged once per change, so `kubectl logs` (and kreg's evidence) say why readiness turned.
    onWritePathChange: (failure) =>
      failure
        ? logger.warn({ reason: failure.reason }, 'database writes failing: readiness off until a write succeeds')
        : logger.info('database writes succeed again'),
    onRefusalChange: (refusal) =>
      refusal
        ? logger.error({ reason: refusal.reason, ...describeError(refusal.cause) }, 'database refused the request; requests answer 503 until it accepts again')
        : logger.info('database accepts requests again'),
  });
  const users = new UserService(
    userStoreOf(database, guard),
    hasher,
    (err) => logger.warn(describeError(err), 'password rehash failed'),
    () => metrics.rehashes.inc(),
  );
  const sessions = new SessionService(
    database.kind === 'postgres' ? new PostgresSessionStore(database.db, guard) : new LibsqlSessionStore(database.db, guard),
    config.session,
    opts.now,
  );
  const app = buildApp({
    users,
    sessions,
    metrics,
    logger,
    lifecycle,
    checkDatabase: () => checkDatabase(database, guard),
    options: { bodyLimitBytes: config.bodyLimitBytes, rateLimit: config.rateLimit, trustProxyHops: config.trustProxyHops },
  });
  return { app, hasher, metrics, guard, sessions };
}

/**
 * Opens the database, migrates if it should, and serves the app: on `early`'s socket, already
 * listening and holding requests (the process entry), or on a server of its own (tests).
 */
export async function startServer(config: Config, logger: Logger, early?: EarlyServer): Promise<RunningServer> {
  const lifecycle = new Lifecycle();
  const database = await openDatabase({
    ...config.database,
    // PostgreSQL's notices (a WARNING after a crash restart, say) as log lines, not console output.
    onNotice: (notice) => logger.info({ severity: notice.severity, code: notice.code, notice: notice.message }, 'database notice'),
  });
  if (!database.embedded) {
    try {
      const check = await verifyRemoteAccess(database, {
        timeoutMs: config.database.timeoutMs,
        retryForMs: config.database.startupWaitSeconds * 1000,
        onRetry: (reason, delayMs) => logger.warn({ reason, delayMs }, 'database unreachable at start-up; retrying'),
      });
      if (!check.reachable) {
        logger.warn({ reason: check.reason }, 'database still unreachable; starting unready (readiness says why) until it answers');
      }
    } catch (err) {
      await database.close();
      throw err;
    }
  }
  const shouldMigrate =
    config.database.migrate === 'always' || (config.database.migrate === 'auto' && database.embedded);
  if (shouldMigrate) {
    const t0 = performance.now();
    await migrateDatabase(database);
    logger.info({ durationMs: Math.round(performance.now() - t0) }, 'database migrations applied');
  }

  const { app } = assembleApp({ config, database, logger, lifecycle, defaultMetrics: true });

  const listener = getRequestListener(app.fetch);
  // Ready before the first request reaches the app: requests held while starting go to it at once.
  lifecycle.markReady();
  let server: Server;
  if (early) {
    server = early.server;
    early.serve(listener);
  } else {
    server = createServer(listener);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  }
  // Keep-alive sockets must outlive a typical load balancer's idle timeout (60 s), or it may reuse
  // a socket we are closing and see a reset.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  const port = (server.address() as AddressInfo).port;
  logger.info(
    {
      port,
      host: config.host,
      database: database.kind === 'postgres' ? 'postgres' : database.embedded ? 'embedded' : 'remote',
      hash: { memoryKib: config.hash.memoryKib, iterations: config.hash.iterations, concurrency: config.hash.concurrency },
    },
    'listening',
  );

  let shuttingDown: Promise<number> | undefined;
  const shutdown = (reason: string): Promise<number> => {
    shuttingDown ??= (async () => {
      lifecycle.markDraining();
      logger.info({ reason, drainSeconds: config.shutdown.drainSeconds }, 'shutting down: readiness off, draining');
      const deadline = Date.now() + config.shutdown.graceSeconds * 1000;
      await sleep(config.shutdown.drainSeconds * 1000);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // close() only reaps sockets idle at that instant; keep-alive sockets that finish a request
      // afterwards would otherwise linger until keepAliveTimeout.
      const reaper = setInterval(() => server.closeIdleConnections(), 50);
      server.closeIdleConnections();
      const timedOut = await Promise.race([
        closed.then(() => false),
        sleep(Math.max(0, deadline - Date.now() - 250)).then(() => true),
      ]);
      clearInterval(reaper);
      if (timedOut) {
        logger.warn('grace period exhausted; closing remaining connections');
        server.closeAllConnections();
      }
      await database.close();
      logger.info({ forced: timedOut }, 'shutdown complete');
      return timedOut ? 1 : 0;
    })();
    return shuttingDown;
  };

  return { url: `http://127.0.0.1:${port}`, port, server, lifecycle, database, shutdown };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
