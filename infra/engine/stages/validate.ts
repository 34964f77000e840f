/** Stage 2, validate: the server-side dry run of everything, and the objects of others. */
import { ADOPT_ANNOTATION } from '../annotations.js';
import { type KubeApi, KubeApiError } from '../client.js';
import { EngineError } from '../errors.js';
import { adoptionValue, type ApplySetRef, consentsToAdoption, holdersOf, isMember, parentRefOf } from '../inventory.js';
import { foreignManagers } from '../plan.js';
import { describeRef, type KubeObject, type ObjectRef, refKey, refOf } from '../types.js';
import { mapLimit } from '../util.js';
import { crdServes, type Prepared } from './prepare.js';

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
