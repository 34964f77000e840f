/**
 * kreg takes nothing that is not its own, on a real kube-apiserver + etcd: an object that exists but
 * was not created by the set being deployed (no membership label of its ApplySet, not controlled by
 * its owner) is never applied over, merged, pruned or deleted — by the CLI's deploy, diff and
 * destroy, or by the operator — unless it is adopted: `--adopt` for the CLI, the object owner's
 * `kreg.dev/adopt` annotation for both.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADOPT_ANNOTATION } from '../../infra/engine/annotations.js';
import { KubeClient } from '../../infra/engine/client.js';
import { deploy } from '../../infra/engine/deploy.js';
import { diff } from '../../infra/engine/diff.js';
import type { EngineEvent } from '../../infra/engine/events.js';
import { APPLYSET_PART_OF_LABEL, applySetId } from '../../infra/engine/inventory.js';
import { destroy } from '../../infra/engine/lifecycle.js';
import type { Target } from '../../infra/engine/reconcile.js';
import { describeRef, refOf, type KubeObject } from '../../infra/engine/types.js';
import { synth } from '../../infra/main.js';
import { installCrd } from '../../infra/operator/install.js';
import { RegistrationServiceController } from '../../infra/operator/controller.js';
import { API_VERSION, KIND } from '../../infra/operator/crd.js';
import { binariesPresent, completeJob, eventually, startApiServer, type TestApiServer } from './apiserver.js';

const skip = binariesPresent() || process.env.CI ? false : 'no kube-apiserver/etcd build (run npm run cluster:up once)';

/** Created the way `kubectl create` creates it: field manager kubectl-create, no kreg label. */
async function createAsKubectl(client: KubeClient, obj: KubeObject): Promise<KubeObject> {
  const path = await client.collectionPath(obj.apiVersion, obj.kind, obj.metadata.namespace);
  return client.request<KubeObject>('POST', path, { body: obj, query: { fieldManager: 'kubectl-create' } });
}

/** A chart's object as someone else would have created it: without kreg's label or owner. */
function asSomeoneElses(obj: KubeObject): KubeObject {
  const copy = structuredClone(obj);
  delete copy.metadata.labels?.[APPLYSET_PART_OF_LABEL];
  delete copy.metadata.ownerReferences;
  return copy;
}

const configMap = (namespace: string, name: string, data: Record<string, string>, annotations?: Record<string, string>): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace, ...(annotations ? { annotations } : {}) },
  data,
});

const collect = () => {
  const events: EngineEvent[] = [];
  return { events, onEvent: (e: EngineEvent) => events.push(e) };
};

describe('the CLI path takes nothing that is not the set\'s', { skip, timeout: 180_000 }, () => {
  let server: TestApiServer;
  let client: KubeClient;

  before(async () => {
    server = await startApiServer();
    client = await KubeClient.create({ kubeconfig: server.kubeconfig });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  it('a ConfigMap created with kubectl is refused, not merged; destroy leaves it alone (the reproduction)', async () => {
    await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-b' } }, { fieldManager: 'test' });
    const theirs = await createAsKubectl(client, configMap('team-b', 'shared-cfg', { owner: 'team-b' }));
    const target: Target = { set: { name: 'mine', namespace: 'team-b' } };
    const ours = [configMap('team-b', 'shared-cfg', { mine: 'yes' })];

    const d = await diff(client, ours, target, { prune: true });
    assert.equal(d.failure?.kind, 'foreign', JSON.stringify(d.failure));
    const r = await deploy(client, ours, target, { forceConflicts: false, prune: true, wait: true, description: 'test', timeoutMs: 30_000 });
    assert.equal(r.ok, false);
    assert.equal(r.failure?.kind, 'foreign');
    assert.equal(r.failure?.retryable, false);
    assert.match(r.failure!.message, /1 object already exists and was not created by Secret\/team-b\/mine; nothing was applied/);
    assert.deepEqual(r.failure!.refs, [{ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'team-b', name: 'shared-cfg' }]);
    assert.deepEqual(r.failure!.details, [`ConfigMap/team-b/shared-cfg: managed by "kubectl-create"; its owner can hand it over with the annotation ${ADOPT_ANNOTATION}=Secret/team-b/mine`]);
    // --force-conflicts is about fields; it does not make someone else's object ours.
    const forced = await deploy(client, ours, target, { forceConflicts: true, prune: true, wait: true, description: 'test', timeoutMs: 30_000 });
    assert.equal(forced.failure?.kind, 'foreign');

    const live = await client.get(refOf(theirs));
    assert.deepEqual(live!.data, { owner: 'team-b' }, 'nothing merged');
    assert.equal(live!.metadata.labels?.[APPLYSET_PART_OF_LABEL], undefined, 'no membership label added');
    assert.equal(live!.metadata.resourceVersion, theirs.metadata.resourceVersion, 'not written at all');
    assert.equal(await client.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'team-b', name: 'mine' }), undefined, 'no ApplySet parent was recorded');
    const destroyed = await destroy(client, target, { includeKept: true, wait: true, timeoutMs: 10_000 });
    assert.equal(destroyed.absent, true);
    assert.ok(await client.get(refOf(theirs)), 'destroy deleted nothing');
  });

  it('next to a foreign object of every kind the charts render: refused with each named, nothing written; adopt takes them, destroy then deletes them and only them', async () => {
    const ns = 'every-kind';
    const embedded = synth('accounts', ns, { image: 'kreg/registration:1', database: { mode: 'embedded' } });
    const remote = synth('scaled', ns, {
      image: 'kreg/registration:1',
      database: { mode: 'remote', server: {}, authTokenSecretRef: { name: 'db', key: 'token' } },
      autoscaling: { minReplicas: 2, maxReplicas: 3 },
    });
    const namespace: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } };
    const desired = [namespace, ...embedded, ...remote];
    const kinds = new Set(desired.map((o) => o.kind));
    for (const kind of ['Namespace', 'ConfigMap', 'Service', 'ServiceAccount', 'PersistentVolumeClaim', 'Deployment', 'StatefulSet', 'Job', 'NetworkPolicy', 'PodDisruptionBudget', 'HorizontalPodAutoscaler']) {
      assert.ok(kinds.has(kind), `the charts render no ${kind} here: the test covers less than it says`);
    }
    const before = new Map<string, string>();
    for (const obj of desired) before.set(describeRef(refOf(obj)), (await createAsKubectl(client, asSomeoneElses(obj))).metadata.resourceVersion!);
    const neighbour = await createAsKubectl(client, configMap(ns, 'neighbour', { keep: 'me' }));

    const target: Target = { set: { name: 'kreg-every-kind', namespace: ns } };
    const refused = await deploy(client, desired, target, { forceConflicts: true, prune: true, wait: false, description: 'test', timeoutMs: 30_000 });
    assert.equal(refused.failure?.kind, 'foreign', JSON.stringify(refused.failure));
    assert.deepEqual(new Set(refused.failure!.refs!.map(describeRef)), new Set(before.keys()), 'every existing object is named');
    for (const line of refused.failure!.details!) assert.match(line, /managed by "kubectl-create"/);
    for (const obj of desired) {
      const live = await client.get(refOf(obj));
      assert.equal(live!.metadata.resourceVersion, before.get(describeRef(refOf(obj))), `${describeRef(refOf(obj))} was written`);
    }

    // Adopting a namespace would make everything in it go with the set: the rest is adopted here.
    const namespaced = desired.filter((o) => o.kind !== 'Namespace');
    for (const job of namespaced.filter((o) => o.kind === 'Job')) await completeJob(client, { namespace: job.metadata.namespace!, name: job.metadata.name });
    const { events, onEvent } = collect();
    const adopted = await deploy(client, namespaced, target, { forceConflicts: true, adopt: true, prune: true, wait: false, description: 'test', timeoutMs: 30_000, onEvent });
    assert.equal(adopted.ok, true, JSON.stringify(adopted.failure));
    const warnings = events.filter((e): e is Extract<EngineEvent, { type: 'warning' }> => e.type === 'warning' && /^adopting /.test(e.message));
    assert.equal(warnings.length, namespaced.length, 'each adoption is reported');
    const id = applySetId(target.set);
    for (const obj of namespaced) assert.equal((await client.get(refOf(obj)))!.metadata.labels?.[APPLYSET_PART_OF_LABEL], id, `${describeRef(refOf(obj))} is a member now`);
    const again = await deploy(client, namespaced, target, { forceConflicts: false, prune: true, wait: false, description: 'test', timeoutMs: 30_000 });
    assert.equal(again.ok, true, 'members need no --adopt the next time');

    const destroyed = await destroy(client, target, { includeKept: true, wait: false, timeoutMs: 10_000 });
    assert.equal(destroyed.ok, true);
    assert.deepEqual(new Set(destroyed.deleted.map(describeRef)), new Set(namespaced.map((o) => describeRef(refOf(o)))));
    const left = await client.get(refOf(neighbour));
    assert.ok(left && !left.metadata.deletionTimestamp, 'the neighbour that was never in the set is left alone');
    assert.ok(await client.get(refOf(namespace)), 'and so is the namespace, never adopted');
  });

  it('an object its owner annotated for this set is adopted without --adopt; one annotated for another set is not', async () => {
    await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'consent' } }, { fieldManager: 'test' });
    await createAsKubectl(client, configMap('consent', 'handed-over', { old: '1' }, { [ADOPT_ANNOTATION]: 'Secret/consent/mine' }));
    await createAsKubectl(client, configMap('consent', 'for-someone-else', { old: '1' }, { [ADOPT_ANNOTATION]: 'Secret/consent/theirs' }));
    const target: Target = { set: { name: 'mine', namespace: 'consent' } };
    const refused = await deploy(client, [configMap('consent', 'handed-over', { new: '1' }), configMap('consent', 'for-someone-else', { new: '1' })], target, {
      forceConflicts: false,
      prune: true,
      wait: false,
      description: 'test',
      timeoutMs: 30_000,
    });
    assert.deepEqual(refused.failure?.refs?.map((r) => r.name), ['for-someone-else']);
    const taken = await deploy(client, [configMap('consent', 'handed-over', { new: '1' })], target, { forceConflicts: false, prune: true, wait: false, description: 'test', timeoutMs: 30_000 });
    assert.equal(taken.ok, true, JSON.stringify(taken.failure));
    const live = await client.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'consent', name: 'handed-over' });
    assert.equal(live!.data.new, '1');
    assert.equal(live!.metadata.labels?.[APPLYSET_PART_OF_LABEL], applySetId(target.set));
  });
});

describe('the operator takes nothing that is not its resource\'s', { skip, timeout: 180_000 }, () => {
  const NS = 'team-a';
  let server: TestApiServer;
  let client: KubeClient;
  let controller: RegistrationServiceController;
  const logs: Array<Record<string, unknown>> = [];
  const condition = (obj: KubeObject | undefined, type: string) => (obj?.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
  const getResource = (name: string) => client.get({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name });
  const create = (name: string, spec: Record<string, unknown>) => client.apply({ apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace: NS }, spec }, { fieldManager: 'user' });
  const stalledOnForeign = (name: string) =>
    eventually(`${name} to be Stalled on a foreign object`, async () => {
      const now = await getResource(name);
      return condition(now, 'Stalled')?.status === 'True' && condition(now, 'Stalled')?.reason === 'ForeignObject' ? now : undefined;
    });
  const foreignService = (name: string): KubeObject => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: NS, labels: { app: name } },
    spec: { selector: { app: 'team-b-app' }, ports: [{ name: 'web', port: 5678, targetPort: 5678 }] },
  });

  before(async () => {
    server = await startApiServer();
    client = await KubeClient.create({ kubeconfig: server.kubeconfig });
    await installCrd(client, () => {});
    await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } }, { fieldManager: 'test' });
    controller = new RegistrationServiceController(client, { log: (e) => logs.push(e) });
    await eventually('the controller to start', async () => {
      await controller.start();
      return true;
    });
  });
  after(async () => {
    await controller?.stop();
    client?.close();
    await server?.stop();
  });

  it('a Service created with kubectl is not rewritten or owned: Stalled ForeignObject naming it, an Event, nothing written (the reproduction)', async () => {
    const theirs = await createAsKubectl(client, foreignService('other-team'));
    await create('other-team', { image: 'kreg/registration:1' });
    const stalled = await stalledOnForeign('other-team');
    const message = condition(stalled, 'Stalled').message as string;
    assert.match(message, /already exists and was not created by RegistrationService\/team-a\/other-team/);
    assert.match(message, /Service\/team-a\/other-team: managed by "kubectl-create"/);
    assert.match(message, /kreg\.dev\/adopt=RegistrationService\/team-a\/other-team/);
    assert.equal(condition(stalled, 'Ready').status, 'False');

    const live = await client.get(refOf(theirs));
    assert.equal(live!.metadata.resourceVersion, theirs.metadata.resourceVersion, 'the Service was not written');
    assert.deepEqual(live!.spec.selector, { app: 'team-b-app' });
    assert.equal(live!.metadata.ownerReferences, undefined, 'no owner reference: deleting the resource cannot take it');
    assert.equal(await client.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: NS, name: 'other-team-config' }), undefined, 'no other child was applied either');
    const events = await eventually('the ForeignObject event', async () => {
      const all = (await client.list('v1', 'Event', { namespace: NS })).filter((e) => e.reason === 'ForeignObject' && e.involvedObject?.name === 'other-team');
      return all.length ? all : undefined;
    });
    assert.equal(events[0]!.type, 'Warning');
  });

  it('the owner\'s annotation hands the object over: picked up at once, not at the stalled recheck', async () => {
    const t0 = performance.now();
    await client.request('PATCH', `/api/v1/namespaces/${NS}/services/other-team`, {
      contentType: 'application/merge-patch+json',
      query: { fieldManager: 'kubectl-annotate' },
      body: { metadata: { annotations: { [ADOPT_ANNOTATION]: `${KIND}/${NS}/other-team` } } },
    });
    const cr = await getResource('other-team');
    const service = await eventually('the Service to be taken over', async () => {
      const s = await client.get({ apiVersion: 'v1', kind: 'Service', namespace: NS, name: 'other-team' });
      return s?.metadata.ownerReferences?.some((o) => o.uid === cr!.metadata.uid) ? s : undefined;
    }, 10_000);
    const tookMs = performance.now() - t0;
    assert.equal(service.metadata.labels![APPLYSET_PART_OF_LABEL], applySetId({ name: 'other-team', namespace: NS, parent: { apiVersion: API_VERSION, kind: KIND } }));
    assert.notDeepEqual(service.spec.selector, { app: 'team-b-app' }, 'now the resource\'s Service');
    await eventually('Stalled to clear', async () => condition(await getResource('other-team'), 'Stalled')?.status === 'False');
    console.log(`# adoption by annotation: Service taken over ${tookMs.toFixed(0)} ms after the annotation`);
  });

  it('a foreign object deleted by its owner frees the resource at once', async () => {
    await createAsKubectl(client, configMap(NS, 'late-config', { owner: 'team-b' }));
    await create('late', { image: 'kreg/registration:1' });
    await stalledOnForeign('late');
    await client.delete({ apiVersion: 'v1', kind: 'ConfigMap', namespace: NS, name: 'late-config' });
    const cm = await eventually('the resource\'s own ConfigMap', async () => {
      const c = await client.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: NS, name: 'late-config' });
      return c?.metadata.ownerReferences?.length ? c : undefined;
    }, 10_000);
    assert.equal(cm.data.owner, undefined);
  });

  it('deleting a resource stalled on a foreign object leaves that object alone', async () => {
    const theirs = await createAsKubectl(client, foreignService('doomed'));
    await create('doomed', { image: 'kreg/registration:1' });
    await stalledOnForeign('doomed');
    await client.delete({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name: 'doomed' });
    await eventually('the resource to be gone', async () => (await getResource('doomed')) === undefined, 30_000);
    const live = await client.get(refOf(theirs));
    assert.ok(live && !live.metadata.deletionTimestamp, 'the foreign Service is still there');
    assert.equal(live.metadata.resourceVersion, theirs.metadata.resourceVersion);
  });
});
