/**
 * `reconcileOnce` on the real cluster, as a controller will call it: an instance synthesized from a
 * spec (not a named environment) into its own namespace, reconciled call by call until ready; then a
 * bad image, reconciled until it fails with the pull error as evidence.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeClient } from '../../infra/engine/client.js';
import { reconcileOnce, type ReconcileMemo, type ReconcileResult, type ReconcileStatus, type Target } from '../../infra/engine/reconcile.js';
import { synth } from '../../infra/main.js';
import { deleteNamespace, diagnostics, failureTracker, KUBECONFIG, kubectl, kubectlJson } from './kube.js';

const NS = 'kreg-reconcile';
const target: Target = { set: { name: 'accounts', namespace: NS } };
const spec = { image: 'kreg/registration:dev', database: { mode: 'embedded', storage: '1Gi' }, settings: { LOG_LEVEL: 'info' } } as const;
const { guard, failed } = failureTracker();

/** Calls reconcileOnce as a controller would, until it stops saying progressing; returns every status seen. */
async function reconcileUntilSettled(client: KubeClient, image: string, limitMs: number): Promise<{ statuses: ReconcileStatus[]; last: ReconcileResult; ms: number }> {
  const objects = synth('accounts', NS, { ...spec, image });
  const statuses: ReconcileStatus[] = [];
  let memo: ReconcileMemo | undefined;
  const t0 = performance.now();
  for (;;) {
    const r = await reconcileOnce(client, objects, target, { forceConflicts: false, prune: true, wait: true, description: `reconcile ${image}` }, memo);
    statuses.push(r.status);
    if (r.status !== 'progressing') return { statuses, last: r, ms: performance.now() - t0 };
    assert.ok(performance.now() - t0 < limitMs, `still progressing after ${limitMs} ms: ${JSON.stringify(r.waitingOn)}`);
    memo = r.memo;
    await new Promise((res) => setTimeout(res, r.requeueAfterMs));
  }
}

describe('reconcileOnce on a real cluster', { timeout: 10 * 60_000 }, () => {
  let client: KubeClient;
  before(async () => {
    await deleteNamespace(NS);
    await kubectl(['create', 'namespace', NS]);
    await kubectl(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=restricted']);
    client = await KubeClient.create({ kubeconfig: KUBECONFIG });
  });
  after(async () => {
    if (failed()) console.log(await diagnostics(NS));
    client?.close();
    await deleteNamespace(NS);
  });

  it(
    'a fresh instance: progressing, then ready, with names from the instance',
    guard(async () => {
      const { statuses, last, ms } = await reconcileUntilSettled(client, 'kreg/registration:dev', 180_000);
      assert.equal(last.status, 'ready', JSON.stringify(last.failure));
      assert.equal(statuses[0], 'progressing', 'the first call applies and finds the pod not ready yet');
      assert.ok(statuses.slice(0, -1).every((s) => s === 'progressing'), statuses.join(','));
      assert.equal(last.revision, 1);
      console.log(`# reconcileOnce: ready after ${statuses.length} calls, ${(ms / 1000).toFixed(1)} s`);
      const dep = await kubectlJson(['-n', NS, 'get', 'deployment', 'accounts']);
      assert.equal(dep.status.readyReplicas, 1);
      await kubectl(['-n', NS, 'get', 'service/accounts', 'configmap/accounts-config', 'pvc/accounts-data']);

      // A call on a converged instance changes nothing.
      const again = await reconcileOnce(client, synth('accounts', NS, spec), target, { forceConflicts: false, prune: true, wait: true, description: 'again' });
      assert.equal(again.status, 'ready');
      assert.equal(again.changed, false);
      assert.ok(again.apiCalls <= 30, `${again.apiCalls} API calls for a no-op reconcile`);
    }),
  );

  it(
    'a bad image: failed with the pull error as evidence, in seconds',
    guard(async () => {
      const { last, ms } = await reconcileUntilSettled(client, 'kreg/does-not-exist:1', 120_000);
      assert.equal(last.status, 'failed');
      assert.equal(last.failure!.kind, 'failed');
      assert.equal(last.failure!.ref?.kind, 'Deployment');
      assert.match(last.failure!.message, /ErrImagePull|ImagePullBackOff/);
      assert.match(last.failure!.evidence!.events.join('\n'), /kreg\/does-not-exist:1/);
      console.log(`# reconcileOnce: bad image failed after ${(ms / 1000).toFixed(1)} s: ${last.failure!.message}`);
      const dep = await kubectlJson(['-n', NS, 'get', 'deployment', 'accounts']);
      assert.equal(dep.status.availableReplicas, 1, 'the old pod still serves');
    }),
  );
});
