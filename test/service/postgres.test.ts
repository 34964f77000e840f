/**
 * The service on a real PostgreSQL (a throwaway server, test/postgres.ts): the schema and its
 * types, several service processes sharing one database, migrators started together, start-up
 * refusals named by variable with no credential in them, and outages the service heals from by
 * itself. (The API suite runs on PostgreSQL too: api.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import postgres from 'postgres';
import { after, before, describe, it } from 'node:test';
import { postgresBinDir, startPostgres, type TestPostgres } from '../postgres.js';
import { GOOD_PASSWORD, json, startTestServer, tempDir, watchCredential, watchLogLine } from './helpers.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const NODE_ARGS = ['--import', 'tsx'];
const skip = postgresBinDir() || process.env.CI ? false : 'no PostgreSQL binaries (apt-get install postgresql)';

function env(url: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: url, PORT: '0', HOST: '127.0.0.1', RATE_LIMIT_REGISTER: '0', RATE_LIMIT_LOGIN: '0', ...extra };
}

/** `npm run migrate`'s entry point as a process. */
function migrateProcess(url: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...NODE_ARGS, 'service/src/migrate.ts'], { cwd: ROOT, env: env(url), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d));
    child.stderr!.on('data', (d: Buffer) => (output += d));
    child.once('exit', (code) => resolve({ code, output }));
  });
}

/** The service as a process; resolves once it listens. */
async function serviceProcess(url: string): Promise<{ child: ChildProcess; url: string; logs: string[]; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [...NODE_ARGS, 'service/src/server.ts'], {
    cwd: ROOT,
    env: env(url, { SHUTDOWN_DRAIN_SECONDS: '0', SHUTDOWN_GRACE_SECONDS: '5' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      watchLogLine(line, 'a service process');
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === 'listening' && entry.port) resolve(entry.port);
      } catch {
        /* not JSON */
      }
    });
    child.once('exit', (code) => reject(new Error(`the service exited ${code} before listening:\n${logs.join('\n')}`)));
  });
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    logs,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

describe('the service on PostgreSQL', { skip, timeout: 180_000 }, () => {
  let pg: TestPostgres;
  before(async () => {
    pg = await startPostgres();
    // Every log line of every server here, in-process or not, is checked for it (helpers.ts).
    watchCredential(pg.password);
    watchCredential('not-the-password-1234');
    watchCredential('hunter2-secret');
  });
  after(async () => {
    await pg?.remove();
  });

  it('three migrators started together on an empty database all exit 0 and leave one schema', async () => {
    const runs = await Promise.all([migrateProcess(pg.url), migrateProcess(pg.url), migrateProcess(pg.url)]);
    for (const r of runs) assert.equal(r.code, 0, r.output);
    assert.equal(pg.admin('SELECT count(*) FROM drizzle.__drizzle_migrations').trim(), '2');
    const columns = pg.admin("SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position").trim().split('\n');
    assert.deepEqual(columns, [
      'id text',
      'username text',
      'username_canonical text',
      'password_hash text',
      'created_at timestamp with time zone',
      'password_updated_at timestamp with time zone',
    ]);
    assert.match(pg.admin("SELECT indexdef FROM pg_indexes WHERE indexname = 'users_username_canonical_unique'"), /CREATE UNIQUE INDEX .* \(username_canonical\)/);
    assert.match(pg.admin("SELECT indexdef FROM pg_indexes WHERE indexname = 'sessions_token_hash_unique'"), /CREATE UNIQUE INDEX .* \(token_hash\)/);
  });

  it('three service processes on one database: one 201 of many concurrent registrations of one name and its variants; logins work on every process', async () => {
    const services = await Promise.all([serviceProcess(pg.url), serviceProcess(pg.url), serviceProcess(pg.url)]);
    try {
      const names = ['Racer', 'racer', 'RACER', 'Ｒａｃｅｒ', 'rAcEr', 'racer', 'Racer', 'ＲＡＣＥＲ', 'racer'];
      const answers = await Promise.all(
        names.flatMap((username, i) => [0, 1, 2].map((s) => fetch(`${services[(i + s) % 3]!.url}/register`, json({ username, password: GOOD_PASSWORD })).then((r) => r.status))),
      );
      assert.equal(answers.filter((s) => s === 201).length, 1, `statuses: ${answers.join(',')}`);
      assert.equal(answers.filter((s) => s === 409).length, answers.length - 1);
      assert.equal(pg.admin("SELECT count(*) FROM users WHERE username_canonical = 'racer'").trim(), '1');
      for (const s of services) {
        const login = await fetch(`${s.url}/login`, json({ username: 'RACER', password: GOOD_PASSWORD }));
        assert.equal(login.status, 200, `login through ${s.url}`);
      }
      // A session made through one process is known to every process, and its logout through
      // another ends it on all of them at once.
      const { session } = (await (await fetch(`${services[0]!.url}/login`, json({ username: 'racer', password: GOOD_PASSWORD }))).json()) as { session: { token: string } };
      const auth = { headers: { authorization: `Bearer ${session.token}` } };
      for (const s of services) assert.equal((await fetch(`${s.url}/sessions/whoami`, auth)).status, 200, `whoami through ${s.url}`);
      assert.equal((await fetch(`${services[1]!.url}/sessions/current`, { method: 'DELETE', ...auth })).status, 204);
      for (const s of services) assert.equal((await fetch(`${s.url}/sessions/whoami`, auth)).status, 401, `after logout, whoami through ${s.url}`);
      // Every process said where it stores, and none said a credential.
      for (const s of services) {
        assert.ok(s.logs.some((l) => /"database":"postgres"/.test(l)), s.logs.join('\n'));
        assert.ok(!s.logs.some((l) => l.includes(pg.password)), 'the password reached a log');
      }
    } finally {
      await Promise.all(services.map((s) => s.stop()));
    }
  });

  it('start-up refusals: one line naming DATABASE_URL, exit 2, no password anywhere', () => {
    const wrong = new URL(pg.url);
    wrong.password = 'not-the-password-1234';
    const missingDb = new URL(pg.url);
    missingDb.pathname = '/no_such_database';
    for (const [what, url, pattern] of [
      ['a wrong password', wrong.href, /DATABASE_URL is refused by the database: .*28P01/],
      ['a database that does not exist', missingDb.href, /DATABASE_URL is refused by the database: .*3D000/],
    ] as const) {
      const r = spawnSync(process.execPath, [...NODE_ARGS, 'service/src/server.ts'], { cwd: ROOT, env: env(url), encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 2, `${what}: ${r.stderr}${r.stdout}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, pattern, what);
      for (const secret of [pg.password, 'not-the-password-1234']) assert.ok(!(r.stdout + r.stderr).includes(secret), `${what}: a password reached the output`);
    }
  });

  it('a DATABASE_URL the configuration refuses is echoed without its password', () => {
    const dir = tempDir();
    try {
      for (const [url, pattern] of [
        ['postgres://kreg:hunter2-secret@db:99999/kreg', /has port 99999/],
        ['postgres://kreg:hunter2-secret@db/kreg?sslmode=sometimes', /sslmode=sometimes/],
        ['libsql://kreg:hunter2-secret@db:70000', /has port 70000/],
      ] as const) {
        const r = spawnSync(process.execPath, [...NODE_ARGS, 'service/src/server.ts'], { cwd: ROOT, env: env(url), encoding: 'utf8', timeout: 20_000 });
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, pattern);
        assert.match(r.stderr, /kreg:\[redacted\]@db/);
        assert.ok(!r.stderr.includes('hunter2-secret'), r.stderr);
      }
    } finally {
      dir.remove();
    }
  });

  for (const mode of ['fast', 'immediate'] as const) it(`stopped (${mode}) under load and started again: 503 database-unavailable with Retry-After meanwhile, then it heals without a restart; nothing acknowledged is lost`, async () => {
    const dir = tempDir();
    const server = await startTestServer(dir.path, { DATABASE_URL: pg.url, DATABASE_TIMEOUT_MS: '1000', HASH_CONCURRENCY: '2' });
    try {
      const acknowledged: string[] = [];
      const outcomes = new Map<string, number>();
      let n = 0;
      let running = true;
      const load = (async () => {
        while (running) {
          const username = `${mode}-load${n++}`;
          const res = await fetch(`${server.url}/register`, json({ username, password: GOOD_PASSWORD }));
          const body = (await res.json()) as { type?: string };
          if (res.status === 201) acknowledged.push(username);
          else {
            assert.equal(res.status, 503, JSON.stringify(body));
            assert.equal(body.type, 'urn:kreg:problem:database-unavailable');
            assert.match(res.headers.get('retry-after') ?? '', /^\d+$/);
          }
          outcomes.set(String(res.status), (outcomes.get(String(res.status)) ?? 0) + 1);
        }
      })();
      await new Promise((r) => setTimeout(r, 500));
      await pg.stop(mode);
      await new Promise((r) => setTimeout(r, 1500));
      await pg.start();
      // The pool replaces its dead connections by itself: registrations succeed again.
      const before = acknowledged.length;
      const deadline = Date.now() + 15_000;
      while (acknowledged.length < before + 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      running = false;
      await load;
      assert.ok(acknowledged.length >= before + 3, `no registration succeeded after the restart: ${JSON.stringify(Object.fromEntries(outcomes))}`);
      assert.ok((outcomes.get('503') ?? 0) > 0, 'the outage was never seen');
      const stored = new Set(pg.admin(`SELECT username FROM users WHERE username LIKE '${mode}-load%'`).trim().split('\n'));
      for (const u of acknowledged) assert.ok(stored.has(u), `${u} was acknowledged (201) and is not stored`);
      console.log(`# PostgreSQL ${mode} stop and start under load: ${JSON.stringify(Object.fromEntries(outcomes))}`);
      assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    } finally {
      await server.shutdown('test');
      dir.remove();
    }
  });

  it('frozen (SIGSTOP) past the deadline: 503 within the deadline, not a hang; thawed, it answers again', async () => {
    const dir = tempDir();
    const server = await startTestServer(dir.path, { DATABASE_URL: pg.url, DATABASE_TIMEOUT_MS: '800' });
    try {
      assert.equal((await fetch(`${server.url}/register`, json({ username: 'before-freeze', password: GOOD_PASSWORD }))).status, 201);
      pg.freeze();
      const t0 = performance.now();
      const res = await fetch(`${server.url}/register`, json({ username: 'during-freeze', password: GOOD_PASSWORD }));
      const took = performance.now() - t0;
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as { type: string }).type, 'urn:kreg:problem:database-unavailable');
      assert.ok(took < 3000, `answered after ${took.toFixed(0)} ms`);
      const ready = await fetch(`${server.url}/readyz`);
      assert.equal(ready.status, 503, 'not ready while the database does not answer');
      pg.thaw();
      const deadline = Date.now() + 15_000;
      let status = 0;
      while (Date.now() < deadline && status !== 201) {
        status = (await fetch(`${server.url}/register`, json({ username: `after-thaw-${Date.now()}`, password: GOOD_PASSWORD }))).status;
        if (status !== 201) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(status, 201, 'no registration succeeded after the thaw');
    } finally {
      pg.thaw();
      await server.shutdown('test');
      dir.remove();
    }
  });
  it('privileges revoked, then a read-only server (a failover onto a standby): 503 database-refused, logged once; restored, it serves again', async () => {
    const dir = tempDir();
    const server = await startTestServer(dir.path, { DATABASE_URL: pg.url, DATABASE_TIMEOUT_MS: '1000' });
    const register = async (username: string) => {
      const res = await fetch(`${server.url}/register`, json({ username, password: GOOD_PASSWORD }));
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { type?: string; detail?: string } };
    };
    const refusals = () => server.logs.lines.filter((l) => l.includes('database refused the request; requests answer 503')).length;
    try {
      assert.equal((await register('priv-before')).status, 201);
      pg.admin('REVOKE INSERT, UPDATE ON users FROM kreg');
      for (let i = 0; i < 3; i++) {
        const r = await register(`priv-revoked-${i}`);
        assert.equal(r.status, 503, JSON.stringify(r.body));
        assert.equal(r.body.type, 'urn:kreg:problem:database-refused');
        assert.equal(r.retryAfter, null, 'retrying cannot help until someone fixes it');
      }
      assert.equal(refusals(), 1, 'one log line for the refusal, not one per request');
      assert.ok(server.logs.lines.some((l) => /42501 insufficient_privilege/.test(l)));
      pg.admin('GRANT INSERT, UPDATE ON users TO kreg');
      assert.equal((await register('priv-restored')).status, 201);

      // New sessions are read-only, and the old ones are cut, as a failover does.
      pg.admin('ALTER DATABASE kreg SET default_transaction_read_only = on', 'postgres');
      pg.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'kreg'", 'postgres');
      let last = await register('ro-0');
      for (let i = 1; i < 10 && last.body.type !== 'urn:kreg:problem:database-refused'; i++) last = await register(`ro-${i}`);
      assert.equal(last.body.type, 'urn:kreg:problem:database-refused', JSON.stringify(last.body));
      assert.ok(server.logs.lines.some((l) => /25006 read_only_sql_transaction/.test(l)));
      pg.admin('ALTER DATABASE kreg SET default_transaction_read_only = off', 'postgres');
      pg.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'kreg'", 'postgres');
      let back = 0;
      for (let i = 0; i < 10 && back !== 201; i++) back = (await register(`rw-${i}`)).status;
      assert.equal(back, 201, 'writable again, without a restart');
    } finally {
      pg.admin('ALTER DATABASE kreg SET default_transaction_read_only = off', 'postgres');
      pg.admin('GRANT INSERT, UPDATE ON users TO kreg');
      await server.shutdown('test');
      dir.remove();
    }
  });

  it('no connection slot left (53300): the service starts unready and answers 503 with Retry-After; slots freed, it serves', { timeout: 60_000 }, async () => {
    const small = await startPostgres({ maxConnections: 6 }); // 3 of them are reserved for superusers
    const hogs: Array<ReturnType<typeof postgres>> = [];
    const dir = tempDir();
    try {
      const migrated = await migrateProcess(small.url);
      assert.equal(migrated.code, 0, migrated.output);
      for (let i = 0; i < 3; i++) {
        const hog = postgres(small.url, { max: 1, onnotice: false });
        await hog`select 1`;
        hogs.push(hog);
      }
      const server = await startTestServer(dir.path, { DATABASE_URL: small.url, DATABASE_TIMEOUT_MS: '1000', DATABASE_STARTUP_WAIT_SECONDS: '0' });
      try {
        // postgres.js retries a connection the server refuses for want of a slot, so the start-up
        // check meets its deadline rather than the 53300 itself; either way: unready, and 503s.
        assert.ok(server.logs.lines.some((l) => /database still unreachable; starting unready/.test(l)), server.logs.text);
        assert.equal((await fetch(`${server.url}/readyz`)).status, 503);
        const res = await fetch(`${server.url}/register`, json({ username: 'no-slot', password: GOOD_PASSWORD }));
        assert.equal(res.status, 503);
        assert.equal(((await res.json()) as { type: string }).type, 'urn:kreg:problem:database-unavailable');
        assert.match(res.headers.get('retry-after') ?? '', /^\d+$/);
        await Promise.all(hogs.splice(0).map((h) => h.end()));
        let status = 0;
        for (let i = 0; i < 20 && status !== 201; i++) {
          status = (await fetch(`${server.url}/register`, json({ username: `slot-${i}`, password: GOOD_PASSWORD }))).status;
          if (status !== 201) await new Promise((r) => setTimeout(r, 200));
        }
        assert.equal(status, 201);
        assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
      } finally {
        await server.shutdown('test');
      }
    } finally {
      await Promise.all(hogs.map((h) => h.end()));
      await small.remove();
      dir.remove();
    }
  });
});
