/**
 * The deploy pipeline for any list of objects:
 *
 *   prepare → validate (server-side dry run of everything, nothing changed yet) → plan (live vs
 *   dry-run result per object) → record the ApplySet parent (superset of kinds, so an interrupted
 *   run still finds everything) → apply changed objects phase by phase with server-side apply
 *   (CRDs waited Established, Jobs waited Complete) → wait for readiness, failing fast with
 *   evidence → prune members no longer desired (workloads first) → parent with the exact kinds →
 *   revision recorded.
 *
 * An immediate redeploy changes nothing and records nothing: every object is classified
 * `unchanged`, so no apply is sent; the readiness check uses the objects the plan already fetched.
 */
import { KubeApiError, type KubeClient } from './client.js';
import { gatherEvidence, type Evidence } from './diagnostics.js';
import {
  applySetId,
  decidePrune,
  groupKindsOf,
  memberLabels,
  parentObject,
  parseGroupKind,
  readParent,
  type ApplySetRef,
  type ParentState,
} from './inventory.js';
import { byPhase, classifyChange, digestObjects, duplicates, prepareObject, type Change } from './plan.js';
import type { Reporter } from './report.js';
import { listRevisions, recordRevision, type Revision } from './revisions.js';
import type { Health, KubeObject, ObjectRef } from './types.js';
import { describeRef, groupKind, refKey, refOf } from './types.js';
import { waitForReady, type WaitResult } from './wait.js';

export const FIELD_MANAGER = 'kreg';

/** Exit codes, documented in `kreg --help`. */
export const EXIT = {
  ok: 0,
  changes: 1,
  usage: 2,
  invalid: 3,
  conflict: 4,
  failed: 5,
  timeout: 6,
  verify: 7,
  unreachable: 8,
} as const;

export class EngineError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
    readonly ref?: ObjectRef,
    readonly evidence?: Evidence,
    readonly details: string[] = [],
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export interface Target {
  set: ApplySetRef;
  fieldManager?: string;
}

export interface DeployOptions {
  timeoutMs: number;
  wait: boolean;
  prune: boolean;
  forceConflicts: boolean;
  /** One line recorded with the revision, e.g. `deploy dev (image kreg/registration:1.2.3)`. */
  description: string;
  reporter: Reporter;
  pollMs?: number;
}

export interface DeployReport {
  ok: boolean;
  exitCode: number;
  applySet: { name: string; namespace: string; id: string };
  revision: number | null;
  changed: boolean;
  objects: Array<{ ref: ObjectRef; change: Change; health?: Health }>;
  pruned: ObjectRef[];
  kept: Array<{ ref: ObjectRef; why: string }>;
  failure?: { ref?: ObjectRef; message: string; evidence?: Evidence; details?: string[] };
  timingsMs: Record<string, number>;
  apiCalls: number;
}

interface Prepared {
  objects: KubeObject[];
  namespaces: string[];
}

/** Discovery + normalisation; throws a usage-level error for sets kreg must refuse. */
export async function prepare(client: KubeClient, input: KubeObject[], set: ApplySetRef): Promise<Prepared> {
  if (input.length === 0) {
    throw new EngineError(
      EXIT.invalid,
      'the desired set is empty: refusing to deploy, because pruning against an empty set would delete everything this ApplySet owns (use `kreg destroy` to remove it)',
    );
  }
  const labels = memberLabels(set);
  const objects: KubeObject[] = [];
  const namespaces = new Set<string>();
  for (const obj of input) {
    if (!obj?.apiVersion || !obj.kind || !obj.metadata?.name) {
      throw new EngineError(EXIT.invalid, `an object has no apiVersion, kind or metadata.name: ${JSON.stringify(obj).slice(0, 200)}`);
    }
    let namespaced: boolean;
    try {
      namespaced = await client.isNamespaced(obj.apiVersion, obj.kind);
    } catch (err) {
      // A custom resource whose CRD is part of this very set is not served yet: assume namespaced
      // unless it says otherwise; it is checked again when applied after its CRD.
      const definedHere = input.some((o) => o.kind === 'CustomResourceDefinition' && crdServes(o, obj));
      if (!definedHere) throw err;
      namespaced = crdScope(input, obj) !== 'Cluster';
    }
    const prepared = prepareObject(obj, { namespaced, defaultNamespace: set.namespace, extraLabels: labels });
    if (prepared.metadata.namespace) namespaces.add(prepared.metadata.namespace);
    objects.push(prepared);
  }
  const dup = duplicates(objects.map(refOf));
  if (dup.length) throw new EngineError(EXIT.invalid, `the desired set names an object twice: ${dup.join(', ')}`);
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

interface Validation {
  dryRuns: Map<string, KubeObject>;
  /** Namespaces created only so that objects inside them could be dry-run. */
  createdNamespaces: string[];
}

/**
 * Server-side dry run of every object, before anything is changed. A namespace that does not exist
 * yet but is part of the set is created first (objects in it cannot be dry-run otherwise) and
 * deleted again if validation fails, so a rejected deploy leaves the cluster as it found it.
 */
async function validate(client: KubeClient, prepared: Prepared, manager: string, force: boolean): Promise<Validation> {
  const createdNamespaces: string[] = [];
  for (const ns of prepared.namespaces) {
    if (await client.get({ apiVersion: 'v1', kind: 'Namespace', name: ns })) continue;
    const nsObject = prepared.objects.find((o) => o.kind === 'Namespace' && o.metadata.name === ns);
    if (!nsObject) {
      throw new EngineError(EXIT.invalid, `namespace "${ns}" does not exist and is not part of the manifests; create it or add a Namespace object`);
    }
    await client.apply(nsObject, { fieldManager: manager, force });
    createdNamespaces.push(ns);
  }
  const dryRuns = new Map<string, KubeObject>();
  const problems: string[] = [];
  const conflicts: string[] = [];
  await mapLimit(prepared.objects, 8, async (obj) => {
    try {
      dryRuns.set(refKey(refOf(obj)), await client.apply(obj, { fieldManager: manager, force, dryRun: true }));
    } catch (err) {
      if (err instanceof KubeApiError && err.reason === 'NoKindMatch' && prepared.objects.some((o) => o.kind === 'CustomResourceDefinition' && crdServes(o, obj))) {
        return; // its CRD is applied in this run; the object is validated when it is applied
      }
      if (err instanceof KubeApiError && err.status === 409 && err.reason === 'Conflict') conflicts.push(...describeConflict(refOf(obj), err));
      else problems.push(`${describeRef(refOf(obj))}: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  if (problems.length || conflicts.length) {
    for (const ns of createdNamespaces) await client.delete({ apiVersion: 'v1', kind: 'Namespace', name: ns });
    const undo = createdNamespaces.length ? ` (the namespace${createdNamespaces.length > 1 ? 's' : ''} ${createdNamespaces.join(', ')} created for the dry run ${createdNamespaces.length > 1 ? 'were' : 'was'} deleted again)` : '';
    if (problems.length) {
      throw new EngineError(EXIT.invalid, `${problems.length} object(s) rejected by the server-side dry run; nothing was applied${undo}`, undefined, undefined, [...problems, ...conflicts]);
    }
    throw new EngineError(
      EXIT.conflict,
      `${conflicts.length} field(s) owned by another field manager; nothing was applied${undo}. Re-run with --force-conflicts to take them over`,
      undefined,
      undefined,
      conflicts,
    );
  }
  return { dryRuns, createdNamespaces };
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

export async function deploy(client: KubeClient, input: KubeObject[], target: Target, options: DeployOptions): Promise<DeployReport> {
  const manager = target.fieldManager ?? FIELD_MANAGER;
  const { set } = target;
  const r = options.reporter;
  const timings: Record<string, number> = {};
  const t0 = performance.now();
  const mark = (name: string, since: number) => (timings[name] = Math.round(performance.now() - since));
  const report: DeployReport = {
    ok: false,
    exitCode: EXIT.ok,
    applySet: { ...set, id: applySetId(set) },
    revision: null,
    changed: false,
    objects: [],
    pruned: [],
    kept: [],
    timingsMs: timings,
    apiCalls: 0,
  };
  const deadline = Date.now() + options.timeoutMs;
  const remaining = () => Math.max(0, deadline - Date.now());

  try {
    let t = performance.now();
    const prepared = await prepare(client, input, set);
    const parentRef: ObjectRef = { apiVersion: 'v1', kind: 'Secret', namespace: set.namespace, name: set.name };
    const validation = await validate(client, prepared, manager, options.forceConflicts);
    mark('validate', t);
    r.step(`validate: ${prepared.objects.length} objects pass a server-side dry run (${timings.validate} ms)`);

    t = performance.now();
    const liveParent = await client.get(parentRef);
    const parent = readParent(set, liveParent);
    if (parent.tooling && !parent.tooling.startsWith('kreg/')) {
      throw new EngineError(EXIT.conflict, `the ApplySet parent ${describeRef(parentRef)} belongs to "${parent.tooling}", not kreg; choose another name`);
    }
    const live = new Map<string, KubeObject | undefined>();
    await mapLimit(prepared.objects, 8, async (obj) => {
      live.set(refKey(refOf(obj)), await client.get(refOf(obj)));
    });
    const changes = new Map<string, Change>();
    for (const obj of prepared.objects) {
      const key = refKey(refOf(obj));
      const dry = validation.dryRuns.get(key);
      changes.set(key, dry ? classifyChange(live.get(key), dry, manager) : 'create');
    }
    for (const ns of validation.createdNamespaces) changes.set(refKey({ apiVersion: 'v1', kind: 'Namespace', name: ns }), 'create');
    mark('plan', t);
    const changedObjects = prepared.objects.filter((o) => changes.get(refKey(refOf(o))) !== 'unchanged');

    // Parent first, listing old and new kinds: if this run dies half-way, the next one still finds
    // (and can prune) everything that may have been applied.
    const newKinds = groupKindsOf(prepared.objects);
    const superset: ParentState = {
      groupKinds: [...new Set([...parent.groupKinds, ...newKinds])],
      namespaces: [...new Set([...parent.namespaces, ...prepared.namespaces])],
      revision: parent.revision,
    };
    const parentChanged = !liveParent || superset.groupKinds.length !== parent.groupKinds.length || superset.namespaces.length !== parent.namespaces.length;

    t = performance.now();
    const known = new Map<string, KubeObject>();
    // The parent lives in a namespace, so it is written once the namespaces phase is through.
    let parentWritten = !parentChanged;
    // What the parent in the cluster says now, so the final write can be skipped when it says it already.
    let parentInCluster: ParentState | undefined = liveParent ? parent : undefined;
    const writeParent = async () => {
      if (parentWritten) return;
      await client.apply(parentObject(set, superset), { fieldManager: manager, force: true });
      parentWritten = true;
      parentInCluster = superset;
    };
    for (const group of byPhase(prepared.objects)) {
      if (group.phase !== 'namespaces') await writeParent();
      const toApply = group.objects.filter((o) => changes.get(refKey(refOf(o))) !== 'unchanged');
      await mapLimit(toApply, 8, async (obj) => {
        const ref = refOf(obj);
        try {
          const applied = await client.apply(obj, { fieldManager: manager, force: options.forceConflicts });
          known.set(refKey(ref), applied);
          const change = changes.get(refKey(ref))!;
          r.action(ref, change === 'create' ? 'created' : 'updated');
        } catch (err) {
          if (err instanceof KubeApiError && err.status === 409 && err.reason === 'Conflict') {
            throw new EngineError(EXIT.conflict, `${describeRef(ref)}: fields owned by another field manager; re-run with --force-conflicts to take them over`, ref, undefined, describeConflict(ref, err));
          }
          throw new EngineError(EXIT.failed, `${describeRef(ref)}: apply failed: ${err instanceof Error ? err.message : String(err)}`, ref);
        }
      });
      for (const obj of group.objects.filter((o) => changes.get(refKey(refOf(o))) === 'unchanged')) {
        const cur = live.get(refKey(refOf(obj)));
        if (cur) known.set(refKey(refOf(obj)), cur);
      }
      // Gates: custom resources need their CRD established; workloads need their Jobs complete.
      if ((group.phase === 'definitions' && group.objects.some((o) => o.kind === 'CustomResourceDefinition')) || group.phase === 'jobs') {
        const gate = group.objects.filter((o) => group.phase === 'jobs' || o.kind === 'CustomResourceDefinition').map(refOf);
        r.step(`${group.phase === 'jobs' ? 'waiting for Jobs to complete' : 'waiting for CRDs to be established'}: ${gate.map(describeRef).join(', ')}`);
        await gateOn(client, gate, remaining(), r, options.pollMs, known);
        if (group.phase === 'definitions') for (const crd of group.objects) for (const v of crd.spec?.versions ?? []) client.forgetDiscovery(`${crd.spec.group}/${v.name}`);
      }
    }
    await writeParent();
    mark('apply', t);
    for (const obj of prepared.objects) {
      if (changes.get(refKey(refOf(obj))) === 'unchanged') r.action(refOf(obj), 'unchanged');
    }
    r.step(`apply: ${changedObjects.length} of ${prepared.objects.length} objects changed (${timings.apply} ms)`);
    report.changed = changedObjects.length > 0;

    // Readiness of the whole set, not just what changed: an unchanged Deployment may be broken.
    let healthByKey = new Map<string, Health>();
    if (options.wait) {
      t = performance.now();
      const result = await waitForReady(client, prepared.objects.map(refOf), {
        timeoutMs: remaining(),
        known,
        onChange: (ref, h) => r.health(ref, h),
        ...(options.pollMs ? { pollMs: options.pollMs } : {}),
      });
      mark('wait', t);
      healthByKey = result.health;
      fillObjects(report, prepared.objects, changes, healthByKey);
      const failure = await waitFailure(client, result, options.timeoutMs);
      if (failure) {
        await recordRun(client, set, manager, prepared.objects, parent.revision, parentInCluster, superset, 'failed', options.description, report.changed, true);
        throw failure;
      }
      r.step(`wait: all ${prepared.objects.length} objects ready (${timings.wait} ms)`);
    } else {
      fillObjects(report, prepared.objects, changes, healthByKey);
    }

    // Prune what this set owned before and no longer wants.
    t = performance.now();
    if (options.prune) {
      const members = await listMembers(client, set, superset, prepared.objects);
      const decision = decidePrune(members, prepared.objects.map(refOf));
      for (const k of decision.kept) {
        report.kept.push({ ref: refOf(k.object), why: k.why });
        r.action(refOf(k.object), 'kept', k.why);
      }
      for (const group of byPhase(decision.prune, true)) {
        await mapLimit(group.objects, 8, async (obj) => {
          if (await client.delete(refOf(obj))) {
            report.pruned.push(refOf(obj));
            r.action(refOf(obj), 'pruned');
          }
        });
      }
    }
    mark('prune', t);
    report.changed ||= report.pruned.length > 0;

    const exact: ParentState = {
      groupKinds: options.prune ? newKinds : superset.groupKinds,
      namespaces: options.prune ? prepared.namespaces : superset.namespaces,
      revision: parent.revision,
    };
    report.revision = await recordRun(client, set, manager, prepared.objects, parent.revision, parentInCluster, exact, 'deployed', options.description, report.changed, false);
    report.ok = true;
    report.exitCode = EXIT.ok;
  } catch (err) {
    const e = toEngineError(err);
    report.ok = false;
    report.exitCode = e.exitCode;
    report.failure = {
      ...(e.ref ? { ref: e.ref } : {}),
      message: e.message,
      ...(e.evidence ? { evidence: e.evidence } : {}),
      ...(e.details.length ? { details: e.details } : {}),
    };
    r.failure(e.ref, e.message, e.evidence);
    for (const d of e.details) r.warn(d);
  } finally {
    timings.total = Math.round(performance.now() - t0);
    report.apiCalls = client.calls;
  }
  return report;
}

function fillObjects(report: DeployReport, objects: KubeObject[], changes: Map<string, Change>, health: Map<string, Health>): void {
  report.objects = objects.map((o) => {
    const key = refKey(refOf(o));
    const h = health.get(key);
    return { ref: refOf(o), change: changes.get(key) ?? 'unchanged', ...(h ? { health: h } : {}) };
  });
}

/**
 * Writes the parent with its final kinds (unless `inCluster`, what it says now, already matches)
 * and, when something changed (or the run failed after changing something), the next revision.
 * Returns the current revision number.
 */
async function recordRun(
  client: KubeClient,
  set: ApplySetRef,
  manager: string,
  objects: KubeObject[],
  previous: number,
  inCluster: ParentState | undefined,
  parentState: ParentState,
  status: Revision['status'],
  description: string,
  changed: boolean,
  failed: boolean,
): Promise<number> {
  if (!changed && previous > 0) {
    const same = (a: string[], b: string[]) => [...a].sort().join() === [...b].sort().join();
    if (!inCluster || !same(inCluster.groupKinds, parentState.groupKinds) || !same(inCluster.namespaces, parentState.namespaces)) {
      await client.apply(parentObject(set, { ...parentState, revision: previous }), { fieldManager: manager, force: true });
    }
    return previous;
  }
  const history = await listRevisions(client, set);
  const number = Math.max(previous, ...history.map((h) => h.number), 0) + 1;
  const rev: Revision = { number, status, deployedAt: new Date().toISOString(), description, digest: digestObjects(objects), objects };
  await recordRevision(client, set, rev, manager, history);
  // A failed run still moves the parent (its kinds may have grown) but not the current revision.
  await client.apply(parentObject(set, { ...parentState, revision: failed ? previous : number }), { fieldManager: manager, force: true });
  return failed ? previous : number;
}

/** Every object carrying this set's membership label, in the recorded kinds and namespaces. */
export async function listMembers(client: KubeClient, set: ApplySetRef, parent: ParentState, desired: KubeObject[] = []): Promise<KubeObject[]> {
  const labelSelector = Object.entries(memberLabels(set)).map(([k, v]) => `${k}=${v}`).join(',');
  const out: KubeObject[] = [];
  for (const gk of parent.groupKinds) {
    const { kind, group } = parseGroupKind(gk);
    const apiVersion = desired.find((o) => groupKind(o) === gk)?.apiVersion ?? (await client.preferredApiVersion(group).catch(() => undefined));
    if (!apiVersion) continue; // the group is gone from the cluster (CRD deleted): nothing to list
    let namespaced: boolean;
    try {
      namespaced = await client.isNamespaced(apiVersion, kind);
    } catch {
      continue;
    }
    if (namespaced) {
      for (const namespace of parent.namespaces) {
        out.push(...(await client.list(apiVersion, kind, { namespace, labelSelector }).catch(() => [])));
      }
    } else {
      out.push(...(await client.list(apiVersion, kind, { labelSelector })));
    }
  }
  return out;
}

async function gateOn(client: KubeClient, refs: ObjectRef[], timeoutMs: number, r: Reporter, pollMs: number | undefined, known: Map<string, KubeObject>): Promise<void> {
  const result = await waitForReady(client, refs, { timeoutMs, onChange: (ref, h) => r.health(ref, h), ...(pollMs ? { pollMs } : {}) });
  const failure = await waitFailure(client, result, timeoutMs);
  if (failure) throw failure;
  for (const ref of refs) known.delete(refKey(ref));
}

/** A wait that did not end ready, as the error to report: the failed (or first pending) object with its evidence. */
async function waitFailure(client: KubeClient, result: WaitResult, timeoutMs: number): Promise<EngineError | undefined> {
  if (result.outcome === 'failed') {
    const f = result.failed!;
    return new EngineError(EXIT.failed, `${f.health.reason}: ${f.health.message}`, f.ref, await gatherEvidence(client, f.ref, f.health));
  }
  if (result.outcome === 'timeout') {
    const first = result.pending[0]!;
    const h = result.health.get(refKey(first));
    const evidence = await gatherEvidence(client, first, h ?? { state: 'progressing', reason: 'Unknown', message: '' });
    const pending = result.pending.map((p) => `${describeRef(p)} (${result.health.get(refKey(p))?.message ?? 'no status'})`).join('; ');
    return new EngineError(EXIT.timeout, `not ready after ${Math.round(timeoutMs / 1000)} s: ${pending}`, first, evidence);
  }
  return undefined;
}

export function toEngineError(err: unknown): EngineError {
  if (err instanceof EngineError) return err;
  if (err instanceof Error && err.name === 'KubeConnectionError') return new EngineError(EXIT.unreachable, err.message);
  if (err instanceof KubeApiError) {
    if (err.status === 401 || err.status === 403) return new EngineError(EXIT.unreachable, `the API server refused the credentials: ${err.message}`, err.ref);
    return new EngineError(EXIT.failed, err.message, err.ref);
  }
  return new EngineError(EXIT.failed, err instanceof Error ? err.message : String(err));
}

/** Runs `fn` over `items` with at most `limit` at once; the first rejection wins. */
export async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}
