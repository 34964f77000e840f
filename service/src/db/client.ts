import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from '@libsql/client';
import { drizzle, type LibSQLDatabase } from 'drizzle-orm/libsql';
import { migrate } from 'drizzle-orm/libsql/migrator';
import * as schema from './schema.js';

export type Database = LibSQLDatabase<typeof schema>;

export interface DatabaseHandle {
  db: Database;
  client: Client;
  /** True for a local file (embedded, single writer); false for a libsql server. */
  embedded: boolean;
  close(): void;
}

/** `service/drizzle` in the source tree and `build/service/drizzle` in the built image. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../drizzle', import.meta.url));

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
export async function openDatabase(opts: { url: string; authToken?: string }): Promise<DatabaseHandle> {
  const path = filePathOf(opts.url);
  if (path) mkdirSync(dirname(path), { recursive: true });
  const embedded = isEmbeddedUrl(opts.url);
  const client = createClient({
    url: opts.url,
    ...(opts.authToken ? { authToken: opts.authToken } : {}),
    // Native file calls are synchronous on the event loop, so more than one connection buys nothing
    // and would need its pragmas repeated; a busy timeout covers a concurrent `migrate` process.
    ...(embedded ? { concurrency: 1, timeout: 5000 } : {}),
  });
  if (path) {
    await client.execute('PRAGMA journal_mode = WAL');
    await client.execute('PRAGMA busy_timeout = 5000');
  }
  return {
    db: drizzle(client, { schema }),
    client,
    embedded,
    close: () => client.close(),
  };
}

/** Applies pending migrations. Idempotent: already-applied migrations are skipped. */
export async function migrateDatabase(handle: DatabaseHandle): Promise<void> {
  await migrate(handle.db, { migrationsFolder: MIGRATIONS_DIR });
}

/** Cheap round trip used by readiness: proves the database answers, not just that a handle exists. */
export async function pingDatabase(handle: DatabaseHandle, timeoutMs = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      handle.client.execute('SELECT 1'),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`database did not answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
