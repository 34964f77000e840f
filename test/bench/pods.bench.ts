/**
 * `npm run bench:pods` — how fast pods of the service start on the local cluster, the current image
 * and probes beside a baseline in the same run: a deleted pod's replacement from created to Ready,
 * and a rolling update of 3 replicas (over one PostgreSQL) to all ready. Rounds alternate between
 * the two, so drift on a shared machine hits both alike.
 *
 * The baseline is BENCH_BASELINE_IMAGE (default kreg/registration:before) with the probes the charts
 * had before the process answered liveness while starting: a startup probe on /livez every second,
 * readiness every 5 s (timeout 3 s, 2 failures). Build it from an older commit, e.g.
 *   git worktree add /tmp/kreg-before 6d8315d && (cd /tmp/kreg-before && npm ci &&
 *     bash test/cluster/image.sh kreg/registration:before) && test/cluster/load-image.sh kreg/registration:before
 * Needs the local cluster with kreg/registration:dev and kreg/postgres:15 loaded.
 * Environment: BENCH_ROUNDS (default 3), BENCH_IMAGE (default kreg/registration:dev).
 */
import { KubeClient } from '../../infra/engine/client.js';
import { deploy } from '../../infra/engine/deploy.js';
import type { KubeObject } from '../../infra/engine/index.js';
import { synth } from '../../infra/main.js';
import { deleteNamespace, KUBECONFIG, kubectl } from '../e2e/kube.js';

const NS = 'kreg-pods-bench';
const IMAGE = process.env.BENCH_IMAGE ?? 'kreg/registration:dev';
const BASELINE = process.env.BENCH_BASELINE_IMAGE ?? 'kreg/registration:before';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SELECTOR = 'app.kubernetes.io/instance=pods,app.kubernetes.io/component=api';

interface Variant {
  name: string;
  image: string;
  /** Rewrites the Deployment's container as the variant runs it. */
  patch(container: any): void;
}
const variants: Variant[] = [
  { name: `baseline (${BASELINE}, startup probe)`, image: BASELINE, patch: (c) => {
    c.readinessProbe = { ...c.readinessProbe, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 2 };
    c.startupProbe = { httpGet: { path: '/livez', port: 8080, scheme: 'HTTP' }, periodSeconds: 1, timeoutSeconds: 2, failureThreshold: 120 };
  } },
  { name: `current (${IMAGE})`, image: IMAGE, patch: () => undefined },
];

const client = await KubeClient.create({ kubeconfig: KUBECONFIG });
let generation = 0;
/** Deploys the variant with 3 replicas (a setting changed every time, so every pod rolls); seconds to all ready. */
async function rollTo(v: Variant): Promise<number> {
  generation++;
  const objects = synth('pods', NS, {
    image: v.image,
    replicas: 3,
    database: { mode: 'postgres', server: { storage: '1Gi' } },
    settings: { HASH_QUEUE_LIMIT: String(200 + generation) },
  }) as KubeObject[];
  const deployment = objects.find((o) => o.kind === 'Deployment') as any;
  v.patch(deployment.spec.template.spec.containers[0]);
  const t0 = performance.now();
  const report = await deploy(client, objects, { set: { name: 'pods-bench', namespace: NS } }, { timeoutMs: 300_000, wait: true, prune: true, forceConflicts: false, description: `bench: ${v.name}` });
  if (!report.ok) throw new Error(`deploy of ${v.name} failed: ${report.failure?.message}`);
  return (performance.now() - t0) / 1000;
}

const ready = (p: any) => (p.status?.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True');

/** Deletes one ready pod; seconds from its replacement's creation (first seen, 25 ms polls) to Ready. */
async function replacePod(): Promise<number> {
  const pods = (await client.list('v1', 'Pod', { namespace: NS, labelSelector: SELECTOR })) as any[];
  const victim = pods.find((p) => ready(p) && !p.metadata.deletionTimestamp);
  if (!victim) throw new Error('no ready pod to delete');
  const known = new Set(pods.map((p) => p.metadata.uid));
  await client.delete({ apiVersion: 'v1', kind: 'Pod', namespace: NS, name: victim.metadata.name });
  let created: number | undefined;
  const deadline = performance.now() + 120_000;
  while (performance.now() < deadline) {
    const now = (await client.list('v1', 'Pod', { namespace: NS, labelSelector: SELECTOR })) as any[];
    const fresh = now.find((p) => !known.has(p.metadata.uid));
    if (fresh) {
      created ??= performance.now();
      if (ready(fresh)) return (performance.now() - created) / 1000;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the replacement pod did not become Ready within 120 s');
}

const results = new Map(variants.map((v) => [v.name, { start: [] as number[], roll: [] as number[] }]));
try {
  await deleteNamespace(NS);
  await kubectl(['create', 'namespace', NS]);
  console.log(`first deploy (PostgreSQL, migration, 3 replicas of the current image): ${(await rollTo(variants[1]!)).toFixed(1)} s`);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const v of variants) {
      const roll = await rollTo(v);
      // Let the rolled-away pods finish terminating, so the pod starts below are not disturbed.
      await new Promise((r) => setTimeout(r, 8000));
      const starts = [await replacePod(), await replacePod()];
      results.get(v.name)!.roll.push(roll);
      results.get(v.name)!.start.push(...starts);
      console.log(`round ${round}, ${v.name}: rolled 3 replicas in ${roll.toFixed(1)} s; replacement pods Ready ${starts.map((s) => s.toFixed(2)).join(', ')} s after created`);
    }
  }
} finally {
  client.close();
  await deleteNamespace(NS);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`\npods on the local cluster, ${ROUNDS} rounds alternating (${new Date().toISOString()}):`);
console.log('| | pod created → Ready, median (all) | rolling update of 3 replicas, median (all) |');
console.log('|---|---|---|');
for (const v of variants) {
  const r = results.get(v.name)!;
  console.log(`| ${v.name} | ${median(r.start).toFixed(2)} s (${r.start.map((s) => s.toFixed(2)).join(', ')}) | ${median(r.roll).toFixed(1)} s (${r.roll.map((s) => s.toFixed(1)).join(', ')}) |`);
}
