/**
 * Stage 4, apply: phase by phase, with the gates between phases, and the ApplySet parent written
 * (guarded by its resourceVersion) before what it records.
 */
import { type KubeApi, KubeApiError } from '../client.js';
import { EngineError } from '../errors.js';
import type { EventSink } from '../events.js';
import { type ApplySetRef, parentObject, parentRefOf, type ParentState, readParent } from '../inventory.js';
import { type Phase, takeOverManagedFields } from '../plan.js';
import type { ReconcileMemo } from '../run.js';
import { describeRef, type KubeObject, type ObjectRef, refKey, refOf } from '../types.js';
import { mapLimit } from '../util.js';
import { describeConflict, isFieldConflict } from './validate.js';

/** Whether a phase group must be waited on before the next is applied, and on which objects. */
export function gateOf(group: { phase: Phase; objects: KubeObject[] }): ObjectRef[] | undefined {
  if (group.phase === 'jobs' || group.phase === 'backends') return group.objects.map(refOf);
  if (group.phase === 'definitions') {
    const crds = group.objects.filter((o) => o.kind === 'CustomResourceDefinition').map(refOf);
    return crds.length ? crds : undefined;
  }
  return undefined;
}

/**
 * Writes the parent, guarded by the resourceVersion it was read at: if someone else wrote it in
 * between (409), it is read again and the write retried with the union of both states, so neither
 * writer's kinds are lost. Returns what the parent says afterwards.
 */
export async function writeParent(api: KubeApi, set: ApplySetRef, manager: string, state: ParentState): Promise<ParentState> {
  let desired = state;
  for (let attempt = 0; ; attempt++) {
    try {
      const written = await api.apply(parentObject(set, desired, desired.resourceVersion), { fieldManager: manager, force: true });
      return readParent(set, written);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409 && !isFieldConflict(err)) || attempt >= 4) {
        if (err instanceof KubeApiError && err.status === 404) {
          throw new EngineError({ kind: 'refused', message: `the ApplySet parent ${describeRef(parentRefOf(set))} does not exist` });
        }
        throw err;
      }
      const now = readParent(set, await api.get(parentRefOf(set)));
      desired = {
        ...desired,
        groupKinds: [...new Set([...desired.groupKinds, ...now.groupKinds])],
        namespaces: [...new Set([...desired.namespaces, ...now.namespaces])],
        revision: Math.max(desired.revision, now.revision),
        ...(now.resourceVersion ? { resourceVersion: now.resourceVersion } : {}),
      };
    }
  }
}

/**
 * Writes the taken-over managedFields, conditional on the resourceVersion they were computed from:
 * another writer's managedFields entry must not be overwritten with an old copy. Status updates
 * move the version often during a rollout, so a stale version means: read, compute again, retry.
 */
async function rewriteManagedFields(
  api: KubeApi,
  ref: ObjectRef,
  planned: { resourceVersion: string; managedFields: unknown[] },
  manager: string,
  from: (manager: string) => boolean,
): Promise<void> {
  let next: { resourceVersion: string; managedFields: unknown[] } | undefined = planned;
  for (let attempt = 0; next && attempt < 5; attempt++) {
    try {
      await api.jsonPatch(ref, [{ op: 'test', path: '/metadata/resourceVersion', value: next.resourceVersion }, { op: 'replace', path: '/metadata/managedFields', value: next.managedFields }], manager);
      return;
    } catch (err) {
      if (!(err instanceof KubeApiError && (err.status === 409 || err.status === 422))) throw err;
    }
    const live = await api.get(ref);
    const rewritten = live && takeOverManagedFields(live, manager, from);
    next = rewritten && live.metadata.resourceVersion ? { resourceVersion: live.metadata.resourceVersion, managedFields: rewritten.managedFields } : undefined;
  }
}

/** Stage: apply one phase group's changed objects (server-side apply, in parallel). */
export async function applyGroup(api: KubeApi, group: KubeObject[], memo: ReconcileMemo, manager: string, force: boolean, emit: EventSink, takeOverFrom?: (manager: string) => boolean): Promise<void> {
  const toApply = group.filter((o) => memo.changes[refKey(refOf(o))] !== 'unchanged');
  await mapLimit(toApply, 8, async (obj) => {
    const ref = refOf(obj);
    const takeover = memo.takeover?.[refKey(ref)];
    if (takeover && takeOverFrom) await rewriteManagedFields(api, ref, takeover, manager, takeOverFrom);
    try {
      const applied = await api.apply(obj, { fieldManager: manager, force });
      memo.known[refKey(ref)] = applied;
      const created = memo.changes[refKey(ref)] === 'create';
      const foreign = memo.foreign[refKey(ref)];
      emit({ type: 'apply', ref, action: created ? 'created' : 'updated', ...(!created && foreign?.length ? { changedBy: foreign } : {}) });
    } catch (err) {
      if (isFieldConflict(err)) {
        throw new EngineError({ kind: 'conflict', message: `${describeRef(ref)}: fields owned by another field manager`, ref, details: describeConflict(ref, err as KubeApiError) });
      }
      if (err instanceof KubeApiError && err.status >= 400 && err.status < 500 && err.status !== 429) {
        throw new EngineError({ kind: 'failed', message: `${describeRef(ref)}: apply failed: ${err.message}`, ref });
      }
      throw err;
    }
  });
  if (toApply.length) memo.changed = true;
}
