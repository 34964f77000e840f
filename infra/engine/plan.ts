/**
 * Pure planning: which phase an object is applied in, how objects are prepared for server-side
 * apply, and what counts as a change. No I/O here, so all of it is unit-tested.
 */
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { PHASE_ANNOTATION } from './annotations.js';
import type { KubeObject, ObjectRef } from './types.js';
import { groupKind, refKey } from './types.js';

/**
 * Apply order. Each phase is applied (in parallel within the phase) before the next starts, and
 * some phases are waited on: CRDs must be Established before custom resources of them can be
 * applied; Jobs (e.g. a release's database migration) must complete before the workloads that
 * need them roll. Prune and destroy run the phases backwards: workloads go before what they use.
 */
export const PHASES = [
  'namespaces',
  'definitions',
  'identity',
  'config',
  'storage',
  'network',
  // Workloads the Jobs need (a database a migration runs against), waited on before the Jobs run.
  // Only an object that says so (kreg.dev/phase: backends) is applied here.
  'backends',
  'jobs',
  'workloads',
  'others',
] as const;
export type Phase = (typeof PHASES)[number];

const PHASE_OF_GROUP_KIND: Record<string, Phase> = {
  Namespace: 'namespaces',
  'CustomResourceDefinition.apiextensions.k8s.io': 'definitions',
  'PriorityClass.scheduling.k8s.io': 'definitions',
  'StorageClass.storage.k8s.io': 'definitions',
  'IngressClass.networking.k8s.io': 'definitions',
  'RuntimeClass.node.k8s.io': 'definitions',
  ServiceAccount: 'identity',
  'ClusterRole.rbac.authorization.k8s.io': 'identity',
  'Role.rbac.authorization.k8s.io': 'identity',
  'ClusterRoleBinding.rbac.authorization.k8s.io': 'identity',
  'RoleBinding.rbac.authorization.k8s.io': 'identity',
  ResourceQuota: 'identity',
  LimitRange: 'identity',
  ConfigMap: 'config',
  Secret: 'config',
  PersistentVolume: 'storage',
  PersistentVolumeClaim: 'storage',
  Service: 'network',
  'NetworkPolicy.networking.k8s.io': 'network',
  'Job.batch': 'jobs',
  'Deployment.apps': 'workloads',
  'StatefulSet.apps': 'workloads',
  'DaemonSet.apps': 'workloads',
  'ReplicaSet.apps': 'workloads',
  Pod: 'workloads',
  'CronJob.batch': 'workloads',
  'HorizontalPodAutoscaler.autoscaling': 'workloads',
  'PodDisruptionBudget.policy': 'workloads',
};

type Phased = Pick<ObjectRef, 'apiVersion' | 'kind'> & { metadata?: { annotations?: Record<string, string> } };

/**
 * The phase an object is applied in: the one it names (`kreg.dev/phase`), or its kind's. Ingress,
 * webhooks, custom resources and anything unknown go last, after what they point at.
 */
export function phaseOf(obj: Phased): Phase {
  const named = obj.metadata?.annotations?.[PHASE_ANNOTATION];
  if (named && (PHASES as readonly string[]).includes(named)) return named as Phase;
  return PHASE_OF_GROUP_KIND[groupKind(obj)] ?? 'others';
}

/** Groups objects by phase in apply order, keeping the input order inside a phase. */
export function byPhase<T extends Phased>(objects: T[], reverse = false): Array<{ phase: Phase; objects: T[] }> {
  const out = PHASES.map((phase) => ({ phase, objects: objects.filter((o) => phaseOf(o) === phase) })).filter((g) => g.objects.length > 0);
  return reverse ? out.reverse() : out;
}

/**
 * Prepares a synthesized object for server-side apply:
 * - Secret `stringData` becomes base64 `data`: the API server never returns stringData, so applying
 *   it would show as a change on every diff, and its fields would be owned oddly.
 * - namespaced objects without a namespace get `defaultNamespace`.
 * - `extraLabels` (the ApplySet membership label) are added.
 * Returns a new object; the input is not modified.
 */
export function prepareObject(obj: KubeObject, options: { namespaced: boolean; defaultNamespace: string; extraLabels?: Record<string, string> }): KubeObject {
  const out = structuredClone(obj) as KubeObject;
  if (options.namespaced && !out.metadata.namespace) out.metadata.namespace = options.defaultNamespace;
  if (!options.namespaced) delete out.metadata.namespace;
  if (options.extraLabels) out.metadata.labels = { ...out.metadata.labels, ...options.extraLabels };
  if (out.kind === 'Secret' && out.apiVersion === 'v1' && out.stringData) {
    const data: Record<string, string> = { ...(out.data ?? {}) };
    for (const [k, v] of Object.entries(out.stringData as Record<string, string>)) data[k] = Buffer.from(String(v), 'utf8').toString('base64');
    out.data = data;
    delete out.stringData;
  }
  return out;
}

/** Fields that change without the desired state changing; diffs and change detection ignore them. */
const NOISY_METADATA = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink'] as const;
const NOISY_ANNOTATIONS = ['deployment.kubernetes.io/revision', 'kubectl.kubernetes.io/last-applied-configuration'];

/** The object as a human compares it: no status, no server bookkeeping. */
export function normalizeForDiff(obj: KubeObject): KubeObject {
  const out = structuredClone(obj) as KubeObject;
  delete out.status;
  for (const k of NOISY_METADATA) delete out.metadata[k];
  if (out.metadata.annotations) {
    for (const k of NOISY_ANNOTATIONS) delete out.metadata.annotations[k];
    if (Object.keys(out.metadata.annotations).length === 0) delete out.metadata.annotations;
  }
  return out;
}

/** The fields `manager` owns by apply, as the server records them (time stamps left out). */
export function ownedFields(obj: KubeObject | undefined, manager: string): unknown {
  const entries = (obj?.metadata.managedFields ?? []) as Array<{ manager?: string; operation?: string; fieldsV1?: unknown }>;
  return entries.filter((e) => e.manager === manager && e.operation === 'Apply').map((e) => e.fieldsV1);
}

export type Change = 'create' | 'update' | 'unchanged';

/**
 * What applying would do, judged from the live object and the server's dry-run result of the
 * apply: `unchanged` only if the object would look the same AND our manager would own the same
 * fields (dropping a field from the manifest changes ownership even when another manager keeps
 * the value).
 */
export function classifyChange(live: KubeObject | undefined, dryRun: KubeObject, manager: string): Change {
  if (!live) return 'create';
  const same = isDeepStrictEqual(normalizeForDiff(live), normalizeForDiff(dryRun)) && isDeepStrictEqual(ownedFields(live, manager), ownedFields(dryRun, manager));
  return same ? 'unchanged' : 'update';
}

/** Objects of the desired set named twice (same group, kind, namespace and name). */
export function duplicates(objects: ObjectRef[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const o of objects) {
    const k = refKey(o);
    if (seen.has(k)) dup.add(k);
    seen.add(k);
  }
  return [...dup];
}

/** A short stable digest of a list of objects (the revision's identity in history listings). */
export function digestObjects(objects: KubeObject[]): string {
  return createHash('sha256').update(JSON.stringify(objects)).digest('hex').slice(0, 12);
}

/**
 * The managers other than `manager` that hold fields of `obj` (status writers
 * left out), most recent first, each with up to `maxFields` of its fields as paths.
 */
export function foreignManagers(obj: KubeObject | undefined, manager: string, maxFields = 6): Array<{ manager: string; operation: string; time?: string; fields: string[] }> {
  const entries = (obj?.metadata.managedFields ?? []) as Array<{ manager?: string; operation?: string; time?: string; subresource?: string; fieldsV1?: unknown }>;
  return entries
    .filter((e) => e.manager && e.manager !== manager && e.subresource !== 'status')
    .sort((a, b) => (b.time ?? '').localeCompare(a.time ?? ''))
    .map((e) => ({ manager: e.manager!, operation: e.operation ?? 'Update', ...(e.time ? { time: e.time } : {}), fields: fieldPaths(e.fieldsV1).slice(0, maxFields) }));
}

/** Leaf paths of a managedFields `fieldsV1` set: `.spec.replicas`, `.spec.template.spec.containers[name=web].env[name=X]`. */
export function fieldPaths(set: unknown, prefix = ''): string[] {
  if (!set || typeof set !== 'object') return [];
  const out: string[] = [];
  const keys = Object.keys(set as Record<string, unknown>).filter((k) => k !== '.');
  if (keys.length === 0) return prefix ? [prefix] : [];
  for (const key of keys) {
    let segment: string;
    if (key.startsWith('f:')) segment = `.${key.slice(2)}`;
    else if (key.startsWith('k:')) {
      try {
        segment = `[${Object.entries(JSON.parse(key.slice(2)) as Record<string, unknown>).map(([k, v]) => `${k}=${String(v)}`).join(',')}]`;
      } catch {
        segment = `[${key.slice(2)}]`;
      }
    } else if (key.startsWith('v:')) segment = `[${key.slice(2)}]`;
    else segment = `.${key}`;
    out.push(...fieldPaths((set as Record<string, unknown>)[key], prefix + segment));
  }
  return out;
}

interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  apiVersion?: string;
  time?: string;
  fieldsType?: string;
  fieldsV1?: Record<string, unknown>;
  subresource?: string;
}

/** The union of two `fieldsV1` sets (tries of `f:`/`k:`/`v:` keys). */
export function mergeFieldSets(a: Record<string, unknown> = {}, b: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [key, value] of Object.entries(b)) {
    out[key] = key in out ? mergeFieldSets(out[key] as Record<string, unknown>, value as Record<string, unknown>) : value;
  }
  return out;
}

/**
 * The object's managedFields with every field that a manager `from` accepts holds outside
 * `metadata` moved into `manager`'s Apply entry, and the managers it took them from; undefined
 * when there is nothing to move. Applied before the next server-side apply, this makes fields
 * someone added with kubectl (an env var from `kubectl set env`, a key from `kubectl edit`) ours,
 * so the apply removes the ones the desired object does not have. Server-side apply alone leaves
 * them: they belong to another manager. Labels and annotations stay with whoever set them.
 */
export function takeOverManagedFields(obj: KubeObject, manager: string, from: (manager: string) => boolean): { managedFields: ManagedFieldsEntry[]; managers: string[] } | undefined {
  const entries = (obj.metadata.managedFields ?? []) as ManagedFieldsEntry[];
  let moved: Record<string, unknown> = {};
  const managers: string[] = [];
  const kept: ManagedFieldsEntry[] = [];
  for (const entry of entries) {
    if (!entry.manager || entry.manager === manager || entry.subresource === 'status' || !from(entry.manager)) {
      kept.push(entry);
      continue;
    }
    const { 'f:metadata': metadata, ...rest } = entry.fieldsV1 ?? {};
    if (Object.keys(rest).length === 0) {
      kept.push(entry);
      continue;
    }
    moved = mergeFieldSets(moved, rest);
    managers.push(entry.manager);
    if (metadata !== undefined) kept.push({ ...entry, fieldsV1: { 'f:metadata': metadata } });
  }
  if (managers.length === 0) return undefined;
  const own = kept.findIndex((e) => e.manager === manager && e.operation === 'Apply' && !e.subresource);
  if (own >= 0) kept[own] = { ...kept[own], fieldsV1: mergeFieldSets(kept[own]!.fieldsV1, moved) };
  else kept.push({ manager, operation: 'Apply', apiVersion: obj.apiVersion, time: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), fieldsType: 'FieldsV1', fieldsV1: moved });
  return { managedFields: kept, managers };
}
