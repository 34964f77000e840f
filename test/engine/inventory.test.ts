import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ADOPT_ANNOTATION, PRUNE_ANNOTATION, PRUNE_NEVER } from '../../infra/engine/annotations.js';
import {
  APPLYSET_GROUP_KINDS_ANNOTATION,
  APPLYSET_ID_LABEL,
  APPLYSET_NAMESPACES_ANNOTATION,
  APPLYSET_TOOLING_ANNOTATION,
  adoptionValue,
  applySetId,
  consentsToAdoption,
  decidePrune,
  holdersOf,
  isMember,
  memberLabels,
  parentObject,
  parseGroupKind,
  readParent,
} from '../../infra/engine/inventory.js';
import { groupKind } from '../../infra/engine/types.js';
import type { KubeObject } from '../../infra/engine/types.js';

const set = { name: 'kreg-dev', namespace: 'kreg-dev' };

describe('ApplySet (KEP-3659) inventory', () => {
  it('derives the id from name.namespace.kind.group, base64url without padding, v1 suffix', () => {
    const id = applySetId(set);
    const expected = createHash('sha256').update('kreg-dev.kreg-dev.Secret.').digest('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    assert.equal(id, `applyset-${expected}-v1`);
    assert.match(id, /^applyset-[A-Za-z0-9_-]{43}-v1$/);
    assert.ok(id.length <= 63, 'fits a label value');
    assert.notEqual(applySetId({ name: 'kreg-dev', namespace: 'other' }), id);
    assert.deepEqual(memberLabels(set), { 'applyset.kubernetes.io/part-of': id });
  });

  it('the parent lists sorted group-kinds, extra namespaces and the revision, and reads back', () => {
    const parent = parentObject(set, { groupKinds: ['Deployment.apps', 'Namespace', 'ConfigMap', 'Deployment.apps'], namespaces: ['kreg-dev', 'b', 'a'], revision: 4 });
    assert.equal(parent.metadata.labels![APPLYSET_ID_LABEL], applySetId(set));
    assert.equal(parent.metadata.annotations![APPLYSET_GROUP_KINDS_ANNOTATION], 'ConfigMap,Deployment.apps,Namespace');
    assert.equal(parent.metadata.annotations![APPLYSET_NAMESPACES_ANNOTATION], 'a,b');
    assert.match(parent.metadata.annotations![APPLYSET_TOOLING_ANNOTATION]!, /^kreg\//);
    const back = readParent(set, parent);
    assert.deepEqual(back, { groupKinds: ['ConfigMap', 'Deployment.apps', 'Namespace'], namespaces: ['kreg-dev', 'a', 'b'], revision: 4, tooling: 'kreg/v1' });
    assert.deepEqual(readParent(set, undefined), { groupKinds: [], namespaces: ['kreg-dev'], revision: 0 });
    assert.deepEqual(parseGroupKind('Deployment.apps'), { kind: 'Deployment', group: 'apps' });
    assert.deepEqual(parseGroupKind('Service'), { kind: 'Service', group: '' });
    assert.equal(groupKind({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy' }), 'NetworkPolicy.networking.k8s.io');
  });

  it('prunes members no longer desired, except opted-out and controller-owned ones', () => {
    const m = (kind: string, name: string, meta: Partial<KubeObject['metadata']> = {}): KubeObject => ({ apiVersion: kind === 'Deployment' ? 'apps/v1' : 'v1', kind, metadata: { name, namespace: 'kreg-dev', ...meta } });
    const members = [
      m('Deployment', 'registration'),
      m('ConfigMap', 'old-config'),
      m('PersistentVolumeClaim', 'registration-data', { annotations: { [PRUNE_ANNOTATION]: PRUNE_NEVER } }),
      m('ConfigMap', 'generated', { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'x', uid: 'u', controller: true }] }),
      m('ConfigMap', 'going', { deletionTimestamp: '2026-11-24T00:00:00Z' }),
    ];
    const decision = decidePrune(members, [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'registration', namespace: 'kreg-dev' }]);
    assert.deepEqual(decision.prune.map((o) => o.metadata.name), ['old-config']);
    assert.deepEqual(decision.kept.map((k) => [k.object.metadata.name, k.why]), [
      ['registration-data', 'annotated kreg.dev/prune: never'],
      ['generated', 'controlled by Deployment/x'],
    ]);
  });
});

describe('membership: what kreg may apply over', () => {
  const cr = { name: 'other-team', namespace: 'team-a', parent: { apiVersion: 'kreg.dev/v1alpha1', kind: 'RegistrationService' } };
  const live = (metadata: Partial<KubeObject['metadata']> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'other-team', namespace: 'team-a', ...metadata } });
  const owner = { apiVersion: 'kreg.dev/v1alpha1', kind: 'RegistrationService', name: 'other-team', uid: 'uid-1', controller: true };

  it('an object with this set\'s label is a member; one with another set\'s label, or none, is not', () => {
    assert.equal(isMember(live({ labels: memberLabels(set) }), set), true);
    assert.equal(isMember(live({ labels: memberLabels({ name: 'other', namespace: 'kreg-dev' }) }), set), false);
    assert.equal(isMember(live(), set), false);
    assert.equal(isMember(live({ labels: memberLabels(set) }), cr), false, 'the same name under another parent kind is another set');
  });

  it('an object controlled by the owner the desired object names is a member, even without the label', () => {
    const desired = live({ ownerReferences: [owner] });
    assert.equal(isMember(live({ ownerReferences: [owner] }), cr, desired), true);
    assert.equal(isMember(live({ ownerReferences: [{ ...owner, uid: 'uid-2' }] }), cr, desired), false, 'a resource of the same name, deleted and created again, is another owner');
    assert.equal(isMember(live({ ownerReferences: [{ ...owner, controller: false }] }), cr, desired), false);
    assert.equal(isMember(live({ ownerReferences: [owner] }), cr), false, 'the desired object names no owner');
  });

  it('consent is the annotation naming this set\'s parent, and nothing else', () => {
    assert.equal(adoptionValue(cr), 'RegistrationService/team-a/other-team');
    assert.equal(adoptionValue(set), 'Secret/kreg-dev/kreg-dev');
    assert.equal(consentsToAdoption(live({ annotations: { [ADOPT_ANNOTATION]: 'RegistrationService/team-a/other-team' } }), cr), true);
    assert.equal(consentsToAdoption(live({ annotations: { [ADOPT_ANNOTATION]: 'RegistrationService/team-b/other-team' } }), cr), false);
    assert.equal(consentsToAdoption(live({ annotations: { [ADOPT_ANNOTATION]: 'true' } }), cr), false);
    assert.equal(consentsToAdoption(live(), cr), false);
  });

  it('names who holds a foreign object', () => {
    assert.equal(holdersOf(live(), ['kubectl-create']), 'managed by "kubectl-create"');
    assert.equal(
      holdersOf(live({ labels: memberLabels({ name: 'web', namespace: 'x' }), ownerReferences: [owner] }), ['kreg', 'kubectl-edit']),
      `part of another ApplySet (${applySetId({ name: 'web', namespace: 'x' })}); controlled by RegistrationService/other-team; managed by "kreg", "kubectl-edit"`,
    );
    assert.equal(holdersOf(live(), []), 'no field managers recorded');
  });
});
