/**
 * `npm run bench:service` — throughput of the registration service against its hashing bound.
 *
 * In one run, on one machine, after a warm-up (BENCH_WARMUP_SECONDS, default 3):
 *   1. BENCH_ROUNDS rounds (default 3) of the real server (child process, temp file database, rate
 *      limits off) driven with unique usernames by autocannon and then by wrk, with the pure hashing
 *      bound (argon2id hashes/s with the service's parameters, the best of one worker per core, per
 *      hashing slot and per thread-pool thread, 2 s each) measured before, between and after:
 *      each phase's registrations against the mean of the bounds on either side of it, per round
 *      and over all rounds, with p50/p99 latency;
 *   2. failed logins/s (unknown users: each still costs one argon2 verification);
 *   3. GET /readyz requests/s (includes a database round trip).
 * Timings on shared machines are noisy, which is why the ratio is measured in the same run.
 * Each phase also reports the CPU the server and the load generator used (from /proc and
 * process.cpuUsage), as a share of the machine: a generator that eats the cores the hashes need
 * lowers the ratio without the server being at fault. When wrk is installed (Debian's package), the
 * registration phases also run with wrk and a Lua script, a generator in C that costs a fraction of
 * autocannon's CPU, and both figures are reported.
 * Environment: BENCH_SECONDS (default 5: per generator per round, and per later phase),
 * BENCH_ROUNDS (default 3), BENCH_CONNECTIONS (default 8), BENCH_PROFILE=1 (the server runs with
 * --cpu-prof; the top frames of its main thread during the last registration phase are printed),
 * BENCH_DATABASE (file, the default, or postgres: a throwaway PostgreSQL server, test/postgres.ts).
 *
 * Before all that, the raw insert rate of each database the machine has (the user store's one
 * statement, without hashing or HTTP): one insert at a time, and 4 at once (a pod's hashing slots).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { hash, type Algorithm } from '@node-rs/argon2';
import autocannon from 'autocannon';
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../../service/src/config.js';
import { migrateDatabase, openDatabase, userStoreOf } from '../../service/src/db/client.js';
import { DatabaseGuard } from '../../service/src/db/guard.js';
import { freePort } from '../ports.js';
import { postgresBinDir, startPostgres, type TestPostgres } from '../postgres.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const PROFILE = process.env.BENCH_PROFILE === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const DATABASE = process.env.BENCH_DATABASE ?? 'file';
if (DATABASE !== 'file' && DATABASE !== 'postgres') throw new Error(`BENCH_DATABASE must be file or postgres (got "${DATABASE}")`);
const INSERT_SECONDS = 2;
/** Seconds per worker count in each round's measurement of the bound. */
const BOUND_SECONDS = 2;
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const ROOT = new URL('../../', import.meta.url).pathname;

async function hashingBound(seconds: number, workers: number): Promise<number> {
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
  return done / ((performance.now() - t0) / 1000);
}

interface ProcStat {
  /** The task's command name (a thread's name, for /proc/<pid>/task/<tid>/stat). */
  name: string;
  /** utime + stime (fields 14 and 15): for a process, all its threads. */
  cpuSeconds: number;
  /** cutime + cstime (fields 16 and 17): its children that have exited and been reaped. */
  childrenCpuSeconds: number;
}

/** A /proc stat line; the name sits in parentheses and may contain spaces, so fields count from its end. */
function readProcStat(path: string): ProcStat {
  const stat = readFileSync(path, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = (a: number, b: number) => (Number(fields[a]) + Number(fields[b])) / CLOCK_TICKS;
  return { name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), cpuSeconds: ticks(11, 12), childrenCpuSeconds: ticks(13, 14) };
}

interface Server {
  url: string;
  /** CPU seconds the server process has used so far (all its threads: event loop and hashing). */
  cpuSeconds(): number;
  /** CPU seconds so far per kind of thread: the event loop ("main"), libuv's pool, V8's helpers. */
  cpuByThread(): Map<string, number>;
  stop(): Promise<void>;
}

/** The database the server runs on: set by main() before the first server starts. */
let databaseUrl = '';

async function startServer(dir: string, profileDir?: string): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, [...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []), '--import', 'tsx', 'service/src/server.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      DATABASE_MIGRATE: 'always',
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
    cpuSeconds: () => readProcStat(`/proc/${child.pid}/stat`).cpuSeconds,
    cpuByThread: () => {
      const byKind = new Map<string, number>();
      for (const tid of readdirSync(`/proc/${child.pid}/task`)) {
        let stat: ProcStat;
        try {
          stat = readProcStat(`/proc/${child.pid}/task/${tid}/stat`);
        } catch {
          continue; // the thread ended meanwhile
        }
        const kind = tid === String(child.pid) ? 'main' : stat.name.startsWith('libuv-worker') ? 'libuv pool' : stat.name.startsWith('V8') ? 'V8 helpers' : 'other';
        byKind.set(kind, (byKind.get(kind) ?? 0) + stat.cpuSeconds);
      }
      return byKind;
    },
    stop: () =>
      new Promise((resolve) => {
        if (exited) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Where a frame's code comes from: an npm package, Node itself, the service, or V8's own states. */
function packageOf(frame: { functionName: string; url: string }): string {
  if (!frame.url) return frame.functionName.startsWith('(') ? frame.functionName : `native: ${frame.functionName}`;
  const inPackage = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(frame.url);
  if (inPackage) return inPackage[1]!;
  if (frame.url.startsWith('node:')) return 'node (built-in modules)';
  if (frame.url.includes('/service/src/')) return 'service/src';
  return frame.url;
}

/**
 * Self time per function in a V8 .cpuprofile, the top `n`, as shares of the samples taken in the
 * last `seconds` before the process began to exit (so start-up, module loading and tsx's compiling
 * are left out: the profile covers the whole process, the phase is its last seconds).
 */
function topFrames(profilePath: string, seconds: number, by: 'function' | 'package', n = 15): Array<{ frame: string; share: number }> {
  const profile = JSON.parse(readFileSync(profilePath, 'utf8')) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
    samples: number[];
    timeDeltas: number[];
    endTime: number;
  };
  const byId = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const counts = new Map<string, number>();
  let total = 0;
  const from = profile.endTime - seconds * 1e6;
  const to = profile.endTime - 0.5e6;
  let at = profile.endTime - profile.timeDeltas.reduce((a, b) => a + b, 0);
  for (const [i, id] of profile.samples.entries()) {
    at += profile.timeDeltas[i]!;
    if (at < from || at > to) continue;
    const frame = byId.get(id)!;
    const where = frame.url ? `${frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/service\//, 'service/')}:${frame.lineNumber + 1}` : '';
    const key = by === 'function' ? `${frame.functionName || '(anonymous)'} ${where}`.trim() : packageOf(frame);
    counts.set(key, (counts.get(key) ?? 0) + 1);
    total++;
  }
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([frame, count]) => ({ frame, share: count / total }));
}

interface Run {
  requests: number;
  perSecond: number;
  p50: number;
  p99: number;
  statuses: Record<string, number>;
  /** Shares of the machine's CPU (all cores) during the phase. */
  serverCpu: number;
  generatorCpu: number;
  /** The server's CPU per kind of thread, as shares of one core. */
  serverThreads: Map<string, number>;
}

/** Runs `phase` and measures the CPU the server and the generator used meanwhile. */
async function withCpu<T>(
  server: Server,
  generatorCpuSeconds: () => number,
  phase: () => Promise<T>,
): Promise<T & { serverCpu: number; generatorCpu: number; serverThreads: Map<string, number> }> {
  const cores = availableParallelism();
  const t0 = performance.now();
  const server0 = server.cpuSeconds();
  const threads0 = server.cpuByThread();
  const generator0 = generatorCpuSeconds();
  const result = await phase();
  const wall = (performance.now() - t0) / 1000;
  const threads = server.cpuByThread();
  return {
    ...result,
    serverCpu: (server.cpuSeconds() - server0) / wall / cores,
    generatorCpu: (generatorCpuSeconds() - generator0) / wall / cores,
    serverThreads: new Map([...threads].map(([kind, seconds]) => [kind, (seconds - (threads0.get(kind) ?? 0)) / wall])),
  };
}

/** The rounds of one generator as one run: counts summed, CPU shares averaged, p50 the median, p99 the worst. */
function combine(runs: Run[]): Run {
  const statuses: Record<string, number> = {};
  for (const r of runs) for (const [status, count] of Object.entries(r.statuses)) statuses[status] = (statuses[status] ?? 0) + count;
  const requests = runs.reduce((sum, r) => sum + r.requests, 0);
  const mean = (f: (r: Run) => number) => runs.reduce((sum, r) => sum + f(r), 0) / runs.length;
  const serverThreads = new Map<string, number>();
  for (const r of runs) for (const [kind, cores] of r.serverThreads) serverThreads.set(kind, (serverThreads.get(kind) ?? 0) + cores / runs.length);
  return {
    requests,
    perSecond: requests / (runs.length * SECONDS),
    p50: runs.map((r) => r.p50).sort((a, b) => a - b)[Math.floor(runs.length / 2)]!,
    p99: Math.max(...runs.map((r) => r.p99)),
    statuses,
    serverCpu: mean((r) => r.serverCpu),
    generatorCpu: mean((r) => r.generatorCpu),
    serverThreads,
  };
}

/** CPU seconds of this process's children that have exited and been reaped (wrk, once it is done). */
const reapedChildrenCpuSeconds = () => readProcStat('/proc/self/stat').childrenCpuSeconds;

const ownCpuSeconds = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
};

async function drive(server: Server, opts: autocannon.Options): Promise<Run> {
  return withCpu(server, ownCpuSeconds, async () => {
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
  });
}

/**
 * The registration phase again with wrk (C, one thread): unique usernames from a Lua script, each
 * status counted by the script. wrk's CPU is read from the child's rusage after it exits.
 */
async function driveWithWrk(server: Server, dir: string, seconds: number, prefix: string): Promise<Run | undefined> {
  if (spawnSync('wrk', ['--version']).error) return undefined;
  const script = join(dir, 'register.lua');
  writeFileSync(
    script,
    [
      'local counter = 0',
      'statuses = {}',
      'local threads = {}',
      'function setup(thread) table.insert(threads, thread) end',
      'function init(args) statuses = {} end',
      'request = function()',
      '  counter = counter + 1',
      `  local body = string.format('{"username":"${prefix}-${process.pid}-%d","password":"violet-otter-meadow-42"}', counter)`,
      '  return wrk.format("POST", "/register", { ["Content-Type"] = "application/json" }, body)',
      'end',
      'response = function(status) statuses[status] = (statuses[status] or 0) + 1 end',
      'done = function(summary, latency, requests)',
      '  for _, thread in ipairs(threads) do',
      '    local s = thread:get("statuses")',
      '    for status, count in pairs(s) do io.write(string.format("status %d %d\\n", status, count)) end',
      '  end',
      '  io.write(string.format("latency %d %d\\n", latency:percentile(50), latency:percentile(99)))',
      'end',
    ].join('\n'),
  );
  const run = await withCpu(server, reapedChildrenCpuSeconds, async () => {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-s', script, server.url], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.once('error', reject);
      child.once('exit', () => resolve(text));
    });
    return { out };
  });
  const statuses: Record<string, number> = {};
  for (const [, status, count] of run.out.matchAll(/^status (\d+) (\d+)$/gm)) statuses[status!] = Number(count);
  const latency = /^latency (\d+) (\d+)$/m.exec(run.out);
  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    requests: total,
    perSecond: total / seconds,
    p50: latency ? Math.round(Number(latency[1]) / 1000) : NaN,
    p99: latency ? Math.round(Number(latency[2]) / 1000) : NaN,
    statuses,
    serverCpu: run.serverCpu,
    generatorCpu: run.generatorCpu,
    serverThreads: run.serverThreads,
  };
}

/** Inserts per second through the user store, one at a time and `parallel` at once, for INSERT_SECONDS each. */
async function insertRates(url: string): Promise<{ sequential: number; parallel: number }> {
  const database = await openDatabase({ url, timeoutMs: 2000, poolSize: 4 });
  try {
    await migrateDatabase(database);
    const store = userStoreOf(database, new DatabaseGuard(2000));
    const insertFor = async (workers: number) => {
      let count = 0;
      const until = performance.now() + INSERT_SECONDS * 1000;
      await Promise.all(
        Array.from({ length: workers }, async () => {
          while (performance.now() < until) {
            const name = `raw-${randomUUID()}`;
            await store.create({ username: name, usernameCanonical: name, passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA' });
            count++;
          }
        }),
      );
      return count / INSERT_SECONDS;
    };
    await insertFor(1); // warm-up: JIT, prepared statements, the pool's connections
    return { sequential: await insertFor(1), parallel: await insertFor(4) };
  } finally {
    await database.close();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kreg-bench-'));
  console.log(`kreg service benchmark: ${cpus().length} CPUs (${availableParallelism()} available), ${SECONDS} s per phase, ${CONNECTIONS} connections, database ${DATABASE}, node ${process.version}`);
  let pg: TestPostgres | undefined;
  try {
    // Durable, as the libsql file is (synchronous=FULL): every commit waits for its flush.
    if (DATABASE === 'postgres' || postgresBinDir()) pg = await startPostgres({ durable: true });
    console.log(`\nraw inserts through the user store (${INSERT_SECONDS} s each; both durable: every commit flushed):`);
    console.log('| database | one at a time | 4 at once |');
    console.log('|---|---|---|');
    const fileRates = await insertRates(`file:${join(dir, 'raw.db')}`);
    console.log(`| libsql file (WAL, synchronous=FULL) | ${fileRates.sequential.toFixed(0)}/s | ${fileRates.parallel.toFixed(0)}/s |`);
    if (pg) {
      const pgRates = await insertRates(pg.url);
      console.log(`| PostgreSQL on loopback (fsync on, pool of 4) | ${pgRates.sequential.toFixed(0)}/s | ${pgRates.parallel.toFixed(0)}/s |`);
      pg.admin('TRUNCATE users');
    } else console.log('(no PostgreSQL binaries: apt-get install postgresql to measure it too)');
    databaseUrl = DATABASE === 'postgres' ? pg!.url : `file:${join(dir, 'bench.db')}`;

    // The bound is the machine's: nothing else running, hashes in parallel one per core, one per
    // hashing slot the server has, and one per thread-pool thread; the best of them counts. A shared
    // machine's speed drifts by a tenth or more within a minute, so the bound is not measured once
    // up front: it is measured before and after each phase, and each phase's registrations are set
    // against the mean of the two. Measured only before, a machine slowing down through the run
    // (seen here: 74, 71 and 67 hashes/s at the starts of three rounds) made every ratio too low,
    // and one speeding up would have made it too high.
    const { concurrency } = loadConfig(process.env).hash;
    const workerCounts = [...new Set([availableParallelism(), concurrency, Number(process.env.UV_THREADPOOL_SIZE) || 4])];
    const measureBound = async () => {
      const rates: number[] = [];
      for (const workers of workerCounts) rates.push(await hashingBound(BOUND_SECONDS, workers));
      return { perSecond: Math.max(...rates), rates };
    };

    const profileDir = PROFILE ? mkdtempSync(join(tmpdir(), 'kreg-prof-')) : undefined;
    const server = await startServer(dir, profileDir);
    const rounds: Array<{ autocannonBound: number; autocannon: Run; wrkBound?: number; wrk?: Run }> = [];
    try {
      let n = 0;
      const registrations = (prefix: string): autocannon.Options => ({
        url: `${server.url}/register`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ username: `${prefix}-${process.pid}-${n++}`, password: 'violet-otter-meadow-42' }) }) }],
      });
      // Warm-up, not counted: a fresh process runs its request path in V8's interpreter first, and
      // the first phase measured would otherwise pay for the JIT that every later phase gets free.
      await drive(server, { ...registrations('warm'), duration: WARMUP_SECONDS });
      const boundNow = async (round: number, when: string) => {
        const bound = await measureBound();
        console.log(`round ${round}, ${when}: hashing ${bound.rates.map((r, i) => `${r.toFixed(1)}/s with ${workerCounts[i]}`).join(', ')} in parallel (m=19456 KiB, t=2, p=1)`);
        return bound.perSecond;
      };
      // One round: bound, autocannon, bound, wrk, bound. A round's last bound is the next one's first.
      let before = await boundNow(1, 'before autocannon');
      for (let round = 1; round <= ROUNDS; round++) {
        const autocannonRun = await drive(server, { ...registrations(`r${round}`), duration: SECONDS });
        const between = await boundNow(round, 'after autocannon');
        const wrkRun = await driveWithWrk(server, dir, SECONDS, `wrk${round}`);
        // With --cpu-prof the profile ends at exit, and its last seconds must be this phase's, not
        // the idle server's during the bound after it.
        if (profileDir && round === ROUNDS) await server.stop();
        const after = wrkRun ? await boundNow(round, 'after wrk') : between;
        rounds.push({ autocannonBound: (before + between) / 2, autocannon: autocannonRun, ...(wrkRun ? { wrkBound: (between + after) / 2, wrk: wrkRun } : {}) });
        before = after;
      }
    } finally {
      // With --cpu-prof the profile is written at exit: stopping here keeps it to the registration phases.
      if (profileDir) await server.stop();
    }
    const rest = profileDir ? await startServer(dir) : server;
    try {
      const login = await drive(rest, {
        url: `${rest.url}/login`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'nobody-registered', password: 'wrong-password-123' }),
      });
      const readyz = await drive(rest, { url: `${rest.url}/readyz` });
      const register = combine(rounds.map((r) => r.autocannon));
      const wrk = rounds.every((r) => r.wrk) ? combine(rounds.map((r) => r.wrk!)) : undefined;

      const percent = (x: number) => `${(x * 100).toFixed(0)} %`;
      const row = (name: string, r: Run, ok: string) =>
        `| ${name} | ${r.perSecond.toFixed(1)} | ${r.p50} | ${r.p99} | ${percent(r.serverCpu)} | ${percent(r.generatorCpu)} | ${JSON.stringify(r.statuses)} (${ok}) |`;
      console.log('\n| workload | requests/s | p50 ms | p99 ms | server CPU | generator CPU | statuses |');
      console.log('|---|---|---|---|---|---|---|');
      const created = (r: Run) => r.statuses['201'] ?? 0;
      console.log(row('POST /register (unique users; autocannon)', register, `${created(register)} created`));
      if (wrk) console.log(row('POST /register (unique users; wrk)', wrk, `${created(wrk)} created`));
      console.log(row('POST /login (unknown user → 401)', login, 'all should be 401'));
      console.log(row('GET /readyz', readyz, 'all should be 200'));
      console.log('(CPU: share of all cores during the phase; the rest is idle or other processes)');
      console.log('\nserver CPU by thread, in cores, and the event loop\'s CPU per request:');
      for (const [name, r] of [['register (autocannon)', register], ['register (wrk)', wrk], ['login (401)', login]] as const) {
        if (!r) continue;
        const threads = [...r.serverThreads].sort((a, b) => b[1] - a[1]).map(([kind, cores]) => `${kind} ${cores.toFixed(2)}`).join(', ');
        const mainMsPerRequest = ((r.serverThreads.get('main') ?? 0) / r.perSecond) * 1000;
        console.log(`  ${name}: ${threads}; event loop ${mainMsPerRequest.toFixed(2)} ms per request`);
      }
      console.log(`\nregistrations against the hashing bound, per round (${SECONDS} s per generator; the bound is the mean of those measured just before and just after):`);
      console.log('| round | bound | autocannon | bound | wrk |');
      console.log('|---|---|---|---|---|');
      const ratioOf = (r: Run, bound: number) => `${(created(r) / SECONDS).toFixed(1)}/s, ${((created(r) / SECONDS / bound) * 100).toFixed(1)} %`;
      for (const [i, r] of rounds.entries()) {
        const wrkCells = r.wrk && r.wrkBound ? `${r.wrkBound.toFixed(1)}/s | ${ratioOf(r.wrk, r.wrkBound)}` : '- | -';
        console.log(`| ${i + 1} | ${r.autocannonBound.toFixed(1)}/s | ${ratioOf(r.autocannon, r.autocannonBound)} | ${wrkCells} |`);
      }
      for (const [name, r] of [['autocannon', register], ['wrk', wrk]] as const) {
        if (!r) continue;
        const boundTotal = rounds.reduce((sum, round) => sum + (name === 'wrk' ? round.wrkBound ?? 0 : round.autocannonBound) * SECONDS, 0);
        console.log(
          `${name}: ${created(r)} registrations where the bound would hash ${boundTotal.toFixed(0)}; ratio = ${((created(r) / boundTotal) * 100).toFixed(1)}% (goal ≥ 90%)`,
        );
        const unexpected = r.requests - created(r);
        if (unexpected > 0) console.log(`note: ${unexpected} registration responses were not 201: ${JSON.stringify(r.statuses)}`);
      }
      if (!wrk) console.log('\n(wrk is not installed: apt-get install wrk to compare with a leaner load generator)');
      if (profileDir) {
        const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
        if (file) {
          console.log('\nserver main thread during the last registration phase, top frames by self time:');
          for (const { frame, share } of topFrames(join(profileDir, file), SECONDS, 'function')) console.log(`  ${(share * 100).toFixed(1).padStart(5)} %  ${frame}`);
          console.log('the same samples by package:');
          for (const { frame, share } of topFrames(join(profileDir, file), SECONDS, 'package')) console.log(`  ${(share * 100).toFixed(1).padStart(5)} %  ${frame}`);
        }
        rmSync(profileDir, { recursive: true, force: true });
      }
    } finally {
      await rest.stop();
      if (!profileDir) await server.stop();
    }
  } finally {
    await pg?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
