/**
 * The RegistrationService controller against a real kube-apiserver + etcd. Nothing runs pods here,
 * so a Deployment never becomes ready: these tests cover the mechanics (children applied with owner
 * references, the resource as ApplySet parent, status and its conditions, drift put back, suspend,
 * requestedAt, no write loop when idle, deletion through the finalizer), and the cluster e2e covers
 * Ready=True.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeClient } from '../../infra/engine/client.js';
import { applySetId } from '../../infra/engine/inventory.js';
import type { KubeObject } from '../../infra/engine/types.js';
import { FINALIZER, RegistrationServiceController, REQUESTED_AT_ANNOTATION, type ControllerOptions } from '../../infra/operator/controller.js';
import { installCrd } from '../../infra/operator/install.js';
import { API_VERSION, KIND } from '../../infra/operator/crd.js';
import type { Informer } from '../../infra/operator/informer.js';
import { binariesPresent, eventually, startApiServer, type TestApiServer } from './apiserver.js';

const skip = binariesPresent() || process.env.CI ? false : 'no kube-apiserver/etcd build (run npm run cluster:up once)';
const NS = 'ops';

/**
 * A kube-apiserver with the CRD installed and `namespace` created, and a controller started on it
 * (once its watches have listed; the first attempts can race the CRD becoming served).
 */
async function startControllerOnApiServer(namespace: string, options: ControllerOptions): Promise<{ server: TestApiServer; client: KubeClient; controller: RegistrationServiceController }> {
  const server = await startApiServer();
  const client = await KubeClient.create({ kubeconfig: server.kubeconfig });
  await installCrd(client, () => {});
  await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }, { fieldManager: 'test' });
  const controller = new RegistrationServiceController(client, options);
  await eventually('the controller to start', async () => {
    await controller.start();
    return true;
  });
  return { server, client, controller };
}

describe('RegistrationService controller on a real API server', { skip, timeout: 180_000 }, () => {
  let server: TestApiServer;
  let client: KubeClient;
  let controller: RegistrationServiceController;
  const resourcePath = (name: string) => `/apis/${API_VERSION}/namespaces/${NS}/registrationservices/${name}`;
  const getResource = (name: string) => client.get({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name });
  const getChild = (kind: string, name: string, apiVersion = 'v1') => client.get({ apiVersion, kind, namespace: NS, name });
  const condition = (obj: KubeObject | undefined, type: string) => (obj?.status?.conditions ?? []).find((c: { type: string }) => c.type === type);

  before(async () => {
    // Every namespace, as `kreg operator install` runs it.
    ({ server, client, controller } = await startControllerOnApiServer(NS, { ...(process.env.KREG_TEST_LOG ? { log: (e) => console.log(JSON.stringify(e)) } : {}) }));
  });
  after(async () => {
    await controller?.stop();
    client?.close();
    await server?.stop();
  });

  const create = (name: string, spec: Record<string, unknown>) =>
    client.apply({ apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace: NS }, spec }, { fieldManager: 'user' });

  it('a new resource: children applied with owner references, the resource is their ApplySet parent, status says why not ready', async () => {
    const cr = await create('accounts', { image: 'kreg/registration:1.2.3', database: { mode: 'embedded', storage: '1Gi' } });
    const deployment = await eventually('the Deployment', () => getChild('Deployment', 'accounts', 'apps/v1'));
    assert.equal(deployment.spec.template.spec.containers[0].image, 'kreg/registration:1.2.3');
    const config = await getChild('ConfigMap', 'accounts-config');
    assert.deepEqual(config!.metadata.ownerReferences!.map((o) => [o.kind, o.name, o.uid, o.controller]), [[KIND, 'accounts', cr.metadata.uid, true]]);
    const claim = await getChild('PersistentVolumeClaim', 'accounts-data');
    assert.equal(claim!.metadata.ownerReferences, undefined, 'the data claim is not owned: it outlives the resource');

    const withStatus = await eventually('status conditions', async () => {
      const now = await getResource('accounts');
      return condition(now, 'Reconciling')?.status === 'True' ? now : undefined;
    });
    const set = { name: 'accounts', namespace: NS, parent: { apiVersion: API_VERSION, kind: KIND } };
    assert.equal(withStatus.metadata.labels!['applyset.kubernetes.io/id'], applySetId(set));
    assert.ok(withStatus.metadata.finalizers!.includes(FINALIZER));
    assert.equal(withStatus.status.observedGeneration, 1);
    assert.equal(condition(withStatus, 'Ready').status, 'False');
    assert.equal(condition(withStatus, 'Ready').observedGeneration, 1);
    assert.match(condition(withStatus, 'Ready').message, /Deployment\/accounts|Service\/accounts|PersistentVolumeClaim\/accounts-data/);
    assert.equal(condition(withStatus, 'Stalled').status, 'False');
    assert.equal(withStatus.status.url, 'http://accounts.ops.svc.cluster.local');
  });

  it('drift is put back: a deleted ConfigMap and an edited one', async () => {
    await client.delete({ apiVersion: 'v1', kind: 'ConfigMap', namespace: NS, name: 'accounts-config' });
    const t0 = performance.now();
    await eventually('the ConfigMap to come back', () => getChild('ConfigMap', 'accounts-config'), 10_000);
    const restoredMs = performance.now() - t0;
    // Another manager takes over a setting the operator renders.
    await client.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'accounts-config', namespace: NS }, data: { HASH_CONCURRENCY: '1' } }, { fieldManager: 'someone-else', force: true });
    await eventually('the edit to be undone', async () => (await getChild('ConfigMap', 'accounts-config'))?.data?.HASH_CONCURRENCY === '2', 10_000);
    const events = await eventually('drift events', async () => {
      const all = (await client.list('v1', 'Event', { namespace: NS })).filter((e) => e.reason === 'DriftCorrected');
      return all.length >= 2 ? all : undefined;
    });
    const messages = events.map((e) => `${e.type} ${e.message}`).join('\n');
    assert.match(messages, /Warning ConfigMap\/accounts-config was deleted; created again/);
    assert.match(messages, /Warning ConfigMap\/accounts-config: \.data\.HASH_CONCURRENCY changed by "someone-else" \(Apply at [^)]+\); put back/);
    console.log(`# drift: deleted ConfigMap restored after ${restoredMs.toFixed(0)} ms`);
  });

  it('a key added with kubectl edit is removed; one another tool added stays (only hand edits are taken over)', async () => {
    const path = '/api/v1/namespaces/ops/configmaps/accounts-config';
    const edit = (fieldManager: string, data: Record<string, string>) =>
      client.request('PATCH', path, { contentType: 'application/merge-patch+json', query: { fieldManager }, body: { data } });
    await edit('other-tool', { OTHER_TOOL: 'kept' });
    await edit('kubectl-edit', { ADDED_BY_HAND: 'x' });
    await eventually('the hand-added key to be removed', async () => {
      const data = (await getChild('ConfigMap', 'accounts-config'))?.data ?? {};
      return !('ADDED_BY_HAND' in data) ? data : undefined;
    }, 10_000);
    const cm = await getChild('ConfigMap', 'accounts-config');
    assert.equal(cm!.data.OTHER_TOOL, 'kept', 'a field of a non-kubectl manager is left alone');
    assert.ok(!cm!.metadata.managedFields!.some((e: any) => e.manager === 'kubectl-edit' && JSON.stringify(e.fieldsV1).includes('ADDED_BY_HAND')));
    await client.request('PATCH', path, { contentType: 'application/json-patch+json', query: { fieldManager: 'other-tool' }, body: [{ op: 'remove', path: '/data/OTHER_TOOL' }] });
  });

  it('idle: no status write, no resourceVersion change of the resource', async () => {
    const before = await getResource('accounts');
    const writes = controller.stats.statusWrites;
    await new Promise((r) => setTimeout(r, 3000));
    const after = await getResource('accounts');
    assert.equal(controller.stats.statusWrites, writes, 'status writes while nothing changed');
    assert.equal(after!.metadata.resourceVersion, before!.metadata.resourceVersion);
  });

  it('two resources in one namespace reconcile independently, without collisions', async () => {
    await create('billing', { image: 'kreg/registration:2.0.0' });
    const dep = await eventually('billing\'s Deployment', () => getChild('Deployment', 'billing', 'apps/v1'));
    assert.equal(dep.spec.template.spec.containers[0].image, 'kreg/registration:2.0.0');
    const accounts = await getChild('Deployment', 'accounts', 'apps/v1');
    assert.equal(accounts!.spec.template.spec.containers[0].image, 'kreg/registration:1.2.3', 'untouched');
    assert.equal((await getChild('Service', 'billing'))!.spec.selector['app.kubernetes.io/instance'], 'billing');
  });

  it('the same name in another namespace is another resource: its own children and status', async () => {
    const other = 'ops-b';
    await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: other } }, { fieldManager: 'test' });
    await client.apply({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'accounts', namespace: other }, spec: { image: 'kreg/registration:3.0.0' } }, { fieldManager: 'user' });
    const dep = await eventually('the other namespace\'s Deployment', () => client.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: other, name: 'accounts' }));
    assert.equal(dep.spec.template.spec.containers[0].image, 'kreg/registration:3.0.0');
    assert.equal((await getChild('Deployment', 'accounts', 'apps/v1'))!.spec.template.spec.containers[0].image, 'kreg/registration:1.2.3', 'untouched');
    const otherCr = await eventually('its status', async () => {
      const cr = await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: other, name: 'accounts' });
      return cr?.status?.observedGeneration === cr?.metadata.generation ? cr : undefined;
    });
    assert.equal(otherCr.status.url, `http://accounts.${other}.svc.cluster.local`);
    assert.equal((await getResource('accounts'))!.status.url, `http://accounts.${NS}.svc.cluster.local`);
    await client.delete({ apiVersion: API_VERSION, kind: KIND, namespace: other, name: 'accounts' });
    await eventually('it to be gone', async () => (await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: other, name: 'accounts' })) === undefined, 30_000);
  });

  it('a spec change is applied; suspend stops drift correction and says so; resume corrects it', async () => {
    await create('accounts', { image: 'kreg/registration:1.2.4', database: { mode: 'embedded', storage: '1Gi' } });
    await eventually('the new image', async () => (await getChild('Deployment', 'accounts', 'apps/v1'))?.spec.template.spec.containers[0].image === 'kreg/registration:1.2.4');

    await create('accounts', { image: 'kreg/registration:1.2.4', database: { mode: 'embedded', storage: '1Gi' }, suspend: true });
    await eventually('Suspended in status', async () => condition(await getResource('accounts'), 'Reconciling')?.reason === 'Suspended');
    await client.delete({ apiVersion: 'v1', kind: 'ConfigMap', namespace: NS, name: 'accounts-config' });
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await getChild('ConfigMap', 'accounts-config'), undefined, 'suspended: drift stays');

    await create('accounts', { image: 'kreg/registration:1.2.4', database: { mode: 'embedded', storage: '1Gi' }, suspend: false });
    await eventually('the ConfigMap after resuming', () => getChild('ConfigMap', 'accounts-config'), 10_000);
  });

  it('reconcile.kreg.dev/requestedAt triggers a reconcile and is recorded as handled', async () => {
    const before = controller.stats.reconciles;
    await client.request('PATCH', resourcePath('billing'), {
      body: { metadata: { annotations: { [REQUESTED_AT_ANNOTATION]: '2026-11-29T04:00:00Z' } } },
      contentType: 'application/merge-patch+json',
    });
    const cr = await eventually('lastHandledReconcileAt', async () => {
      const now = await getResource('billing');
      return now?.status?.lastHandledReconcileAt === '2026-11-29T04:00:00Z' ? now : undefined;
    });
    assert.ok(cr);
    assert.ok(controller.stats.reconciles > before);
  });

  it('deletion prunes the children through the finalizer and keeps the data claim (or deletes it under the policy)', async () => {
    await client.delete({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name: 'accounts' });
    await eventually('the resource to be gone', async () => (await getResource('accounts')) === undefined, 30_000);
    assert.equal(await getChild('Deployment', 'accounts', 'apps/v1'), undefined);
    assert.equal(await getChild('ConfigMap', 'accounts-config'), undefined);
    assert.ok(await getChild('PersistentVolumeClaim', 'accounts-data'), 'the data claim is kept');

    await create('billing', { image: 'kreg/registration:2.0.0', dataDeletionPolicy: 'Delete' });
    await eventually('billing\'s claim to be owned', async () => (await getChild('PersistentVolumeClaim', 'billing-data'))?.metadata.ownerReferences?.length === 1);
    await client.delete({ apiVersion: API_VERSION, kind: KIND, namespace: NS, name: 'billing' });
    await eventually('billing to be gone', async () => (await getResource('billing')) === undefined, 30_000);
    const claim = await getChild('PersistentVolumeClaim', 'billing-data');
    assert.ok(claim === undefined || claim.metadata.deletionTimestamp, 'the claim is deleted under dataDeletionPolicy: Delete');
  });
});

describe('a spec change the watch has not delivered when the status is written', { skip, timeout: 120_000 }, () => {
  const RACE = 'race';
  let server: TestApiServer;
  let client: KubeClient;
  let controller: RegistrationServiceController;
  const resource = (logLevel: string): KubeObject => ({
    apiVersion: API_VERSION,
    kind: KIND,
    // The finalizer is there from the start, so the controller's first step (adding it, guarded by
    // the resourceVersion it read) does not conflict with the change made behind its back.
    metadata: { name: 'billing', namespace: RACE, finalizers: [FINALIZER] },
    spec: { image: 'kreg/registration:1.0.0', database: { mode: 'embedded', storage: '1Gi' }, settings: { LOG_LEVEL: logLevel } },
  });
  const logLevel = async () => (await client.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: RACE, name: 'billing-config' }))?.data?.LOG_LEVEL;

  before(async () => {
    ({ server, client, controller } = await startControllerOnApiServer(RACE, { namespace: RACE }));
  });
  after(async () => {
    await controller?.stop();
    client?.close();
    await server?.stop();
  });

  it('is reconciled at once, not at the resync minutes later', async () => {
    // The watches stop delivering here, as they do for a while after an API server restart (and
    // the children's would otherwise queue the resource again by chance). The test stands in for
    // the resources' watch once: the creation is delivered, the change is not.
    const { resources, children } = controller as unknown as { resources: Informer; children: Informer[] };
    await Promise.all([resources, ...children].map((informer) => informer.stop()));
    const created = await client.apply(resource('info'), { fieldManager: 'user' });
    resources.store.set(`${RACE}/billing`, created);
    const changed = await client.apply(resource('warn'), { fieldManager: 'user' });
    assert.equal(changed.metadata.generation, 2);
    // Reconciles generation 1; its status write answers with generation 2.
    await controller.reconcile(`${RACE}/billing`);
    assert.equal(await logLevel(), 'info', 'generation 1 was applied');
    await eventually('generation 2 applied', async () => (await logLevel()) === 'warn', 10_000);
    await eventually('status for generation 2', async () => (await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: RACE, name: 'billing' }))?.status?.observedGeneration === 2, 10_000);
  });
});
