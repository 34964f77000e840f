/**
 * The commands around a deploy: status (readiness of what the ApplySet owns), rollback (re-deploy a
 * recorded revision) and destroy (delete the inventory, workloads before what they use).
 */
import { PRUNE_ANNOTATION, PRUNE_NEVER } from './annotations.js';
import type { KubeApi } from './client.js';
import { deploy, type DeployOptions, type DeployReport } from './deploy.js';
import { gatherEvidence, type Evidence } from './diagnostics.js';
import { EngineError } from './errors.js';
import type { EventSink } from './events.js';
import { parentRefOf, readParent, type ApplySetRef } from './inventory.js';
import { byPhase } from './plan.js';
import { evaluateOnce, listMembers, type Target } from './reconcile.js';
import { listRevisions, revisionName, type Revision } from './revisions.js';
import type { Health, KubeObject, ObjectRef } from './types.js';
import { describeRef, refKey, refOf } from './types.js';
import { mapLimit, sleep } from './util.js';

export interface StatusReport {
  deployed: boolean;
  revision: number | null;
  /** Objects not ready carry evidence (conditions, events, container states, last log lines). */
  objects: Array<{ ref: ObjectRef; health: Health; evidence?: Evidence }>;
  history: Array<Omit<Revision, 'objects'>>;
  ready: boolean;
  /** Kinds that could not be listed (RBAC, API errors): their members are missing from `objects`. */
  unlisted: string[];
}

/** Readiness of every member of the set, with evidence for what is not ready, and the history. */
export async function status(client: KubeApi, set: ApplySetRef, options: { signal?: AbortSignal } = {}): Promise<StatusReport> {
  const api = client.scoped(options);
  const parent = await api.get(parentRefOf(set));
  if (!parent) return { deployed: false, revision: null, objects: [], history: [], ready: false, unlisted: [] };
  const state = readParent(set, parent);
  const { members, unlisted } = await listMembers(api, set, state);
  const ordered = byPhase(members).flatMap((g) => g.objects);
  const known = Object.fromEntries(ordered.map((m) => [refKey(refOf(m)), m]));
  const objects: StatusReport['objects'] = await evaluateOnce(api, ordered.map(refOf), known);
  // Why something is not ready is the question `status` is asked; a pod's own log says what its
  // readiness probe cannot (a probe event only says "statuscode: 503").
  await mapLimit(
    objects.filter((o) => o.health.state !== 'ready'),
    4,
    async (o) => {
      o.evidence = await gatherEvidence(api, o.ref, o.health);
    },
  );
  const history = (await listRevisions(api, set)).map(({ objects: _objects, ...rest }) => rest);
  return {
    deployed: true,
    revision: state.revision,
    objects,
    history,
    ready: unlisted.length === 0 && objects.every((o) => o.health.state === 'ready'),
    unlisted: unlisted.map((u) => `${u.groupKind}${u.namespace ? ` in ${u.namespace}` : ''}: ${u.reason}`),
  };
}

/** The revision a rollback re-applies: `to`, or the last successful one before the current. */
export async function chooseRevision(client: KubeApi, set: ApplySetRef, to: number | undefined): Promise<Revision> {
  const current = readParent(set, await client.get(parentRefOf(set))).revision;
  return pickRevision(await listRevisions(client, set), current, to, describeRef(parentRefOf(set)));
}

/** The choice itself, on a history (oldest first): pure, so every case is a fast test. */
export function pickRevision(history: Revision[], current: number, to: number | undefined, setName = 'the set'): Revision {
  if (history.length === 0) throw new EngineError({ kind: 'usage', message: `no recorded revisions for ${setName}: nothing to roll back to` });
  if (to !== undefined) {
    const chosen = history.find((h) => h.number === to);
    if (!chosen) throw new EngineError({ kind: 'usage', message: `no revision ${to}; recorded: ${history.map((h) => h.number).join(', ')}` });
    return chosen;
  }
  const chosen = [...history].reverse().find((h) => h.number < current && h.status !== 'failed');
  if (!chosen) throw new EngineError({ kind: 'usage', message: `no successful revision before the current one (${current}) to roll back to; choose one by number` });
  return chosen;
}

/** Re-deploys a recorded revision (with prune and wait, as a deploy). */
export async function rollback(client: KubeApi, target: Target, revision: Revision, options: DeployOptions): Promise<DeployReport & { rolledBackTo: number }> {
  const report = await deploy(client, revision.objects, target, { ...options, description: `rollback to revision ${revision.number}` });
  return { ...report, rolledBackTo: revision.number };
}

/** Why destroy keeps an object unless told to include kept ones (`includeKept`). */
export const KEPT_BY_ANNOTATION = `annotated ${PRUNE_ANNOTATION}: ${PRUNE_NEVER}`;

export interface DestroyReport {
  ok: boolean;
  deleted: ObjectRef[];
  kept: Array<{ ref: ObjectRef; why: string }>;
  remaining: ObjectRef[];
  /** No ApplySet parent was found: there was nothing to destroy. */
  absent: boolean;
}

/**
 * Deletes every member of the set (workloads before what they use, each phase gone before the
 * next), then its revisions and parent. Objects annotated `kreg.dev/prune: never` stay unless
 * `includeKept`, and so does a namespace that holds them.
 */
export async function destroy(
  client: KubeApi,
  target: Target,
  options: {
    includeKept: boolean;
    wait: boolean;
    timeoutMs: number;
    /** Count an object as gone once it is terminating (its finalizers will finish the job). */
    untilTerminating?: boolean;
    onEvent?: EventSink;
    signal?: AbortSignal;
  },
): Promise<DestroyReport> {
  const api = client.scoped(options.signal ? { signal: options.signal } : {});
  const { set } = target;
  const emit = options.onEvent ?? (() => {});
  const report: DestroyReport = { ok: true, deleted: [], kept: [], remaining: [], absent: false };
  const parent = await api.get(parentRefOf(set));
  if (!parent) return { ...report, absent: true };
  const { members, unlisted } = await listMembers(api, set, readParent(set, parent));
  if (unlisted.length) {
    throw new EngineError({
      kind: 'refused',
      message: `cannot list every kind of the set, so destroying it would leave members behind: ${unlisted.map((u) => `${u.groupKind}: ${u.reason}`).join('; ')}`,
    });
  }
  const keep = (m: KubeObject) => !options.includeKept && m.metadata.annotations?.[PRUNE_ANNOTATION] === PRUNE_NEVER;
  const keptObjects = members.filter(keep);
  // Deleting a namespace deletes everything in it: a namespace holding kept objects stays.
  const keptNamespaces = new Set(keptObjects.map((m) => m.metadata.namespace).filter(Boolean));
  for (const m of members) {
    if (keep(m)) report.kept.push({ ref: refOf(m), why: KEPT_BY_ANNOTATION });
    else if (m.kind === 'Namespace' && keptNamespaces.has(m.metadata.name)) report.kept.push({ ref: refOf(m), why: 'holds kept objects' });
  }
  for (const k of report.kept) emit({ type: 'prune', ref: k.ref, action: 'kept', why: k.why });
  const keptKeys = new Set(report.kept.map((k) => refKey(k.ref)));
  const doomed = members.filter((m) => !keptKeys.has(refKey(refOf(m))));
  for (const group of byPhase(doomed, true)) {
    await mapLimit(group.objects, 8, async (obj) => {
      if (await api.delete(refOf(obj))) {
        report.deleted.push(refOf(obj));
        emit({ type: 'prune', ref: refOf(obj), action: 'deleted' });
      }
    });
    if (options.wait) {
      // Workloads are gone before what they use is deleted (a pod never loses its ConfigMap mid-run).
      const deadline = Date.now() + options.timeoutMs;
      let left = group.objects.map(refOf);
      while (left.length && Date.now() < deadline) {
        const still: ObjectRef[] = [];
        for (const ref of left) {
          const obj = await api.get(ref);
          if (obj && !(options.untilTerminating && obj.metadata.deletionTimestamp)) still.push(ref);
        }
        left = still;
        if (left.length) await sleep(500, options.signal);
      }
      report.remaining.push(...left);
    }
  }
  // The bookkeeping goes last (it may already be gone with its namespace).
  const revisions = await listRevisions(api, set).catch(() => []);
  for (const rev of revisions) await api.delete({ apiVersion: 'v1', kind: 'Secret', namespace: set.namespace, name: revisionName(set, rev.number) }).catch(() => false);
  // A custom resource parent belongs to its user (and its deletion is what started this); only a Secret parent is ours to delete.
  if (parentRefOf(set).kind === 'Secret') await api.delete(parentRefOf(set)).catch(() => false);
  report.ok = report.remaining.length === 0;
  if (!report.ok) emit({ type: 'warning', message: `still terminating after ${Math.round(options.timeoutMs / 1000)} s: ${report.remaining.map(describeRef).join(', ')}` });
  return report;
}
