/**
 * Process entry: config → listen → load and start the service (run.ts) → serve → graceful shutdown.
 *
 * It listens before it loads the rest. Until the service can serve, the socket answers liveness
 * itself (the process is alive, it is starting) and holds every other request, readiness probes
 * included, then hands them to the app the moment it is ready. A kubelet asks for readiness as soon
 * as it sees the container start, so the pod turns Ready when the service can serve, not at the
 * next tick of a probe period; a port-forward opened early gets its answer instead of a refusal.
 *
 * Shutdown on SIGTERM/SIGINT: readiness turns false at once (so the platform stops routing new
 * requests here), the listener stays open for SHUTDOWN_DRAIN_SECONDS (requests already on their
 * way still get served), then it closes; in-flight requests finish, the database closes and the
 * process exits 0. If that takes past SHUTDOWN_GRACE_SECONDS, remaining sockets are destroyed and
 * the exit code is 1, so the forced case is visible.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig, type Config } from './config.js';
import { HEALTH_PATHS } from './contract.js';

/** Requests held while starting, at most; more are answered 503 (a client should retry). */
const MAX_HELD = 256;

/** A server listening before the service is loaded (see the top of this file). */
export interface EarlyServer {
  server: Server;
  /** From now on every request, held ones first, goes to `listener`. */
  serve(listener: RequestListener): void;
}

export function listenEarly(config: Pick<Config, 'port' | 'host'>): Promise<EarlyServer> {
  const held: Array<[IncomingMessage, ServerResponse]> = [];
  let handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.url === HEALTH_PATHS.liveness) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"alive"}');
    } else if (held.length < MAX_HELD) {
      held.push([req, res]);
    } else {
      res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': '1' });
      res.end(JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the service is starting' }));
    }
  };
  const server = createServer((req, res) => handle(req, res));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve({
        server,
        serve(listener) {
          handle = listener;
          for (const [req, res] of held.splice(0)) if (!res.destroyed) void listener(req, res);
        },
      });
    });
  });
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kreg-registration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const listening = listenEarly(config).then(
    (early) => ({ early }),
    (error: unknown) => ({ error }),
  );
  // Loaded while the socket binds: the app, the database layer, the logger.
  const [{ startServer }, { createLogger, describeError }] = await Promise.all([import('./run.js'), import('./logger.js')]);
  const logger = createLogger(config.logLevel);
  const bound = await listening;
  if ('error' in bound) {
    logger.fatal(describeError(bound.error), 'start-up failed');
    process.exit(1);
  }
  let running: Awaited<ReturnType<typeof startServer>>;
  try {
    running = await startServer(config, logger, bound.early);
  } catch (err) {
    // A refused token is a configuration error like any other: one line naming the variable, exit 2.
    if (err instanceof ConfigError) {
      process.stderr.write(`kreg-registration: ${err.message}\n`);
      process.exit(2);
    }
    logger.fatal(describeError(err), 'start-up failed');
    process.exit(1);
  }
  const onSignal = (signal: NodeJS.Signals) => {
    void running.shutdown(signal).then((code) => process.exit(code));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main();
}
