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
import { GOOD_PASSWORD, json, tempDir, watchLogLine } from './helpers.js';

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
