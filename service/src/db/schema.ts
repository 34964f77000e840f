import { sql } from 'drizzle-orm';
import { integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';

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
