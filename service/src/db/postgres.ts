/**
 * PostgreSQL through postgres.js (v4) and drizzle. The driver was chosen on how it behaves when the
 * server goes away (see docs/design.md): a query past its deadline is cancelled on the server, so
 * what the caller is told is what happened to the data; a dropped connection fails only the
 * queries on it, never the process; a unique violation keeps the connection.
 *
 * The deadline (DATABASE_TIMEOUT_MS) is enforced on both sides: the server cancels a statement
 * that runs longer (`statement_timeout`, a little under the deadline, so its 57014 is the answer
 * the caller gets), and the client gives up waiting at the deadline (`query_timeout`, which also
 * sends a cancel) or when no connection frees up in time (`queue_timeout`).
 */
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import * as schema from './schema.pg.js';

export type PostgresDatabase = PostgresJsDatabase<typeof schema> & { $client: postgres.Sql };

/**
 * The key of the advisory lock migrators take turns on. drizzle's migrator has no lock of its own:
 * two of them on an empty database collide creating the same objects (23505 on pg_type).
 */
const MIGRATION_LOCK_KEY = 0x6b726567; // "kreg"

export function openPostgres(opts: {
  url: string;
  timeoutMs: number;
  poolSize: number;
  onNotice?: (notice: { severity?: string; code?: string; message?: string }) => void;
}): PostgresDatabase {
  const seconds = opts.timeoutMs / 1000;
  const client = postgres(opts.url, {
    max: opts.poolSize,
    // A connection idle this long is closed; the pool opens one again on demand.
    idle_timeout: 60,
    connect_timeout: seconds,
    queue_timeout: seconds,
    query_timeout: seconds,
    // After a cancel, the outcome of a statement is unknown until the server answers; past this
    // the connection is closed and the error says CANCEL_UNANSWERED.
    cancel_timeout: 2,
    // Notices a half-open connection in about this long, instead of the kernel's two hours.
    keep_alive: 15,
    // Between connection attempts while the server refuses them: 0.1 s doubling to at most 1 s,
    // jittered. The driver's own backoff grows to 20 s, so a server back after half a minute went
    // unused for up to 20 s more (measured: 9 s of 503s after slots freed); one attempt a second
    // per pod costs nothing.
    backoff: (retries: number) => Math.min(0.1 * 2 ** retries, 1) * (0.5 + Math.random() / 2),
    // Our SQL has no untyped parameters; let the server type each one.
    prepare: true,
    onnotice: opts.onNotice ?? false,
    connection: {
      application_name: 'kreg-registration',
      statement_timeout: Math.max(50, opts.timeoutMs - 250),
      lock_timeout: Math.max(50, opts.timeoutMs - 250),
      idle_in_transaction_session_timeout: Math.max(1000, opts.timeoutMs * 5),
    },
  });
  return drizzle(client, { schema }) as PostgresDatabase;
}

/**
 * Applies pending migrations under a session-level advisory lock, on one reserved connection:
 * migrators started together run one after another, and each later one finds nothing to do.
 * Migrations may take longer than a request's deadline, so this runs on its own connection with
 * no statement timeout.
 */
export async function migratePostgres(url: string, folder: string, connectTimeoutSeconds: number): Promise<void> {
  const migrator = postgres(url, {
    max: 1,
    connect_timeout: connectTimeoutSeconds,
    onnotice: false,
    connection: { application_name: 'kreg-migrate', statement_timeout: 0, lock_timeout: 0 },
  });
  try {
    await migrator`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      await migrate(drizzle(migrator), { migrationsFolder: folder });
    } finally {
      await migrator`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    }
  } finally {
    await migrator.end({ timeout: 2 });
  }
}
