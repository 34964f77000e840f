/**
 * `npm run bench:operator`: the RegistrationService controller on the local cluster, against the
 * goals of notes/operator.md §8. The controller runs in this process (the same code `kreg operator
 * run` runs), so its API calls, writes and memory are measured directly.
 *
 *   spec change → first apply request, and → Ready   (TRIALS changes of a setting; each rolls the pod)
 *   the same change with `deploy()` (what `kreg deploy` does), in the same run, for comparison
 *   drift: a deleted Service → back; an edited Deployment → back
 *   bad image → Stalled
 *   idle after convergence: API requests and writes per minute
 *   RSS after convergence and after 1,000 reconciles (in this process)
 *   the operator as installed (`kreg operator install`, its image): RSS of the leading pod after
 *   convergence and after 1,000 reconciles requested with reconcile.kreg.dev/requestedAt
 *
 * Needs `npm run cluster:up` and both images in the cluster (`npm run test:e2e` builds and loads
 * them). Bounded: about 10 minutes.
 */
import { KubeClient } from '../../infra/engine/client.js';
import { deploy } from '../../infra/engine/deploy.js';
import type { KubeObject } from '../../infra/engine/types.js';
import { synth } from '../../infra/main.js';
import { installCrd } from '../../infra/operator/install.js';
import { RegistrationServiceController } from '../../infra/operator/controller.js';
import { API_VERSION, KIND } from '../../infra/operator/crd.js';
import { deleteNamespace, KUBECONFIG, kreg, kubectl, waitFor } from '../e2e/kube.js';

const NS = 'kreg-bench-operator';
const CLI_NS = 'kreg-bench-cli';
const TRIALS = Number(process.env.TRIALS ?? 10);
const IMAGE = 'kreg/registration:dev';

const pct = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};
const fmt = (xs: number[]) => `p50 ${(pct(xs, 50) / 1000).toFixed(2)} s, p95 ${(pct(xs, 95) / 1000).toFixed(2)} s (n=${xs.length})`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

/** Polls fast (25 ms by default): the figures are latencies. */
const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 120_000, everyMs = 25): Promise<T> => waitFor(what, fn, timeoutMs, everyMs);

async function main(): Promise<void> {
  await deleteNamespace(NS);
  await deleteNamespace(CLI_NS);
  await kubectl(['create', 'namespace', NS]);
  await kubectl(['create', 'namespace', CLI_NS]);
  const client = await KubeClient.create({ kubeconfig: KUBECONFIG });
  await installCrd(client, () => {});
  const firstApply = new Map<string, number>();
  let watchingFirstApply: string | undefined;
  const controller = new RegistrationServiceController(client, {
    namespace: NS,
    onEngineEvent: (_key, e) => {
      if (watchingFirstApply && e.type === 'apply' && e.action !== 'unchanged' && !firstApply.has(watchingFirstApply)) firstApply.set(watchingFirstApply, performance.now());
    },
  });
  await controller.start();
  const cr = (settings: Record<string, string>, image = IMAGE) =>
    client.apply({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'bench', namespace: NS }, spec: { image, database: { mode: 'embedded', storage: '1Gi' }, settings } }, { fieldManager: 'bench', force: true });
  const readyAt = async (generation: number) =>
    until('Ready', async () => {
      const now = await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name: 'bench' });
      const ready = (now?.status?.conditions ?? []).find((c: { type: string }) => c.type === 'Ready');
      return now?.status?.observedGeneration === generation && ready?.status === 'True' && ready.observedGeneration === generation ? performance.now() : undefined;
    });
  const rows: string[] = [];
  try {
    let live = await cr({ LOG_LEVEL: 'info' });
    await readyAt(live.metadata.generation!);

    // 1. Spec changes (a setting: the pods roll), operator vs deploy() of the same change.
    const toApply: number[] = [];
    const toReady: number[] = [];
    const cliReady: number[] = [];
    const cliObjects = (level: string): KubeObject[] => synth('bench', CLI_NS, { image: IMAGE, database: { mode: 'embedded', storage: '1Gi' }, settings: { LOG_LEVEL: level } });
    const target = { set: { name: 'kreg-bench', namespace: CLI_NS } };
    const deployOptions = { timeoutMs: 180_000, wait: true, prune: true, forceConflicts: false, description: 'bench' };
    const first = await deploy(client, cliObjects('info'), target, deployOptions);
    if (!first.ok) throw new Error(`deploy: ${first.failure?.message}`);
    for (let i = 0; i < TRIALS; i++) {
      const level = i % 2 === 0 ? 'warn' : 'info';
      const key = `trial-${i}`;
      watchingFirstApply = key;
      const t0 = performance.now();
      live = await cr({ LOG_LEVEL: level });
      const ready = await readyAt(live.metadata.generation!);
      watchingFirstApply = undefined;
      toApply.push(firstApply.get(key)! - t0);
      toReady.push(ready - t0);
      const c0 = performance.now();
      const r = await deploy(client, cliObjects(level), target, deployOptions);
      if (!r.ok) throw new Error(`deploy: ${r.failure?.message}`);
      cliReady.push(performance.now() - c0);
    }
    rows.push(`| spec change → first apply request | ${fmt(toApply)} | ≤ 1 s p95 |`);
    rows.push(`| spec change → Ready (operator) | ${fmt(toReady)} | — |`);
    rows.push(`| the same change with deploy() | ${fmt(cliReady)} | — |`);

    // 2. Drift.
    const deletedService: number[] = [];
    const editedDeployment: number[] = [];
    for (let i = 0; i < TRIALS; i++) {
      let t0 = performance.now();
      await client.delete({ apiVersion: 'v1', kind: 'Service', namespace: NS, name: 'bench' });
      await until('the Service back', async () => (await client.get({ apiVersion: 'v1', kind: 'Service', namespace: NS, name: 'bench' }))?.metadata.deletionTimestamp === undefined && true);
      deletedService.push(performance.now() - t0);
      t0 = performance.now();
      await kubectl(['-n', NS, 'scale', 'deployment/bench', '--replicas=2']);
      await until('replicas back to 1', async () => (await client.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: NS, name: 'bench' }))?.spec.replicas === 1);
      editedDeployment.push(performance.now() - t0);
    }
    await readyAt(live.metadata.generation!);
    rows.push(`| drift: deleted Service → back | ${fmt(deletedService)} | ≤ 5 s p95 |`);
    rows.push(`| drift: scaled Deployment → back | ${fmt(editedDeployment)} | ≤ 5 s p95 |`);

    // 3. Bad image → Stalled, then fixed.
    const stalled: number[] = [];
    for (let i = 0; i < Math.min(TRIALS, 5); i++) {
      const t0 = performance.now();
      live = await cr({ LOG_LEVEL: live.spec.settings.LOG_LEVEL }, `kreg/does-not-exist:${i}`);
      await until(
        'Stalled',
        async () => {
          const now = await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name: 'bench' });
          return (now?.status?.conditions ?? []).some((c: { type: string; status: string; observedGeneration: number }) => c.type === 'Stalled' && c.status === 'True' && c.observedGeneration === now!.metadata.generation);
        },
        60_000,
        50,
      );
      stalled.push(performance.now() - t0);
      live = await cr({ LOG_LEVEL: live.spec.settings.LOG_LEVEL });
      await readyAt(live.metadata.generation!);
    }
    rows.push(`| bad image → Stalled | ${fmt(stalled)} | — |`);

    // 4. Idle.
    await new Promise((r) => setTimeout(r, 10_000)); // the last rollout settles
    const calls0 = client.calls;
    const writes0 = controller.stats.writes + controller.stats.statusWrites;
    await new Promise((r) => setTimeout(r, 60_000));
    rows.push(`| idle 60 s after convergence | ${client.calls - calls0} API requests, ${controller.stats.writes + controller.stats.statusWrites - writes0} writes | 0 writes |`);

    // 5. Memory (after a full GC when node runs with --expose-gc, as npm run bench:operator does).
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const converged = process.memoryUsage();
    for (let i = 0; i < 1000; i++) await controller.reconcile(`${NS}/bench`);
    gc?.();
    const after = process.memoryUsage();
    rows.push(
      `| RSS after convergence / after 1,000 more reconciles | ${mib(converged.rss)} / ${mib(after.rss)} (heap used ${mib(converged.heapUsed)} / ${mib(after.heapUsed)}; the bench process, controller in it${gc ? ', after a full GC' : ''}) | ≤ 160 MB |`,
    );
  } finally {
    // While the controller still runs, so that its finalizer is honoured.
    await client.delete({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name: 'bench' }).catch(() => false);
    await until('the resource to go', async () => (await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name: 'bench' })) === undefined, 120_000, 200).catch(() => {});
    await controller.stop();
    client.close();
    await deleteNamespace(NS);
    await deleteNamespace(CLI_NS);
  }
  console.log(`\n| measure | result | goal (notes §8) |\n|---|---|---|\n${rows.join('\n')}`);
  for (const row of await installedOperator()) console.log(row);
}

/** The operator image as `kreg operator install` runs it: memory of the leading pod. */
async function installedOperator(): Promise<string[]> {
  const SYSTEM = 'kreg-bench-system';
  const TEAM = 'kreg-bench-installed';
  const kregOk = async (args: string[]) => {
    const r = await kreg(args, 300_000);
    if (r.code !== 0) throw new Error(`kreg ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  };
  const client = await KubeClient.create({ kubeconfig: KUBECONFIG });
  await deleteNamespace(TEAM);
  await kregOk(['operator', 'install', '--namespace', SYSTEM]);
  const leaderPod = async () => {
    const holder = (await client.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: SYSTEM, name: 'kreg-operator' }))!.spec.holderIdentity as string;
    return holder.slice(0, holder.lastIndexOf('_'));
  };
  const rssOf = async (pod: string) => Number(/VmRSS:\s+(\d+) kB/.exec(await kubectl(['-n', SYSTEM, 'exec', pod, '--', 'cat', '/proc/1/status']))![1]) * 1024;
  try {
    await kubectl(['create', 'namespace', TEAM]);
    await client.apply({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'bench', namespace: TEAM }, spec: { image: IMAGE, database: { mode: 'embedded', storage: '1Gi' } } }, { fieldManager: 'bench' });
    await until('Ready (installed operator)', async () => {
      const now = await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: TEAM, name: 'bench' });
      return (now?.status?.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
    });
    await new Promise((r) => setTimeout(r, 5000));
    const pod = await leaderPod();
    const converged = await rssOf(pod);
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) {
      const stamp = `bench-${i}`;
      await client.request('PATCH', `/apis/${API_VERSION}/namespaces/${TEAM}/registrationservices/bench`, {
        contentType: 'application/merge-patch+json',
        body: { metadata: { annotations: { 'reconcile.kreg.dev/requestedAt': stamp } } },
      });
      await until('the request handled', async () => (await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: TEAM, name: 'bench' }))?.status?.lastHandledReconcileAt === stamp, 60_000, 5).catch(async (err: Error) => {
        const now = await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: TEAM, name: 'bench' });
        const logs = await kubectl(['-n', SYSTEM, 'logs', pod, '--tail=20']).catch((e: Error) => e.message);
        throw new Error(`${err.message} (request ${i} of 1000; status ${JSON.stringify(now?.status)}; leader's last lines:\n${logs})`);
      });
    }
    const perReconcile = (performance.now() - t0) / 1000;
    const after = await rssOf(pod);
    if ((await leaderPod()) !== pod) throw new Error('the leader changed during the measurement');
    return [
      `| the installed operator (its image, in the cluster): RSS of the leader after convergence / after 1,000 requested reconciles | ${mib(converged)} / ${mib(after)} (${perReconcile.toFixed(0)} ms per requested reconcile, request to status) | ≤ 160 MB |`,
    ];
  } finally {
    await client.delete({ apiVersion: API_VERSION, kind: KIND, namespace: TEAM, name: 'bench' }).catch(() => false);
    await until('the resource to go', async () => (await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: TEAM, name: 'bench' })) === undefined, 120_000, 200).catch(() => {});
    await deleteNamespace(TEAM);
    await kregOk(['operator', 'uninstall', '--namespace', SYSTEM]);
    client.close();
  }
}

await main();
