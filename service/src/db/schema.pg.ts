/**
 * The users table in PostgreSQL: the same columns, names and unique index as schema.ts (the
 * libsql file and server), with real timestamps (`timestamptz`, millisecond precision, as the
 * libsql integers carry). drizzle has no dialect-neutral schema, so each dialect has its file and
 * its own generated migrations (service/drizzle-pg).
 */
import { index, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

export const users = pgTable(
  'users',
  {
    id: text('id').primaryKey(),
    /** The name as the user typed it (trimmed, NFKC); shown back to them. */
    username: text('username').notNull(),
    /** Case-folded form; the unique index on it is what decides "already taken". */
    usernameCanonical: text('username_canonical').notNull(),
    /** Self-describing PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash), so parameters can be raised later. */
    passwordHash: text('password_hash').notNull(),
    createdAt: timestamp('created_at', { precision: 3, withTimezone: true, mode: 'date' }).notNull().defaultNow(),
    passwordUpdatedAt: timestamp('password_updated_at', { precision: 3, withTimezone: true, mode: 'date' }),
  },
  (t) => [uniqueIndex('users_username_canonical_unique').on(t.usernameCanonical)],
);

export type PgUserRow = typeof users.$inferSelect;

/** Login sessions: as in schema.ts (the token's SHA-256 only; revoking is deleting the row). */
export const sessions = pgTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    tokenHash: text('token_hash').notNull(),
    createdAt: timestamp('created_at', { precision: 3, withTimezone: true, mode: 'date' }).notNull(),
    lastSeenAt: timestamp('last_seen_at', { precision: 3, withTimezone: true, mode: 'date' }).notNull(),
    expiresAt: timestamp('expires_at', { precision: 3, withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [uniqueIndex('sessions_token_hash_unique').on(t.tokenHash), index('sessions_user_id_idx').on(t.userId)],
);
