/**
 * Real parts for service tests: a libsql file database in a temp directory, the real app, and
 * optionally a real HTTP server on port 0. Nothing is mocked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after } from 'node:test';
import { loadConfig, type Config } from '../../service/src/config.js';
import { migrateDatabase, openDatabase, type DatabaseHandle, type LibsqlHandle } from '../../service/src/db/client.js';
import { Lifecycle } from '../../service/src/lifecycle.js';
import { createLogger } from '../../service/src/logger.js';
import { assembleApp, startServer, type RunningServer } from '../../service/src/run.js';
import { postgresBinDir, startPostgres, type TestPostgres } from '../postgres.js';

export function tempDir(prefix = 'kreg-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * Every password a test sends through `json()`, so a log line that contains one can be caught
 * wherever it was written. (Short strings are left out: they would match by accident.)
 */
const sentPasswords = new Set<string>();
const secretsInLogs: string[] = [];

/** Database credentials the tests made (a throwaway PostgreSQL's password): no log line may hold one. */
const credentials = new Set<string>();

/** Adds a credential every log line is checked for, from here on. */
export function watchCredential(secret: string): void {
  if (secret.length >= 8) credentials.add(secret);
}

/** Records a log line that carries a password the tests sent, a database credential, or any argon2 hash. */
export function watchLogLine(line: string, source: string): void {
  const leaked = line.includes('$argon2')
    ? 'an argon2 hash'
    : /kreg_st_[A-Za-z0-9_-]{43}/.test(line)
      ? 'a session token'
    : ([...sentPasswords].find((p) => line.includes(p)) && 'a password') || ([...credentials].find((c) => line.includes(c)) && 'a database credential');
  if (leaked) secretsInLogs.push(`${source} logged ${leaked}: ${[...credentials].reduce((l, c) => l.replaceAll(c, '<credential>'), line.replace(/\$argon2[^"]*/g, '$argon2…')).slice(0, 400)}`);
}

// Every test file that logs through these helpers fails if any line, in any test, leaked a secret.
after(() => {
  if (secretsInLogs.length > 0) throw new Error(`secrets in logs:\n${secretsInLogs.join('\n')}`);
});

/** Collects log lines in memory so tests can assert on them; every line is checked for secrets. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      watchLogLine(line, 'the service');
      this.lines.push(line);
    }
    cb();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

export function testConfig(dir: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    DATABASE_URL: `file:${join(dir, 'registrations.db')}`,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'debug',
    SHUTDOWN_DRAIN_SECONDS: '0',
    SHUTDOWN_GRACE_SECONDS: '5',
    HASH_QUEUE_LIMIT: '200',
    RATE_LIMIT_REGISTER: '0',
    RATE_LIMIT_LOGIN: '0',
    ...env,
  });
}

export interface TestApp extends ReturnType<typeof assembleApp> {
  database: DatabaseHandle;
  lifecycle: Lifecycle;
  logs: LogCapture;
  dir: string;
  close(): void;
}

export async function createTestApp(env: Record<string, string> = {}, options: { now?: () => number } = {}): Promise<TestApp> {
  const dir = tempDir();
  const config = testConfig(dir.path, env);
  const logs = new LogCapture();
  const logger = createLogger(config.logLevel, logs);
  const database = await openDatabase(config.database);
  await migrateDatabase(database);
  const lifecycle = new Lifecycle();
  lifecycle.markReady();
  const { app, hasher, metrics, guard, sessions } = assembleApp({
    config,
    database,
    logger,
    lifecycle,
    ...(options.now ? { now: options.now } : {}),
  });
  return {
    app,
    database,
    hasher,
    guard,
    sessions,
    lifecycle,
    metrics,
    logs,
    dir: dir.path,
    close: () => {
      void database.close();
      dir.remove();
    },
  };
}

export async function startTestServer(
  dir: string,
  env: Record<string, string> = {},
): Promise<RunningServer & { logs: LogCapture }> {
  const config = testConfig(dir, env);
  const logs = new LogCapture();
  const running = await startServer(config, createLogger(config.logLevel, logs));
  return Object.assign(running, { logs });
}

export function json(body: unknown, headers: Record<string, string> = {}): RequestInit {
  const password = (body as { password?: unknown } | null)?.password;
  if (typeof password === 'string' && password.length >= 8) sentPasswords.add(password);
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  };
}

export const GOOD_PASSWORD = 'violet-otter-meadow-42';

/** The handle as a libsql one, for tests that reach into the libsql client (PRAGMAs, raw SQL). */
export function libsqlOf(handle: DatabaseHandle): LibsqlHandle {
  if (handle.kind !== 'libsql') throw new Error(`a libsql database was expected, got ${handle.kind}`);
  return handle;
}

/** A database mode a suite runs on: the environment that selects it, and what to stop after. */
export interface DatabaseMode {
  name: string;
  /** Skips the suite (a reason) when the mode cannot run here; never in CI. */
  skip: string | false;
  /** Starts what the mode needs; returns the environment for the service. */
  start(): Promise<Record<string, string>>;
  stop(): Promise<void>;
  /** The PostgreSQL server, once started (undefined for the file). */
  postgres?: TestPostgres;
}

/** The embedded file and a throwaway PostgreSQL: every suite that runs on both takes these. */
export function databaseModes(): DatabaseMode[] {
  const file: DatabaseMode = { name: 'temp file database', skip: false, start: async () => ({}), stop: async () => {} };
  const pg: DatabaseMode = {
    name: 'PostgreSQL',
    skip: postgresBinDir() || process.env.CI ? false : 'no PostgreSQL binaries (apt-get install postgresql)',
    start: async () => {
      pg.postgres = await startPostgres();
      watchCredential(pg.postgres.password);
      return { DATABASE_URL: pg.postgres.url };
    },
    stop: async () => {
      await pg.postgres?.remove();
    },
  };
  return [file, pg];
}
