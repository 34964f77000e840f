/**
 * The commands around a deploy: status (readiness of what the ApplySet owns), rollback (re-deploy a
 * recorded revision) and destroy (delete the inventory, workloads before what they use).
 */
import { PRUNE_ANNOTATION, PRUNE_NEVER } from './annotations.js';
import type { KubeClient } from './client.js';
import { deploy, EXIT, EngineError, listMembers, mapLimit, type DeployOptions, type DeployReport, type Target } from './deploy.js';
import { readParent, type ApplySetRef } from './inventory.js';
import { byPhase } from './plan.js';
import { gatherEvidence, type Evidence } from './diagnostics.js';
import { evaluateHealth } from './readiness.js';
import type { Reporter } from './report.js';
import { listRevisions, revisionName, type Revision } from './revisions.js';
import type { Health, KubeObject, ObjectRef } from './types.js';
import { describeRef, refKey, refOf } from './types.js';
import { fetchRelated } from './wait.js';

function parentRef(set: ApplySetRef): ObjectRef {
  return { apiVersion: 'v1', kind: 'Secret', namespace: set.namespace, name: set.name };
}

export interface StatusReport {
  deployed: boolean;
  revision: number | null;
  /** Objects not ready carry evidence (conditions, events, container states, last log lines). */
  objects: Array<{ ref: ObjectRef; health: Health; evidence?: Evidence }>;
  history: Array<Omit<Revision, 'objects'>>;
  ready: boolean;
}

export async function status(client: KubeClient, set: ApplySetRef): Promise<StatusReport> {
  const parent = await client.get(parentRef(set));
  if (!parent) return { deployed: false, revision: null, objects: [], history: [], ready: false };
  const state = readParent(set, parent);
  const members = await listMembers(client, set, state);
  const related = await fetchRelated(client, members);
  const now = new Date();
  const objects: StatusReport['objects'] = byPhase(members)
    .flatMap((g) => g.objects)
    .map((m) => ({ ref: refOf(m), health: evaluateHealth(m, related.get(m.metadata.namespace ?? '') ?? {}, now) }));
  // Why something is not ready is the question `status` is asked; a pod's own log says what its
  // readiness probe cannot (a probe event only says "statuscode: 503").
  await mapLimit(
    objects.filter((o) => o.health.state !== 'ready'),
    4,
    async (o) => {
      o.evidence = await gatherEvidence(client, o.ref, o.health);
    },
  );
  const history = (await listRevisions(client, set)).map(({ objects: _objects, ...rest }) => rest);
  return { deployed: true, revision: state.revision, objects, history, ready: objects.every((o) => o.health.state === 'ready') };
}

export async function rollback(client: KubeClient, target: Target, to: number | undefined, options: DeployOptions): Promise<DeployReport & { rolledBackTo?: number }> {
  const parent = await client.get(parentRef(target.set));
  const current = readParent(target.set, parent).revision;
  const history = await listRevisions(client, target.set);
  if (history.length === 0) throw new EngineError(EXIT.usage, `no recorded revisions for ${describeRef(parentRef(target.set))}: nothing to roll back to`);
  let chosen: Revision | undefined;
  if (to !== undefined) {
    chosen = history.find((h) => h.number === to);
    if (!chosen) throw new EngineError(EXIT.usage, `no revision ${to}; recorded: ${history.map((h) => h.number).join(', ')}`);
  } else {
    chosen = [...history].reverse().find((h) => h.number < current && h.status !== 'failed');
    if (!chosen) throw new EngineError(EXIT.usage, `no successful revision before the current one (${current}) to roll back to; pass --to N`);
  }
  options.reporter.step(`rollback: re-applying revision ${chosen.number} (${chosen.description || 'no description'}, ${chosen.deployedAt})`);
  const report = await deploy(client, chosen.objects, target, { ...options, description: `rollback to revision ${chosen.number}` });
  return { ...report, rolledBackTo: chosen.number };
}

export interface DestroyReport {
  ok: boolean;
  deleted: ObjectRef[];
  kept: Array<{ ref: ObjectRef; why: string }>;
  remaining: ObjectRef[];
}

export async function destroy(
  client: KubeClient,
  target: Target,
  options: { includeKept: boolean; wait: boolean; timeoutMs: number; reporter: Reporter },
): Promise<DestroyReport> {
  const { set } = target;
  const r = options.reporter;
  const report: DestroyReport = { ok: true, deleted: [], kept: [], remaining: [] };
  const parent = await client.get(parentRef(set));
  if (!parent) {
    r.step(`nothing to destroy: no ApplySet ${describeRef(parentRef(set))}`);
    return report;
  }
  const members = await listMembers(client, set, readParent(set, parent));
  const keep = (m: KubeObject) => !options.includeKept && m.metadata.annotations?.[PRUNE_ANNOTATION] === PRUNE_NEVER;
  const keptObjects = members.filter(keep);
  // Deleting a namespace deletes everything in it: a namespace holding kept objects stays.
  const keptNamespaces = new Set(keptObjects.map((m) => m.metadata.namespace).filter(Boolean));
  for (const m of members) {
    if (keep(m)) report.kept.push({ ref: refOf(m), why: `annotated ${PRUNE_ANNOTATION}: ${PRUNE_NEVER} (--include-kept deletes it)` });
    else if (m.kind === 'Namespace' && keptNamespaces.has(m.metadata.name)) report.kept.push({ ref: refOf(m), why: 'holds kept objects' });
  }
  for (const k of report.kept) r.action(k.ref, 'kept', k.why);
  const keptKeys = new Set(report.kept.map((k) => refKey(k.ref)));
  const doomed = members.filter((m) => !keptKeys.has(refKey(refOf(m))));
  for (const group of byPhase(doomed, true)) {
    await mapLimit(group.objects, 8, async (obj) => {
      if (await client.delete(refOf(obj))) {
        report.deleted.push(refOf(obj));
        r.action(refOf(obj), 'deleted');
      }
    });
    if (options.wait) {
      // Workloads are gone before what they use is deleted (a pod never loses its ConfigMap mid-run).
      const deadline = Date.now() + options.timeoutMs;
      let left = group.objects.map(refOf);
      while (left.length && Date.now() < deadline) {
        const still: ObjectRef[] = [];
        for (const ref of left) if (await client.get(ref)) still.push(ref);
        left = still;
        if (left.length) await new Promise((res) => setTimeout(res, 500));
      }
      report.remaining.push(...left);
    }
  }
  // The bookkeeping goes last (it may already be gone with its namespace).
  const revisions = await listRevisions(client, set).catch(() => []);
  for (const rev of revisions) await client.delete({ apiVersion: 'v1', kind: 'Secret', namespace: set.namespace, name: revisionName(set, rev.number) }).catch(() => false);
  await client.delete(parentRef(set)).catch(() => false);
  report.ok = report.remaining.length === 0;
  if (!report.ok) r.warn(`still terminating after ${Math.round(options.timeoutMs / 1000)} s: ${report.remaining.map(describeRef).join(', ')}`);
  return report;
}
