/**
 * The engine's supported surface: what the CLI and the operator use. Everything else in this
 * folder is internal and may change.
 *
 * Entry points and their contracts:
 * - `reconcileOnce(api, objects, target, options, memo?)`: never sleeps, never throws for what
 *   happens in the cluster; returns ready | progressing (requeueAfterMs, waitingOn) | failed (failure).
 * - `deploy(api, objects, target, options)`: loops over reconcileOnce until ready, failed or timeout;
 *   never throws for what happens in the cluster; the report carries the failure.
 * - `diff(api, objects, target, options)`: the deploy's prepare and validate stages, nothing written.
 * - `status`, `chooseRevision` + `rollback`, `destroy`: the set as recorded by its ApplySet parent.
 * Every entry point takes an AbortSignal (`signal`) that cancels its API requests.
 */
export { followPodLog, KubeApiError, KubeClient, KubeConnectionError, type ClusterReader, type KubeApi } from './client.js';
export { deploy, type DeployOptions, type DeployReport } from './deploy.js';
export { gatherEvidence, type Evidence } from './diagnostics.js';
export { diff, type DiffReport, type ObjectDiff } from './diff.js';
export { EngineError, toEngineError, type EngineFailure, type FailureKind } from './errors.js';
export type { EngineEvent, EventSink } from './events.js';
export { applySetId, parentRefOf, type ApplySetRef } from './inventory.js';
export { chooseRevision, destroy, KEPT_BY_ANNOTATION, rollback, status, type DestroyReport, type StatusReport } from './lifecycle.js';
export {
  FIELD_MANAGER,
  reconcileOnce,
  type ReconcileMemo,
  type ReconcileOptions,
  type ReconcileResult,
  type ReconcileStatus,
  type Target,
} from './reconcile.js';
export type { Health, KubeObject, ObjectRef } from './types.js';
