/**
 * The service as a real child process: start-up errors, the migrate entry point, and SIGTERM drain.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { createClient } from '@libsql/client';
import { postgresBinDir, startPostgres } from '../postgres.js';
import { freePort } from '../ports.js';
import { waitFor } from '../wait.js';
import { GOOD_PASSWORD, json, tempDir, watchCredential, watchLogLine } from './helpers.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const NODE_ARGS = ['--import', 'tsx'];

function baseEnv(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: `file:${join(dir, 'registrations.db')}`,
    PORT: '0',
    HOST: '127.0.0.1',
    RATE_LIMIT_REGISTER: '0',
    ...extra,
  };
}

/** Starts the server and resolves once its "listening" log line names the port. */
async function startChild(dir: string, extra: Record<string, string>): Promise<{ child: ChildProcess; url: string; logs: string[] }> {
  const child = spawn(process.execPath, [...NODE_ARGS, 'service/src/server.ts'], {
    cwd: ROOT,
    env: baseEnv(dir, extra),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    lines.on('line', (line) => {
      watchLogLine(line, 'the server process');
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === 'listening' && entry.port) resolve(entry.port);
      } catch {
        /* not JSON */
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening:\n${logs.join('\n')}`)));
  });
  return { child, url: `http://127.0.0.1:${port}`, logs };
}

test('a bad setting stops start-up with one line naming the variable (exit 2)', () => {
  const dir = tempDir();
  try {
    for (const [name, value] of [
      ['PORT', 'eighty'],
      ['HASH_MEMORY_KIB', '1024'],
      ['DATABASE_URL', 'mysql://db'],
      ['LOG_LEVEL', 'loud'],
    ] as const) {
      const r = spawnSync(process.execPath, [...NODE_ARGS, 'service/src/server.ts'], {
        cwd: ROOT,
        env: baseEnv(dir.path, { [name]: value }),
        encoding: 'utf8',
        timeout: 20_000,
      });
      assert.equal(r.status, 2, `${name}=${value}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, new RegExp(`invalid configuration: ${name} `));
    }
  } finally {
    dir.remove();
  }
});

test('migrate entry point: creates the schema, and a second run is a no-op', () => {
  const dir = tempDir();
  try {
    for (let i = 0; i < 2; i++) {
      const r = spawnSync(process.execPath, [...NODE_ARGS, 'service/src/migrate.ts'], {
        cwd: ROOT,
        env: baseEnv(dir.path),
        encoding: 'utf8',
        timeout: 20_000,
      });
      assert.equal(r.status, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /migrations applied/);
    }
  } finally {
    dir.remove();
  }
});

test('SIGTERM: readiness drops, in-flight registrations complete, new connections are refused, exit 0', async () => {
  const dir = tempDir();
  try {
    // One hashing slot makes 24 registrations take several hash-times, so SIGTERM lands mid-flight.
    const { child, url, logs } = await startChild(dir.path, {
      SHUTDOWN_DRAIN_SECONDS: '0.5',
      SHUTDOWN_GRACE_SECONDS: '20',
      HASH_CONCURRENCY: '1',
      HASH_QUEUE_LIMIT: '100',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const inFlight = Array.from({ length: 24 }, (_, i) =>
      fetch(`${url}/register`, json({ username: `drain-${i}`, password: GOOD_PASSWORD })).then((r) => r.status),
    );
    await new Promise((r) => setTimeout(r, 40));
    const t0 = performance.now();
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    const readiness = await fetch(`${url}/readyz`);
    assert.equal(readiness.status, 503, 'readiness fails while draining');
    // A keep-alive client is told to reconnect (elsewhere) instead of reusing a socket about to close.
    const duringDrain = await new Promise<{ status?: number; connection?: string; socketClosed: boolean }>((resolve, reject) => {
      const req = httpRequest(`${url}/livez`, { agent: new HttpAgent({ keepAlive: true }) }, (res) => {
        res.resume();
        res.on('end', () => {
          const socket = res.socket;
          setTimeout(() => resolve({ status: res.statusCode, connection: res.headers.connection, socketClosed: socket.destroyed }), 50);
        });
      });
      req.on('error', reject);
      req.end();
    });
    assert.deepEqual(duringDrain, { status: 200, connection: 'close', socketClosed: true });

    const statuses = await Promise.all(inFlight);
    assert.deepEqual(statuses, Array(24).fill(201), 'every in-flight registration completed');

    await new Promise((r) => setTimeout(r, 700));
    await assert.rejects(fetch(`${url}/livez`), 'after the drain delay the listener is closed');
    const code = await exited;
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(code, 0, logs.join('\n'));
    assert.ok(seconds < 20, `exited after ${seconds.toFixed(1)} s, before the grace period`);

    const client = createClient({ url: `file:${join(dir.path, 'registrations.db')}` });
    const n = await client.execute("SELECT count(*) AS n FROM users WHERE username LIKE 'drain-%'");
    client.close();
    assert.equal(Number(n.rows[0]!.n), 24, 'no accepted registration was lost');
  } finally {
    dir.remove();
  }
});

test('while starting, the socket answers liveness and holds other requests until the service serves them', { skip: postgresBinDir() ? false : 'no PostgreSQL binaries on this machine' }, async () => {
  // A PostgreSQL that is down when the service starts: start-up waits for it (retrying), so the
  // service is loaded but not serving for as long as the test keeps the database down.
  const pg = await startPostgres();
  watchCredential(pg.password);
  const dir = tempDir();
  let child: ChildProcess | undefined;
  try {
    await pg.stop('fast');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, [...NODE_ARGS, 'service/src/server.ts'], {
      cwd: ROOT,
      env: baseEnv(dir.path, { PORT: String(port), DATABASE_URL: pg.url, DATABASE_MIGRATE: 'always', DATABASE_STARTUP_WAIT_SECONDS: '60', SHUTDOWN_DRAIN_SECONDS: '0' }),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const logs: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      watchLogLine(line, 'the server process');
      logs.push(line);
    });
    await waitFor('the socket to answer liveness', async () => (await fetch(`${url}/livez`)).status === 200, 20_000, 50);
    await waitFor('start-up to wait on the database', async () => logs.some((l) => l.includes('database unreachable at start-up')), 20_000, 50);
    // Sent while the service cannot serve: held, not refused, not answered early.
    const t0 = performance.now();
    const readiness = fetch(`${url}/readyz`).then(async (r) => ({ status: r.status, body: await r.text(), at: performance.now() - t0 }));
    const register = fetch(`${url}/register`, json({ username: 'held-at-start', password: GOOD_PASSWORD })).then((r) => ({ status: r.status, at: performance.now() - t0 }));
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(!logs.some((l) => l.includes('"msg":"listening"')), 'still starting');
    await pg.start();
    const [ready, registered] = await Promise.all([readiness, register]);
    assert.equal(ready.status, 200, ready.body);
    assert.equal(registered.status, 201);
    assert.ok(ready.at >= 1500 && registered.at >= 1500, `answered after the database came back (${Math.round(ready.at)} ms, ${Math.round(registered.at)} ms)`);
    assert.match(pg.admin("SELECT count(*) FROM users WHERE username_canonical = 'held-at-start'"), /\b1\b/);
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    dir.remove();
    await pg.remove();
  }
});
