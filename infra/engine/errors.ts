/**
 * The engine's failure vocabulary. It states facts about the cluster and the objects; what a human
 * should type next (a flag, an exit code) is the CLI's business, and what a controller should do
 * (requeue or not, which condition to set) follows from `kind` and `retryable`.
 */
import { KubeApiError, KubeConnectionError } from './client.js';
import type { Evidence } from './diagnostics.js';
import type { ObjectRef } from './types.js';

export type FailureKind =
  /** The desired objects are wrong (rejected by the dry run, empty set, duplicates): fix the input. */
  | 'invalid'
  /** Fields are owned by another field manager; taking them over is a deliberate choice. */
  | 'conflict'
  /**
   * Objects of the desired set already exist and were not created by this set (no membership label,
   * not controlled by its owner): they belong to someone else, so nothing was applied. Adopting them
   * is their owner's choice (`kreg.dev/adopt`) or an explicit one of the caller's.
   */
  | 'foreign'
  /** An object failed: apply error, image pull, crash loop, failed Job, passed progress deadline. */
  | 'failed'
  /** Objects did not become ready in the time given. */
  | 'timeout'
  /** The API server cannot be reached, or refused the credentials. */
  | 'unreachable'
  /** The ApplySet parent belongs to another tool, or a required namespace is missing. */
  | 'refused'
  /** The request does not make sense (no revision to roll back to, …). */
  | 'usage'
  /** The caller's AbortSignal fired. */
  | 'cancelled';

export interface EngineErrorInit {
  kind: FailureKind;
  message: string;
  /** Whether the same call may succeed later without a change of input (a controller requeues). */
  retryable?: boolean;
  ref?: ObjectRef;
  /** Every object the failure is about, when there are several (`ref` is the first). */
  refs?: ObjectRef[];
  evidence?: Evidence;
  details?: string[];
}

/** Retrying helps for these unless the error says otherwise. */
const RETRYABLE_BY_DEFAULT: Record<FailureKind, boolean> = {
  invalid: false,
  conflict: false,
  foreign: false,
  failed: false,
  timeout: true,
  unreachable: true,
  refused: false,
  usage: false,
  cancelled: true,
};

export class EngineError extends Error {
  readonly kind: FailureKind;
  readonly retryable: boolean;
  readonly ref?: ObjectRef;
  readonly refs?: ObjectRef[];
  readonly evidence?: Evidence;
  readonly details: string[];

  constructor(init: EngineErrorInit) {
    super(init.message);
    this.name = 'EngineError';
    this.kind = init.kind;
    this.retryable = init.retryable ?? RETRYABLE_BY_DEFAULT[init.kind];
    if (init.ref) this.ref = init.ref;
    if (init.refs) this.refs = init.refs;
    if (init.evidence) this.evidence = init.evidence;
    this.details = init.details ?? [];
  }

  /** The plain data of the failure, for reports and a custom resource's status. */
  toFailure(): EngineFailure {
    return {
      kind: this.kind,
      retryable: this.retryable,
      message: this.message,
      ...(this.ref ? { ref: this.ref } : {}),
      ...(this.refs ? { refs: this.refs } : {}),
      ...(this.evidence ? { evidence: this.evidence } : {}),
      ...(this.details.length ? { details: this.details } : {}),
    };
  }
}

export interface EngineFailure {
  kind: FailureKind;
  retryable: boolean;
  message: string;
  ref?: ObjectRef;
  refs?: ObjectRef[];
  evidence?: Evidence;
  details?: string[];
}

/** Any error as an EngineError, classified by what it is (never by its message). */
export function toEngineError(err: unknown): EngineError {
  if (err instanceof EngineError) return err;
  if (err instanceof KubeConnectionError) return new EngineError({ kind: 'unreachable', message: err.message });
  if (err instanceof Error && err.name === 'AbortError') return new EngineError({ kind: 'cancelled', message: 'cancelled' });
  if (err instanceof KubeApiError) {
    // 401: the credentials are not accepted; 403: they are, but RBAC does not allow the request.
    // The first word is the CamelCase reason a controller's condition carries.
    if (err.status === 401) {
      return new EngineError({ kind: 'unreachable', retryable: false, message: `Unauthorized: the API server refused the credentials: ${err.message}`, ...(err.ref ? { ref: err.ref } : {}) });
    }
    if (err.status === 403) {
      return new EngineError({ kind: 'unreachable', retryable: false, message: `Forbidden: RBAC does not allow it: ${err.message}`, ...(err.ref ? { ref: err.ref } : {}) });
    }
    const transient = err.status >= 500 || err.status === 429;
    return new EngineError({ kind: 'failed', retryable: transient, message: err.message, ...(err.ref ? { ref: err.ref } : {}) });
  }
  return new EngineError({ kind: 'failed', message: err instanceof Error ? err.message : String(err) });
}
