/**
 * `npm run bench:service` — throughput of the registration service against its hashing bound.
 *
 * In one run, on one machine:
 *   1. the pure hashing bound: argon2id hashes/s with the service's parameters, one worker per core;
 *   2. the real server (child process, temp file database, rate limits off) driven by autocannon
 *      for a fixed time with unique usernames: registrations/s, p50/p99 latency, ratio to (1);
 *   3. failed logins/s (unknown users: each still costs one argon2 verification);
 *   4. GET /readyz requests/s (includes a database round trip).
 * Timings on shared machines are noisy, which is why the ratio is measured in the same run.
 * Environment: BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 8).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { hash, type Algorithm } from '@node-rs/argon2';
import autocannon from 'autocannon';
import { loadConfig } from '../../service/src/config.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const ROOT = new URL('../../', import.meta.url).pathname;

async function hashingBound(seconds: number, workers: number): Promise<{ perSecond: number; workers: number }> {
  const { hash: params } = loadConfig({});
  const options = { algorithm: 2 as Algorithm, memoryCost: params.memoryKib, timeCost: params.iterations, parallelism: params.parallelism };
  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; performance.now() < deadline; i++) {
        await hash(`bench-password-${w}-${i}`, options);
        done++;
      }
    }),
  );
  return { perSecond: done / ((performance.now() - t0) / 1000), workers };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startServer(dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'service/src/server.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: `file:${join(dir, 'bench.db')}`,
      RATE_LIMIT_REGISTER: '0',
      RATE_LIMIT_LOGIN: '0',
      // The default level: writing access logs is part of the real per-request cost. They go to
      // /dev/null rather than through this process, which would compete for the same CPUs.
      LOG_LEVEL: 'info',
      SHUTDOWN_DRAIN_SECONDS: '0',
    },
    stdio: ['ignore', openSync('/dev/null', 'w'), 'inherit'],
  });
  let exited = false;
  child.once('exit', () => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (exited) throw new Error('server exited during start-up');
    if (i > 300) throw new Error('server not ready after 30 s');
    const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    stop: () =>
      new Promise((resolve) => {
        if (exited) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

interface Run {
  requests: number;
  perSecond: number;
  p50: number;
  p99: number;
  statuses: Record<string, number>;
}

async function drive(opts: autocannon.Options): Promise<Run> {
  const statuses: Record<string, number> = {};
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({ connections: CONNECTIONS, duration: SECONDS, ...opts }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
    instance.on('response', (_client, statusCode) => {
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    });
  });
  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    requests: total,
    perSecond: total / (result.duration || SECONDS),
    p50: result.latency.p50,
    p99: result.latency.p99,
    statuses,
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kreg-bench-'));
  console.log(`kreg service benchmark: ${cpus().length} CPUs (${availableParallelism()} available), ${SECONDS} s per phase, ${CONNECTIONS} connections, node ${process.version}`);
  try {
    // The bound is the machine's: nothing else running, hashes in parallel one per core and, as
    // the server does by default, one per thread-pool thread; the better of the two counts.
    const candidates = [];
    for (const workers of new Set([availableParallelism(), loadConfig({}).hash.concurrency])) {
      const b = await hashingBound(SECONDS / 2, workers);
      console.log(`hashing: ${b.perSecond.toFixed(1)} argon2id hashes/s with ${workers} in parallel (m=19456 KiB, t=2, p=1)`);
      candidates.push(b);
    }
    const bound = candidates.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
    console.log(`hashing bound: ${bound.perSecond.toFixed(1)} hashes/s`);

    const server = await startServer(dir);
    try {
      let n = 0;
      const register = await drive({
        url: `${server.url}/register`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        requests: [
          {
            setupRequest: (req) => ({
              ...req,
              body: JSON.stringify({ username: `bench-${process.pid}-${n++}`, password: 'violet-otter-meadow-42' }),
            }),
          },
        ],
      });
      const created = register.statuses['201'] ?? 0;
      const regPerSecond = created / SECONDS;
      const ratio = regPerSecond / bound.perSecond;

      const login = await drive({
        url: `${server.url}/login`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'nobody-registered', password: 'wrong-password-123' }),
      });
      const readyz = await drive({ url: `${server.url}/readyz` });

      const row = (name: string, r: Run, ok: string) =>
        `| ${name} | ${r.perSecond.toFixed(1)} | ${r.p50} | ${r.p99} | ${JSON.stringify(r.statuses)} (${ok}) |`;
      console.log('\n| workload | requests/s | p50 ms | p99 ms | statuses |');
      console.log('|---|---|---|---|---|');
      console.log(row('POST /register (unique users)', register, `${created} created`));
      console.log(row('POST /login (unknown user → 401)', login, 'all should be 401'));
      console.log(row('GET /readyz', readyz, 'all should be 200'));
      console.log(
        `\nregistrations/s = ${regPerSecond.toFixed(1)}; hashing bound = ${bound.perSecond.toFixed(1)}/s; ratio = ${(ratio * 100).toFixed(1)}% (goal ≥ 90%)`,
      );
      const unexpected = register.requests - created;
      if (unexpected > 0) console.log(`note: ${unexpected} registration responses were not 201: ${JSON.stringify(register.statuses)}`);
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
