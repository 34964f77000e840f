import { sql } from 'drizzle-orm';
import { index, integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

export const users = sqliteTable(
  'users',
  {
    id: text('id').primaryKey(),
    /** The name as the user typed it (trimmed, NFKC); shown back to them. */
    username: text('username').notNull(),
    /** Case-folded form; the unique index on it is what decides "already taken". */
    usernameCanonical: text('username_canonical').notNull(),
    /** Self-describing PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash), so parameters can be raised later. */
    passwordHash: text('password_hash').notNull(),
    createdAt: integer('created_at', { mode: 'timestamp_ms' })
      .notNull()
      .default(sql`(CAST(unixepoch('subsec') * 1000 AS INTEGER))`),
    passwordUpdatedAt: integer('password_updated_at', { mode: 'timestamp_ms' }),
  },
  (t) => [uniqueIndex('users_username_canonical_unique').on(t.usernameCanonical)],
);

export type UserRow = typeof users.$inferSelect;

/**
 * Login sessions. The token itself is never stored: only its SHA-256 (hex), looked up through the
 * unique index, so the table opens no session to whoever reads it. Revoking is deleting the row.
 */
export const sessions = sqliteTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    tokenHash: text('token_hash').notNull(),
    /** When the user logged in (the session's authentication time). */
    createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
    /** Last use, written at most once a minute per session; the idle timeout counts from it. */
    lastSeenAt: integer('last_seen_at', { mode: 'timestamp_ms' }).notNull(),
    /** The absolute end; never extended. */
    expiresAt: integer('expires_at', { mode: 'timestamp_ms' }).notNull(),
  },
  (t) => [uniqueIndex('sessions_token_hash_unique').on(t.tokenHash), index('sessions_user_id_idx').on(t.userId)],
);

export type SessionRow = typeof sessions.$inferSelect;
