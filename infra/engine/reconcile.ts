/**
 * The pipeline as named stages, and `reconcileOnce`, which runs them without ever sleeping:
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
import { KubeApiError, type ClusterReader, type KubeApi } from './client.js';
import { gatherEvidence } from './diagnostics.js';
import { EngineError, toEngineError, type EngineFailure } from './errors.js';
import type { EventSink, ForeignManager } from './events.js';
import { ADOPT_ANNOTATION, PHASE_ANNOTATION } from './annotations.js';
import {
  adoptionValue,
  consentsToAdoption,
  decidePrune,
  groupKindsOf,
  holdersOf,
  isMember,
  memberLabels,
  parentObject,
  parentRefOf,
  parseGroupKind,
  readParent,
  type ApplySetRef,
  type ParentState,
} from './inventory.js';
import { byPhase, classifyChange, PHASES, digestObjects, duplicates, foreignManagers, prepareObject, takeOverManagedFields, type Change, type Phase } from './plan.js';
import { isGenerated, withGeneratedValues, withoutGeneratedValues } from './generated.js';
import { evaluateHealth, relatedNeeds, type RelatedObjects } from './readiness.js';
import { recordRevision, type Revision } from './revisions.js';
import type { Health, KubeObject, ObjectRef } from './types.js';
import { describeRef, groupKind, refKey, refOf } from './types.js';
import { mapLimit } from './util.js';

export const FIELD_MANAGER = 'kreg';

/** Where a set of objects goes: the ApplySet that records it, and the field manager that owns it. */
export interface Target {
  set: ApplySetRef;
  fieldManager?: string;
}

export interface ReconcileOptions {
  /** Take over fields owned by other managers. */
  forceConflicts: boolean;
  /**
   * Take over existing objects this set did not create (see validate). Without it such an object
   * is only taken when its owner annotated it `kreg.dev/adopt` for this set.
   */
  adopt?: boolean;
  /** Delete members the set no longer wants. */
  prune: boolean;
  /** Evaluate readiness before pruning and recording (gates are always evaluated). */
  wait: boolean;
  /** One line recorded with the revision, e.g. `deploy dev (image kreg/registration:1.2.3)`. */
  description: string;
  onEvent?: EventSink;
  signal?: AbortSignal;
  /**
   * Where health and evidence are read: the API directly (default), or a controller's watch-fed
   * cache. Writes and the dry run always go to the API.
   */
  reader?: ClusterReader;
  /**
   * Managers whose fields outside metadata are taken over before applying, so fields they added
   * are removed (see takeOverManagedFields). A controller passes kubectl's managers; the CLI none.
   */
  takeOverFrom?: (manager: string) => boolean;
}

export type ReconcileStatus = 'ready' | 'progressing' | 'failed';

export interface ReconcileResult {
  status: ReconcileStatus;
  /** When `progressing`: when to call again. */
  requeueAfterMs?: number;
  /** When `failed`: what, why, and whether retrying can help. */
  failure?: EngineFailure;
  /** When `progressing`: the objects not ready yet (a gate's, or the whole set's). */
  waitingOn?: ObjectRef[];
  /** Every desired object with its change and (once evaluated) its health. */
  objects: Array<{ ref: ObjectRef; change: Change; health?: Health }>;
  /** Something was applied or pruned (over all calls that shared the memo). */
  changed: boolean;
  pruned: ObjectRef[];
  kept: Array<{ ref: ObjectRef; why: string }>;
  /** The current revision once recorded (`ready`), or null. */
  revision: number | null;
  /** Pass it to the next call for the same desired objects; it is discarded when they change. */
  memo: ReconcileMemo;
  /** API calls of this call. */
  apiCalls: number;
  timingsMs: Record<string, number>;
}

/** What one call leaves for the next: where the run stands. Plain data. */
export interface ReconcileMemo {
  /** Identity of the desired objects (and of the options that change what is applied). */
  digest: string;
  startedAt: number;
  objects: KubeObject[];
  namespaces: string[];
  changes: Record<string, Change>;
  /** The parent as read before this run, and the superset written while it runs. */
  parent: ParentState;
  superset: ParentState;
  /** What the parent in the cluster says now (undefined: not written by us yet). */
  parentInCluster?: ParentState;
  /** Index into the phase groups: groups before it are applied and their gates passed. */
  nextGroup: number;
  /** The group at `nextGroup` is applied and waits on its gate. */
  groupApplied: boolean;
  /** Objects as last fetched or applied, usable instead of a GET at the next health evaluation. */
  known: Record<string, KubeObject>;
  health: Record<string, Health>;
  /** Keys of objects not ready at the last evaluation. */
  pending: string[];
  changed: boolean;
  /** A failed revision is recorded once per run. */
  failureRecorded: boolean;
  /** For objects to update: the other managers holding fields of the live object (see events). */
  foreign: Record<string, ForeignManager[]>;
  /** Objects whose managedFields are rewritten before they are applied (takeOverFrom). */
  takeover?: Record<string, { resourceVersion: string; managedFields: unknown[] }>;
  /** The `applied` event was emitted. */
  appliedReported: boolean;
}

const FAST_REQUEUE_MS = 250;
const FAST_WINDOW_MS = 10_000;
const SLOW_REQUEUE_MS = 1000;

/** A prepared desired set: namespaced, labelled, checked for duplicates. */
export interface Prepared {
  objects: KubeObject[];
  namespaces: string[];
}

/**
 * Stage 1, prepare: discovery and normalisation. Refuses sets kreg must not deploy (empty: pruning
 * against it would delete everything; objects without identity; duplicates).
 */
export async function prepare(api: KubeApi, input: KubeObject[], set: ApplySetRef): Promise<Prepared> {
  if (input.length === 0) {
    throw new EngineError({
      kind: 'invalid',
      message: 'the desired set is empty: refusing it, because pruning against an empty set would delete everything this ApplySet owns',
    });
  }
  const labels = memberLabels(set);
  const objects: KubeObject[] = [];
  const namespaces = new Set<string>();
  // Discovery of every group-version at once (the client keeps each answer), rather than one
  // round trip after another in the loop below; a failure is reported there, for its object.
  const kindPerVersion = new Map<string, string>();
  for (const o of input) if (o?.apiVersion && o.kind && !kindPerVersion.has(o.apiVersion)) kindPerVersion.set(o.apiVersion, o.kind);
  await Promise.all([...kindPerVersion].map(([apiVersion, kind]) => api.isNamespaced(apiVersion, kind).catch(() => undefined)));
  for (const obj of input) {
    if (!obj?.apiVersion || !obj.kind || !obj.metadata?.name) {
      throw new EngineError({ kind: 'invalid', message: `an object has no apiVersion, kind or metadata.name: ${JSON.stringify(obj).slice(0, 200)}` });
    }
    let namespaced: boolean;
    try {
      namespaced = await api.isNamespaced(obj.apiVersion, obj.kind);
    } catch (err) {
      // A custom resource whose CRD is part of this very set is not served yet: assume namespaced
      // unless it says otherwise; it is checked again when applied after its CRD.
      const definedHere = input.some((o) => o.kind === 'CustomResourceDefinition' && crdServes(o, obj));
      if (!definedHere) {
        if (err instanceof KubeApiError && err.reason === 'NoKindMatch') throw new EngineError({ kind: 'invalid', message: `${describeRef(refOf(obj))}: ${err.message}` });
        throw err;
      }
      namespaced = crdScope(input, obj) !== 'Cluster';
    }
    const phase = obj.metadata.annotations?.[PHASE_ANNOTATION];
    if (phase !== undefined && !(PHASES as readonly string[]).includes(phase)) {
      throw new EngineError({ kind: 'invalid', message: `${describeRef(refOf(obj))}: ${PHASE_ANNOTATION}: "${phase}" is not a phase; expected one of ${PHASES.join(', ')}` });
    }
    const prepared = withGeneratedValues(prepareObject(obj, { namespaced, defaultNamespace: set.namespace, extraLabels: labels }));
    if (prepared.metadata.namespace) namespaces.add(prepared.metadata.namespace);
    objects.push(prepared);
  }
  const dup = duplicates(objects.map(refOf));
  if (dup.length) throw new EngineError({ kind: 'invalid', message: `the desired set names an object twice: ${dup.join(', ')}` });
  namespaces.add(set.namespace);
  return { objects, namespaces: [...namespaces].sort() };
}

function crdServes(crd: KubeObject, obj: KubeObject): boolean {
  const [group, version] = obj.apiVersion.split('/');
  return crd.spec?.group === group && crd.spec?.names?.kind === obj.kind && (crd.spec?.versions ?? []).some((v: { name: string }) => v.name === version);
}

function crdScope(all: KubeObject[], obj: KubeObject): string | undefined {
  return all.find((o) => o.kind === 'CustomResourceDefinition' && crdServes(o, obj))?.spec?.scope;
}

export interface Validation {
  /** The server's answer to each dry run (absent: could not be dry-run yet, see `unvalidated`). */
  dryRuns: Map<string, KubeObject>;
  /** Each object as it is in the cluster now (undefined: it does not exist yet). */
  live: Map<string, KubeObject | undefined>;
  /** Objects not dry-run: their namespace or CRD does not exist yet. */
  unvalidated: Set<string>;
  /** Namespaces created only so that objects inside them could be dry-run. */
  createdNamespaces: string[];
  /** Existing objects that were not the set's and are taken over (`adopt`, or their owner's annotation). */
  adopted: Array<{ ref: ObjectRef; holders: string }>;
}

export interface ValidateOptions {
  force: boolean;
  createNamespaces: boolean;
  /** The set the objects are deployed as: an existing object that is not its member is refused. */
  set: ApplySetRef;
  /** Take over existing objects that are not members of the set (they become members). */
  adopt?: boolean;
}

/**
 * Stage 2, validate: a server-side dry run of every object before anything is changed, shared by
 * deploy and diff (one rule for rejections, one for field conflicts, one for objects of others).
 * Each object is read as it is now at the same time as it is dry-run (the plan compares the two).
 *
 * An object that exists but is not a member of the set (see isMember) belongs to someone else:
 * unless it is adopted, the set is refused (`foreign`) before anything is applied, so kreg never
 * merges into, prunes or deletes what it did not create.
 *
 * `createNamespaces`: a namespace that does not exist yet but is part of the set is created first
 * (objects in it cannot be dry-run otherwise) and deleted again if validation fails, so a rejected
 * deploy leaves the cluster as it found it. Without it (diff), objects in a missing namespace are
 * left unvalidated.
 */
export async function validate(api: KubeApi, prepared: Prepared, manager: string, options: ValidateOptions): Promise<Validation> {
  const createdNamespaces: string[] = [];
  const missing = new Set<string>();
  const live = new Map<string, KubeObject | undefined>();
  for (const ns of prepared.namespaces) {
    const liveNamespace = await api.get({ apiVersion: 'v1', kind: 'Namespace', name: ns });
    if (liveNamespace) {
      live.set(refKey({ apiVersion: 'v1', kind: 'Namespace', name: ns }), liveNamespace);
      continue;
    }
    const nsObject = prepared.objects.find((o) => o.kind === 'Namespace' && o.metadata.name === ns);
    if (!nsObject) {
      throw new EngineError({ kind: 'refused', message: `namespace "${ns}" does not exist and is not part of the desired objects; create it or add a Namespace object` });
    }
    if (!options.createNamespaces) {
      missing.add(ns);
      continue;
    }
    await api.apply(nsObject, { fieldManager: manager, force: options.force });
    createdNamespaces.push(ns);
  }
  const dryRuns = new Map<string, KubeObject>();
  const unvalidated = new Set<string>();
  const problems: string[] = [];
  const conflicts: string[] = [];
  await mapLimit(prepared.objects, 8, async (obj) => {
    const ref = refOf(obj);
    const key = refKey(ref);
    if (obj.metadata.namespace && missing.has(obj.metadata.namespace)) {
      unvalidated.add(key);
      return;
    }
    // The set's namespaces were read above (and those created for the dry run were not there).
    const namespaceReadAbove = obj.apiVersion === 'v1' && obj.kind === 'Namespace' && prepared.namespaces.includes(obj.metadata.name);
    const [current, dryRun] = await Promise.allSettled([
      namespaceReadAbove ? Promise.resolve(live.get(key)) : api.get(ref),
      api.apply(obj, { fieldManager: manager, force: options.force, dryRun: true }),
    ]);
    if (dryRun.status === 'rejected') {
      const err = dryRun.reason;
      if (err instanceof KubeApiError && err.reason === 'NoKindMatch' && prepared.objects.some((o) => o.kind === 'CustomResourceDefinition' && crdServes(o, obj))) {
        unvalidated.add(key); // its CRD is applied in this run; the object is validated when it is applied
        return;
      }
      if (isFieldConflict(err)) conflicts.push(...describeConflict(ref, err as KubeApiError));
      else if (isRejection(err)) problems.push(`${describeRef(ref)}: ${(err as KubeApiError).message}`);
      else throw err;
    } else dryRuns.set(key, dryRun.value);
    if (current.status === 'rejected') throw current.reason;
    live.set(key, current.value);
  });
  const foreign: Array<{ ref: ObjectRef; holders: string }> = [];
  const adopted: Array<{ ref: ObjectRef; holders: string }> = [];
  for (const obj of prepared.objects) {
    const current = live.get(refKey(refOf(obj)));
    if (!current || isMember(current, options.set, obj)) continue;
    const entry = { ref: refOf(obj), holders: holdersOf(current, foreignManagers(current, manager).map((m) => m.manager)) };
    if (options.adopt || consentsToAdoption(current, options.set)) adopted.push(entry);
    else foreign.push(entry);
  }
  if (problems.length || conflicts.length || foreign.length) {
    for (const ns of createdNamespaces) await api.delete({ apiVersion: 'v1', kind: 'Namespace', name: ns });
    const undo = createdNamespaces.length
      ? ` (the namespace${createdNamespaces.length > 1 ? 's' : ''} ${createdNamespaces.join(', ')} created for the dry run ${createdNamespaces.length > 1 ? 'were' : 'was'} deleted again)`
      : '';
    // First: an object of someone else's is the cause whatever else is wrong with it (an immutable
    // field the dry run refuses, fields another manager owns), and --force-conflicts would not make it ours.
    if (foreign.length) {
      const one = foreign.length === 1;
      throw new EngineError({
        kind: 'foreign',
        message: `${foreign.length} object${one ? '' : 's'} already exist${one ? 's' : ''} and ${one ? 'was' : 'were'} not created by ${describeRef(parentRefOf(options.set))}; nothing was applied${undo}`,
        refs: foreign.map((f) => f.ref),
        details: foreign.map((f) => `${describeRef(f.ref)}: ${f.holders}; its owner can hand it over with the annotation ${ADOPT_ANNOTATION}=${adoptionValue(options.set)}`),
      });
    }
    if (problems.length) {
      throw new EngineError({
        kind: 'invalid',
        message: `${problems.length} object(s) rejected by the server-side dry run; nothing was applied${undo}`,
        details: [...problems, ...conflicts],
      });
    }
    throw new EngineError({ kind: 'conflict', message: `${conflicts.length} field(s) owned by another field manager; nothing was applied${undo}`, details: conflicts });
  }
  return { dryRuns, live, unvalidated, createdNamespaces, adopted };
}

/**
 * The server refused the object itself. Not: credentials (401/403) and overload (429, 503, 504),
 * which say nothing about the object. A 500 is included: the API server answers an apply whose
 * object does not fit the schema ("failed to create typed patch object … field not declared in
 * schema") with 500, not 422.
 */
function isRejection(err: unknown): boolean {
  return err instanceof KubeApiError && err.status >= 400 && ![401, 403, 429, 503, 504].includes(err.status);
}

/** A server-side apply refused because fields belong to another manager (not a resourceVersion clash). */
export function isFieldConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 409 && err.reason === 'Conflict' && !/has been modified/.test(err.message);
}

/** `Deployment/ns/x: .spec.replicas is owned by "kubectl-edit" (apps/v1)` per conflicting field. */
export function describeConflict(ref: ObjectRef, err: KubeApiError): string[] {
  const causes = err.causes.filter((c) => c.reason === 'FieldManagerConflict' || c.field);
  if (causes.length === 0) return [`${describeRef(ref)}: ${err.message}`];
  return causes.map((c) => {
    const manager = /conflict with "([^"]+)"/.exec(c.message ?? '')?.[1];
    const using = /using ([^\s]+)/.exec(c.message ?? '')?.[1];
    return `${describeRef(ref)}: ${c.field ?? '?'} is owned by ${manager ? `"${manager}"` : 'another manager'}${using ? ` (${using})` : ''}`;
  });
}

/** Stage 3, plan: what applying each object would do, from its live state and its dry run. */
export function plan(prepared: Prepared, validation: Validation, manager: string): { live: Map<string, KubeObject | undefined>; changes: Map<string, Change> } {
  const changes = new Map<string, Change>();
  for (const obj of prepared.objects) {
    const key = refKey(refOf(obj));
    const dry = validation.dryRuns.get(key);
    const live = validation.live.get(key);
    // A generated Secret is written once, when it does not exist: its values were made for this run.
    if (live && isGenerated(obj)) changes.set(key, 'unchanged');
    else changes.set(key, dry ? classifyChange(live, dry, manager) : live ? 'update' : 'create');
  }
  for (const ns of validation.createdNamespaces) changes.set(refKey({ apiVersion: 'v1', kind: 'Namespace', name: ns }), 'create');
  return { live: validation.live, changes };
}

/** Whether a phase group must be waited on before the next is applied, and on which objects. */
function gateOf(group: { phase: Phase; objects: KubeObject[] }): ObjectRef[] | undefined {
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

/** Stage: apply one phase group's changed objects (server-side apply, in parallel). */
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

async function applyGroup(api: KubeApi, group: KubeObject[], memo: ReconcileMemo, manager: string, force: boolean, emit: EventSink, takeOverFrom?: (manager: string) => boolean): Promise<void> {
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
function noteHealth(memo: ReconcileMemo, results: Array<{ ref: ObjectRef; health: Health }>, emit: EventSink): { failed?: { ref: ObjectRef; health: Health }; pending: ObjectRef[] } {
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

/**
 * Stage, record: the parent with its final kinds (unless it already says so) and, when something
 * changed (or a run that changed something failed), a new revision. Returns the current revision.
 */
export async function record(
  api: KubeApi,
  set: ApplySetRef,
  manager: string,
  memo: ReconcileMemo,
  finalState: ParentState,
  outcome: { status: Revision['status']; description: string; changed: boolean },
  emit: EventSink,
): Promise<number> {
  const previous = memo.parent.revision;
  const rv = memo.parentInCluster?.resourceVersion;
  if (!outcome.changed && previous > 0) {
    const same = (a: string[], b: string[]) => [...a].sort().join() === [...b].sort().join();
    const inCluster = memo.parentInCluster ?? memo.parent;
    if (!same(inCluster.groupKinds, finalState.groupKinds) || !same(inCluster.namespaces, finalState.namespaces)) {
      memo.parentInCluster = await writeParent(api, set, manager, { ...finalState, revision: inCluster.revision, ...(rv ? { resourceVersion: rv } : {}) });
    }
    return memo.parentInCluster?.revision ?? previous;
  }
  const failed = outcome.status === 'failed';
  // Generated values stay in their Secret only: a revision records the Secret without them.
  const recorded = memo.objects.map(withoutGeneratedValues);
  const number = await recordRevision(
    api,
    set,
    { status: outcome.status, deployedAt: new Date().toISOString(), description: outcome.description, digest: digestObjects(recorded), objects: recorded },
    previous,
    manager,
  );
  emit({ type: 'record', revision: number, status: failed ? 'failed' : 'deployed' });
  // A failed run still moves the parent (its kinds may have grown) but not the current revision.
  const current = failed ? (memo.parentInCluster?.revision ?? previous) : number;
  memo.parentInCluster = await writeParent(api, set, manager, { ...finalState, revision: current, ...(rv ? { resourceVersion: rv } : {}) });
  return current;
}

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
