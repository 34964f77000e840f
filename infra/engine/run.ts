/**
 * What the stages of a run share with the driver that runs them (reconcile.ts): where a set goes,
 * the options of a run, its result, and the memo one call leaves for the next.
 */
import type { ClusterReader } from './client.js';
import type { EngineFailure } from './errors.js';
import type { EventSink, ForeignManager } from './events.js';
import type { ApplySetRef, ParentState } from './inventory.js';
import type { Change } from './plan.js';
import type { Health, KubeObject, ObjectRef } from './types.js';

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
