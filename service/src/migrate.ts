/**
 * One-shot migration entry point for remote databases (a libsql server shared by many replicas),
 * run by exactly one process per release (the charts' migration Job). Idempotent: applied
 * migrations are skipped, so re-running it is safe. Exit codes: 0 done, 1 failed, 2 bad config.
 */
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig } from './config.js';
import { migrateDatabase, openDatabase } from './db/client.js';
import { createLogger, describeError } from './logger.js';

async function main(): Promise<number> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kreg-migrate: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const t0 = performance.now();
  try {
    const database = await openDatabase(config.database);
    try {
      await migrateDatabase(database);
    } finally {
      await database.close();
    }
    logger.info({ durationMs: Math.round(performance.now() - t0), embedded: database.embedded }, 'migrations applied');
    return 0;
  } catch (err) {
    logger.fatal(describeError(err), 'migration failed');
    return 1;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await main();
}
