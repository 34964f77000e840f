/**
 * What kreg owns, recorded the way kubectl ApplySets (KEP-3659) record it, so `kubectl` and other
 * tools can see it: a parent Secret labelled `applyset.kubernetes.io/id`, annotated with the tooling
 * and the group-kinds (and extra namespaces) its members live in; every member labelled
 * `applyset.kubernetes.io/part-of=<id>`. Listing only the recorded group-kinds, with that label,
 * finds the members again without scanning every API type.
 *
 * The parent also carries kreg's own bookkeeping: the current revision number. Revision history
 * lives in separate Secrets (see revisions.ts), so the parent stays small.
 */
import { createHash } from 'node:crypto';
import { PRUNE_ANNOTATION, PRUNE_NEVER } from './annotations.js';
import type { KubeObject, ObjectRef } from './types.js';
import { groupKind, refKey, refOf } from './types.js';

export const APPLYSET_ID_LABEL = 'applyset.kubernetes.io/id';
export const APPLYSET_PART_OF_LABEL = 'applyset.kubernetes.io/part-of';
export const APPLYSET_TOOLING_ANNOTATION = 'applyset.kubernetes.io/tooling';
export const APPLYSET_GROUP_KINDS_ANNOTATION = 'applyset.kubernetes.io/contains-group-kinds';
export const APPLYSET_NAMESPACES_ANNOTATION = 'applyset.kubernetes.io/additional-namespaces';
export const REVISION_ANNOTATION = 'kreg.dev/revision';
export const TOOLING = 'kreg/v1';

export interface ApplySetRef {
  /** Name of the parent Secret. */
  name: string;
  /** Namespace of the parent Secret. */
  namespace: string;
}

/**
 * The ApplySet id as KEP-3659 defines it: `applyset-` + unpadded base64url(sha256(
 * `<name>.<namespace>.<kind>.<group>`)) + `-v1`, for a parent Secret (core group, so empty).
 */
export function applySetId(set: ApplySetRef): string {
  const digest = createHash('sha256').update(`${set.name}.${set.namespace}.Secret.`).digest('base64url');
  return `applyset-${digest}-v1`;
}

export function memberLabels(set: ApplySetRef): Record<string, string> {
  return { [APPLYSET_PART_OF_LABEL]: applySetId(set) };
}

/** The parent Secret listing `groupKinds` and `namespaces` (other than its own), at `revision`. */
export function parentObject(set: ApplySetRef, contents: { groupKinds: string[]; namespaces: string[]; revision: number }): KubeObject {
  const extra = [...new Set(contents.namespaces)].filter((n) => n !== set.namespace).sort();
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: set.name,
      namespace: set.namespace,
      labels: { [APPLYSET_ID_LABEL]: applySetId(set), 'app.kubernetes.io/managed-by': 'kreg' },
      annotations: {
        [APPLYSET_TOOLING_ANNOTATION]: TOOLING,
        [APPLYSET_GROUP_KINDS_ANNOTATION]: [...new Set(contents.groupKinds)].sort().join(','),
        ...(extra.length ? { [APPLYSET_NAMESPACES_ANNOTATION]: extra.join(',') } : {}),
        [REVISION_ANNOTATION]: String(contents.revision),
      },
    },
    type: 'kreg.dev/applyset',
  };
}

export interface ParentState {
  groupKinds: string[];
  namespaces: string[];
  revision: number;
  tooling?: string;
}

/** What a live parent says (or an empty set when there is none yet). */
export function readParent(set: ApplySetRef, live: KubeObject | undefined): ParentState {
  if (!live) return { groupKinds: [], namespaces: [set.namespace], revision: 0 };
  const a = live.metadata.annotations ?? {};
  const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return {
    groupKinds: list(a[APPLYSET_GROUP_KINDS_ANNOTATION]),
    namespaces: [set.namespace, ...list(a[APPLYSET_NAMESPACES_ANNOTATION])],
    revision: Number(a[REVISION_ANNOTATION] ?? 0) || 0,
    ...(a[APPLYSET_TOOLING_ANNOTATION] ? { tooling: a[APPLYSET_TOOLING_ANNOTATION] } : {}),
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
 * annotated `kreg.dev/prune: never` (data), and objects a controller owns (they carry our label only
 * because their owner's template copied it; deleting them is their owner's business).
 */
export function decidePrune(members: KubeObject[], desired: ObjectRef[]): PruneDecision {
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
    if (controller) {
      out.kept.push({ object: m, why: `controlled by ${controller.kind}/${controller.name}` });
      continue;
    }
    out.prune.push(m);
  }
  return out;
}

export function groupKindsOf(objects: Array<Pick<ObjectRef, 'apiVersion' | 'kind'>>): string[] {
  return [...new Set(objects.map(groupKind))].sort();
}
