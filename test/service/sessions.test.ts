/**
 * Login sessions on real databases (a libsql file, a throwaway PostgreSQL): the token issued at
 * login, whoami, logout, expiry and the idle timeout on an injected clock, what the database holds,
 * two processes sharing one database, and whoami's 503 (never 401) when the database does not answer.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TOKEN_PATTERN, tokenHash } from '../../service/src/sessions/service.js';
import { createTestApp, databaseModes, GOOD_PASSWORD, json, libsqlOf, type TestApp } from './helpers.js';

const HOUR = 3_600_000;

interface LoginBody {
  id: string;
  username: string;
  session: { id: string; token: string; tokenType: string; createdAt: string; expiresAt: string; idleTimeoutSeconds: number };
}

for (const mode of databaseModes()) describe(`sessions (${mode.name})`, { skip: mode.skip }, () => {
  let t: TestApp;
  let clock = Date.now();
  let n = 0;
  before(async () => {
    t = await createTestApp({ ...(await mode.start()), SESSION_TTL_SECONDS: String(12 * 3600), SESSION_IDLE_SECONDS: '1800' }, { now: () => clock });
  });
  after(async () => {
    t.close();
    await mode.stop();
  });

  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
  const whoami = (token?: string) => t.app.request('/sessions/whoami', token === undefined ? {} : bearer(token));
  const logIn = async (): Promise<LoginBody> => {
    const username = `session-user-${n++}`;
    assert.equal((await t.app.request('/register', json({ username, password: GOOD_PASSWORD }))).status, 201);
    const res = await t.app.request('/login', json({ username, password: GOOD_PASSWORD }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store', 'a token-bearing answer is not stored');
    return (await res.json()) as LoginBody;
  };
  /** The rows the database holds for sessions, every column as text. */
  const sessionRows = async (): Promise<Array<Record<string, unknown>>> => {
    if (t.database.kind === 'postgres') return (await t.database.db.$client.unsafe('select * from sessions')) as unknown as Array<Record<string, unknown>>;
    return (await libsqlOf(t.database).client.execute('select * from sessions')).rows as unknown as Array<Record<string, unknown>>;
  };

  test('login issues a bearer token of 256 random bits; the database holds only its SHA-256', async () => {
    const first = await logIn();
    const second = await logIn();
    for (const { session } of [first, second]) {
      assert.match(session.token, TOKEN_PATTERN);
      assert.equal(Buffer.from(session.token.slice('kreg_st_'.length), 'base64url').length, 32);
      assert.equal(session.tokenType, 'Bearer');
      assert.equal(Date.parse(session.expiresAt) - Date.parse(session.createdAt), 12 * HOUR);
      assert.equal(session.idleTimeoutSeconds, 1800);
    }
    assert.notEqual(first.session.token, second.session.token);
    const rows = await sessionRows();
    const stored = JSON.stringify(rows);
    assert.ok(!stored.includes(first.session.token) && !stored.includes(second.session.token.slice(8)), 'no token in the database');
    assert.ok(rows.some((r) => r.token_hash === tokenHash(first.session.token) && r.user_id === first.id));
  });

  test('whoami: 200 with the user and session, X-Kreg-User-Id, no-store; logout ends it: 401 after', async () => {
    const { id, username, session } = await logIn();
    const res = await whoami(session.token);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-kreg-user-id'), id);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const body = (await res.json()) as { user: { id: string; username: string }; session: { id: string; expiresAt: string; idleExpiresAt: string } };
    assert.deepEqual(body.user, { id, username });
    assert.equal(body.session.id, session.id);
    assert.equal(body.session.expiresAt, session.expiresAt);

    const out = await t.app.request('/sessions/current', { method: 'DELETE', ...bearer(session.token) });
    assert.equal(out.status, 204);
    const after = await whoami(session.token);
    assert.equal(after.status, 401);
    assert.equal((await t.app.request('/sessions/current', { method: 'DELETE', ...bearer(session.token) })).status, 401, 'a second logout has no session to end');
  });

  test('one 401 for a missing, malformed, unknown, expired, idle or revoked token, with WWW-Authenticate', async () => {
    const missing = await whoami();
    assert.equal(missing.status, 401);
    assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
    const bodies = new Set<string>();
    const check = async (res: Response) => {
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
      assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
      const { requestId: _, ...body } = (await res.json()) as Record<string, unknown>;
      bodies.add(JSON.stringify(body));
    };
    await check(await whoami('not-a-token'));
    await check(await whoami(`kreg_st_${'A'.repeat(43)}`));
    const basic = await t.app.request('/sessions/whoami', { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    assert.equal(basic.status, 401);

    const expiring = await logIn();
    const idle = await logIn();
    clock += 29 * 60_000;
    assert.equal((await whoami(expiring.session.token)).status, 200, 'used within the idle timeout');
    clock += 29 * 60_000;
    assert.equal((await whoami(expiring.session.token)).status, 200, 'the use 29 minutes ago slid the idle timer');
    await check(await whoami(idle.session.token)); // unused for 58 minutes
    // Kept alive past the absolute lifetime: still ends at 12 h.
    const issuedAt = Date.parse(expiring.session.createdAt);
    while (clock + 25 * 60_000 < issuedAt + 12 * HOUR) {
      clock += 25 * 60_000;
      assert.equal((await whoami(expiring.session.token)).status, 200);
    }
    clock = issuedAt + 12 * HOUR;
    await check(await whoami(expiring.session.token));
    assert.equal(bodies.size, 1, `one body for every reason: ${[...bodies].join(' | ')}`);
  });

  test('the last use is written at most once a minute per session', async () => {
    const { session } = await logIn();
    const lastSeen = async () => {
      const row = (await sessionRows()).find((r) => r.id === session.id)!;
      return new Date(row.last_seen_at as string | number).getTime();
    };
    const issued = await lastSeen();
    clock += 30_000;
    await whoami(session.token);
    assert.equal(await lastSeen(), issued, 'within the minute: a read only');
    clock += 31_000;
    await whoami(session.token);
    assert.equal(await lastSeen(), clock, 'past the minute: written once');
  });

  test('whoami answers 503 (never 401) while the database does not answer, and 200 again after', async (ctx) => {
    if (!mode.postgres) return ctx.skip('the frozen server is the PostgreSQL mode; the file cannot stop answering');
    const { session } = await logIn();
    mode.postgres.freeze();
    try {
      const res = await whoami(session.token);
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as { type: string }).type, 'urn:kreg:problem:database-unavailable');
      assert.ok(res.headers.has('retry-after'));
    } finally {
      mode.postgres.thaw();
    }
    assert.equal((await whoami(session.token)).status, 200);
  });

  test('no log line carries a token; session events carry the session id', async () => {
    const { session } = await logIn();
    await whoami(session.token);
    await t.app.request('/sessions/current', { method: 'DELETE', ...bearer(session.token) });
    assert.ok(!t.logs.text.includes(session.token.slice('kreg_st_'.length)), 'the token is not logged');
    const events = t.logs.lines.map((l) => JSON.parse(l) as { event?: string; sessionId?: string }).filter((l) => l.sessionId === session.id);
    assert.deepEqual(events.map((e) => e.event), ['session_created', 'session_revoked']);
  });
});
