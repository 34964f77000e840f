/**
 * `deploy`: the blocking composition of the stages in reconcile.ts — calls `reconcileOnce` until the
 * set is ready, an object fails, or the time is up, sleeping as it says between calls.
 *
 * An immediate redeploy changes nothing and records nothing: every object is classified
 * `unchanged`, so no apply is sent, and readiness is read from the objects the plan fetched.
 *
 * Contract: never throws for anything that happens in the cluster or the input; the report says
 * `ok` or carries the failure (kind, whether retrying helps, the object, its evidence). Throws only
 * if `signal` aborts.
 */
import type { KubeApi } from './client.js';
import { gatherEvidence } from './diagnostics.js';
import { EngineError, type EngineFailure } from './errors.js';
import { applySetId } from './inventory.js';
import type { Change } from './plan.js';
import { reconcileOnce, type ReconcileMemo, type ReconcileOptions, type Target } from './reconcile.js';
import type { Health, KubeObject, ObjectRef } from './types.js';
import { describeRef, refKey } from './types.js';
import { sleep } from './util.js';

export { FIELD_MANAGER, type Target } from './reconcile.js';

export interface DeployOptions extends Omit<ReconcileOptions, 'onEvent'> {
  timeoutMs: number;
  onEvent?: ReconcileOptions['onEvent'];
  /** Longest pause between two looks at readiness (the engine asks for 250 ms at first, then 1 s). */
  pollMs?: number;
}

export interface DeployReport {
  ok: boolean;
  applySet: { name: string; namespace: string; id: string };
  revision: number | null;
  changed: boolean;
  objects: Array<{ ref: ObjectRef; change: Change; health?: Health }>;
  pruned: ObjectRef[];
  kept: Array<{ ref: ObjectRef; why: string }>;
  failure?: EngineFailure;
  timingsMs: Record<string, number>;
  /** API calls of this deploy (all its reconcile calls). */
  apiCalls: number;
  /** How many times `reconcileOnce` was called. */
  reconciles: number;
}

export async function deploy(client: KubeApi, input: KubeObject[], target: Target, options: DeployOptions): Promise<DeployReport> {
  const api = client.scoped(options.signal ? { signal: options.signal } : {});
  const t0 = performance.now();
  const deadline = Date.now() + options.timeoutMs;
  const timings: Record<string, number> = {};
  let memo: ReconcileMemo | undefined;
  let reconciles = 0;
  const emit = options.onEvent ?? (() => {});
  const report = (r: Awaited<ReturnType<typeof reconcileOnce>>, failure?: EngineFailure): DeployReport => {
    timings.total = Math.round(performance.now() - t0);
    return {
      ok: !failure,
      applySet: { name: target.set.name, namespace: target.set.namespace, id: applySetId(target.set) },
      revision: r.revision ?? memo?.parentInCluster?.revision ?? null,
      changed: r.changed,
      objects: r.objects,
      pruned: r.pruned,
      kept: r.kept,
      ...(failure ? { failure } : {}),
      timingsMs: timings,
      apiCalls: api.calls,
      reconciles,
    };
  };

  const { onEvent: _ignored, timeoutMs: _t, pollMs: _p, ...reconcileOptions } = options;
  while (true) {
    const r = await reconcileOnce(api, input, target, { ...reconcileOptions, onEvent: emit }, memo);
    reconciles++;
    for (const [k, v] of Object.entries(r.timingsMs)) if (k !== 'total') timings[k] = (timings[k] ?? 0) + v;
    memo = r.memo;
    if (r.status === 'ready') return report(r);
    if (r.status === 'failed') return report(r, r.failure);
    const pause = Math.min(r.requeueAfterMs ?? 1000, options.pollMs ?? Number.POSITIVE_INFINITY);
    if (Date.now() + pause > deadline) {
      const pending = r.waitingOn ?? [];
      const first = pending[0];
      const health = (ref: ObjectRef) => r.objects.find((o) => refKey(o.ref) === refKey(ref))?.health;
      const failure = new EngineError({
        kind: 'timeout',
        message: `not ready after ${Math.round(options.timeoutMs / 1000)} s: ${pending.map((p) => `${describeRef(p)} (${health(p)?.message ?? 'no status'})`).join('; ')}`,
        ...(first ? { ref: first, evidence: await gatherEvidence(api, first, health(first) ?? { state: 'progressing', reason: 'Unknown', message: '' }) } : {}),
      }).toFailure();
      emit({ type: 'error', failure });
      return report(r, failure);
    }
    await sleep(pause, options.signal);
  }
}
