/**
 * `npm run bench:start` — from `docker run` to the first answer, the service against a bare Node
 * HTTP server in the same image. The service's first answer is a 200 from /readyz: its socket
 * answers /livez while it starts (service/src/server.ts), which would flatter it. Measured side by
 * side in one run, alternating, so drift on a shared machine hits both alike. Both run as the
 * charts run them: read-only root, uid 10001, no capabilities.
 *
 * Environment:
 *   BENCH_IMAGE           the image (default kreg/registration:dev; `npm run image` builds it)
 *   BENCH_BASELINE_IMAGE  another image to time the same way, e.g. one built from an older commit
 *   BENCH_RUNS            trials per case (default 9)
 */
import { execFile as execFileCb, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { ENTRY_POINTS, HEALTH_PATHS } from '../../service/src/contract.js';

const execFile = promisify(execFileCb);
const IMAGE = process.env.BENCH_IMAGE ?? 'kreg/registration:dev';
const BASELINE = process.env.BENCH_BASELINE_IMAGE;
const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const HARDENED = ['--read-only', '--user', '10001:10001', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--tmpfs', '/tmp:rw,size=64m', '--tmpfs', '/data:rw,size=64m,uid=10001,gid=10001'];
// The smallest server node can run: what any Node service pays before its own code.
const BARE = `require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT))`;

interface Case {
  name: string;
  image: string;
  command: string[];
  path: string;
}

const cases: Case[] = [
  { name: 'bare node http server', image: IMAGE, command: ['node', '-e', BARE], path: '/' },
  { name: 'registration service', image: IMAGE, command: ['node', ENTRY_POINTS.server.built], path: HEALTH_PATHS.readiness },
];
if (BASELINE) {
  cases.push({ name: `bare node (${BASELINE})`, image: BASELINE, command: ['node', '-e', BARE], path: '/' });
  cases.push({ name: `service (${BASELINE})`, image: BASELINE, command: ['node', ENTRY_POINTS.server.built], path: HEALTH_PATHS.readiness });
}

let port = 18_300;
async function once(c: Case): Promise<number> {
  const name = `kreg-start-bench-${process.pid}-${port}`;
  const published = port++;
  const t0 = performance.now();
  // The clock runs from before `docker run`. Host networking: a published port answers only once
  // Docker's proxy is set up, later than either server listens, which would hide the difference.
  const run = spawn('docker', ['run', '-d', '--rm', '--name', name, ...HARDENED, '--network', 'host', '-e', `PORT=${published}`, '-e', 'HOST=127.0.0.1', c.image, ...c.command], { stdio: 'ignore' });
  try {
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${published}${c.path}`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.ok) return performance.now() - t0;
      } catch {
        // not listening yet
      }
      if (performance.now() - t0 > 30_000) throw new Error(`${c.name}: no answer within 30 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    await new Promise((r) => (run.exitCode === null ? run.once('exit', r) : r(undefined)));
    await execFile('docker', ['rm', '-f', name]).catch(() => undefined);
  }
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const times = new Map<string, number[]>(cases.map((c) => [c.name, []]));
for (const c of cases) await once(c); // warm: page cache, image layers
for (let i = 0; i < RUNS; i++) for (const c of cases) times.get(c.name)!.push(await once(c));

const sizeOf = async (image: string) => Number((await execFile('docker', ['image', 'inspect', image, '--format', '{{.Size}}'])).stdout.trim()) / 1e6;
console.log(`docker run → first answer, ${RUNS} runs each, alternating (${new Date().toISOString()})`);
console.log('| | p50 | min | max | image |');
console.log('|---|---|---|---|---|');
for (const c of cases) {
  const t = times.get(c.name)!;
  console.log(`| ${c.name} | ${Math.round(pct(t, 50))} ms | ${Math.round(Math.min(...t))} ms | ${Math.round(Math.max(...t))} ms | ${(await sizeOf(c.image)).toFixed(0)} MB |`);
}
const over = (service: string, bare: string) => Math.round(pct(times.get(service)!, 50) - pct(times.get(bare)!, 50));
console.log(`\nservice − bare node, p50: ${over('registration service', 'bare node http server')} ms (goal ≤ 300 ms)`);
if (BASELINE) console.log(`baseline service − its bare node, p50: ${over(`service (${BASELINE})`, `bare node (${BASELINE})`)} ms`);
