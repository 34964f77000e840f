/**
 * Login sessions: an opaque bearer token per login, checked against the shared database, so any
 * replica answers for any session and a revoked one is refused everywhere at once.
 *
 * The token is `kreg_st_` + 32 bytes from the CSPRNG in base64url (256 bits; the prefix lets the
 * log scrub and secret scanners recognise it). Only its SHA-256 is stored: a fast hash suffices
 * for 256 random bits, unlike a password. The absolute lifetime is never extended; the idle
 * timeout counts from the last use, written at most once a minute per session, so checking a
 * session is a read on the hot path.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { SessionStore, SessionWithUser } from './store.js';

export const TOKEN_PREFIX = 'kreg_st_';
/** A well-formed token: anything else is refused without asking the database. */
export const TOKEN_PATTERN = /^kreg_st_[A-Za-z0-9_-]{43}$/;
/** How often a session's last use is written at most. */
export const TOUCH_INTERVAL_MS = 60_000;

export interface SessionSettings {
  /** Absolute lifetime from login. */
  ttlSeconds: number;
  /** Ends a session unused for this long. */
  idleSeconds: number;
}

export interface IssuedSession {
  id: string;
  token: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface ActiveSession {
  id: string;
  user: { id: string; username: string };
  createdAt: Date;
  expiresAt: Date;
  /** When it ends if it is not used before. */
  idleExpiresAt: Date;
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class SessionService {
  constructor(
    private readonly store: SessionStore,
    readonly settings: SessionSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** A new session for a user who has just authenticated. */
  async issue(userId: string): Promise<IssuedSession> {
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const createdAt = new Date(this.now());
    const expiresAt = new Date(createdAt.getTime() + this.settings.ttlSeconds * 1000);
    const id = randomUUID();
    await this.store.create({ id, userId, tokenHash: tokenHash(token), createdAt, lastSeenAt: createdAt, expiresAt });
    return { id, token, createdAt, expiresAt };
  }

  /**
   * The live session a token opens, or undefined for a malformed, unknown, expired, idle or revoked
   * one (callers answer all of them alike). A database that does not answer throws, as everywhere.
   */
  async authenticate(token: string | undefined): Promise<ActiveSession | undefined> {
    if (!token || !TOKEN_PATTERN.test(token)) return undefined;
    const found = await this.store.findByTokenHash(tokenHash(token));
    if (!found) return undefined;
    const now = this.now();
    if (now >= found.expiresAt.getTime() || now >= idleEnd(found, this.settings)) return undefined;
    let lastSeen = found.lastSeenAt.getTime();
    if (now - lastSeen >= TOUCH_INTERVAL_MS) {
      await this.store.touch(found.id, new Date(now), new Date(now - TOUCH_INTERVAL_MS));
      lastSeen = now;
    }
    return {
      id: found.id,
      user: { id: found.userId, username: found.username },
      createdAt: found.createdAt,
      expiresAt: found.expiresAt,
      idleExpiresAt: new Date(Math.min(found.expiresAt.getTime(), lastSeen + this.settings.idleSeconds * 1000)),
    };
  }

  /** Ends a session (logout). */
  async revoke(id: string): Promise<void> {
    await this.store.delete(id);
  }
}

function idleEnd(session: SessionWithUser, settings: SessionSettings): number {
  return session.lastSeenAt.getTime() + settings.idleSeconds * 1000;
}
