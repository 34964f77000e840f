/**
 * The engine's orchestration against a real kube-apiserver + etcd (no kubelet, no controllers):
 * stage composition and gates in `reconcileOnce`, prune decisions, guarded parent and revision
 * writes, diff and deploy agreeing on failures, discovery of a CRD installed later, cancellation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { APPLYSET_GROUP_KINDS_ANNOTATION, applySetId, parentRefOf, readParent, type ApplySetRef } from '../../infra/engine/inventory.js';
import { KubeClient, type KubeApi } from '../../infra/engine/client.js';
import { deploy } from '../../infra/engine/deploy.js';
import { diff } from '../../infra/engine/diff.js';
import type { EngineEvent } from '../../infra/engine/events.js';
import { reconcileOnce, writeParent, type ReconcileOptions, type Target } from '../../infra/engine/reconcile.js';
import { listRevisions, recordRevision } from '../../infra/engine/revisions.js';
import type { KubeObject } from '../../infra/engine/types.js';
import { binariesPresent, completeJob, startApiServer, type TestApiServer } from './apiserver.js';

// In CI the build ran first: a missing binary must fail there, not skip.
const skip = binariesPresent() || process.env.CI ? false : 'no kube-apiserver/etcd build (run npm run cluster:up once)';

const ns = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const cm = (namespace: string, name: string, data: Record<string, string> = { a: '1' }, extra: Partial<KubeObject['metadata']> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace, ...extra },
  data,
});
const job = (namespace: string, name: string): KubeObject => ({
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: { name, namespace },
  spec: {
    template: { spec: { restartPolicy: 'Never', containers: [{ name: 'x', image: 'busybox:1', command: ['true'] }] } },
  },
});

/** A CRD in the test group `example.kreg.dev`, version v1, with `spec` fields of the given types. */
function crd(kind: string, scope: 'Namespaced' | 'Cluster', specFields: Record<string, string>, labels: Record<string, string> = {}): KubeObject {
  const singular = kind.toLowerCase();
  const properties = Object.fromEntries(Object.entries(specFields).map(([k, type]) => [k, { type }]));
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${singular}s.example.kreg.dev`, labels },
    spec: {
      group: 'example.kreg.dev',
      scope,
      names: { plural: `${singular}s`, singular, kind },
      versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties } } } } }],
    },
  };
}

function options(extra: Partial<ReconcileOptions> = {}): ReconcileOptions & { events: EngineEvent[] } {
  const events: EngineEvent[] = [];
  return { forceConflicts: false, prune: true, wait: true, description: 'test', onEvent: (e) => events.push(e), events, ...extra };
}

describe('engine orchestration on a real API server', { skip, timeout: 180_000 }, () => {
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

  it('reconcileOnce: applies, returns ready; a second call changes nothing and writes nothing', async () => {
    const target: Target = { set: { name: 'kreg-a', namespace: 'team-a' } };
    const objects = [ns('team-a'), cm('team-a', 'one'), cm('team-a', 'two')];
    const first = await reconcileOnce(client, objects, target, options());
    assert.equal(first.status, 'ready', JSON.stringify(first.failure));
    assert.equal(first.revision, 1);
    assert.deepEqual(first.objects.map((o) => o.change), ['create', 'create', 'create']);

    const o = options();
    const second = await reconcileOnce(client, objects, target, o);
    assert.equal(second.status, 'ready');
    assert.equal(second.changed, false);
    assert.equal(second.revision, 1, 'nothing changed, no revision');
    assert.ok(o.events.every((e) => e.type !== 'apply' || e.action === 'unchanged'), 'no apply sent');
    assert.ok(!o.events.some((e) => e.type === 'record'), 'nothing recorded');
    const live = await client.get(parentRefOf(target.set));
    assert.equal(live!.metadata.labels!['applyset.kubernetes.io/id'], applySetId(target.set));
  });

  it('reconcileOnce stops at a Job gate with progressing, never applying what comes after; the memo resumes it', async () => {
    const target: Target = { set: { name: 'kreg-gate', namespace: 'gate' } };
    // Phases: namespaces, config, jobs (a gate), workloads. Nothing runs the Job here.
    const deployment: KubeObject = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: 'gate' },
      spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1' }] } } },
    };
    const set = [ns('gate'), cm('gate', 'before-the-job'), job('gate', 'migrate'), deployment];
    const o = options({ wait: false });
    const first = await reconcileOnce(client, set, target, o);
    assert.equal(first.status, 'progressing', JSON.stringify(first.failure));
    assert.ok(first.requeueAfterMs! > 0 && first.requeueAfterMs! <= 1000);
    assert.deepEqual(first.waitingOn!.map((r) => r.name), ['migrate']);
    assert.ok(o.events.some((e) => e.type === 'wait' && e.phase === 'jobs'));
    assert.equal(await client.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'gate', name: 'web' }), undefined, 'the workload waits for its Job');

    // A second call with the memo does not dry-run again: only the gate is read.
    const again = await reconcileOnce(client, set, target, options({ wait: false }), first.memo);
    assert.equal(again.status, 'progressing');
    assert.ok(again.apiCalls <= 3, `resuming costs ${again.apiCalls} calls`);

    // The Job completes (written to its status, as its controller would).
    await completeJob(client, { namespace: 'gate', name: 'migrate' });
    const done = await reconcileOnce(client, set, target, options({ wait: false }), again.memo);
    assert.equal(done.status, 'ready', JSON.stringify(done.failure));
    assert.ok(await client.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'gate', name: 'web' }), 'applied once the gate passed');
    assert.equal(done.revision, 1);
  });

  it('a CRD and its custom resource in one set: progressing until Established, then the resource is applied', async () => {
    const widgetCrd = crd('Widget', 'Namespaced', { size: 'integer' });
    const widget: KubeObject = { apiVersion: 'example.kreg.dev/v1', kind: 'Widget', metadata: { name: 'w', namespace: 'crd' }, spec: { size: 3 } };
    const target: Target = { set: { name: 'kreg-crd', namespace: 'crd' } };
    let memo;
    let result;
    for (let i = 0; i < 40; i++) {
      result = await reconcileOnce(client, [ns('crd'), widgetCrd, widget], target, options(), memo);
      if (result.status !== 'progressing') break;
      memo = result.memo;
      await new Promise((r) => setTimeout(r, result!.requeueAfterMs));
    }
    assert.equal(result!.status, 'ready', JSON.stringify(result!.failure));
    const live = await client.get({ apiVersion: 'example.kreg.dev/v1', kind: 'Widget', namespace: 'crd', name: 'w' });
    assert.equal(live!.spec.size, 3);
  });

  it('prune: deletes what is no longer desired, keeps prune-never and other controllers\' objects', async () => {
    const target: Target = { set: { name: 'kreg-prune', namespace: 'prune' } };
    await client.apply(ns('prune'), { fieldManager: 'test' });
    const owner = await client.apply(cm('prune', 'owner-elsewhere'), { fieldManager: 'someone-else' });
    const controlled = cm('prune', 'controlled', { a: '1' }, {
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner-elsewhere', uid: owner.metadata.uid!, controller: true }],
    });
    const first = await deploy(client, [ns('prune'), cm('prune', 'keep'), cm('prune', 'go'), cm('prune', 'data', { a: '1' }, { annotations: { 'kreg.dev/prune': 'never' } }), controlled], target, {
      // The namespace was made above, by someone else: the set takes it on purpose.
      ...options({ adopt: true }),
      timeoutMs: 30_000,
    });
    assert.equal(first.ok, true, JSON.stringify(first.failure));
    const second = await deploy(client, [ns('prune'), cm('prune', 'keep')], target, { ...options(), timeoutMs: 30_000 });
    assert.equal(second.ok, true, JSON.stringify(second.failure));
    assert.deepEqual(second.pruned.map((r) => r.name), ['go']);
    assert.deepEqual(second.kept.map((k) => [k.ref.name, k.why]).sort(), [
      ['controlled', 'controlled by ConfigMap/owner-elsewhere'],
      ['data', 'annotated kreg.dev/prune: never'],
    ]);
    assert.equal(second.revision, 2);
  });

  it('a custom resource as ApplySet parent: members it controls are pruned; kreg writes only its metadata', async () => {
    const parentCrd = crd('Set', 'Namespaced', { owner: 'string' }, { 'applyset.kubernetes.io/is-parent-type': 'true' });
    await client.apply(parentCrd, { fieldManager: 'test' });
    await client.apply(ns('owned'), { fieldManager: 'test' });
    let parent: KubeObject | undefined;
    for (let i = 0; i < 50 && !parent; i++) {
      parent = await client.apply({ apiVersion: 'example.kreg.dev/v1', kind: 'Set', metadata: { name: 'mine', namespace: 'owned' }, spec: { owner: 'a user' } }, { fieldManager: 'user' }).catch(() => undefined);
      if (!parent) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(parent, 'the parent resource exists');
    const set: ApplySetRef = { name: 'mine', namespace: 'owned', parent: { apiVersion: 'example.kreg.dev/v1', kind: 'Set' } };
    const ownedBy = { ownerReferences: [{ apiVersion: 'example.kreg.dev/v1', kind: 'Set', name: 'mine', uid: parent.metadata.uid!, controller: true }] };
    const first = await deploy(client, [cm('owned', 'x', { a: '1' }, ownedBy), cm('owned', 'y', { a: '1' }, ownedBy)], { set }, { ...options(), timeoutMs: 30_000 });
    assert.equal(first.ok, true, JSON.stringify(first.failure));
    const second = await deploy(client, [cm('owned', 'x', { a: '1' }, ownedBy)], { set }, { ...options(), timeoutMs: 30_000 });
    assert.deepEqual(second.pruned.map((r) => r.name), ['y'], 'controlled by the parent itself: the set\'s own');
    const live = await client.get(parentRefOf(set));
    assert.equal(live!.spec.owner, 'a user', 'the spec is untouched');
    assert.equal(live!.metadata.annotations![APPLYSET_GROUP_KINDS_ANNOTATION], 'ConfigMap');
    assert.equal(live!.metadata.labels!['applyset.kubernetes.io/id'], applySetId(set));
    const managers = (live!.metadata.managedFields as Array<{ manager: string }>).map((m) => m.manager).sort();
    assert.deepEqual(managers, ['kreg', 'user']);
  });

  it('parent writes are guarded by resourceVersion: a concurrent writer is re-read and merged, not overwritten', async () => {
    const set: ApplySetRef = { name: 'kreg-race', namespace: 'race' };
    await client.apply(ns('race'), { fieldManager: 'test' });
    const initial = await writeParent(client, set, 'kreg', { groupKinds: ['ConfigMap'], namespaces: ['race'], revision: 1 });
    // Another writer moves the parent on (a second kreg run recording Secrets too).
    await writeParent(client, set, 'kreg', { ...initial, groupKinds: ['ConfigMap', 'Secret'], revision: 2 });
    // This run still holds the old resourceVersion: its write fails once, is merged, and lands.
    const after = await writeParent(client, set, 'kreg', { ...initial, groupKinds: ['ConfigMap', 'Service'] });
    assert.deepEqual([...after.groupKinds].sort(), ['ConfigMap', 'Secret', 'Service']);
    assert.equal(after.revision, 2, 'the newer revision is not rolled back');
    assert.notEqual(after.resourceVersion, initial.resourceVersion);
  });

  it('a generated Secret: created once with random values, never written again, recorded and diffed without them, never pruned', async () => {
    const target: Target = { set: { name: 'kreg-generated', namespace: 'generated' } };
    const credentials: KubeObject = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'db-credentials', namespace: 'generated', annotations: { 'kreg.dev/generate': 'password', 'kreg.dev/prune': 'never' } },
      data: { username: Buffer.from('kreg').toString('base64') },
    };
    const first = await deploy(client, [ns('generated'), credentials], target, { ...options(), timeoutMs: 30_000 });
    assert.equal(first.ok, true, JSON.stringify(first.failure));
    const live = await client.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'generated', name: 'db-credentials' });
    const password = Buffer.from(live!.data.password, 'base64').toString('utf8');
    assert.match(password, /^[A-Za-z0-9_-]{32}$/, '192 random bits, base64url');
    assert.equal(Buffer.from(live!.data.username, 'base64').toString('utf8'), 'kreg', 'the fixed keys are applied as given');

    const d = await diff(client, [ns('generated'), credentials], target, { prune: true });
    assert.equal(d.changes, false, JSON.stringify(d.objects));
    const again = await deploy(client, [ns('generated'), credentials], target, { ...options(), timeoutMs: 30_000 });
    assert.equal(again.changed, false, 'nothing written: the Secret exists');
    const after = await client.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'generated', name: 'db-credentials' });
    assert.equal(after!.metadata.resourceVersion, live!.metadata.resourceVersion);

    const revisions = await listRevisions(client, target.set);
    assert.ok(revisions.length >= 1);
    assert.ok(!JSON.stringify(revisions).includes(live!.data.password), 'a revision holds the generated value');
    assert.ok(!JSON.stringify(revisions).includes(password));

    // A set without it keeps it (prune never); a diff of a new one never prints a value.
    const pruned = await deploy(client, [ns('generated')], target, { ...options(), timeoutMs: 30_000 });
    assert.equal(pruned.ok, true);
    assert.ok(await client.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'generated', name: 'db-credentials' }));
    const fresh = await diff(client, [ns('generated'), { ...credentials, metadata: { ...credentials.metadata, name: 'other-credentials' } }], target, { prune: false });
    const created = fresh.objects.find((o) => o.ref.name === 'other-credentials')!;
    assert.equal(created.change, 'create');
    assert.ok(created.lines.some((l) => /password: "\*\*\*"/.test(l)), created.lines.join("\n"));
    assert.ok(!created.lines.some((l) => /a3JlZw==/.test(l)), 'no Secret value is printed, not even a fixed one');
  });

  it('revisions are created, never overwritten: concurrent records get distinct numbers', async () => {
    const set: ApplySetRef = { name: 'kreg-revs', namespace: 'race' };
    const draft = { status: 'deployed' as const, deployedAt: new Date().toISOString(), description: 'x', digest: 'd', objects: [] };
    const numbers = await Promise.all([1, 2, 3].map(() => recordRevision(client, set, draft, 0, 'kreg')));
    assert.deepEqual([...numbers].sort(), [1, 2, 3]);
    assert.deepEqual((await listRevisions(client, set)).map((r) => r.number), [1, 2, 3]);
  });

  it('diff and deploy agree on a field conflict (kind conflict, nothing applied)', async () => {
    const target: Target = { set: { name: 'kreg-conflict', namespace: 'conflict' } };
    const objects = [ns('conflict'), cm('conflict', 'settings', { LOG_LEVEL: 'info' })];
    assert.equal((await deploy(client, objects, target, { ...options(), timeoutMs: 30_000 })).ok, true);
    await client.apply(cm('conflict', 'settings', { LOG_LEVEL: 'debug' }), { fieldManager: 'someone-else', force: true });
    const changed = [ns('conflict'), cm('conflict', 'settings', { LOG_LEVEL: 'warn' })];
    const d = await diff(client, changed, target, { prune: true });
    const r = await deploy(client, changed, target, { ...options(), timeoutMs: 30_000 });
    assert.equal(d.failure?.kind, 'conflict');
    assert.equal(r.failure?.kind, 'conflict');
    assert.equal(r.failure?.retryable, false);
    assert.match(r.failure!.details!.join('\n'), /ConfigMap\/conflict\/settings: .*data\.LOG_LEVEL is owned by "someone-else"/);
    const live = await client.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'conflict', name: 'settings' });
    assert.equal(live!.data.LOG_LEVEL, 'debug', 'nothing applied');
  });

  it('an object the schema refuses fails validation as invalid, and nothing at all is applied', async () => {
    const target: Target = { set: { name: 'kreg-invalid', namespace: 'invalid' } };
    const bad = { ...cm('invalid', 'bad'), notAField: true };
    const r = await deploy(client, [ns('invalid'), cm('invalid', 'good'), bad], target, { ...options(), timeoutMs: 30_000 });
    assert.equal(r.failure?.kind, 'invalid', JSON.stringify(r.failure));
    assert.equal(r.failure?.retryable, false);
    assert.match(r.failure!.details!.join('\n'), /ConfigMap\/invalid\/bad: .*notAField/);
    assert.match(r.failure!.message, /nothing was applied \(the namespace invalid created for the dry run was deleted again\)/);
    const left = await client.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'invalid', name: 'good' }).catch(() => undefined);
    assert.equal(left, undefined);
  });

  it('a kind that cannot be listed is reported and stays in the parent instead of being forgotten', async () => {
    const set: ApplySetRef = { name: 'kreg-rbac', namespace: 'rbac' };
    await client.apply(ns('rbac'), { fieldManager: 'test' });
    // The limited user may do everything with ConfigMaps and the parent Secret, but not list Services.
    await client.apply(
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'deployer', namespace: 'rbac' },
        rules: [
          { apiGroups: [''], resources: ['configmaps', 'secrets'], verbs: ['get', 'list', 'create', 'update', 'patch', 'delete'] },
          { apiGroups: [''], resources: ['namespaces', 'services'], verbs: ['get'] },
        ],
      },
      { fieldManager: 'test' },
    );
    await client.apply(
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'deployer-ns' }, rules: [{ apiGroups: [''], resources: ['namespaces'], verbs: ['get'] }] },
      { fieldManager: 'test' },
    );
    await client.apply(
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'deployer-ns' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'deployer-ns' }, subjects: [{ kind: 'User', name: server.limitedUser }] },
      { fieldManager: 'test' },
    );
    await client.apply(
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'deployer', namespace: 'rbac' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'deployer' }, subjects: [{ kind: 'User', name: server.limitedUser }] },
      { fieldManager: 'test' },
    );
    // Earlier runs recorded Services in this set.
    await writeParent(client, set, 'kreg', { groupKinds: ['ConfigMap', 'Service'], namespaces: ['rbac'], revision: 0 });
    const limited = await KubeClient.create({ kubeconfig: server.limitedKubeconfig });
    try {
      const o = options({ wait: false });
      const r = await deploy(limited, [cm('rbac', 'only')], { set }, { ...o, timeoutMs: 30_000 });
      assert.equal(r.ok, true, JSON.stringify(r.failure));
      const warning = o.events.find((e) => e.type === 'warning');
      assert.ok(warning && warning.type === 'warning' && /cannot list Service in rbac/.test(warning.message), JSON.stringify(o.events));
      const parent = readParent(set, await client.get(parentRefOf(set)));
      assert.deepEqual([...parent.groupKinds].sort(), ['ConfigMap', 'Service'], 'Service stays recorded');
    } finally {
      limited.close();
    }
  });

  it('discovery finds a kind whose CRD was installed after the client cached its group', async () => {
    const other = await KubeClient.create({ kubeconfig: server.kubeconfig });
    try {
      assert.equal(await other.isNamespaced('example.kreg.dev/v1', 'Widget'), true); // caches the group
      await client.apply(crd('Gadget', 'Cluster', {}), { fieldManager: 'test' });
      let found: boolean | undefined;
      const deadline = Date.now() + 15_000;
      while (found === undefined && Date.now() < deadline) {
        found = await other.isNamespaced('example.kreg.dev/v1', 'Gadget').catch(() => undefined);
        if (found === undefined) await new Promise((r) => setTimeout(r, 500));
      }
      assert.equal(found, false, 'Gadget found (cluster-scoped) by the client that cached its group before');
    } finally {
      other.close();
    }
  });

  it('an aborted signal cancels reconcileOnce before it touches the cluster', async () => {
    const scoped: KubeApi = client.scoped({});
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(
      reconcileOnce(scoped, [ns('never'), cm('never', 'x')], { set: { name: 'kreg-never', namespace: 'never' } }, options({ signal: controller.signal })),
      (err: Error) => err.name === 'AbortError',
    );
    assert.equal(await client.get({ apiVersion: 'v1', kind: 'Namespace', name: 'never' }), undefined);
  });
});
