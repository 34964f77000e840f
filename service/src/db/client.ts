import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@libsql/client';
import type { LibSQLDatabase } from 'drizzle-orm/libsql';
import { ConfigError } from '../config.js';
import { ENV } from '../contract.js';
import { causeChain, DatabaseGuard, DatabaseRefusedError, DatabaseUnavailableError } from './guard.js';
import type { PostgresDatabase } from './postgres.js';
import * as schema from './schema.js';
import { LibsqlUserStore, PostgresUserStore, type UserStore } from '../users/store.js';

export type { PostgresDatabase } from './postgres.js';
export type LibsqlDatabase = LibSQLDatabase<typeof schema> & { $client: Client };

interface HandleBase {
  /** True for a local file (embedded, single writer); false for a server many replicas share. */
  embedded: boolean;
  /** Closes the connections; resolves once their sockets are gone (bounded). */
  close(): Promise<void>;
}

/** A libsql database: the embedded file, or a libsql server (sqld, Turso). */
export interface LibsqlHandle extends HandleBase {
  kind: 'libsql';
  db: LibsqlDatabase;
  client: Client;
}

/** A PostgreSQL database, through a bounded pool. */
export interface PostgresHandle extends HandleBase {
  kind: 'postgres';
  db: PostgresDatabase;
  /** Applies the migrations on a connection of its own (see migratePostgres). */
  migrate(): Promise<void>;
}

export type DatabaseHandle = LibsqlHandle | PostgresHandle;

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

export interface OpenOptions {
  url: string;
  authToken?: string;
  timeoutMs: number;
  /** Most connections at a time (PostgreSQL). */
  poolSize?: number;
  /** Where the server's notices go (PostgreSQL). */
  onNotice?: (notice: { severity?: string; code?: string; message?: string }) => void;
}

/** Opens the database the URL names: PostgreSQL for postgres:// and postgresql://, libsql otherwise. */
// Each kind of database loads only its own driver, when it is opened: the embedded file needs
// neither libsql's HTTP and WebSocket clients (which load ws and Node's fetch) nor PostgreSQL's, and
// what a process loads at start is time every new pod waits.
export async function openDatabase(opts: OpenOptions): Promise<DatabaseHandle> {
  if (isPostgresUrl(opts.url)) {
    const { migratePostgres, openPostgres } = await import('./postgres.js');
    const db = openPostgres({ url: opts.url, timeoutMs: opts.timeoutMs, poolSize: opts.poolSize ?? 4, ...(opts.onNotice ? { onNotice: opts.onNotice } : {}) });
    return {
      kind: 'postgres',
      db,
      embedded: false,
      migrate: () => migratePostgres(opts.url, PG_MIGRATIONS_DIR, Math.max(5, opts.timeoutMs / 1000)),
      close: () => db.$client.end({ timeout: 2 }),
    };
  }
  return openLibsql(opts);
}

/** The user store over an open database. */
export function userStoreOf(handle: DatabaseHandle, guard: DatabaseGuard): UserStore {
  return handle.kind === 'postgres' ? new PostgresUserStore(handle.db, guard) : new LibsqlUserStore(handle.db, guard);
}

// Defined (as true) only in the bundle (infra/scripts/build-service.mjs), whose build/service/src/*.js
// sit one folder above this file's place in the tree; from source it is an undeclared global.
declare const KREG_SERVICE_BUNDLE: boolean | undefined;
const SERVICE_DIR = new URL(typeof KREG_SERVICE_BUNDLE === 'undefined' ? '../../' : '../', import.meta.url);
/** `service/drizzle` in the source tree and `build/service/drizzle` beside the bundle. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('drizzle', SERVICE_DIR));
/** The PostgreSQL migrations, beside them (drizzle-kit writes one folder per dialect). */
export const PG_MIGRATIONS_DIR = fileURLToPath(new URL('drizzle-pg', SERVICE_DIR));

export function isEmbeddedUrl(url: string): boolean {
  return url.startsWith('file:') || url === ':memory:';
}

/** The filesystem path of a `file:` URL, or undefined for anything else. */
export function filePathOf(url: string): string | undefined {
  if (!url.startsWith('file:')) return undefined;
  const rest = url.slice('file:'.length).split('?')[0]!;
  if (rest.startsWith('//')) return fileURLToPath(url.split('?')[0]!);
  return resolve(rest);
}

/**
 * Opens the database. For a file the directory is created and the file is switched to WAL,
 * which lets readers (readiness checks) proceed while a registration commits. SQLite's default
 * `synchronous=FULL` is kept: an acknowledged registration survives a power cut.
 */
async function openLibsql(opts: OpenOptions): Promise<LibsqlHandle> {
  const path = filePathOf(opts.url);
  if (path) mkdirSync(dirname(path), { recursive: true });
  const embedded = isEmbeddedUrl(opts.url);
  const overHttp = /^(https?:|libsql:)/.test(opts.url);
  const [{ createClient }, { drizzle }] = embedded
    ? await Promise.all([import('@libsql/client/sqlite3'), import('drizzle-orm/libsql/sqlite3')])
    : await Promise.all([import('@libsql/client'), import('drizzle-orm/libsql')]);
  const client = createClient({
    url: opts.url,
    ...(opts.authToken ? { authToken: opts.authToken } : {}),
    // Native file calls are synchronous on the event loop, so more than one connection buys nothing
    // and would need its pragmas repeated. The busy timeout (a concurrent `migrate` process, or the
    // surge pod of a rollout, holding the write lock) blocks the event loop while it waits, so it is
    // the database deadline and no longer: past it the caller gets SQLITE_BUSY, answered as a 503.
    ...(embedded ? { concurrency: 1, timeout: opts.timeoutMs } : {}),
    // Over HTTP each statement is a fetch: abort it shortly after the guard's deadline has answered
    // the caller, so a server that never responds does not pile up open sockets.
    ...(overHttp ? { fetch: abortableFetch(opts.timeoutMs + 500) } : {}),
  });
  if (path) {
    await client.execute('PRAGMA journal_mode = WAL');
    await client.execute(`PRAGMA busy_timeout = ${Math.round(opts.timeoutMs)}`);
  }
  return {
    kind: 'libsql',
    db: drizzle(client, { schema }),
    client,
    embedded,
    close: async () => {
      client.close();
      // A WebSocket client's close() only starts the closing handshake. Wait (briefly) for it to
      // finish, so the process does not exit under a half-closed connection to the server.
      if (/^wss?:/.test(opts.url)) await socketsGone(1000);
    },
  };
}

/** An HTTP answer that refuses (401, 403) or fails (429, 5xx) the request, whatever its body says. */
export class DatabaseHttpError extends Error {
  constructor(readonly status: number) {
    super(`the database server answered HTTP ${status}`);
    this.name = 'DatabaseHttpError';
  }
}

/**
 * fetch for the libsql client: aborted shortly after the deadline, and an answer that refuses or
 * fails the request turned into an error that carries its status. The client would read such a
 * body as a statement's error when it is JSON with a `message` (as proxies and hosted servers send
 * `{"message": "Unauthorized"}`), losing the status the guard classifies by.
 */
function abortableFetch(ms: number) {
  return async (request: Request) => {
    const response = await fetch(request, { signal: AbortSignal.timeout(ms) });
    if (response.status === 401 || response.status === 403 || response.status === 429 || response.status >= 500) {
      await response.body?.cancel().catch(() => {});
      throw new DatabaseHttpError(response.status);
    }
    return response;
  };
}

/** Resolves when the process has no open TCP/TLS sockets left, or after `ms`. */
async function socketsGone(ms: number): Promise<void> {
  const until = Date.now() + ms;
  const open = () => process.getActiveResourcesInfo().some((r) => r === 'TCPSocketWrap' || r === 'TLSWrap');
  while (open() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
}

/**
 * Applies pending migrations. Idempotent: already-applied migrations are skipped. On PostgreSQL
 * several migrators may run at once (an advisory lock makes them take turns).
 */
export async function migrateDatabase(handle: DatabaseHandle): Promise<void> {
  if (handle.kind === 'postgres') await handle.migrate();
  else await (await import('drizzle-orm/libsql/migrator')).migrate(handle.db, { migrationsFolder: MIGRATIONS_DIR });
}

/**
 * A write that changes nothing: an UPDATE takes the write lock (and a read-only token is refused)
 * even when it matches no row, so it succeeds only when a registration could.
 */
const WRITE_PROBE_SQL = 'UPDATE users SET id = id WHERE 0';
const PG_WRITE_PROBE_SQL = 'UPDATE users SET id = id WHERE false';

function writeProbe(handle: DatabaseHandle): PromiseLike<unknown> {
  return handle.kind === 'postgres' ? handle.db.$client.unsafe(PG_WRITE_PROBE_SQL) : handle.client.execute(WRITE_PROBE_SQL);
}

function ping(handle: DatabaseHandle): PromiseLike<unknown> {
  return handle.kind === 'postgres' ? handle.db.$client.unsafe('SELECT 1') : handle.client.execute('SELECT 1');
}

/**
 * Readiness of the database for this process. Normally a cheap round trip (`SELECT 1`). While the
 * guard has seen writes fail, a write that changes nothing instead: an UPDATE takes the write lock
 * even when it matches no row, so it succeeds only when a registration could. That keeps a pod
 * whose writes hang out of the Service, and lets it back in once they work, without traffic.
 */
export async function checkDatabase(handle: DatabaseHandle, guard: DatabaseGuard): Promise<void> {
  const writesFailing = guard.writeFailure !== undefined;
  try {
    if (writesFailing) await guard.write('write probe', () => writeProbe(handle));
    else await guard.read('ping', () => ping(handle));
  } catch (err) {
    if (err instanceof DatabaseRefusedError) throw new Error(`database refused the request: ${err.reason}`, { cause: err });
    const reason = err instanceof DatabaseUnavailableError ? err.reason : err instanceof Error ? err.message : String(err);
    throw new Error(`${writesFailing ? 'database writes failing' : 'database unreachable'}: ${reason}`, { cause: err });
  }
}

/**
 * Start-up check of a remote database: the token is accepted and may write — by a write that
 * changes nothing (no data left behind). A refusal is a configuration error naming the variable
 * (exit 2). An unreachable server is retried with backoff for `retryForMs`; after that the check
 * says so and start-up goes on: the pod runs unready (readiness says why) instead of crash-looping,
 * and turns ready when the server answers.
 * Before the first migration there is no table to write to: the server answering "no such table"
 * has accepted the token, which is all that can be known then.
 */
export async function verifyRemoteAccess(
  handle: DatabaseHandle,
  options: { timeoutMs: number; retryForMs: number; onRetry?: (reason: string, delayMs: number) => void },
): Promise<{ reachable: true } | { reachable: false; reason: string }> {
  const guard = new DatabaseGuard(options.timeoutMs);
  const deadline = Date.now() + options.retryForMs;
  let delay = 250;
  for (;;) {
    try {
      await guard.write('start-up check', () => writeProbe(handle));
      return { reachable: true };
    } catch (err) {
      // PostgreSQL's credentials are part of the URL; a libsql server's are the token.
      if (err instanceof DatabaseRefusedError) throw new ConfigError(handle.kind === 'postgres' ? ENV.databaseUrl : ENV.databaseAuthToken, `is refused by the database: ${err.reason}`);
      if (err instanceof DatabaseUnavailableError) {
        if (Date.now() + delay > deadline) return { reachable: false, reason: err.reason };
        options.onRetry?.(err.reason, delay);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
        continue;
      }
      if (isUndefinedTable(err)) return { reachable: true };
      throw err;
    }
  }
}

/** "no such table" (libsql) or SQLSTATE 42P01 undefined_table (PostgreSQL): the database answered. */
function isUndefinedTable(err: unknown): boolean {
  for (const { code, message } of causeChain(err)) {
    if (code === '42P01') return true;
    if (typeof message === 'string' && /no such table/i.test(message)) return true;
  }
  return false;
}
