/** Stage 5, health: readiness of objects, read once, and what changed since the last look. */
import type { ClusterReader } from '../client.js';
import type { EventSink } from '../events.js';
import { evaluateHealth, relatedNeeds, type RelatedObjects } from '../readiness.js';
import type { ReconcileMemo } from '../run.js';
import { type Health, type KubeObject, type ObjectRef, refKey } from '../types.js';

/**
 * Stage: evaluate health once, of the objects named by `keys`, using objects already known where
 * given (no GET for them) and one list per related kind per namespace.
 */
export async function evaluateOnce(reader: ClusterReader, refs: ObjectRef[], known: Record<string, KubeObject> = {}): Promise<Array<{ ref: ObjectRef; health: Health }>> {
  const objects = await Promise.all(refs.map(async (ref) => ({ ref, obj: known[refKey(ref)] ?? (await reader.get(ref)) })));
  const related = await fetchRelated(reader, objects.map((o) => o.obj).filter((o): o is KubeObject => o !== undefined));
  const now = new Date();
  return objects.map(({ ref, obj }) => ({
    ref,
    health: obj ? evaluateHealth(obj, related.get(obj.metadata.namespace ?? '') ?? {}, now) : { state: 'progressing', reason: 'NotFound', message: 'not found (yet)' },
  }));
}

/** Pods, ReplicaSets and EndpointSlices per namespace, fetched only where an object needs them. */
export async function fetchRelated(reader: Pick<ClusterReader, 'list'>, objects: KubeObject[]): Promise<Map<string, RelatedObjects>> {
  const needs = new Map<string, { pods: boolean; replicaSets: boolean; endpointSlices: boolean }>();
  for (const obj of objects) {
    const ns = obj.metadata.namespace;
    if (!ns) continue;
    const n = relatedNeeds(obj);
    const acc = needs.get(ns) ?? { pods: false, replicaSets: false, endpointSlices: false };
    needs.set(ns, { pods: acc.pods || n.pods, replicaSets: acc.replicaSets || n.replicaSets, endpointSlices: acc.endpointSlices || n.endpointSlices });
  }
  const out = new Map<string, RelatedObjects>();
  await Promise.all(
    [...needs].map(async ([namespace, n]) => {
      const [pods, replicaSets, endpointSlices] = await Promise.all([
        n.pods ? reader.list('v1', 'Pod', { namespace }) : undefined,
        n.replicaSets ? reader.list('apps/v1', 'ReplicaSet', { namespace }) : undefined,
        n.endpointSlices ? reader.list('discovery.k8s.io/v1', 'EndpointSlice', { namespace }) : undefined,
      ]);
      out.set(namespace, { ...(pods ? { pods } : {}), ...(replicaSets ? { replicaSets } : {}), ...(endpointSlices ? { endpointSlices } : {}) });
    }),
  );
  return out;
}

/** Records health results in the memo and emits a status event for each change. */
export function noteHealth(memo: ReconcileMemo, results: Array<{ ref: ObjectRef; health: Health }>, emit: EventSink): { failed?: { ref: ObjectRef; health: Health }; pending: ObjectRef[] } {
  let failed: { ref: ObjectRef; health: Health } | undefined;
  const pending: ObjectRef[] = [];
  for (const { ref, health } of results) {
    const key = refKey(ref);
    const before = memo.health[key];
    memo.health[key] = health;
    if (!before || before.state !== health.state || before.message !== health.message) emit({ type: 'status', ref, health });
    if (health.state === 'failed' && !failed) failed = { ref, health };
    if (health.state !== 'ready') pending.push(ref);
  }
  return { ...(failed ? { failed } : {}), pending };
}
