import { and, eq, lt } from 'drizzle-orm';
import type { LibsqlDatabase, PostgresDatabase } from '../db/client.js';
import type { DatabaseGuard } from '../db/guard.js';
import { sessions, users } from '../db/schema.js';
import { sessions as pgSessions, users as pgUsers } from '../db/schema.pg.js';

export interface SessionRecord {
  id: string;
  userId: string;
  createdAt: Date;
  lastSeenAt: Date;
  expiresAt: Date;
}

/** A session found by its token, with the user it belongs to. */
export interface SessionWithUser extends SessionRecord {
  username: string;
}

/**
 * Persistence of sessions, one implementation per dialect, every call under the guard's deadline.
 * Only the token's SHA-256 is ever written or looked up.
 */
export interface SessionStore {
  create(session: SessionRecord & { tokenHash: string }): Promise<void>;
  findByTokenHash(tokenHash: string): Promise<SessionWithUser | undefined>;
  /** Moves last_seen_at to `now` if it is older than `notAfter`: at most one write per session per interval. */
  touch(id: string, now: Date, notAfter: Date): Promise<void>;
  /** Deletes the session; true if there was one. */
  delete(id: string): Promise<boolean>;
}

export class LibsqlSessionStore implements SessionStore {
  constructor(
    private readonly db: LibsqlDatabase,
    private readonly guard: DatabaseGuard,
  ) {}

  async create(session: SessionRecord & { tokenHash: string }): Promise<void> {
    await this.guard.write('insert session', () => this.db.insert(sessions).values(session));
  }

  async findByTokenHash(tokenHash: string): Promise<SessionWithUser | undefined> {
    const rows = await this.guard.read('find session', () =>
      this.db
        .select({
          id: sessions.id,
          userId: sessions.userId,
          createdAt: sessions.createdAt,
          lastSeenAt: sessions.lastSeenAt,
          expiresAt: sessions.expiresAt,
          username: users.username,
        })
        .from(sessions)
        .innerJoin(users, eq(users.id, sessions.userId))
        .where(eq(sessions.tokenHash, tokenHash))
        .limit(1),
    );
    return rows[0];
  }

  async touch(id: string, now: Date, notAfter: Date): Promise<void> {
    await this.guard.write('touch session', () =>
      this.db.update(sessions).set({ lastSeenAt: now }).where(and(eq(sessions.id, id), lt(sessions.lastSeenAt, notAfter))),
    );
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.guard.write('delete session', () => this.db.delete(sessions).where(eq(sessions.id, id)));
    return result.rowsAffected > 0;
  }
}

export class PostgresSessionStore implements SessionStore {
  constructor(
    private readonly db: PostgresDatabase,
    private readonly guard: DatabaseGuard,
  ) {}

  async create(session: SessionRecord & { tokenHash: string }): Promise<void> {
    await this.guard.write('insert session', () => this.db.insert(pgSessions).values(session));
  }

  async findByTokenHash(tokenHash: string): Promise<SessionWithUser | undefined> {
    const rows = await this.guard.read('find session', () =>
      this.db
        .select({
          id: pgSessions.id,
          userId: pgSessions.userId,
          createdAt: pgSessions.createdAt,
          lastSeenAt: pgSessions.lastSeenAt,
          expiresAt: pgSessions.expiresAt,
          username: pgUsers.username,
        })
        .from(pgSessions)
        .innerJoin(pgUsers, eq(pgUsers.id, pgSessions.userId))
        .where(eq(pgSessions.tokenHash, tokenHash))
        .limit(1),
    );
    return rows[0];
  }

  async touch(id: string, now: Date, notAfter: Date): Promise<void> {
    await this.guard.write('touch session', () =>
      this.db.update(pgSessions).set({ lastSeenAt: now }).where(and(eq(pgSessions.id, id), lt(pgSessions.lastSeenAt, notAfter))),
    );
  }

  async delete(id: string): Promise<boolean> {
    const result = await this.guard.write('delete session', () => this.db.delete(pgSessions).where(eq(pgSessions.id, id)).returning({ id: pgSessions.id }));
    return result.length > 0;
  }
}
