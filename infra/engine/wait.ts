/**
 * Waits until objects are ready, one of them fails, or the time is up.
 *
 * Polling, not watches: a deploy waits on a handful of objects for seconds to minutes, and a poll
 * costs one GET per pending object plus one list per related kind per namespace. Polls come every
 * 250 ms for the first 10 s (most rollouts of a small app finish there, and a slow first poll would
 * add its latency to every deploy), then every second. That
 * survives API server restarts, expired resource versions and idle timeouts with no extra code — the
 * next poll simply asks again (a failed poll is retried with backoff, up to the deadline). The
 * related lists (pods, ReplicaSets, EndpointSlices) are fetched once per namespace per poll and only
 * when an object pending there needs them.
 */
import { KubeApiError, KubeConnectionError, type KubeClient } from './client.js';
import { evaluateHealth, relatedNeeds, type RelatedObjects } from './readiness.js';
import type { Health, KubeObject, ObjectRef } from './types.js';
import { refKey } from './types.js';

const FAST_POLL_MS = 250;
const FAST_POLL_WINDOW_MS = 10_000;

export interface WaitOptions {
  timeoutMs: number;
  pollMs?: number;
  /** Called when an object's state or message changes (live progress). */
  onChange?: (ref: ObjectRef, health: Health) => void;
  /** Objects already fetched (e.g. by the plan), so the first poll needs no GET for them. */
  known?: Map<string, KubeObject>;
}

export interface WaitResult {
  outcome: 'ready' | 'failed' | 'timeout';
  health: Map<string, Health>;
  /** The first failed object, when outcome is `failed`. */
  failed?: { ref: ObjectRef; health: Health };
  /** Objects still not ready at the deadline, when outcome is `timeout`. */
  pending: ObjectRef[];
}

export async function waitForReady(client: KubeClient, refs: ObjectRef[], options: WaitOptions): Promise<WaitResult> {
  const pollMs = options.pollMs ?? 1000;
  const started = Date.now();
  const interval = () => (Date.now() - started < FAST_POLL_WINDOW_MS ? Math.min(FAST_POLL_MS, pollMs) : pollMs);
  const deadline = Date.now() + options.timeoutMs;
  const health = new Map<string, Health>();
  let pending = [...refs];
  let known = options.known;
  let backoff = interval();

  while (true) {
    try {
      const objects = await Promise.all(
        pending.map(async (ref) => {
          const cached = known?.get(refKey(ref));
          return { ref, obj: cached ?? (await client.get(ref)) };
        }),
      );
      known = undefined; // only the first poll may use what the plan fetched
      const related = await fetchRelated(client, objects.map((o) => o.obj).filter((o): o is KubeObject => o !== undefined));
      const now = new Date();
      const stillPending: ObjectRef[] = [];
      for (const { ref, obj } of objects) {
        const h: Health = obj
          ? evaluateHealth(obj, related.get(obj.metadata.namespace ?? '') ?? {}, now)
          : { state: 'progressing', reason: 'NotFound', message: 'not found (yet)' };
        const before = health.get(refKey(ref));
        health.set(refKey(ref), h);
        if (!before || before.state !== h.state || before.message !== h.message) options.onChange?.(ref, h);
        if (h.state === 'failed') return { outcome: 'failed', health, failed: { ref, health: h }, pending: [] };
        if (h.state !== 'ready') stillPending.push(ref);
      }
      pending = stillPending;
      backoff = interval();
      if (pending.length === 0) return { outcome: 'ready', health, pending: [] };
    } catch (err) {
      // The API server restarted, a connection dropped, or the server is overloaded: ask again later.
      if (!(err instanceof KubeConnectionError) && !(err instanceof KubeApiError && (err.status >= 500 || err.status === 429))) throw err;
      backoff = Math.min(backoff * 2, 8000);
    }
    if (Date.now() + backoff > deadline) return { outcome: 'timeout', health, pending };
    await new Promise((r) => setTimeout(r, backoff));
  }
}

export async function fetchRelated(client: KubeClient, objects: KubeObject[]): Promise<Map<string, RelatedObjects>> {
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
        n.pods ? client.list('v1', 'Pod', { namespace }) : undefined,
        n.replicaSets ? client.list('apps/v1', 'ReplicaSet', { namespace }) : undefined,
        n.endpointSlices ? client.list('discovery.k8s.io/v1', 'EndpointSlice', { namespace }) : undefined,
      ]);
      out.set(namespace, { ...(pods ? { pods } : {}), ...(replicaSets ? { replicaSets } : {}), ...(endpointSlices ? { endpointSlices } : {}) });
    }),
  );
  return out;
}
