/**
 * A RegistrationService's status from a reconcile result: kstatus conditions (Ready, Reconciling,
 * Stalled) with observedGeneration, a message that names the failing child and its root cause, and
 * nothing that changes without a state change (lastTransitionTime moves only when a condition's
 * status does), so an idle operator writes nothing.
 */
import { isDeepStrictEqual } from 'node:util';
import type { EngineFailure } from '../engine/errors.js';
import type { ReconcileResult } from '../engine/reconcile.js';
import { describeRef, type ObjectRef } from '../engine/types.js';

export interface Condition {
  type: 'Ready' | 'Reconciling' | 'Stalled';
  status: 'True' | 'False' | 'Unknown';
  observedGeneration: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface HistoryEntry {
  revision: number;
  digest: string;
  image: string;
  time: string;
  outcome: string;
}

export interface ResourceStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  url?: string;
  readyReplicas?: number;
  revision?: number;
  history?: HistoryEntry[];
  lastHandledReconcileAt?: string;
}

/** What a reconcile found, reduced to what the status says. */
export type Outcome =
  | { kind: 'ready'; revision: number | null; readyReplicas?: number }
  | { kind: 'progressing'; waitingOn: ObjectRef[]; detail: string }
  | { kind: 'failed'; failure: EngineFailure }
  | { kind: 'invalid'; message: string }
  | { kind: 'suspended' }
  | { kind: 'retrying'; failure: EngineFailure };

/** The one line that says why a resource is not ready: the child at fault and its cause. */
export function failureMessage(failure: EngineFailure): string {
  const where = failure.ref ? `${failure.ref.kind}/${failure.ref.name}: ` : '';
  const details = failure.details?.length ? ` (${failure.details.slice(0, 3).join('; ')})` : '';
  return `${where}${failure.message}${details}`.slice(0, 2000);
}

/** The outcome of a reconcile result. */
export function outcomeOf(result: ReconcileResult): Outcome {
  if (result.status === 'ready') return { kind: 'ready', revision: result.revision };
  if (result.status === 'progressing') {
    const waiting = result.waitingOn ?? [];
    const health = (ref: ObjectRef) => result.objects.find((o) => describeRef(o.ref) === describeRef(ref))?.health;
    const detail = waiting.map((r) => `${r.kind}/${r.name}: ${health(r)?.message ?? 'not ready'}`).join('; ');
    return { kind: 'progressing', waitingOn: waiting, detail };
  }
  const failure = result.failure!;
  // Retried with backoff: whatever the engine calls retryable (a 5xx, a 429, a timeout), and an API
  // server that cannot be reached or refuses the operator's credentials. A restarted kube-apiserver
  // answers 401 and 403 for a moment, until its token and RBAC caches have filled; were that
  // Stalled, a three-second outage would leave the resource alone for the stalled recheck's minutes.
  // A refusal that lasts is still retried, ever more slowly (the queue's backoff is capped), and the
  // condition says Forbidden or Unauthorized all along.
  return failure.retryable || failure.kind === 'unreachable' ? { kind: 'retrying', failure } : { kind: 'failed', failure };
}

/**
 * The next status. `previous` keeps lastTransitionTime of conditions whose status did not change
 * and the fields this outcome does not speak about (revision, history, url).
 */
export function nextStatus(previous: ResourceStatus | undefined, generation: number, outcome: Outcome, now: string, extra: Partial<ResourceStatus> = {}): ResourceStatus {
  const conditions = (ready: [Condition['status'], string, string], reconciling: [Condition['status'], string, string], stalled: [Condition['status'], string, string]): Condition[] => {
    const make = (type: Condition['type'], [status, reason, message]: [Condition['status'], string, string]): Condition => {
      const before = previous?.conditions?.find((c) => c.type === type);
      return {
        type,
        status,
        observedGeneration: generation,
        lastTransitionTime: before && before.status === status ? before.lastTransitionTime : now,
        reason,
        message,
      };
    };
    return [make('Ready', ready), make('Reconciling', reconciling), make('Stalled', stalled)];
  };
  let conds: Condition[];
  switch (outcome.kind) {
    case 'ready':
      conds = conditions(['True', 'Ready', 'every object is ready'], ['False', 'Ready', ''], ['False', 'Ready', '']);
      break;
    case 'progressing': {
      const message = outcome.detail || 'applying';
      conds = conditions(['False', 'Progressing', message], ['True', 'Progressing', message], ['False', 'Progressing', '']);
      break;
    }
    case 'failed': {
      const message = failureMessage(outcome.failure);
      const reason = failureReason(outcome.failure);
      conds = conditions(['False', reason, message], ['False', reason, ''], ['True', reason, message]);
      break;
    }
    case 'invalid':
      conds = conditions(['False', 'InvalidSpec', outcome.message], ['False', 'InvalidSpec', ''], ['True', 'InvalidSpec', outcome.message]);
      break;
    case 'suspended': {
      const ready = previous?.conditions?.find((c) => c.type === 'Ready');
      const message = 'spec.suspend is true: changes and drift are not reconciled';
      conds = conditions([ready?.status ?? 'Unknown', 'Suspended', message], ['False', 'Suspended', message], ['False', 'Suspended', '']);
      break;
    }
    case 'retrying': {
      const message = `${failureMessage(outcome.failure)}; retrying`;
      conds = conditions(['Unknown', 'RetryingAfterError', message], ['True', 'RetryingAfterError', message], ['False', 'RetryingAfterError', '']);
      break;
    }
  }
  const { conditions: _c, observedGeneration: _g, ...kept } = previous ?? {};
  return { ...kept, ...extra, observedGeneration: generation, conditions: conds };
}

/** A CamelCase reason from the failure: the pod's own reason when there is one (ErrImagePull, …). */
function failureReason(failure: EngineFailure): string {
  const fromMessage = /^([A-Z][A-Za-z]+):/.exec(failure.message)?.[1];
  if (fromMessage) return fromMessage;
  const byKind: Record<string, string> = {
    invalid: 'InvalidObjects',
    conflict: 'FieldConflict',
    foreign: 'ForeignObject',
    failed: 'Failed',
    timeout: 'Timeout',
    unreachable: 'Unreachable',
    refused: 'Refused',
    usage: 'Refused',
    cancelled: 'Cancelled',
  };
  return byKind[failure.kind] ?? 'Failed';
}

/** Whether writing `next` would change anything (a status write without a change is never sent). */
export function statusChanged(previous: ResourceStatus | undefined, next: ResourceStatus): boolean {
  return !isDeepStrictEqual(previous ?? {}, next);
}
