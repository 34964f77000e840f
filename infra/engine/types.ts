/**
 * Shapes shared by the engine's parts. The engine is generic: it deploys any list of Kubernetes
 * objects (a cdk8s app's `chart.toJson()` output, or manifests read from files), so objects are
 * plain JSON, typed only as far as the engine reads them.
 */

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }>;
  managedFields?: unknown[];
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  // Everything else (spec, status, data, ...) is read by the parts that know the kind.
  [key: string]: any;
}

/** Identifies one object. `namespace` is undefined for cluster-scoped objects. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
}

/**
 * Readiness of one object, kstatus-compatible in spirit:
 * - `ready`: reconciled and serving (kstatus "Current");
 * - `progressing`: not there yet, and nothing says it will not get there (kstatus "InProgress");
 * - `failed`: it will not get there without a change (kstatus "Failed"), e.g. an image that cannot be
 *   pulled, a crash loop, a failed Job. The deploy stops waiting at once and shows the evidence.
 */
export type HealthState = 'ready' | 'progressing' | 'failed';

export interface Health {
  state: HealthState;
  /** Short machine-friendly cause, e.g. `ImagePullBackOff`, `Available`, `WaitingForEndpoints`. */
  reason: string;
  /** One human line, e.g. `1 of 2 updated replicas available`. */
  message: string;
  /** For failures caused by a pod: which pod and container, so diagnostics fetch the right logs. */
  pod?: { name: string; namespace: string; container?: string; restarts?: number };
}

/** `group/Kind` spelled as ApplySets spell it: `Deployment.apps`, `Service` (core group). */
export function groupKind(ref: Pick<ObjectRef, 'apiVersion' | 'kind'>): string {
  const group = ref.apiVersion.includes('/') ? ref.apiVersion.split('/')[0]! : '';
  return group ? `${ref.kind}.${group}` : ref.kind;
}

export function refOf(obj: KubeObject): ObjectRef {
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    name: obj.metadata.name,
    ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
  };
}

/** `Deployment/kreg-dev/registration`, `Namespace/kreg-dev`: how objects are named in every message. */
export function describeRef(ref: ObjectRef): string {
  return ref.namespace ? `${ref.kind}/${ref.namespace}/${ref.name}` : `${ref.kind}/${ref.name}`;
}

/** Identity of an object across apiVersions of the same group (apps/v1 vs apps/v1beta2 are one object). */
export function refKey(ref: ObjectRef): string {
  return `${groupKind(ref)}|${ref.namespace ?? ''}|${ref.name}`;
}
