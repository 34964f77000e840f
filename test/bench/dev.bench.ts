/**
 * `npm run bench:dev` — the inner loop's latency on the local cluster: a one-line change saved in
 * service/src until the new pod serves it through kreg dev's port-forward, with kreg dev's own split
 * (build, transfer, rollout) for each cycle. The build cache is warmed by the loop's first cycle.
 *
 * Edits service/src/app.ts (the OpenAPI description) and restores it at the end, whatever happens.
 * Needs the local cluster (npm run cluster:up) and Docker. Environment: BENCH_CYCLES (default 5).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../wait.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const CYCLES = Number(process.env.BENCH_CYCLES ?? 5);
const APP = join(ROOT, 'service/src/app.ts');
const original = readFileSync(APP, 'utf8');
const DESCRIPTION = "'User registration and credential checks. ";
if (!original.includes(DESCRIPTION)) throw new Error(`bench:dev: ${APP} no longer contains ${DESCRIPTION}; update the bench`);

let output = '';
const dev = spawn(process.execPath, ['bin/kreg.mjs', 'dev', '--port', '0'], {
  cwd: ROOT,
  env: { ...process.env, KUBECONFIG: process.env.KUBECONFIG ?? join(ROOT, '.cluster/kubeconfig'), NO_COLOR: '1' },
  stdio: ['ignore', 'pipe', 'pipe'],
});
dev.stdout.on('data', (d: Buffer) => (output += d.toString()));
dev.stderr.on('data', (d: Buffer) => (output += d.toString()));
const restore = () => writeFileSync(APP, original);
process.on('exit', () => {
  restore();
  if (dev.exitCode === null) dev.kill('SIGKILL');
});

const summaries = () => [...output.matchAll(/kreg dev: ready at (\S+) with (\S+): edit → ready ([\d.]+) s \(build ([\d.]+) s, transfer ([\d.]+) s, rollout ([\d.]+) s\)/g)];
try {
  await waitFor('kreg dev to be ready', async () => {
    if (dev.exitCode !== null) throw new Error(`kreg dev exited ${dev.exitCode}:\n${output}`);
    return /kreg dev: watching /.test(output) && summaries().length > 0;
  }, 600_000, 250);
  const first = summaries()[0]!;
  const url = first[1]!;
  const transferLine = /images reach the cluster by (.*)$/m.exec(output)?.[1];
  console.log(`# kreg dev on the local cluster; images reach it by ${transferLine}`);
  console.log(`first cycle (cold for this tree): ${first[3]} s (build ${first[4]} s, transfer ${first[5]} s, rollout ${first[6]} s)`);
  console.log('\n| cycle | save → served | kreg dev: edit → ready | build | transfer | rollout |\n|---|---|---|---|---|---|');
  const served: number[] = [];
  for (let i = 1; i <= CYCLES; i++) {
    const before = summaries().length;
    const marker = `bench cycle ${i} ${Date.now()}`;
    const t0 = performance.now();
    writeFileSync(APP, original.replace(DESCRIPTION, `'User registration and credential checks (${marker}). `));
    await waitFor(`cycle ${i} to be served`, async () => (await (await fetch(`${url}/openapi.json`)).text()).includes(marker), 300_000, 100);
    const ms = performance.now() - t0;
    served.push(ms);
    await waitFor(`cycle ${i}'s summary`, async () => summaries().length > before, 30_000, 100);
    const s = summaries().at(-1)!;
    console.log(`| ${i} | ${(ms / 1000).toFixed(1)} s | ${s[3]} s | ${s[4]} s | ${s[5]} s | ${s[6]} s |`);
  }
  const sorted = [...served].sort((a, b) => a - b);
  console.log(`\nsave → served: p50 ${(sorted[Math.floor(sorted.length / 2)]! / 1000).toFixed(1)} s (goal ≤ 5 s), min ${(sorted[0]! / 1000).toFixed(1)} s, max ${(sorted.at(-1)! / 1000).toFixed(1)} s`);
} finally {
  restore();
  const exited = new Promise((r) => dev.once('exit', r));
  dev.kill('SIGINT');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
}
