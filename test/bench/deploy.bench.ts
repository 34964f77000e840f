/**
 * `npm run bench:deploy`: kreg against the kubectl path a cdk8s user takes today, on the local
 * cluster, one run each, same app (dev):
 *
 *   kubectl path: `npx cdk8s synth` && `kubectl apply --server-side -f dist/` && `kubectl rollout status`
 *   kreg:         `kreg deploy` (in-process synth, dry run, apply, wait, prune, revision)
 *
 * Measures synth time, time to Ready on a first deploy, a no-op redeploy, and the time to report a
 * bad image. kubectl's rollout status only gives up at the Deployment's progress deadline, so its
 * bad-image wait is cut off at BAD_IMAGE_CAP_S and reported as "still waiting".
 * Needs `npm run cluster:up` and the image in the cluster (`npm run image` + load-image.sh).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { buildApp } from '../../infra/main.js';
import { KUBECONFIG, KUBECTL, ROOT } from '../e2e/kube.js';

const NS = 'kreg-dev';
const BAD_IMAGE_CAP_S = 60;
const env = { ...process.env, KUBECONFIG, NO_COLOR: '1', CDK8S_CHECK_UPGRADE: 'false' };

function sh(cmd: string, args: string[], opts: { timeoutMs?: number; allowFail?: boolean } = {}): Promise<{ code: number | null; ms: number; out: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs) : undefined;
    child.on('close', (code) => {
      clearTimeout(timer);
      const r = { code, ms: performance.now() - t0, out };
      if (code !== 0 && !opts.allowFail) reject(new Error(`${cmd} ${args.join(' ')} → exit ${code}\n${out}`));
      else resolve(r);
    });
  });
}

const kubectl = (args: string[], opts: { timeoutMs?: number; allowFail?: boolean } = {}) => sh(KUBECTL, ['--kubeconfig', KUBECONFIG, ...args], opts);
const kreg = (args: string[], opts: { allowFail?: boolean } = {}) => sh(process.execPath, [join(ROOT, 'bin/kreg.mjs'), ...args], opts);

async function clean(): Promise<void> {
  await kreg(['destroy', '--env', 'dev', '--include-kept'], { allowFail: true });
  await kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--wait=true', '--timeout=180s']);
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const rows: Array<[string, string, string, string]> = [];

async function main(): Promise<void> {
  // 1. Synth: in-process (what kreg does; imports already loaded) vs the cdk8s CLI (cdk8s.yaml app).
  const runs = 5;
  let inProcess = Infinity;
  let firstInProcess = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    buildApp({ env: 'dev' }).charts.flatMap((c) => c.toJson());
    const ms = performance.now() - t0;
    if (i === 0) firstInProcess = ms; // what one `kreg deploy` pays (modules loaded, code not yet warm)
    inProcess = Math.min(inProcess, ms);
  }
  let cli = Infinity;
  for (let i = 0; i < 3; i++) cli = Math.min(cli, (await sh('npx', ['cdk8s', 'synth', '--no-check-upgrade'])).ms);
  rows.push([
    'synth',
    `${firstInProcess.toFixed(0)} ms in-process (first call; best of ${runs}: ${inProcess.toFixed(0)} ms)`,
    `${s(cli)} (npx cdk8s synth, best of 3)`,
    `${(cli / firstInProcess).toFixed(0)}× faster (first call)`,
  ]);

  // 2. First deploy to Ready, from an empty cluster namespace.
  await clean();
  const kubectlFirst = performance.now();
  await sh('npx', ['cdk8s', 'synth', '--no-check-upgrade']);
  await kubectl(['apply', '--server-side', '--field-manager=kubectl-bench', '-f', 'dist/']);
  await kubectl(['-n', NS, 'rollout', 'status', 'deployment/registration', '--timeout=300s']);
  const kubectlFirstMs = performance.now() - kubectlFirst;
  const kubectlNoop = performance.now();
  await sh('npx', ['cdk8s', 'synth', '--no-check-upgrade']);
  await kubectl(['apply', '--server-side', '--field-manager=kubectl-bench', '-f', 'dist/']);
  await kubectl(['-n', NS, 'rollout', 'status', 'deployment/registration', '--timeout=300s']);
  const kubectlNoopMs = performance.now() - kubectlNoop;
  await kubectl(['delete', 'namespace', NS, '--wait=true', '--timeout=180s']);

  const first = await kreg(['deploy', '--env', 'dev']);
  const noop = await kreg(['deploy', '--env', 'dev']);
  const noopJson = await kreg(['deploy', '--env', 'dev', '--output', 'json']);
  const noopReport = JSON.parse(noopJson.out.slice(noopJson.out.indexOf('{'))) as { timingsMs: Record<string, number>; apiCalls: number; changed: boolean };
  if (noopReport.changed) throw new Error('the no-op redeploy changed something');
  rows.push(['first deploy → Ready', s(first.ms), s(kubectlFirstMs), `${(kubectlFirstMs / first.ms).toFixed(2)}× (kubectl time / kreg time)`]);
  rows.push([
    'no-op redeploy',
    `${s(noop.ms)} CLI wall; engine ${noopReport.timingsMs.total} ms, ${noopReport.apiCalls} API calls`,
    s(kubectlNoopMs),
    `${(kubectlNoopMs / noop.ms).toFixed(2)}×`,
  ]);

  // 3. A bad image tag: how long until each tool says so.
  const bad = await kreg(['deploy', '--env', 'dev', '--image', 'kreg/does-not-exist:1'], { allowFail: true });
  const badReported = bad.code === 5 && /ImagePull|ErrImagePull/.test(bad.out);
  await kreg(['deploy', '--env', 'dev']); // recover
  await clean();
  await sh('npx', ['cdk8s', 'synth', '--no-check-upgrade']);
  await kubectl(['apply', '--server-side', '--field-manager=kubectl-bench', '-f', 'dist/']);
  await kubectl(['-n', NS, 'rollout', 'status', 'deployment/registration', '--timeout=300s']);
  const badKubectl = performance.now();
  await kubectl(['-n', NS, 'set', 'image', 'deployment/registration', 'registration=kreg/does-not-exist:1']);
  const status = await kubectl(['-n', NS, 'rollout', 'status', 'deployment/registration'], { timeoutMs: BAD_IMAGE_CAP_S * 1000, allowFail: true });
  const badKubectlMs = performance.now() - badKubectl;
  const kubectlGaveUp = status.code !== 0 && status.code !== null && /exceeded its progress deadline/.test(status.out);
  rows.push([
    'bad image reported',
    badReported ? `${s(bad.ms)} (exit 5, ImagePullBackOff + events)` : `NOT reported (exit ${bad.code})`,
    kubectlGaveUp ? s(badKubectlMs) : `still waiting after ${s(badKubectlMs)} (rollout status waits for progressDeadlineSeconds)`,
    '',
  ]);
  await clean();

  console.log('\n| measure | kreg | kubectl path | ratio |\n|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
