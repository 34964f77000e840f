/**
 * `reconcileOnce`, the driver of the pipeline's stages (each in its own file under stages/), which
 * runs them without ever sleeping:
 *
 *   prepare → validate (server-side dry run of everything; nothing changed yet) → plan (live vs
 *   dry-run result per object) → apply, phase by phase (the ApplySet parent first, as a superset of
 *   kinds, so an interrupted run still finds everything) → evaluate health (once) → prune → record.
 *
 * A gate (CRDs Established, Jobs Complete) or objects not ready yet make it return `progressing`
 * with when to look again; the next call carries on from the memo it returned, without repeating
 * the dry run or re-applying what it applied. `deploy()` (deploy.ts) waits by calling it in a loop;
 * a controller calls it once per reconcile.
 *
 * Contract: `reconcileOnce` never throws for anything that happens in the cluster or the input;
 * failures come back as `{ status: 'failed', failure }` with a kind, whether retrying helps, the
 * object at fault and its evidence. It throws only if the caller's signal aborts.
 */
import type { ClusterReader, KubeApi } from './client.js';
import { gatherEvidence } from './diagnostics.js';
import { EngineError, toEngineError } from './errors.js';
import type { EventSink, ForeignManager } from './events.js';
import { isGenerated } from './generated.js';
import { groupKindsOf, parentRefOf, type ParentState, readParent } from './inventory.js';
import { byPhase, digestObjects, foreignManagers, takeOverManagedFields } from './plan.js';
import { FIELD_MANAGER, type ReconcileMemo, type ReconcileOptions, type ReconcileResult, type ReconcileStatus, type Target } from './run.js';
import { applyGroup, gateOf, writeParent } from './stages/apply.js';
import { evaluateOnce, noteHealth } from './stages/health.js';
import { plan } from './stages/plan.js';
import { prepare } from './stages/prepare.js';
import { prune } from './stages/prune.js';
import { record } from './stages/record.js';
import { validate } from './stages/validate.js';
import { describeRef, type Health, type KubeObject, type ObjectRef, refKey, refOf } from './types.js';

// The stages live in stages/, the run's shapes in run.ts; what callers used from here stays here.
export { FIELD_MANAGER, type ReconcileMemo, type ReconcileOptions, type ReconcileResult, type ReconcileStatus, type Target } from './run.js';
export { prepare, type Prepared } from './stages/prepare.js';
export { describeConflict, isFieldConflict, validate, type Validation, type ValidateOptions } from './stages/validate.js';
export { plan } from './stages/plan.js';
export { writeParent } from './stages/apply.js';
export { evaluateOnce, fetchRelated } from './stages/health.js';
export { listMembers, prune, type Membership } from './stages/prune.js';
export { record } from './stages/record.js';

const FAST_REQUEUE_MS = 250;
const FAST_WINDOW_MS = 10_000;
const SLOW_REQUEUE_MS = 1000;

/** The memo of a fresh run: validated, planned, nothing applied yet. */
async function startRun(api: KubeApi, input: KubeObject[], target: Target, options: ReconcileOptions, emit: EventSink, digest: string, timings: Record<string, number>): Promise<ReconcileMemo> {
  const manager = target.fieldManager ?? FIELD_MANAGER;
  const t = performance.now();
  const prepared = await prepare(api, input, target.set);
  const validation = await validate(api, prepared, manager, { force: options.forceConflicts, createNamespaces: true, set: target.set, ...(options.adopt ? { adopt: true } : {}) });
  timings.validate = Math.round(performance.now() - t);
  emit({ type: 'validation', objects: prepared.objects.length, ms: timings.validate });

  const tp = performance.now();
  const liveParent = await api.get(parentRefOf(target.set));
  const parent = readParent(target.set, liveParent);
  if (parent.tooling && !parent.tooling.startsWith('kreg/')) {
    throw new EngineError({ kind: 'refused', message: `the ApplySet parent ${describeRef(parentRefOf(target.set))} belongs to "${parent.tooling}", not kreg; choose another name` });
  }
  const { live, changes } = plan(prepared, validation, manager);
  timings.plan = Math.round(performance.now() - tp);
  for (const a of validation.adopted) emit({ type: 'warning', ref: a.ref, message: `adopting ${describeRef(a.ref)}, which this set did not create (${a.holders}): from now on it is updated, pruned and deleted with the set` });
  const known: Record<string, KubeObject> = {};
  const foreign: Record<string, ForeignManager[]> = {};
  const takeover: Record<string, { resourceVersion: string; managedFields: unknown[] }> = {};
  if (options.takeOverFrom) {
    for (const [key, obj] of live) {
      const rewritten = obj && !isGenerated(obj) && takeOverManagedFields(obj, manager, options.takeOverFrom);
      if (!rewritten || !obj.metadata.resourceVersion) continue;
      takeover[key] = { resourceVersion: obj.metadata.resourceVersion, managedFields: rewritten.managedFields };
      // Fields only another manager holds do not show in the dry run: the object is applied anyway.
      if (changes.get(key) === 'unchanged') changes.set(key, 'update');
    }
  }
  for (const [key, obj] of live) {
    if (obj && changes.get(key) === 'unchanged') known[key] = obj;
    if (obj && changes.get(key) === 'update') foreign[key] = foreignManagers(obj, manager);
  }
  const superset: ParentState = {
    ...parent,
    groupKinds: [...new Set([...parent.groupKinds, ...groupKindsOf(prepared.objects)])],
    namespaces: [...new Set([...parent.namespaces, ...prepared.namespaces])],
  };
  return {
    digest,
    startedAt: Date.now(),
    objects: prepared.objects,
    namespaces: prepared.namespaces,
    changes: Object.fromEntries(changes),
    parent,
    superset,
    ...(liveParent ? { parentInCluster: parent } : {}),
    nextGroup: 0,
    groupApplied: false,
    known,
    health: {},
    pending: prepared.objects.map((o) => refKey(refOf(o))),
    changed: false,
    failureRecorded: false,
    appliedReported: false,
    foreign,
    ...(Object.keys(takeover).length ? { takeover } : {}),
  };
}

/** Identity of a desired set and the options that change what a run applies. */
function runDigest(input: KubeObject[], target: Target, options: ReconcileOptions): string {
  return digestObjects([{ apiVersion: 'kreg.dev/v1', kind: 'RunKey', metadata: { name: JSON.stringify([target, options.forceConflicts, options.prune, options.wait, options.adopt ?? false]) } }, ...input]);
}

/**
 * Applies what changed, reads health once, and returns — never sleeping. See the file header for
 * the stages and the contract; pass the returned memo to the next call for the same objects.
 */
export async function reconcileOnce(client: KubeApi, input: KubeObject[], target: Target, options: ReconcileOptions, previous?: ReconcileMemo): Promise<ReconcileResult> {
  const api = client.scoped(options.signal ? { signal: options.signal } : {});
  const reader: ClusterReader = options.reader ?? api;
  const emit: EventSink = options.onEvent ?? (() => {});
  const manager = target.fieldManager ?? FIELD_MANAGER;
  const timings: Record<string, number> = {};
  const t0 = performance.now();
  const digest = runDigest(input, target, options);
  let memo: ReconcileMemo | undefined = previous?.digest === digest ? previous : undefined;
  const result = (status: ReconcileStatus, extra: Partial<ReconcileResult> = {}): ReconcileResult => {
    timings.total = Math.round(performance.now() - t0);
    const m = memo!;
    return {
      status,
      objects: m.objects.map((o) => {
        const key = refKey(refOf(o));
        return { ref: refOf(o), change: m.changes[key] ?? 'unchanged', ...(m.health[key] ? { health: m.health[key] } : {}) };
      }),
      changed: m.changed,
      pruned: [],
      kept: [],
      revision: null,
      memo: m,
      apiCalls: api.calls,
      timingsMs: timings,
      ...extra,
    };
  };
  const requeue = () => (Date.now() - memo!.startedAt < FAST_WINDOW_MS ? FAST_REQUEUE_MS : SLOW_REQUEUE_MS);
  /** The parent lists old and new kinds while the run applies, so an interrupted run still finds everything. */
  const recordSuperset = async () => {
    const m = memo!;
    if (sameParent(m.parentInCluster, m.superset)) return;
    const current = m.parentInCluster;
    m.parentInCluster = await writeParent(api, target.set, manager, {
      ...m.superset,
      revision: current?.revision ?? m.parent.revision,
      ...(current?.resourceVersion ? { resourceVersion: current.resourceVersion } : {}),
    });
  };

  try {
    memo ??= await startRun(api, input, target, options, emit, digest, timings);
    const groups = byPhase(memo.objects);

    // Apply, phase by phase, from where the last call stopped.
    const ta = performance.now();
    for (; memo.nextGroup < groups.length; memo.nextGroup++, memo.groupApplied = false) {
      const group = groups[memo.nextGroup]!;
      if (!memo.groupApplied) {
        // The parent lives in a namespace, so it is written once the namespaces phase is through;
        // as a superset of old and new kinds, so an interrupted run can still find everything.
        if (group.phase !== 'namespaces') await recordSuperset();
        await applyGroup(api, group.objects, memo, manager, options.forceConflicts, emit, options.takeOverFrom);
        for (const o of group.objects) if (memo.changes[refKey(refOf(o))] === 'unchanged') emit({ type: 'apply', ref: refOf(o), action: 'unchanged' });
        memo.groupApplied = true;
      }
      const gate = gateOf(group);
      if (!gate) continue;
      const results = await evaluateOnce(reader, gate, memo.known);
      for (const ref of gate) delete memo.known[refKey(ref)]; // a gate's objects are read fresh next time
      const seen = noteHealth(memo, results, emit);
      if (seen.failed) return await failRun(api, reader, target, options, memo, seen.failed, emit, result);
      if (seen.pending.length) {
        emit({ type: 'wait', phase: group.phase, refs: seen.pending });
        return result('progressing', { requeueAfterMs: requeue(), waitingOn: seen.pending });
      }
      if (group.phase === 'definitions') for (const crd of group.objects) for (const v of crd.spec?.versions ?? []) api.forgetDiscovery(`${crd.spec.group}/${v.name}`);
    }
    await recordSuperset();
    timings.apply = Math.round(performance.now() - ta);
    if (!memo.appliedReported) {
      const changedCount = Object.values(memo.changes).filter((c) => c !== 'unchanged').length;
      emit({ type: 'applied', changed: changedCount, total: memo.objects.length, ms: timings.apply });
      memo.appliedReported = true;
    }

    // Readiness of the whole set, not just what changed: an unchanged Deployment may be broken.
    if (options.wait && memo.pending.length) {
      const tw = performance.now();
      const pendingRefs = memo.objects.map(refOf).filter((r) => memo!.pending.includes(refKey(r)));
      const results = await evaluateOnce(reader, pendingRefs, memo.known);
      memo.known = {}; // only the first evaluation may use what the plan fetched
      const seen = noteHealth(memo, results, emit);
      timings.health = Math.round(performance.now() - tw);
      memo.pending = seen.pending.map(refKey);
      if (seen.failed) return await failRun(api, reader, target, options, memo, seen.failed, emit, result);
      if (memo.pending.length) return result('progressing', { requeueAfterMs: requeue(), waitingOn: seen.pending });
      emit({ type: 'ready', objects: memo.objects.length, ms: Date.now() - memo.startedAt });
    }

    // Prune what this set owned before and no longer wants.
    const tr = performance.now();
    let pruned: ObjectRef[] = [];
    let kept: Array<{ ref: ObjectRef; why: string }> = [];
    let unlistedKinds: string[] = [];
    if (options.prune) {
      ({ pruned, kept, unlistedKinds } = await prune(api, target.set, { ...memo.superset, ...(memo.parentInCluster?.uid ? { uid: memo.parentInCluster.uid } : {}) }, memo.objects, emit));
      if (pruned.length) memo.changed = true;
    }
    timings.prune = Math.round(performance.now() - tr);
    const finalState: ParentState = {
      ...memo.superset,
      groupKinds: options.prune ? [...new Set([...groupKindsOf(memo.objects), ...unlistedKinds])] : memo.superset.groupKinds,
      namespaces: options.prune ? memo.namespaces : memo.superset.namespaces,
    };
    const revision = await record(api, target.set, manager, memo, finalState, { status: 'deployed', description: options.description, changed: memo.changed }, emit);
    return result('ready', { pruned, kept, revision });
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason ?? err;
    const e = toEngineError(err);
    emit({ type: 'error', failure: e.toFailure() });
    memo ??= emptyMemo(digest);
    return result('failed', { failure: e.toFailure() });
  }
}

function emptyMemo(digest: string): ReconcileMemo {
  const empty: ParentState = { groupKinds: [], namespaces: [], revision: 0 };
  return {
    digest: `${digest}-failed`,
    startedAt: Date.now(),
    objects: [],
    namespaces: [],
    changes: {},
    parent: empty,
    superset: empty,
    nextGroup: 0,
    groupApplied: false,
    known: {},
    health: {},
    pending: [],
    changed: false,
    failureRecorded: false,
    appliedReported: false,
    foreign: {},
  };
}

function sameParent(inCluster: ParentState | undefined, wanted: ParentState): boolean {
  if (!inCluster) return false;
  const covers = (have: string[], want: string[]) => want.every((x) => have.includes(x));
  return covers(inCluster.groupKinds, wanted.groupKinds) && covers(inCluster.namespaces, wanted.namespaces);
}

/** A failed object ends the run: evidence first, then (once) a failed revision if the run changed something. */
async function failRun(
  api: KubeApi,
  reader: ClusterReader,
  target: Target,
  options: ReconcileOptions,
  memo: ReconcileMemo,
  failed: { ref: ObjectRef; health: Health },
  emit: EventSink,
  result: (status: ReconcileStatus, extra?: Partial<ReconcileResult>) => ReconcileResult,
): Promise<ReconcileResult> {
  const evidence = await gatherEvidence(reader, failed.ref, failed.health);
  const error = new EngineError({ kind: 'failed', message: `${failed.health.reason}: ${failed.health.message}`, ref: failed.ref, evidence });
  if (!memo.failureRecorded && memo.changed) {
    await record(api, target.set, target.fieldManager ?? FIELD_MANAGER, memo, memo.superset, { status: 'failed', description: options.description, changed: true }, emit);
    memo.failureRecorded = true;
  }
  emit({ type: 'error', failure: error.toFailure() });
  return result('failed', { failure: error.toFailure(), waitingOn: [failed.ref] });
}
