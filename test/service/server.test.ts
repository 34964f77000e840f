import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createClient } from '@libsql/client';
import { GOOD_PASSWORD, json, libsqlOf, startTestServer, tempDir } from './helpers.js';

const post = (base: string, path: string, body: unknown) => fetch(`${base}${path}`, json(body));

describe('real HTTP server on port 0 with a file database', () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startTestServer>>;
  before(async () => {
    server = await startTestServer(dir.path);
  });
  after(async () => {
    await server.shutdown('test end');
    dir.remove();
  });

  test('50 concurrent registrations of one username: exactly one 201, the rest 409', async () => {
    const names = Array.from({ length: 50 }, (_, i) => (i % 3 === 0 ? 'Racer' : i % 3 === 1 ? 'racer' : 'RACER'));
    const statuses = await Promise.all(
      names.map(async (username) => (await post(server.url, '/register', { username, password: GOOD_PASSWORD })).status),
    );
    assert.equal(statuses.filter((s) => s === 201).length, 1, `statuses: ${statuses}`);
    assert.equal(statuses.filter((s) => s === 409).length, 49, `statuses: ${statuses}`);
    const rows = await libsqlOf(server.database).client.execute("SELECT count(*) AS n FROM users WHERE username_canonical = 'racer'");
    assert.equal(Number(rows.rows[0]!.n), 1);
  });

  test('the body limit over a real socket: a declared Content-Length decides, a chunked body is counted', async () => {
    const { request } = await import('node:http');
    const send = (body: string, headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${server.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const big = JSON.stringify({ username: 'erin', password: 'x'.repeat(20_000) });
    const declared = await send(big, { 'content-length': String(Buffer.byteLength(big)) });
    assert.equal(declared.status, 413, declared.body);
    const chunked = await send(big, { 'transfer-encoding': 'chunked' });
    assert.equal(chunked.status, 413, chunked.body);
    // Under the limit, both ways reach the handler with the whole body (an unknown user: 401).
    const small = JSON.stringify({ username: 'nobody-at-all', password: GOOD_PASSWORD });
    assert.equal((await send(small, { 'content-length': String(Buffer.byteLength(small)) })).status, 401);
    assert.equal((await send(small, { 'transfer-encoding': 'chunked' })).status, 401);
  });

  test('stored hash is argon2id with at least the OWASP parameters; no plaintext anywhere in the files', async () => {
    const secret = 'Plaintext-Canary-7f3a9c';
    assert.equal((await post(server.url, '/register', { username: 'canary', password: secret })).status, 201);
    const rows = await libsqlOf(server.database).client.execute("SELECT password_hash FROM users WHERE username_canonical = 'canary'");
    const hash = String(rows.rows[0]!.password_hash);
    const m = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/.exec(hash);
    assert.ok(m, `PHC string: ${hash}`);
    assert.ok(Number(m[1]) >= 19456 && Number(m[2]) >= 2 && Number(m[3]) >= 1, hash);
    // The database, its WAL and shared-memory files: the password must not be in any of them.
    for (const file of readdirSync(dir.path)) {
      const bytes = readFileSync(join(dir.path, file));
      assert.equal(bytes.indexOf(secret), -1, `plaintext found in ${file}`);
      assert.equal(bytes.indexOf(Buffer.from(secret, 'utf16le')), -1, `UTF-16 plaintext found in ${file}`);
    }
    assert.ok(!server.logs.text.includes(secret), 'plaintext in logs');
  });

  test('login of an unknown user costs the same as a wrong password (status, body and time)', async () => {
    assert.equal((await post(server.url, '/register', { username: 'timing', password: GOOD_PASSWORD })).status, 201);
    const time = async (username: string) => {
      const t0 = performance.now();
      const res = await post(server.url, '/login', { username, password: 'wrong-password-123' });
      const ms = performance.now() - t0;
      const body = (await res.json()) as Record<string, unknown>;
      delete body.requestId;
      return { ms, status: res.status, body: JSON.stringify(body) };
    };
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 15; i++) {
      // Interleaved, so machine noise hits both series alike.
      const a = await time('timing');
      const b = await time(`ghost-${i}`);
      assert.equal(a.status, 401);
      assert.equal(b.status, 401);
      assert.equal(a.body, b.body);
      known.push(a.ms);
      unknown.push(b.ms);
    }
    const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;
    const ratio = median(unknown) / median(known);
    // Without the dummy verification an unknown user answers ~20x faster (no argon2 at all).
    assert.ok(ratio > 0.6 && ratio < 1.6, `median unknown/known = ${ratio.toFixed(2)} (${median(unknown).toFixed(1)} vs ${median(known).toFixed(1)} ms)`);
  });

  test('/readyz is 503 when the database is unreachable', async () => {
    const probe = await fetch(`${server.url}/readyz`);
    assert.equal(probe.status, 200);
    libsqlOf(server.database).client.close();
    try {
      const res = await fetch(`${server.url}/readyz`);
      assert.equal(res.status, 503);
      const body = (await res.json()) as { detail: string };
      assert.match(body.detail, /database unreachable/);
    } finally {
      // reopen so later tests and shutdown keep working
      await (libsqlOf(server.database).client as unknown as { reconnect(): Promise<void> }).reconnect();
    }
  });
});

describe('persistence and hash upgrades across restarts', () => {
  test('a restarted server keeps users, and a login with an outdated hash rehashes it', async () => {
    const dir = tempDir();
    try {
      // First life: hashes made with the OWASP minimum.
      let server = await startTestServer(dir.path);
      const created = await post(server.url, '/register', { username: 'Persistent', password: GOOD_PASSWORD });
      assert.equal(created.status, 201);
      const { id } = (await created.json()) as { id: string };
      assert.equal(await server.shutdown('restart'), 0);

      // Second life with stronger parameters: the old user still logs in, and is upgraded.
      server = await startTestServer(dir.path, { HASH_MEMORY_KIB: '24576', HASH_ITERATIONS: '3' });
      try {
        const login = await post(server.url, '/login', { username: 'persistent', password: GOOD_PASSWORD });
        assert.equal(login.status, 200);
        assert.equal(((await login.json()) as { id: string }).id, id);
        const rows = await libsqlOf(server.database).client.execute({ sql: 'SELECT password_hash FROM users WHERE id = ?', args: [id] });
        assert.match(String(rows.rows[0]!.password_hash), /^\$argon2id\$v=19\$m=24576,t=3,p=1\$/);
        const again = await post(server.url, '/login', { username: 'persistent', password: GOOD_PASSWORD });
        assert.equal(again.status, 200, 'the upgraded hash verifies');
        const metrics = await (await fetch(`${server.url}/metrics`)).text();
        assert.match(metrics, /password_rehashes_total 1/);
      } finally {
        await server.shutdown('test end');
      }
    } finally {
      dir.remove();
    }
  });

  test('migrations are idempotent: a second start and the migrate entry point change nothing', async () => {
    const dir = tempDir();
    try {
      for (let i = 0; i < 2; i++) {
        const server = await startTestServer(dir.path);
        await server.shutdown('test');
      }
      const client = createClient({ url: `file:${join(dir.path, 'registrations.db')}` });
      const applied = await client.execute('SELECT count(*) AS n FROM __drizzle_migrations');
      const tables = await client.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'users'");
      const journal = await client.execute('PRAGMA journal_mode');
      client.close();
      const migrationFiles = readdirSync(new URL('../../service/drizzle', import.meta.url)).filter((f) => f.endsWith('.sql'));
      assert.equal(Number(applied.rows[0]!.n), migrationFiles.length);
      assert.equal(tables.rows.length, 1);
      assert.equal(String(journal.rows[0]!.journal_mode), 'wal');
    } finally {
      dir.remove();
    }
  });
});
