/**
 * `npm run bench:cli`: how long the `kreg` command takes from the shell, beside kubectl doing the
 * nearest thing, in the same run (wall time of the whole process, as a person waits for it).
 *
 *   kreg --help                      vs  kubectl --help
 *   kreg status (dev, deployed)      vs  kubectl get deployments,services,pvc -n kreg-dev
 *   kreg deploy, nothing to change   vs  kubectl apply --server-side -f dist/ (nothing to change)
 *
 * Needs `npm run cluster:up` and the image in the cluster for the cluster rows (without a cluster
 * only --help is measured). Runs the bundle (`npm run build:cli` first, as the script does).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KUBECONFIG, KUBECTL } from '../e2e/kube.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const RUNS = Number(process.env.RUNS ?? 10);

function timed(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ ms: number; code: number | null; out: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, KUBECONFIG, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ ms: performance.now() - t0, code, out }));
  });
}

async function series(command: string, args: string[]): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await timed(command, args);
    if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.code}:\n${r.out}`);
    times.push(r.ms);
  }
  return times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (x: number) => `${x.toFixed(0)} ms`;

async function main(): Promise<void> {
  const kreg = [join(ROOT, 'bin/kreg.mjs')];
  const rows: string[] = [];
  const row = async (what: string, kregArgs: string[], kubectlArgs: string[], goal: string) => {
    // Interleaved warm-up, then the series: both see the same machine load.
    await timed(process.execPath, [...kreg, ...kregArgs]);
    await timed(KUBECTL, kubectlArgs);
    const a = median(await series(process.execPath, [...kreg, ...kregArgs]));
    const b = median(await series(KUBECTL, ['--kubeconfig', KUBECONFIG, ...kubectlArgs]));
    rows.push(`| ${what} | ${ms(a)} | ${ms(b)} | ${(a / b).toFixed(2)}× | ${goal} |`);
  };
  await row('`kreg --help` / `kubectl --help`', ['--help'], ['--help'], '≤ 150 ms');
  const cluster = existsSync(KUBECONFIG) && (await timed(KUBECTL, ['--kubeconfig', KUBECONFIG, 'get', '--raw', '/readyz'])).code === 0;
  if (cluster) {
    const deployed = await timed(process.execPath, [...kreg, 'deploy', '--env', 'dev']);
    if (deployed.code !== 0) throw new Error(`kreg deploy: ${deployed.out}`);
    const synth = await timed(process.execPath, [...kreg, 'synth', '--outdir', 'dist']);
    if (synth.code !== 0) throw new Error(`kreg synth: ${synth.out}`);
    await row('`kreg status` / `kubectl get` of the same objects', ['status'], ['-n', 'kreg-dev', 'get', 'deployments,services,persistentvolumeclaims,configmaps'], '≤ 400 ms');
    await row('no-op `kreg deploy` / no-op `kubectl apply --server-side --field-manager kreg -f dist/`', ['deploy'], ['apply', '--server-side', '--field-manager', 'kreg', '-f', 'dist/'], '≤ 500 ms');
    const destroyed = await timed(process.execPath, [...kreg, 'destroy', '--include-kept']);
    if (destroyed.code !== 0) throw new Error(`kreg destroy: ${destroyed.out}`);
  } else {
    rows.push('| (no cluster: `npm run cluster:up` for the status and deploy rows) | | | | |');
  }
  console.log(`\n${RUNS} runs each, median wall time from spawn to exit (node ${process.version}):\n`);
  console.log(`| command | kreg | kubectl | ratio | goal (kreg) |\n|---|---|---|---|---|\n${rows.join('\n')}`);
}

await main();
