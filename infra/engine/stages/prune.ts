/** Stage 6, prune: the set's members in the cluster, and deleting those it no longer wants. */
import { type KubeApi, KubeApiError } from '../client.js';
import type { EventSink } from '../events.js';
import { type ApplySetRef, decidePrune, memberLabels, type ParentState, parseGroupKind } from '../inventory.js';
import { byPhase } from '../plan.js';
import { groupKind, type KubeObject, type ObjectRef, refOf } from '../types.js';
import { mapLimit } from '../util.js';

/** Members of the set found in the cluster, and the kinds that could not be listed. */
export interface Membership {
  members: KubeObject[];
  /** `Kind.group in namespace: reason`: nothing can be said about members of these. */
  unlisted: Array<{ groupKind: string; namespace?: string; reason: string }>;
}

/** Every object carrying this set's membership label, in the recorded kinds and namespaces. */
export async function listMembers(api: KubeApi, set: ApplySetRef, parent: ParentState, desired: KubeObject[] = []): Promise<Membership> {
  const labelSelector = Object.entries(memberLabels(set)).map(([k, v]) => `${k}=${v}`).join(',');
  // Each kind is listed at the same time as the others; the results are joined in the parent's order.
  const perKind = await Promise.all(parent.groupKinds.map((gk) => listKind(api, gk, parent, desired, labelSelector)));
  return { members: perKind.flatMap((m) => m.members), unlisted: perKind.flatMap((m) => m.unlisted) };
}

async function listKind(api: KubeApi, gk: string, parent: ParentState, desired: KubeObject[], labelSelector: string): Promise<Membership> {
  const out: Membership = { members: [], unlisted: [] };
  const { kind, group } = parseGroupKind(gk);
  let apiVersion = desired.find((o) => groupKind(o) === gk)?.apiVersion;
  if (!apiVersion) {
    try {
      apiVersion = await api.preferredApiVersion(group);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return out; // the group is gone (CRD deleted): no members left
      out.unlisted.push({ groupKind: gk, reason: errorText(err) });
      return out;
    }
  }
  let namespaced: boolean;
  try {
    namespaced = await api.isNamespaced(apiVersion, kind);
  } catch (err) {
    if (err instanceof KubeApiError && err.reason === 'NoKindMatch') return out;
    out.unlisted.push({ groupKind: gk, reason: errorText(err) });
    return out;
  }
  for (const namespace of namespaced ? parent.namespaces : [undefined]) {
    try {
      out.members.push(...(await api.list(apiVersion, kind, { ...(namespace ? { namespace } : {}), labelSelector })));
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404 && namespace) continue; // the namespace is gone
      out.unlisted.push({ groupKind: gk, ...(namespace ? { namespace } : {}), reason: errorText(err) });
    }
  }
  return out;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Stage, prune: deletes members the set no longer wants, workloads first. Kinds that could not be
 * listed are reported and stay in the parent (nothing about them is known, so nothing is forgotten).
 */
export async function prune(
  api: KubeApi,
  set: ApplySetRef,
  parent: ParentState,
  desired: KubeObject[],
  emit: EventSink,
): Promise<{ pruned: ObjectRef[]; kept: Array<{ ref: ObjectRef; why: string }>; unlistedKinds: string[] }> {
  const { members, unlisted } = await listMembers(api, set, parent, desired);
  for (const u of unlisted) {
    emit({ type: 'warning', message: `cannot list ${u.groupKind}${u.namespace ? ` in ${u.namespace}` : ''} to prune it (${u.reason}); its members are left alone` });
  }
  const decision = decidePrune(members, desired.map(refOf), parent.uid);
  const kept = decision.kept.map((k) => ({ ref: refOf(k.object), why: k.why }));
  for (const k of kept) emit({ type: 'prune', ref: k.ref, action: 'kept', why: k.why });
  const pruned: ObjectRef[] = [];
  for (const group of byPhase(decision.prune, true)) {
    await mapLimit(group.objects, 8, async (obj) => {
      if (await api.delete(refOf(obj))) {
        pruned.push(refOf(obj));
        emit({ type: 'prune', ref: refOf(obj), action: 'pruned' });
      }
    });
  }
  return { pruned, kept, unlistedKinds: [...new Set(unlisted.map((u) => u.groupKind))] };
}
