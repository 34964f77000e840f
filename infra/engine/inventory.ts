/**
 * What kreg owns, recorded the way kubectl ApplySets (KEP-3659) record it, so `kubectl` and other
 * tools can see it: a parent Secret labelled `applyset.kubernetes.io/id`, annotated with the tooling
 * and the group-kinds (and extra namespaces) its members live in; every member labelled
 * `applyset.kubernetes.io/part-of=<id>`. Listing only the recorded group-kinds, with that label,
 * finds the members again without scanning every API type.
 *
 * The parent is a Secret for the CLI, or a custom resource whose CRD is labelled
 * `applyset.kubernetes.io/is-parent-type: "true"` for a controller (KEP-3659 allows both): then the
 * resource a user created is the set, and `kubectl` sees the same inventory as kreg. Of a custom
 * resource parent kreg applies only these labels and annotations, never its spec.
 *
 * The parent also carries kreg's own bookkeeping: the current revision number. Revision history
 * lives in separate Secrets (see revisions.ts), so the parent stays small.
 */
import { createHash } from 'node:crypto';
import { ADOPT_ANNOTATION, PRUNE_ANNOTATION, PRUNE_NEVER } from './annotations.js';
import type { KubeObject, ObjectRef } from './types.js';
import { describeRef, groupKind, refKey, refOf } from './types.js';

export const APPLYSET_ID_LABEL = 'applyset.kubernetes.io/id';
export const APPLYSET_PART_OF_LABEL = 'applyset.kubernetes.io/part-of';
export const APPLYSET_TOOLING_ANNOTATION = 'applyset.kubernetes.io/tooling';
export const APPLYSET_GROUP_KINDS_ANNOTATION = 'applyset.kubernetes.io/contains-group-kinds';
export const APPLYSET_NAMESPACES_ANNOTATION = 'applyset.kubernetes.io/additional-namespaces';
export const REVISION_ANNOTATION = 'kreg.dev/revision';
export const TOOLING = 'kreg/v1';

export interface ApplySetRef {
  /** Name of the parent. */
  name: string;
  /** Namespace of the parent (and the set's default namespace). */
  namespace: string;
  /** Kind of the parent: a Secret when unset; a custom resource for a controller. */
  parent?: { apiVersion: string; kind: string };
}

const SECRET_PARENT = { apiVersion: 'v1', kind: 'Secret' } as const;

/** The parent object's reference. */
export function parentRefOf(set: ApplySetRef): ObjectRef {
  const { apiVersion, kind } = set.parent ?? SECRET_PARENT;
  return { apiVersion, kind, namespace: set.namespace, name: set.name };
}

/** True when the parent is a custom resource (owned by its user; kreg writes only its metadata). */
export function hasResourceParent(set: ApplySetRef): boolean {
  return set.parent !== undefined && !(set.parent.apiVersion === 'v1' && set.parent.kind === 'Secret');
}

/**
 * The ApplySet id as KEP-3659 defines it: `applyset-` + unpadded base64url(sha256(
 * `<name>.<namespace>.<kind>.<group>`)) + `-v1` (the core group is the empty string).
 */
export function applySetId(set: ApplySetRef): string {
  const { apiVersion, kind } = set.parent ?? SECRET_PARENT;
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0]! : '';
  const digest = createHash('sha256').update(`${set.name}.${set.namespace}.${kind}.${group}`).digest('base64url');
  return `applyset-${digest}-v1`;
}

export function memberLabels(set: ApplySetRef): Record<string, string> {
  return { [APPLYSET_PART_OF_LABEL]: applySetId(set) };
}

/**
 * The parent listing `groupKinds` and `namespaces` (other than its own), at `revision`: a whole
 * Secret, or, for a custom resource parent, only the labels and annotations kreg owns on it.
 * `resourceVersion`, when given, makes the write fail with 409 if the parent changed since it was read.
 */
export function parentObject(
  set: ApplySetRef,
  contents: { groupKinds: string[]; namespaces: string[]; revision: number },
  resourceVersion?: string,
): KubeObject {
  const extra = [...new Set(contents.namespaces)].filter((n) => n !== set.namespace).sort();
  const { apiVersion, kind } = parentRefOf(set);
  return {
    apiVersion,
    kind,
    metadata: {
      name: set.name,
      namespace: set.namespace,
      ...(resourceVersion ? { resourceVersion } : {}),
      labels: { [APPLYSET_ID_LABEL]: applySetId(set), ...(hasResourceParent(set) ? {} : { 'app.kubernetes.io/managed-by': 'kreg' }) },
      annotations: {
        [APPLYSET_TOOLING_ANNOTATION]: TOOLING,
        [APPLYSET_GROUP_KINDS_ANNOTATION]: [...new Set(contents.groupKinds)].sort().join(','),
        ...(extra.length ? { [APPLYSET_NAMESPACES_ANNOTATION]: extra.join(',') } : {}),
        [REVISION_ANNOTATION]: String(contents.revision),
      },
    },
    ...(hasResourceParent(set) ? {} : { type: 'kreg.dev/applyset' }),
  };
}

export interface ParentState {
  groupKinds: string[];
  namespaces: string[];
  revision: number;
  tooling?: string;
  /** The parent's resourceVersion when read (writes are guarded by it); undefined if it does not exist. */
  resourceVersion?: string;
  /** The parent's uid: members controlled by it are the set's own (a controller sets ownerReferences). */
  uid?: string;
}

/** What a live parent says (or an empty set when there is none yet, or it is not a set yet). */
export function readParent(set: ApplySetRef, live: KubeObject | undefined): ParentState {
  if (!live) return { groupKinds: [], namespaces: [set.namespace], revision: 0 };
  const a = live.metadata.annotations ?? {};
  const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return {
    groupKinds: list(a[APPLYSET_GROUP_KINDS_ANNOTATION]),
    namespaces: [set.namespace, ...list(a[APPLYSET_NAMESPACES_ANNOTATION])],
    revision: Number(a[REVISION_ANNOTATION] ?? 0) || 0,
    ...(a[APPLYSET_TOOLING_ANNOTATION] ? { tooling: a[APPLYSET_TOOLING_ANNOTATION] } : {}),
    ...(live.metadata.resourceVersion ? { resourceVersion: live.metadata.resourceVersion } : {}),
    ...(live.metadata.uid ? { uid: live.metadata.uid } : {}),
  };
}

/** Splits `Deployment.apps` into kind and group. */
export function parseGroupKind(gk: string): { kind: string; group: string } {
  const dot = gk.indexOf('.');
  return dot < 0 ? { kind: gk, group: '' } : { kind: gk.slice(0, dot), group: gk.slice(dot + 1) };
}

export interface PruneDecision {
  prune: KubeObject[];
  /** Members no longer desired that stay, and why (opt-out annotation, owned by a controller). */
  kept: Array<{ object: KubeObject; why: string }>;
}

/**
 * Members found in the cluster that the desired set no longer has are pruned, except: objects
 * annotated `kreg.dev/prune: never` (data), and objects another controller owns (they carry our
 * label only because their owner's template copied it; deleting them is their owner's business).
 * Members whose controller is the parent itself (`parentUid`: a custom resource parent whose
 * controller sets ownerReferences) are the set's own and are pruned.
 */
export function decidePrune(members: KubeObject[], desired: ObjectRef[], parentUid?: string): PruneDecision {
  const wanted = new Set(desired.map(refKey));
  const out: PruneDecision = { prune: [], kept: [] };
  for (const m of members) {
    if (wanted.has(refKey(refOf(m)))) continue;
    if (m.metadata.deletionTimestamp) continue;
    if (m.metadata.annotations?.[PRUNE_ANNOTATION] === PRUNE_NEVER) {
      out.kept.push({ object: m, why: `annotated ${PRUNE_ANNOTATION}: ${PRUNE_NEVER}` });
      continue;
    }
    const controller = m.metadata.ownerReferences?.find((o) => o.controller);
    if (controller && !(parentUid !== undefined && controller.uid === parentUid)) {
      out.kept.push({ object: m, why: `controlled by ${controller.kind}/${controller.name}` });
      continue;
    }
    out.prune.push(m);
  }
  return out;
}

/**
 * Whether a live object belongs to the set, so that kreg may apply over it: it carries this set's
 * membership label (kreg created it, or its owner labelled it), or it is controlled by the owner the
 * desired object names (a controller's child that lost its label). An object that is neither was
 * made by someone else, and stays theirs.
 */
export function isMember(live: KubeObject, set: ApplySetRef, desired?: KubeObject): boolean {
  if (live.metadata.labels?.[APPLYSET_PART_OF_LABEL] === applySetId(set)) return true;
  const wantedOwner = desired?.metadata.ownerReferences?.find((o) => o.controller)?.uid;
  return wantedOwner !== undefined && live.metadata.ownerReferences?.some((o) => o.controller && o.uid === wantedOwner) === true;
}

/** The value of `kreg.dev/adopt` that hands an object to this set: its parent, named as kreg names objects. */
export function adoptionValue(set: ApplySetRef): string {
  return describeRef(parentRefOf(set));
}

/** The object's owner has handed it to this set (`kreg.dev/adopt` names the set's parent). */
export function consentsToAdoption(live: KubeObject, set: ApplySetRef): boolean {
  return live.metadata.annotations?.[ADOPT_ANNOTATION] === adoptionValue(set);
}

/** Who holds an existing object kreg did not create: another ApplySet, a controller, field managers. */
export function holdersOf(live: KubeObject, managers: string[]): string {
  const parts: string[] = [];
  const otherSet = live.metadata.labels?.[APPLYSET_PART_OF_LABEL];
  if (otherSet) parts.push(`part of another ApplySet (${otherSet})`);
  const controller = live.metadata.ownerReferences?.find((o) => o.controller);
  if (controller) parts.push(`controlled by ${controller.kind}/${controller.name}`);
  if (managers.length) parts.push(`managed by ${managers.map((m) => `"${m}"`).join(', ')}`);
  return parts.length ? parts.join('; ') : 'no field managers recorded';
}

export function groupKindsOf(objects: Array<Pick<ObjectRef, 'apiVersion' | 'kind'>>): string[] {
  return [...new Set(objects.map(groupKind))].sort();
}
