import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { byPhase, classifyChange, duplicates, mergeFieldSets, normalizeForDiff, phaseOf, prepareObject, takeOverManagedFields } from '../../infra/engine/plan.js';
import { desiredObjects } from '../../infra/cli/synth.js';
import type { KubeObject } from '../../infra/engine/types.js';

const obj = (apiVersion: string, kind: string, name: string, extra: Partial<KubeObject> = {}): KubeObject => ({ apiVersion, kind, metadata: { name }, ...extra });

describe('apply order', () => {
  it('puts namespaces, CRDs, identity, config, storage, network, jobs, workloads, then the rest', () => {
    const shuffled = [
      obj('networking.k8s.io/v1', 'Ingress', 'web'),
      obj('apps/v1', 'Deployment', 'api'),
      obj('batch/v1', 'Job', 'migrate'),
      obj('v1', 'Service', 'api'),
      obj('v1', 'PersistentVolumeClaim', 'data'),
      obj('v1', 'Secret', 'token'),
      obj('rbac.authorization.k8s.io/v1', 'RoleBinding', 'rb'),
      obj('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'widgets.example.com'),
      obj('v1', 'Namespace', 'ns'),
      obj('example.com/v1', 'Widget', 'w'),
    ];
    const order = byPhase(shuffled).flatMap((g) => g.objects.map((o) => o.kind));
    assert.deepEqual(order, ['Namespace', 'CustomResourceDefinition', 'RoleBinding', 'Secret', 'PersistentVolumeClaim', 'Service', 'Job', 'Deployment', 'Ingress', 'Widget']);
    const reversed = byPhase(shuffled, true).map((g) => g.phase);
    assert.equal(reversed[0], 'others');
    assert.equal(reversed.at(-1), 'namespaces', 'destroy/prune deletes namespaces last');
  });

  it('orders the real dev app: Namespace first, the PVC before the Deployment', () => {
    const kinds = byPhase(desiredObjects({ env: 'dev' })).flatMap((g) => g.objects.map((o) => o.kind));
    assert.equal(kinds[0], 'Namespace');
    assert.ok(kinds.indexOf('PersistentVolumeClaim') < kinds.indexOf('Deployment'));
    assert.ok(kinds.indexOf('ConfigMap') < kinds.indexOf('Deployment'));
    assert.ok(kinds.indexOf('ServiceAccount') < kinds.indexOf('Deployment'));
  });

  it('applies the remote-mode migration Job before the Deployment it gates', () => {
    const prod = desiredObjects({ env: 'prod' });
    const phases = byPhase(prod).map((g) => ({ phase: g.phase, kinds: g.objects.map((o) => o.kind) }));
    const jobs = phases.findIndex((p) => p.kinds.includes('Job'));
    const workloads = phases.findIndex((p) => p.kinds.includes('Deployment'));
    assert.ok(jobs >= 0 && jobs < workloads, JSON.stringify(phases));
    assert.equal(phaseOf({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget' }), 'workloads');
  });

  it('an object may name its phase: prod\'s database is a backend, applied and waited for before the migration Job', () => {
    const prod = desiredObjects({ env: 'prod' });
    const order = byPhase(prod).map((g) => `${g.phase}: ${g.objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
    const backends = order.findIndex((p) => p.startsWith('backends: StatefulSet/postgres'));
    const jobs = order.findIndex((p) => p.startsWith('jobs: Job/registration-migrate-'));
    assert.ok(backends >= 0 && backends < jobs, order.join('\n'));
    const named = (phase: string) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { annotations: { 'kreg.dev/phase': phase } } });
    assert.equal(phaseOf(named('backends')), 'backends');
    assert.equal(phaseOf(named('not-a-phase')), 'workloads', 'an unknown phase is the kind\'s (prepare refuses it before that)');
  });
});

describe('prepareObject', () => {
  it('turns Secret stringData into base64 data, defaults the namespace, adds labels, and leaves the input alone', () => {
    const secret = obj('v1', 'Secret', 's', { stringData: { token: 'héllo' }, data: { other: 'eA==' } });
    const out = prepareObject(secret, { namespaced: true, defaultNamespace: 'ns', extraLabels: { a: 'b' } });
    assert.deepEqual(out.data, { other: 'eA==', token: Buffer.from('héllo').toString('base64') });
    assert.equal(out.stringData, undefined);
    assert.equal(out.metadata.namespace, 'ns');
    assert.deepEqual(out.metadata.labels, { a: 'b' });
    assert.ok(secret.stringData, 'input untouched');
    const ns = prepareObject(obj('v1', 'Namespace', 'x', { metadata: { name: 'x', namespace: 'oops' } }), { namespaced: false, defaultNamespace: 'ns' });
    assert.equal(ns.metadata.namespace, undefined, 'cluster-scoped objects carry no namespace');
  });

  it('finds objects named twice', () => {
    assert.deepEqual(duplicates([
      { apiVersion: 'v1', kind: 'ConfigMap', name: 'a', namespace: 'n' },
      { apiVersion: 'v1', kind: 'ConfigMap', name: 'a', namespace: 'm' },
      { apiVersion: 'v1', kind: 'ConfigMap', name: 'a', namespace: 'n' },
    ]), ['ConfigMap|n|a']);
  });
});

describe('change classification', () => {
  const live: KubeObject = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'c',
      namespace: 'n',
      uid: 'u1',
      resourceVersion: '10',
      creationTimestamp: '2026-11-24T00:00:00Z',
      managedFields: [{ manager: 'kreg', operation: 'Apply', time: '2026-11-24T00:00:00Z', fieldsV1: { 'f:data': { 'f:A': {} } } }],
    },
    data: { A: '1' },
  };
  it('ignores server bookkeeping but not data or field ownership', () => {
    const sameButNewer = structuredClone(live);
    sameButNewer.metadata.resourceVersion = '11';
    (sameButNewer.metadata.managedFields as any[])[0].time = '2026-11-24T01:00:00Z';
    assert.equal(classifyChange(live, sameButNewer, 'kreg'), 'unchanged');
    const changed = structuredClone(live);
    changed.data.A = '2';
    assert.equal(classifyChange(live, changed, 'kreg'), 'update');
    const released = structuredClone(live);
    (released.metadata.managedFields as any[])[0].fieldsV1 = {};
    assert.equal(classifyChange(live, released, 'kreg'), 'update', 'dropping ownership is a change');
    assert.equal(classifyChange(undefined, live, 'kreg'), 'create');
    assert.equal(normalizeForDiff(live).metadata.uid, undefined);
  });
});

describe('foreign field managers', () => {
  it('lists other managers, most recent first, with their fields as paths; status writers left out', async () => {
    const { foreignManagers } = await import('../../infra/engine/plan.js');
    const obj = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {
        name: 'web',
        managedFields: [
          { manager: 'kreg-operator', operation: 'Apply', time: '2026-11-29T04:00:00Z', fieldsV1: { 'f:spec': { 'f:replicas': {} } } },
          { manager: 'kubectl', operation: 'Update', subresource: 'scale', time: '2026-11-29T04:01:00Z', fieldsV1: { 'f:spec': { 'f:replicas': {} } } },
          { manager: 'kube-controller-manager', operation: 'Update', subresource: 'status', time: '2026-11-29T04:02:00Z', fieldsV1: { 'f:status': { 'f:replicas': {} } } },
          {
            manager: 'kubectl-set',
            operation: 'Update',
            time: '2026-11-29T04:03:00Z',
            fieldsV1: { 'f:spec': { 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"web"}': { '.': {}, 'f:image': {}, 'f:env': { 'k:{"name":"X"}': { '.': {}, 'f:value': {} } } } } } } } },
          },
        ],
      },
    };
    assert.deepEqual(foreignManagers(obj, 'kreg-operator'), [
      {
        manager: 'kubectl-set',
        operation: 'Update',
        time: '2026-11-29T04:03:00Z',
        fields: ['.spec.template.spec.containers[name=web].image', '.spec.template.spec.containers[name=web].env[name=X].value'],
      },
      { manager: 'kubectl', operation: 'Update', time: '2026-11-29T04:01:00Z', fields: ['.spec.replicas'] },
    ]);
  });
});

describe('taking over fields from hand edits', () => {
  const deployment = (managedFields: unknown[]): KubeObject => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'a', managedFields } });
  const kubectl = (m: string) => m.startsWith('kubectl');
  const env = (name: string) => ({ 'f:spec': { 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"web"}': { 'f:env': { [`k:{"name":"${name}"}`]: { '.': {}, 'f:value': {} } } } } } } } });

  it('moves what kubectl holds outside metadata into our Apply entry, and leaves its labels and other managers alone', () => {
    const live = deployment([
      { manager: 'kreg-operator', operation: 'Apply', apiVersion: 'apps/v1', fieldsType: 'FieldsV1', fieldsV1: env('OWN') },
      { manager: 'kubectl-set', operation: 'Update', apiVersion: 'apps/v1', fieldsType: 'FieldsV1', fieldsV1: { ...env('INJECTED'), 'f:metadata': { 'f:labels': { 'f:team': {} } } } },
      { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'apps/v1', subresource: 'status', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': {} } },
      { manager: 'helm', operation: 'Update', apiVersion: 'apps/v1', fieldsType: 'FieldsV1', fieldsV1: env('HELM') },
    ]);
    const result = takeOverManagedFields(live, 'kreg-operator', kubectl)!;
    assert.deepEqual(result.managers, ['kubectl-set']);
    const own = result.managedFields.find((e) => e.manager === 'kreg-operator')!;
    assert.deepEqual(own.fieldsV1, mergeFieldSets(env('OWN'), env('INJECTED')));
    assert.deepEqual(result.managedFields.find((e) => e.manager === 'kubectl-set')!.fieldsV1, { 'f:metadata': { 'f:labels': { 'f:team': {} } } });
    assert.ok(result.managedFields.some((e) => e.manager === 'helm'));
    assert.ok(result.managedFields.some((e) => e.subresource === 'status'));
  });

  it('nothing to move: undefined (no rewrite, no extra apply)', () => {
    assert.equal(takeOverManagedFields(deployment([{ manager: 'kubectl-label', operation: 'Update', fieldsV1: { 'f:metadata': { 'f:labels': {} } } }]), 'kreg-operator', kubectl), undefined);
    assert.equal(takeOverManagedFields(deployment([{ manager: 'helm', operation: 'Update', fieldsV1: env('X') }]), 'kreg-operator', kubectl), undefined);
  });

  it('no Apply entry of ours yet: one is added', () => {
    const result = takeOverManagedFields(deployment([{ manager: 'kubectl-edit', operation: 'Update', apiVersion: 'apps/v1', fieldsV1: env('X') }]), 'kreg-operator', kubectl)!;
    assert.deepEqual(result.managedFields.map((e) => [e.manager, e.operation]), [['kreg-operator', 'Apply']]);
  });
});
