/**
 * What the engine tells whoever drives it, as typed events: the CLI renders them as live lines or
 * collects them into a JSON report; the operator turns some into Kubernetes Events and metrics.
 * The engine itself never prints.
 */
import type { EngineFailure } from './errors.js';
import type { Phase } from './plan.js';
import type { Health, ObjectRef } from './types.js';

export type EngineEvent =
  /** Every desired object passed the server-side dry run. */
  | { type: 'validation'; objects: number; ms: number }
  /**
   * An object was applied (`created`/`updated`), or left alone because it already matches.
   * `changedBy`: for an update, the other managers that hold fields of the live object (most recent
   * first) — who drifted it, when nothing in the desired set changed.
   */
  | { type: 'apply'; ref: ObjectRef; action: 'created' | 'updated' | 'unchanged'; changedBy?: ForeignManager[] }
  /** All phases are applied. */
  | { type: 'applied'; changed: number; total: number; ms: number }
  /** Waiting on a gate (CRDs established, Jobs complete) before the next phase is applied. */
  | { type: 'wait'; phase: Phase; refs: ObjectRef[] }
  /** An object's readiness changed (or was seen for the first time). */
  | { type: 'status'; ref: ObjectRef; health: Health }
  /** Every desired object is ready. */
  | { type: 'ready'; objects: number; ms: number }
  /** A member no longer desired was deleted, or kept (and why); `deleted` is destroy's. */
  | { type: 'prune'; ref: ObjectRef; action: 'pruned' | 'kept' | 'deleted'; why?: string }
  /** A revision was recorded. */
  | { type: 'record'; revision: number; status: 'deployed' | 'failed' }
  /** Something the user should know that does not stop the run. */
  | { type: 'warning'; message: string; ref?: ObjectRef }
  /** The run failed; the failure carries its evidence. */
  | { type: 'error'; failure: EngineFailure };

/** Another field manager of an object: who, how, when, and (some of) the fields it holds. */
export interface ForeignManager {
  manager: string;
  operation: string;
  time?: string;
  fields: string[];
}

export type EventSink = (event: EngineEvent) => void;

export const ignoreEvents: EventSink = () => {};
