/**
 * Database failures, on real sockets and a real database: deadlines (a server that never answers,
 * one that answers late), readiness that follows the write path, and failed writes that must not
 * put a password, a hash or a token in any log line.
 */
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { assembleApp } from '../../service/src/run.js';
import { createLogger, describeError } from '../../service/src/logger.js';
import { Lifecycle } from '../../service/src/lifecycle.js';
import { createTestApp, GOOD_PASSWORD, json, libsqlOf, LogCapture, startTestServer, tempDir, testConfig, watchLogLine } from './helpers.js';
import { startHranaServer, type HranaServer } from './hrana-server.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const DEADLINE_MS = 500;
/** Hashing, HTTP and scheduling on a busy 2-core machine; generous so the test is not flaky. */
const MARGIN_MS = 1000;

interface Problem {
  type: string;
  status: number;
  detail: string;
}

async function timed(request: Promise<Response>): Promise<{ res: Response; ms: number; body: Problem }> {
  const t0 = performance.now();
  const res = await request;
  const body = (await res.json()) as Problem;
  return { res, ms: performance.now() - t0, body };
}

function assertUnavailable(r: { res: Response; ms: number; body: Problem }, what: string): void {
  assert.equal(r.res.status, 503, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.res.headers.get('content-type'), 'application/problem+json', what);
  assert.equal(r.body.type, 'urn:kreg:problem:database-unavailable', what);
  assert.match(r.res.headers.get('retry-after') ?? '', /^\d+$/, `${what}: Retry-After`);
  assert.ok(r.ms < DEADLINE_MS + MARGIN_MS, `${what} answered after ${r.ms.toFixed(0)} ms (deadline ${DEADLINE_MS} ms)`);
}

describe('remote database with faults (Hrana over HTTP on a real socket)', () => {
  const dir = tempDir();
  let db: HranaServer;
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let userId = '';
  const post = (path: string, body: unknown) => fetch(`${server.url}${path}`, json(body));

  before(async () => {
    db = await startHranaServer({ path: join(dir.path, 'remote.db'), token: 'token-for-the-fault-tests' });
    server = await startTestServer(dir.path, {
      DATABASE_URL: db.url,
      DATABASE_AUTH_TOKEN: 'token-for-the-fault-tests',
      DATABASE_MIGRATE: 'always',
      DATABASE_TIMEOUT_MS: String(DEADLINE_MS),
    });
    const res = await post('/register', { username: 'remote-alice', password: GOOD_PASSWORD });
    const body = (await res.json()) as { id: string };
    assert.equal(res.status, 201, JSON.stringify(body));
    userId = body.id;
  });
  after(async () => {
    db.setFault({ kind: 'none' });
    await server.shutdown('test over');
    await db.close();
    dir.remove();
  });

  test('a server that never answers: register, login and GET /users/{id} answer 503 within the deadline', async () => {
    db.setFault({ kind: 'hang' });
    assertUnavailable(await timed(post('/register', { username: 'remote-bob', password: GOOD_PASSWORD })), 'register');
    assertUnavailable(await timed(post('/login', { username: 'remote-alice', password: GOOD_PASSWORD })), 'login');
    assertUnavailable(await timed(fetch(`${server.url}/users/${userId}`)), 'GET /users/{id}');

    const ready = await timed(fetch(`${server.url}/readyz`));
    assert.equal(ready.res.status, 503);
    assert.match(ready.body.detail, /^database writes failing: write probe did not complete within 500 ms/);
    assert.ok(ready.ms < DEADLINE_MS + MARGIN_MS, `readiness answered after ${ready.ms.toFixed(0)} ms`);
    assert.match(server.logs.text, /database writes failing: readiness off until a write succeeds/);
    assert.doesNotMatch(server.logs.text, /unhandled error/, 'a deadline is not an unhandled error');

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /registrations_total\{outcome="unavailable"\} 1/);
    assert.match(metrics, /hash_in_flight 0/, 'no hashing slot is held after the deadline');
  });

  test('after recovery readiness comes back without traffic, and the next requests succeed', async () => {
    db.setFault({ kind: 'none' });
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    assert.match(server.logs.text, /database writes succeed again/);
    assert.equal((await post('/register', { username: 'remote-bob', password: GOOD_PASSWORD })).status, 201);
    assert.equal((await post('/login', { username: 'remote-bob', password: GOOD_PASSWORD })).status, 200);
    assert.equal((await fetch(`${server.url}/users/${userId}`)).status, 200);
  });

  test('a server that answers after the deadline: 503 in time, then service resumes', async () => {
    db.setFault({ kind: 'delay', ms: DEADLINE_MS * 3 });
    assertUnavailable(await timed(post('/register', { username: 'remote-carol', password: GOOD_PASSWORD })), 'register');
    assertUnavailable(await timed(post('/login', { username: 'remote-bob', password: GOOD_PASSWORD })), 'login');
    assertUnavailable(await timed(fetch(`${server.url}/users/${userId}`)), 'GET /users/{id}');
    assert.equal((await fetch(`${server.url}/readyz`)).status, 503);

    db.setFault({ kind: 'none' });
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    // The late insert may have landed after the 503 (the server got it): the registration is then
    // complete, and a retry is told the name is taken. Either way it is whole or absent.
    const retry = await post('/register', { username: 'remote-carol', password: GOOD_PASSWORD });
    assert.ok(retry.status === 201 || retry.status === 409, `retry answered ${retry.status}: ${server.logs.lines.slice(-3).join('\n')}`);
    assert.equal((await post('/login', { username: 'remote-carol', password: GOOD_PASSWORD })).status, 200);
    const rows = db.query("SELECT count(*) AS n FROM users WHERE username_canonical = 'remote-carol'") as Array<{ n: number }>;
    assert.equal(Number(rows[0]!.n), 1);
  });

  test('the token never reaches a log line', () => {
    assert.ok(server.logs.lines.length > 10);
    assert.ok(!server.logs.text.includes('token-for-the-fault-tests'));
  });
});

describe('a database that refuses (credentials, read-only): 503 with its own type, logged once, never a 500', () => {
  const dir = tempDir();
  let db: HranaServer;
  let server: Awaited<ReturnType<typeof startTestServer>>;
  const post = (path: string, body: unknown) => fetch(`${server.url}${path}`, json(body));

  before(async () => {
    db = await startHranaServer({ path: join(dir.path, 'remote.db'), token: 'the-right-token' });
    server = await startTestServer(dir.path, { DATABASE_URL: db.url, DATABASE_AUTH_TOKEN: 'the-right-token', DATABASE_MIGRATE: 'always', DATABASE_TIMEOUT_MS: String(DEADLINE_MS) });
    assert.equal((await post('/register', { username: 'refusal-amy', password: GOOD_PASSWORD })).status, 201);
  });
  after(async () => {
    db.setFault({ kind: 'none' });
    await server.shutdown('test over');
    await db.close();
    dir.remove();
  });

  test('a refused token: register and login answer 503 database-refused; one error line says why', async () => {
    db.setFault({ kind: 'status', status: 401, message: 'Unauthorized: invalid token' });
    for (let i = 0; i < 3; i++) {
      const res = await post('/register', { username: `refusal-${i}`, password: GOOD_PASSWORD });
      const body = (await res.json()) as Problem;
      assert.equal(res.status, 503, JSON.stringify(body));
      assert.equal(body.type, 'urn:kreg:problem:database-refused');
    }
    const login = await post('/login', { username: 'refusal-amy', password: GOOD_PASSWORD });
    assert.equal(login.status, 503);
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(((await ready.json()) as Problem).detail, /database refused the request: the server refused the credentials \(HTTP 401\)/);
    const errors = server.logs.lines.filter((l) => l.includes('"level":"error"'));
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0]!, /"msg":"database refused the request/);
    assert.match(errors[0]!, /"reason":"the server refused the credentials \(HTTP 401\): check DATABASE_AUTH_TOKEN"/);
    assert.ok(!server.logs.text.includes('the-right-token'));
    assert.doesNotMatch(server.logs.text, /unhandled error/);
  });

  test('each kind of failure on a real socket: 403, 500, 503, a dropped connection, a closed port', async () => {
    const cases: Array<[string, () => void | Promise<void>, string, boolean]> = [
      ['403', () => db.setFault({ kind: 'status', status: 403, message: 'Forbidden' }), 'urn:kreg:problem:database-refused', false],
      ['500', () => db.setFault({ kind: 'status', status: 500, message: 'internal error' }), 'urn:kreg:problem:database-unavailable', true],
      ['503', () => db.setFault({ kind: 'status', status: 503, message: 'server unavailable' }), 'urn:kreg:problem:database-unavailable', true],
      ['dropped connection', () => db.setFault({ kind: 'drop' }), 'urn:kreg:problem:database-unavailable', true],
    ];
    for (const [what, fault, type, retryAfter] of cases) {
      await fault();
      const res = await post('/register', { username: `kinds-${what.replace(/\W/g, '')}`, password: GOOD_PASSWORD });
      const body = (await res.json()) as Problem;
      assert.equal(res.status, 503, `${what}: ${JSON.stringify(body)}`);
      assert.equal(body.type, type, what);
      assert.equal(res.headers.has('retry-after'), retryAfter, `${what}: Retry-After`);
      db.setFault({ kind: 'none' });
      assert.equal((await fetch(`${server.url}/readyz`)).status, 200, `${what}: recovered`);
    }
    assert.doesNotMatch(server.logs.text, /unhandled error/, 'no 500 for any of them');
  });

  test('a read-only token: reads work, writes answer 503 database-refused, readiness says read-only; recovery is automatic', async () => {
    db.setFault({ kind: 'readonly' });
    assert.equal((await fetch(`${server.url}/users/${randomUUID()}`)).status, 404, 'reads still work');
    // A login writes its session: refused like any write, not a 401 and not a 500.
    const login = await post('/login', { username: 'refusal-amy', password: GOOD_PASSWORD });
    assert.equal(login.status, 503);
    assert.equal(((await login.json()) as Problem).type, 'urn:kreg:problem:database-refused');
    const res = await post('/register', { username: 'refusal-ro', password: GOOD_PASSWORD });
    assert.equal(res.status, 503);
    assert.equal(((await res.json()) as Problem).type, 'urn:kreg:problem:database-refused');
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(((await ready.json()) as Problem).detail, /read-only/);
    db.setFault({ kind: 'none' });
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    assert.equal((await post('/register', { username: 'refusal-ro', password: GOOD_PASSWORD })).status, 201);
    assert.match(server.logs.text, /database accepts requests again/);
  });
});

describe('a TCP peer that accepts and never answers', () => {
  const dir = tempDir();
  const held = new Set<Socket>();
  let peer: Server;
  let server: Awaited<ReturnType<typeof startTestServer>>;

  before(async () => {
    peer = createServer((socket) => {
      held.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve));
    const { port } = peer.address() as { port: number };
    server = await startTestServer(dir.path, {
      DATABASE_URL: `http://127.0.0.1:${port}`,
      DATABASE_STARTUP_WAIT_SECONDS: '0',
      DATABASE_MIGRATE: 'never',
      DATABASE_TIMEOUT_MS: String(DEADLINE_MS),
    });
  });
  after(async () => {
    await server.shutdown('test over');
    for (const socket of held) socket.destroy();
    await new Promise<void>((resolve) => peer.close(() => resolve()));
    dir.remove();
  });

  test('register and readiness answer 503 within the deadline', async () => {
    assertUnavailable(await timed(fetch(`${server.url}/register`, json({ username: 'tcp-dave', password: GOOD_PASSWORD }))), 'register');
    const ready = await timed(fetch(`${server.url}/readyz`));
    assert.equal(ready.res.status, 503);
    assert.ok(ready.ms < DEADLINE_MS + MARGIN_MS);
  });
});

describe('a closed port', () => {
  test('register answers 503 database-unavailable with Retry-After, and readiness says unreachable', async () => {
    const dir = tempDir();
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as { port: number };
    await new Promise<void>((r) => probe.close(() => r()));
    const server = await startTestServer(dir.path, {
      DATABASE_URL: `http://127.0.0.1:${port}`,
      DATABASE_STARTUP_WAIT_SECONDS: '0',
      DATABASE_MIGRATE: 'never',
      DATABASE_TIMEOUT_MS: String(DEADLINE_MS),
    });
    try {
      assertUnavailable(await timed(fetch(`${server.url}/register`, json({ username: 'closed-port', password: GOOD_PASSWORD }))), 'register');
      const ready = await fetch(`${server.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(((await ready.json()) as Problem).detail, /ECONNREFUSED/);
      assert.doesNotMatch(server.logs.text, /unhandled error/);
    } finally {
      await server.shutdown('test over');
      dir.remove();
    }
  });
});

describe('a failed write logs its cause, never the statement parameters', () => {
  test('register on a database that refuses writes: 503, and the logged cause carries no hash or parameter', async () => {
    const t = await createTestApp();
    try {
      // SQLite's own read-only switch: the INSERT reaches the engine and fails there (SQLITE_READONLY).
      await libsqlOf(t.database).client.execute('PRAGMA query_only = ON');
      const res = await t.app.request('/register', json({ username: 'readonly-erin', password: 'readonly-erin-secret-pw' }));
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as Problem).type, 'urn:kreg:problem:database-refused');
      const line = t.logs.lines.find((l) => l.includes('database refused the request'));
      assert.ok(line, 'the refusal is logged');
      const entry = JSON.parse(line) as { reason: string; error?: string; code?: string; cause?: unknown };
      assert.match(entry.reason, /read-only/);
      // The insert goes to the driver directly (no drizzle wrapper carrying the statement and its
      // parameters): its own error, with SQLite's code, is what is logged.
      assert.equal(entry.error, 'LibsqlError');
      assert.match(JSON.stringify(entry), /SQLITE_READONLY/, 'the driver\'s code is kept');
      for (const forbidden of ['$argon2', 'readonly-erin-secret-pw', 'readonly-erin', 'insert into']) {
        assert.ok(!t.logs.text.toLowerCase().includes(forbidden.toLowerCase()), `log contains ${forbidden}`);
      }
    } finally {
      t.close();
    }
  });

  test('login whose rehash fails: logged as a warning without the new or old hash', async () => {
    const t = await createTestApp();
    try {
      assert.equal((await t.app.request('/register', json({ username: 'rehash-frank', password: 'rehash-frank-secret-pw' }))).status, 201);
      // Updates of users fail (the session a login writes still goes in). The same database behind
      // an app with stronger hash parameters: the login rehashes, the UPDATE fails, and the login
      // itself still succeeds.
      await libsqlOf(t.database).client.execute("CREATE TRIGGER users_refuse_updates BEFORE UPDATE ON users BEGIN SELECT RAISE(ABORT, 'updates refused'); END");
      const config = testConfig(t.dir, { HASH_MEMORY_KIB: '24576' });
      const logs = new LogCapture();
      const lifecycle = new Lifecycle();
      lifecycle.markReady();
      const stronger = assembleApp({ config, database: t.database, logger: createLogger('debug', logs), lifecycle });
      const res = await stronger.app.request('/login', json({ username: 'rehash-frank', password: 'rehash-frank-secret-pw' }));
      assert.equal(res.status, 200);
      const line = logs.lines.find((l) => l.includes('password rehash failed'));
      assert.ok(line, 'the failed rehash is logged');
      assert.match(line, /database query failed/);
      assert.ok(!logs.text.includes('$argon2') && !logs.text.includes('rehash-frank-secret-pw'));
    } finally {
      t.close();
    }
  });

  test('describeError of a real drizzle query error keeps the cause and drops the parameters', async () => {
    const t = await createTestApp();
    try {
      await libsqlOf(t.database).client.execute('PRAGMA query_only = ON');
      const { users } = await import('../../service/src/db/schema.js');
      const err = await libsqlOf(t.database).db
        .insert(users)
        .values({ id: 'id-1', username: 'x', usernameCanonical: 'x', passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', createdAt: new Date() })
        .then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof Error && /params/.test(err.message), 'drizzle quotes the parameters in its message');
      const described = JSON.stringify(describeError(err));
      assert.ok(!described.includes('argon2') && !described.includes('id-1'), described);
      assert.match(described, /database query failed/);
    } finally {
      t.close();
    }
  });

  test('migrate against a refusing server: exit 1, cause logged, no token', async () => {
    const dir = tempDir();
    const db = await startHranaServer({ path: join(dir.path, 'remote.db') });
    try {
      db.setFault({ kind: 'status', status: 500, message: 'internal error' });
      // Not spawnSync: this process serves the test database, and must keep answering meanwhile.
      const { spawn } = await import('node:child_process');
      const child = spawn(process.execPath, ['--import', 'tsx', 'service/src/migrate.ts'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: db.url, DATABASE_AUTH_TOKEN: 'migrate-token-secret-123' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const r = { stdout: '', stderr: '', status: null as number | null };
      child.stdout!.on('data', (d: Buffer) => (r.stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (r.stderr += d.toString()));
      r.status = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      for (const line of `${r.stdout}\n${r.stderr}`.split('\n')) watchLogLine(line, 'migrate');
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /migration failed/);
      assert.ok(!(r.stdout + r.stderr).includes('migrate-token-secret-123'));
    } finally {
      await db.close();
      dir.remove();
    }
  });
});

describe('WebSocket mode', () => {
  test('SIGTERM closes the database connection with a close frame before the process exits', async () => {
    const dir = tempDir();
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    const closes: number[] = [];
    wss.on('connection', (ws) => {
      ws.on('message', (data) => {
        const msg = JSON.parse(String(data)) as { type: string };
        if (msg.type === 'hello') ws.send(JSON.stringify({ type: 'hello_ok' }));
      });
      ws.on('close', (code) => closes.push(code));
    });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    const { port } = wss.address() as { port: number };
    try {
      const { spawn } = await import('node:child_process');
      const child = spawn(process.execPath, ['--import', 'tsx', 'service/src/server.ts'], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          DATABASE_URL: `ws://127.0.0.1:${port}`,
          // This peer answers the handshake and nothing else: start at once, unready.
          DATABASE_STARTUP_WAIT_SECONDS: '0',
          DATABASE_TIMEOUT_MS: '300',
          DATABASE_MIGRATE: 'never',
          PORT: '0',
          HOST: '127.0.0.1',
          SHUTDOWN_DRAIN_SECONDS: '0',
          SHUTDOWN_GRACE_SECONDS: '5',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const deadline = Date.now() + 20_000;
      while (!/"msg":"listening"/.test(out) || wss.clients.size === 0) {
        assert.ok(Date.now() < deadline, `server did not start or connect:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      assert.equal(await exited, 0, out);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(closes.length, 1, 'the connection was closed');
      assert.notEqual(closes[0], 1006, 'closed with a close frame, not dropped (1006)');
    } finally {
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      dir.remove();
    }
  });
});

describe('WebSocket faults', () => {
  test('a peer that drops the connection mid-request, then a closed port: 503 database-unavailable with Retry-After, never a 500', async () => {
    const dir = tempDir();
    // Speaks just enough Hrana to open a connection, then drops the TCP connection (close code 1006)
    // on the first request, as a killed sqld does.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    wss.on('connection', (ws) => {
      ws.on('message', (data) => {
        const msg = JSON.parse(String(data)) as { type: string };
        if (msg.type === 'hello') ws.send(JSON.stringify({ type: 'hello_ok' }));
        else ws.terminate();
      });
    });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    const { port } = wss.address() as { port: number };
    let server: Awaited<ReturnType<typeof startTestServer>> | undefined;
    try {
      server = await startTestServer(dir.path, {
        DATABASE_URL: `ws://127.0.0.1:${port}`,
        DATABASE_STARTUP_WAIT_SECONDS: '0',
        DATABASE_MIGRATE: 'never',
        DATABASE_TIMEOUT_MS: String(DEADLINE_MS),
      });
      for (const path of ['/register', '/login']) {
        assertUnavailable(await timed(fetch(`${server.url}${path}`, json({ username: 'ws-dropped', password: GOOD_PASSWORD }))), `${path}, dropped`);
      }
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      for (const path of ['/register', '/login']) {
        assertUnavailable(await timed(fetch(`${server.url}${path}`, json({ username: 'ws-gone', password: GOOD_PASSWORD }))), `${path}, port closed`);
      }
      assert.equal((await fetch(`${server.url}/readyz`)).status, 503);
      assert.doesNotMatch(server.logs.text, /unhandled error/);
    } finally {
      await server?.shutdown('test over');
      for (const client of wss.clients) client.terminate();
      wss.close();
      dir.remove();
    }
  });
});

describe('remote mode at start-up: a refused token stops the process with one line; an unreachable server is waited for', () => {
  const serverEnv = (url: string, token: string) => ({
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: url,
    DATABASE_AUTH_TOKEN: token,
    DATABASE_MIGRATE: 'never',
    DATABASE_TIMEOUT_MS: '500',
    PORT: '0',
    HOST: '127.0.0.1',
  });

  /** Runs a child to its end without blocking this process (which serves the test database). */
  async function runChild(script: string, env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const status = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    clearTimeout(timer);
    return { status, stdout, stderr };
  }

  test('a refused token and a read-only token: exit 2, one line naming DATABASE_AUTH_TOKEN, the token never printed', async () => {
    const dir = tempDir();
    const db = await startHranaServer({ path: join(dir.path, 'remote.db'), token: 'right-token-123' });
    try {
      const migrated = await runChild('service/src/migrate.ts', { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: db.url, DATABASE_AUTH_TOKEN: 'right-token-123' });
      assert.equal(migrated.status, 0, migrated.stdout + migrated.stderr);
      const refused = await runChild('service/src/server.ts', serverEnv(db.url, 'wrong-token-456'));
      assert.equal(refused.status, 2, refused.stdout + refused.stderr);
      assert.equal(
        refused.stderr.trim(),
        'kreg-registration: invalid configuration: DATABASE_AUTH_TOKEN is refused by the database: the server refused the credentials (HTTP 401): check DATABASE_AUTH_TOKEN',
      );
      assert.ok(!(refused.stdout + refused.stderr).includes('wrong-token-456'));

      // A proxy's or a hosted server's 401 with {"message": "Unauthorized"}: the same one line.
      db.setFault({ kind: 'status', status: 401, message: 'Unauthorized', bodyKey: 'message' });
      const proxied = await runChild('service/src/server.ts', serverEnv(db.url, 'right-token-123'));
      assert.equal(proxied.status, 2, proxied.stdout + proxied.stderr);
      assert.equal(
        proxied.stderr.trim(),
        'kreg-registration: invalid configuration: DATABASE_AUTH_TOKEN is refused by the database: the server refused the credentials (HTTP 401): check DATABASE_AUTH_TOKEN',
      );

      db.setFault({ kind: 'readonly' });
      const readOnly = await runChild('service/src/server.ts', serverEnv(db.url, 'right-token-123'));
      assert.equal(readOnly.status, 2, readOnly.stdout + readOnly.stderr);
      assert.match(readOnly.stderr.trim(), /^kreg-registration: invalid configuration: DATABASE_AUTH_TOKEN is refused by the database: the database is read-only for this token/);
      const rows = db.query('SELECT count(*) AS n FROM users') as Array<{ n: number }>;
      assert.equal(Number(rows[0]!.n), 0, 'the check left nothing behind');
    } finally {
      await db.close();
      dir.remove();
    }
  });

  test('an unreachable server at start-up is retried until it answers, then the service listens', async () => {
    const dir = tempDir();
    const db = await startHranaServer({ path: join(dir.path, 'remote.db') });
    const { spawn } = await import('node:child_process');
    db.setFault({ kind: 'drop' });
    const child = spawn(process.execPath, ['--import', 'tsx', 'service/src/server.ts'], { cwd: ROOT, env: serverEnv(db.url, ''), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes('database unreachable at start-up; retrying')) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `no retry logged:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(!out.includes('"msg":"listening"'), 'it does not listen before the database answers');
      db.setFault({ kind: 'none' });
      while (!out.includes('"msg":"listening"')) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `did not start after the database came back:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      await db.close();
      dir.remove();
    }
  });
});
