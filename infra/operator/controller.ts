/**
 * The RegistrationService controller: watch → spec → objects → `reconcileOnce` → status.
 *
 * - Watches RegistrationServices, and (metadata only) every kind it renders that carries an
 *   ApplySet membership label; a change to a child enqueues its owner, so drift is put back.
 * - Its own status and finalizer writes do not enqueue: only a new generation, a new
 *   `reconcile.kreg.dev/requestedAt`, or a deletion does (Flux's semantics for requestedAt).
 * - One reconcile per key at a time (the work queue), the latest state reconciled; progressing
 *   results come back after the engine's requeueAfter; retryable failures back off per key.
 * - The resource is the ApplySet parent of its children, which carry an ownerReference to it; its
 *   deletion prunes them through a finalizer, keeping the data claim unless
 *   `spec.dataDeletionPolicy: Delete`.
 */
import { hostname } from 'node:os';
import { KubeApiError, type KubeClient } from '../engine/client.js';
import type { EngineEvent, ForeignManager } from '../engine/events.js';
import { destroy } from '../engine/lifecycle.js';
import { reconcileOnce, type ReconcileMemo, type Target } from '../engine/reconcile.js';
import type { KubeObject, ObjectRef } from '../engine/types.js';
import { ADOPT_ANNOTATION, PRUNE_ANNOTATION, PRUNE_NEVER } from '../engine/annotations.js';
import { APPLYSET_PART_OF_LABEL } from '../engine/inventory.js';
import { synth } from '../main.js';
import { SpecError, type RegistrationSpecInput } from '../spec.js';
import { API_VERSION, KIND } from './crd.js';
import { Informer, objectKey, type InformerEvent } from './informer.js';
import { WorkQueue } from './queue.js';
import { nextStatus, outcomeOf, statusChanged, type Outcome, type ResourceStatus } from './status.js';

export const FINALIZER = 'kreg.dev/cleanup';
export const REQUESTED_AT_ANNOTATION = 'reconcile.kreg.dev/requestedAt';
export const OPERATOR_FIELD_MANAGER = 'kreg-operator';

/** The kinds the charts render: watched (metadata only) to notice drift. */
export const CHILD_KINDS: Array<{ apiVersion: string; kind: string }> = [
  { apiVersion: 'v1', kind: 'ConfigMap' },
  { apiVersion: 'v1', kind: 'Service' },
  { apiVersion: 'v1', kind: 'ServiceAccount' },
  { apiVersion: 'v1', kind: 'PersistentVolumeClaim' },
  { apiVersion: 'apps/v1', kind: 'Deployment' },
  { apiVersion: 'apps/v1', kind: 'StatefulSet' },
  { apiVersion: 'batch/v1', kind: 'Job' },
  { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy' },
  { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget' },
  { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler' },
];

export interface ControllerOptions {
  /** Watch one namespace, or all (default). */
  namespace?: string;
  /** Keys reconciled at once. Default 2. */
  concurrency?: number;
  /** A converged resource is looked at again after this long even without events. Default 10 min. */
  resyncMs?: number;
  /** A Stalled resource is looked at again after this long. Default 2 min. */
  stalledRecheckMs?: number;
  log?: (entry: Record<string, unknown>) => void;
  /** Every engine event of every reconcile, with its resource's key (benchmarks, tracing). */
  onEngineEvent?: (key: string, event: EngineEvent) => void;
}

export interface ControllerStats {
  reconciles: number;
  errors: number;
  statusWrites: number;
  writes: number;
}

export class RegistrationServiceController {
  readonly queue = new WorkQueue();
  private readonly resources: Informer;
  private readonly children: Informer[];
  private readonly memos = new Map<string, ReconcileMemo>();
  /** Bumped whenever a key's memo must not be reused (a child or the spec changed), even by a reconcile in flight. */
  private readonly epochs = new Map<string, number>();
  private readonly workers: Promise<void>[] = [];
  /**
   * Per resource: a watch on each object of someone else's that stalls it, so that the resource is
   * reconciled again as soon as that object is deleted or handed over (annotated kreg.dev/adopt, or
   * labelled into the set), not at the stalled recheck minutes later.
   */
  private readonly blockers = new Map<string, { id: string; informers: Informer[] }>();
  readonly stats: ControllerStats = { reconciles: 0, errors: 0, statusWrites: 0, writes: 0 };
  private readonly log: (entry: Record<string, unknown>) => void;

  constructor(
    private readonly client: KubeClient,
    private readonly options: ControllerOptions = {},
  ) {
    this.log = options.log ?? (() => {});
    const ns = options.namespace ? { namespace: options.namespace } : {};
    this.resources = new Informer(client, {
      apiVersion: API_VERSION,
      kind: KIND,
      ...ns,
      onEvent: (type, obj, before) => this.onResource(type, obj, before),
      log: (line) => this.log({ msg: line }),
    });
    this.children = CHILD_KINDS.map(
      (k) =>
        new Informer(client, {
          ...k,
          ...ns,
          labelSelector: 'applyset.kubernetes.io/part-of',
          metadataOnly: true,
          onEvent: (type, obj, before) => this.onChild(type, obj, before),
          log: (line) => this.log({ msg: line }),
        }),
    );
  }

  /**
   * Starts the watches and, once each has listed, the workers. Aborting `signal` (leadership lost,
   * or shutdown) ends the wait: watches that cannot list (RBAC, an unreachable server) must not
   * keep a stopping operator alive.
   */
  async start(signal?: AbortSignal): Promise<void> {
    this.resources.start();
    for (const c of this.children) c.start();
    const aborted = new Promise<void>((resolve) => {
      if (signal?.aborted) resolve();
      signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    await Promise.race([Promise.all([this.resources.synced, ...this.children.map((c) => c.synced)]), aborted]);
    if (signal?.aborted) return;
    for (let i = 0; i < (this.options.concurrency ?? 2); i++) this.workers.push(this.work());
  }

  async stop(): Promise<void> {
    this.queue.shutdown();
    const blockers = [...this.blockers.values()].flatMap((b) => b.informers);
    this.blockers.clear();
    await Promise.all([this.resources.stop(), ...this.children.map((c) => c.stop()), ...blockers.map((i) => i.stop())]);
    await Promise.all(this.workers);
  }

  informerHealth() {
    return [this.resources, ...this.children].map((i, n) => ({ kind: n === 0 ? KIND : CHILD_KINDS[n - 1]!.kind, ...i.health() }));
  }

  private onResource(type: InformerEvent, obj: KubeObject, before?: KubeObject): void {
    const key = objectKey(obj);
    if (type === 'deleted') {
      this.memos.delete(key);
      this.watchBlockers(key, undefined);
      return;
    }
    // Our own writes (status, finalizer, ApplySet annotations) change neither of these.
    const requested = (o?: KubeObject) => o?.metadata.annotations?.[REQUESTED_AT_ANNOTATION];
    if (
      type === 'added' ||
      obj.metadata.generation !== before?.metadata.generation ||
      requested(obj) !== requested(before) ||
      (obj.metadata.deletionTimestamp && !before?.metadata.deletionTimestamp)
    ) {
      this.invalidate(key); // a new spec (or a request) is a new run: validate and apply everything
      this.queue.add(key);
    }
  }

  private onChild(type: InformerEvent, obj: KubeObject, before?: KubeObject): void {
    // A change of the desired part only: a new generation where the kind has one (a Deployment's
    // status updates do not bump it), any change where it has none (ConfigMaps, Services), deletion.
    if (type === 'modified' && before) {
      const generation = obj.metadata.generation;
      if (generation !== undefined ? generation === before.metadata.generation : obj.metadata.resourceVersion === before.metadata.resourceVersion) return;
    }
    const owner = obj.metadata.ownerReferences?.find((o) => o.controller && o.kind === KIND && o.apiVersion === API_VERSION);
    if (!owner) return;
    const key = `${obj.metadata.namespace}/${owner.name}`;
    // A child changed (maybe by someone else): the next reconcile must dry-run and compare again,
    // not resume a run that already applied it.
    this.invalidate(key);
    this.queue.add(key);
  }

  /** Watches exactly `refs` for `key` (none: stops its watches). */
  private watchBlockers(key: string, refs: ObjectRef[] | undefined): void {
    const id = JSON.stringify(refs ?? []);
    const current = this.blockers.get(key);
    if ((current?.id ?? '[]') === id) return;
    for (const informer of current?.informers ?? []) void informer.stop();
    this.blockers.delete(key);
    if (!refs?.length) return;
    const handedOver = (obj: KubeObject, before?: KubeObject) =>
      obj.metadata.annotations?.[ADOPT_ANNOTATION] !== before?.metadata.annotations?.[ADOPT_ANNOTATION] ||
      obj.metadata.labels?.[APPLYSET_PART_OF_LABEL] !== before?.metadata.labels?.[APPLYSET_PART_OF_LABEL];
    const informers = refs.map((ref) =>
      new Informer(this.client, {
        apiVersion: ref.apiVersion,
        kind: ref.kind,
        ...(ref.namespace ? { namespace: ref.namespace } : {}),
        fieldSelector: `metadata.name=${ref.name}`,
        metadataOnly: true,
        onEvent: (type, obj, before) => {
          // Its own changes (a foreign Deployment's status, say) are not ours to react to.
          if (type === 'added' || (type === 'modified' && !handedOver(obj, before))) return;
          this.log({ msg: type === 'deleted' ? 'a blocking object was deleted' : 'a blocking object was handed over', key, object: `${ref.kind}/${ref.name}` });
          this.invalidate(key);
          this.queue.add(key);
        },
        log: (line) => this.log({ msg: line }),
      }).start(),
    );
    this.blockers.set(key, { id, informers });
    // Deleted or handed over between the reconcile that found it and the watch's first list: no
    // event will come for that, so the list itself decides.
    for (const informer of informers) {
      void informer.synced.then(() => {
        if (!this.blockers.get(key)?.informers.includes(informer)) return;
        const [obj] = informer.store.values();
        if (obj && !obj.metadata.annotations?.[ADOPT_ANNOTATION] && !obj.metadata.labels?.[APPLYSET_PART_OF_LABEL]) return;
        this.invalidate(key);
        this.queue.add(key);
      });
    }
  }

  private invalidate(key: string): void {
    this.memos.delete(key);
    this.epochs.set(key, (this.epochs.get(key) ?? 0) + 1);
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        const next = await this.reconcile(key);
        if (next.retry) {
          const delay = this.queue.addRateLimited(key);
          this.log({ msg: 'reconcile failed; retrying', key, delayMs: delay });
        } else {
          this.queue.forget(key);
          if (next.requeueAfterMs !== undefined) this.queue.addAfter(key, next.requeueAfterMs);
        }
      } catch (err) {
        this.stats.errors++;
        const delay = this.queue.addRateLimited(key);
        this.log({ msg: 'reconcile error', key, error: err instanceof Error ? err.message : String(err), delayMs: delay });
      } finally {
        this.queue.done(key);
      }
    }
  }

  /** One reconcile of one resource; says when to look again. Exported for tests through the class. */
  async reconcile(key: string): Promise<{ requeueAfterMs?: number; retry?: boolean }> {
    this.stats.reconciles++;
    const cr = this.resources.store.get(key);
    if (!cr) return {};
    const [namespace, name] = key.split('/') as [string, string];
    const set = { name, namespace, parent: { apiVersion: API_VERSION, kind: KIND } };
    const target: Target = { set, fieldManager: OPERATOR_FIELD_MANAGER };
    const spec = (cr.spec ?? {}) as RegistrationSpecInput & { suspend?: boolean; dataDeletionPolicy?: 'Retain' | 'Delete' };
    const generation = cr.metadata.generation ?? 0;

    if (cr.metadata.deletionTimestamp) {
      if (!(cr.metadata.finalizers ?? []).includes(FINALIZER)) return {};
      const report = await destroy(this.client, target, {
        includeKept: spec.dataDeletionPolicy === 'Delete',
        wait: true,
        // Deleting in order is what matters; an object held by its own finalizer (a claim's
        // pvc-protection while a pod still uses it) is on its way, and waiting on it is not ours.
        untilTerminating: true,
        timeoutMs: 60_000,
      });
      if (!report.ok) return { retry: true };
      await this.patchMetadata(cr, { finalizers: (cr.metadata.finalizers ?? []).filter((f) => f !== FINALIZER) });
      this.log({ msg: 'deleted', key, deleted: report.deleted.length, kept: report.kept.map((k) => `${k.ref.kind}/${k.ref.name}`) });
      return {};
    }
    if (!(cr.metadata.finalizers ?? []).includes(FINALIZER)) {
      await this.patchMetadata(cr, { finalizers: [...(cr.metadata.finalizers ?? []), FINALIZER] });
    }
    const requestedAt = cr.metadata.annotations?.[REQUESTED_AT_ANNOTATION];
    const handled = requestedAt ? { lastHandledReconcileAt: requestedAt } : {};

    if (spec.suspend) {
      await this.writeStatus(cr, generation, { kind: 'suspended' }, handled);
      return {};
    }

    let objects: KubeObject[];
    try {
      objects = childrenOf(cr);
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      await this.writeStatus(cr, generation, { kind: 'invalid', message: err.issues.map((i) => `spec.${i.path}: ${i.message}`).join('; ') }, handled);
      return {};
    }

    const memo = this.memos.get(key);
    const epoch = this.epochs.get(key) ?? 0;
    // The status already says this generation was applied: whatever needs applying now is drift.
    const drift = (cr.status as ResourceStatus | undefined)?.observedGeneration === generation;
    const corrections: string[] = [];
    const result = await reconcileOnce(
      this.client,
      objects,
      target,
      {
        // The operator owns what it renders: drift from another manager is taken back.
        forceConflicts: true,
        takeOverFrom: isKubectlManager,
        prune: true,
        wait: true,
        description: `reconcile generation ${generation}`,
        onEvent: (e) => {
          this.options.onEngineEvent?.(key, e);
          if (e.type === 'apply' && e.action !== 'unchanged') {
            this.stats.writes++;
            if (drift) corrections.push(describeDrift(e.ref.kind, e.ref.name, e.action, e.changedBy));
          }
          if (e.type === 'prune' && e.action === 'pruned') this.stats.writes++;
        },
      },
      memo,
    );
    // The memo only carries a run that is still going; a settled run starts afresh next time, so
    // the next reconcile dry-runs everything again and notices drift.
    if (result.status === 'progressing' && (this.epochs.get(key) ?? 0) === epoch) this.memos.set(key, result.memo);
    else this.memos.delete(key);

    this.watchBlockers(key, result.status === 'failed' && result.failure?.kind === 'foreign' ? result.failure.refs : undefined);
    for (const message of corrections) {
      this.log({ msg: 'drift corrected', key, detail: message });
      await this.recordEvent(cr, 'Warning', 'DriftCorrected', message);
    }
    const outcome: Outcome = outcomeOf(result);
    this.log({ msg: 'reconciled', key, generation, status: result.status, changed: result.changed, apiCalls: result.apiCalls, ms: result.timingsMs.total });
    const extra: Partial<ResourceStatus> = { ...handled, url: `http://${name}.${namespace}.svc.cluster.local` };
    if (result.status === 'ready') {
      if (result.revision !== null) extra.revision = result.revision;
      const deployment = await this.client.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace, name }).catch(() => undefined);
      extra.readyReplicas = deployment?.status?.readyReplicas ?? 0;
    }
    await this.writeStatus(cr, generation, outcome, extra);
    if (outcome.kind === 'progressing') return { requeueAfterMs: result.requeueAfterMs ?? 1000 };
    if (outcome.kind === 'retrying') return { retry: true };
    if (outcome.kind === 'ready') return { requeueAfterMs: this.options.resyncMs ?? 600_000 };
    // Stalled: retrying at once would not help, but what stalled it can change without an event
    // this controller sees (RBAC granted, an image pushed under the same tag, a node freed), so it
    // looks again after a while, as Flux does at its interval. A look that finds nothing new
    // writes nothing.
    if (outcome.kind === 'failed') return { requeueAfterMs: this.options.stalledRecheckMs ?? 120_000 };
    return {};
  }

  private async writeStatus(cr: KubeObject, generation: number, outcome: Outcome, extra: Partial<ResourceStatus>): Promise<void> {
    const previous = cr.status as ResourceStatus | undefined;
    const next = nextStatus(previous, generation, outcome, new Date().toISOString(), extra);
    if (!statusChanged(previous, next)) return;
    // An Event for each flip a person would want to be told about.
    const flipped = (type: string, status: string) =>
      next.conditions?.find((c) => c.type === type)?.status === status && previous?.conditions?.find((c) => c.type === type)?.status !== status;
    if (flipped('Ready', 'True')) await this.recordEvent(cr, 'Normal', 'Ready', `every object is ready (revision ${next.revision ?? '?'})`);
    if (flipped('Stalled', 'True')) {
      const stalled = next.conditions!.find((c) => c.type === 'Stalled')!;
      await this.recordEvent(cr, 'Warning', stalled.reason, stalled.message);
    }
    const path = `/apis/${API_VERSION}/namespaces/${cr.metadata.namespace}/registrationservices/${cr.metadata.name}/status`;
    try {
      const written = await this.client.request<KubeObject>('PATCH', path, { body: { status: next }, contentType: 'application/merge-patch+json' });
      this.stats.statusWrites++;
      // Keep the store current, so the next reconcile compares with what was written.
      const key = objectKey(written);
      this.resources.store.set(key, { ...written, apiVersion: API_VERSION, kind: KIND });
      // The status patch answers with the resource as it is now, spec included. If the spec moved
      // on while this reconcile ran, the store now holds a generation nobody reconciled, and the
      // watch event for that change, set against it, looks like no change at all: the change
      // would wait for the resync, minutes away. So it is queued here.
      if (written.metadata.generation !== cr.metadata.generation) {
        this.log({ msg: 'spec changed during the reconcile; queued again', key, reconciled: cr.metadata.generation, now: written.metadata.generation });
        this.invalidate(key);
        this.queue.add(key);
      }
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return; // deleted meanwhile
      throw err;
    }
  }

  /** A core/v1 Event about the resource; failing to record one never fails a reconcile. */
  private async recordEvent(cr: KubeObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const now = new Date().toISOString();
    const namespace = cr.metadata.namespace!;
    await this.client
      .request('POST', `/api/v1/namespaces/${namespace}/events`, {
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { name: `${cr.metadata.name}.${Date.now().toString(16)}${Math.random().toString(16).slice(2, 6)}`, namespace },
          involvedObject: { apiVersion: API_VERSION, kind: KIND, name: cr.metadata.name, namespace, uid: cr.metadata.uid },
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: OPERATOR_FIELD_MANAGER },
          reportingComponent: OPERATOR_FIELD_MANAGER,
          reportingInstance: hostname(),
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .catch((err: unknown) => this.log({ msg: 'cannot record event', reason, error: err instanceof Error ? err.message : String(err) }));
  }

  private async patchMetadata(cr: KubeObject, metadata: Record<string, unknown>): Promise<void> {
    const path = `/apis/${API_VERSION}/namespaces/${cr.metadata.namespace}/registrationservices/${cr.metadata.name}`;
    try {
      const written = await this.client.request<KubeObject>('PATCH', path, {
        body: { metadata: { ...metadata, resourceVersion: cr.metadata.resourceVersion } },
        contentType: 'application/merge-patch+json',
      });
      this.resources.store.set(objectKey(written), { ...written, apiVersion: API_VERSION, kind: KIND });
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return;
      throw err;
    }
  }
}

/**
 * What a resource renders, with the owner references the controller sets: the controller's own
 * validation of a stored resource (throws SpecError for a spec it cannot run).
 */
export function childrenOf(cr: KubeObject): KubeObject[] {
  const { name, namespace, uid } = cr.metadata;
  const { suspend: _suspend, dataDeletionPolicy, ...deploymentSpec } = (cr.spec ?? {}) as RegistrationSpecInput & { suspend?: boolean; dataDeletionPolicy?: 'Retain' | 'Delete' };
  const objects = synth(name, namespace!, deploymentSpec);
  const ownerReference = { apiVersion: API_VERSION, kind: KIND, name, uid: uid!, controller: true, blockOwnerDeletion: true };
  for (const obj of objects) {
    // The data claim outlives its resource unless the policy says otherwise: no owner, so no GC.
    const kept = obj.metadata.annotations?.[PRUNE_ANNOTATION] === PRUNE_NEVER && dataDeletionPolicy !== 'Delete';
    if (!kept) obj.metadata.ownerReferences = [ownerReference];
  }
  return objects;
}

/** `Deployment/accounts: .spec.replicas, .spec.template… changed by "kubectl-scale" (Update); put back`. */
/**
 * Field managers of hand edits (kubectl edit, patch, set, scale, apply, label, ...): fields they
 * added to a child are taken over and removed. Not `kubectl-rollout`: a restart annotation on the
 * pod template is an operation, not drift, and undoing it would restart the pods a second time.
 */
export function isKubectlManager(manager: string): boolean {
  return /^kubectl(-|$)/.test(manager) && manager !== 'kubectl-rollout';
}

export function describeDrift(kind: string, name: string, action: 'created' | 'updated', changedBy: ForeignManager[] | undefined): string {
  if (action === 'created') return `${kind}/${name} was deleted; created again`;
  // The most recent manager that holds more than metadata (the deployment controller's revision
  // annotation is not an edit anyone made).
  const who = changedBy?.find((m) => m.fields.some((f) => !f.startsWith('.metadata.')));
  if (!who) return `${kind}/${name} differed from the spec; put back`;
  const fields = who.fields.length ? `${who.fields.join(', ')} ` : '';
  return `${kind}/${name}: ${fields}changed by "${who.manager}" (${who.operation}${who.time ? ` at ${who.time}` : ''}); put back`;
}
