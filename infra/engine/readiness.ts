/**
 * Readiness of live objects, kstatus-compatible in spirit, with the known holes of Helm's `--wait` and
 * of kstatus fixed:
 * - a Service is ready only once an EndpointSlice has a ready endpoint (kstatus: Current at once);
 * - a Job is ready only when it completed (kstatus: Current once it started);
 * - a Deployment waits for its updated replicas, never for `replicas - maxUnavailable` (Helm waits for 0
 *   pods when replicas=1 and maxUnavailable=1);
 * - workloads fail fast when a pod of their CURRENT revision shows a state that will not heal by itself
 *   (image pull errors, crash loops, bad container config, lasting Unschedulable), instead of waiting for
 *   the timeout. Pods of older revisions are ignored: they are on their way out.
 *
 * Pure functions, no I/O: the waiter lists pods/ReplicaSets/EndpointSlices (see `relatedNeeds`) and calls
 * `evaluateHealth` again on every poll (250 ms to 1 s apart). Every rule is checked against objects captured from a real
 * cluster (test/engine/fixtures).
 */
import { groupKind, type Health, type KubeObject } from './types.js';

export interface RelatedObjects {
  /** All pods of the object's namespace (the evaluator picks the ones it owns). */
  pods?: KubeObject[];
  /** All ReplicaSets of the namespace (for Deployments). */
  replicaSets?: KubeObject[];
  /** All EndpointSlices of the namespace (for Services). */
  endpointSlices?: KubeObject[];
}

export interface ReadinessOptions {
  /** How long PodScheduled=False/Unschedulable must last before it fails the object. Default 10 s. */
  unschedulableGraceMs?: number;
}

/**
 * A pod that cannot be scheduled fails its workload only after this long (by the condition's
 * lastTransitionTime). Unschedulable is often transient: during a rolling update the surge pod waits
 * for CPU or memory that a terminating old pod is about to free, a node that is still starting carries
 * a `not-ready` taint, a volume is being provisioned. The scheduler retries such pods within seconds,
 * so 10 s absorbs those races while still failing a hopeless nodeSelector long before any timeout.
 * It does not cover a cluster autoscaler adding a node (that takes minutes); clusters that rely on one
 * pass a longer `unschedulableGraceMs`. A pod that has a `nominatedNodeName` has already been promised
 * a node by preemption and is never failed for being Unschedulable.
 */
export const UNSCHEDULABLE_GRACE_MS = 10_000;

/**
 * Container waiting reasons that do not heal without a change: the kubelet keeps retrying, but the
 * same image, config or command gives the same result. ErrImageNeverPull and ImageInspectError are as
 * deterministic as InvalidImageName, so they are included too.
 */
export const FAIL_FAST_WAITING_REASONS: ReadonlySet<string> = new Set([
  'ImagePullBackOff',
  'ErrImagePull',
  'ErrImageNeverPull',
  'InvalidImageName',
  'ImageInspectError',
  'CrashLoopBackOff',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
]);

const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
const DS_TEMPLATE_GENERATION_ANNOTATION = 'deprecated.daemonset.template.generation';
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

type Condition = { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string; observedGeneration?: number };

const ready = (reason: string, message: string): Health => ({ state: 'ready', reason, message });
const progressing = (reason: string, message: string): Health => ({ state: 'progressing', reason, message });
const failed = (reason: string, message: string): Health => ({ state: 'failed', reason, message });

/** Which related lists the waiter must fetch to evaluate this object. */
export function relatedNeeds(obj: KubeObject): { pods: boolean; replicaSets: boolean; endpointSlices: boolean } {
  const none = { pods: false, replicaSets: false, endpointSlices: false };
  switch (groupKind(obj)) {
    case 'Deployment.apps':
      return { pods: true, replicaSets: true, endpointSlices: false };
    case 'StatefulSet.apps':
    case 'DaemonSet.apps':
    case 'Job.batch':
      return { ...none, pods: true };
    case 'Service':
      return { ...none, endpointSlices: serviceNeedsEndpoints(obj) };
    default:
      return none;
  }
}

export function evaluateHealth(obj: KubeObject, related: RelatedObjects, now: Date, options: ReadinessOptions = {}): Health {
  const meta = obj.metadata;
  if (meta.deletionTimestamp) return progressing('Terminating', `being deleted since ${meta.deletionTimestamp}`);

  // A status written for an older generation says nothing about the current spec.
  const observed = obj.status?.observedGeneration;
  if (typeof observed === 'number' && typeof meta.generation === 'number' && observed < meta.generation) {
    return progressing('LatestGenerationNotObserved', `waiting for the controller to observe generation ${meta.generation} (status is for ${observed})`);
  }

  const ctx: Ctx = { related, now, graceMs: options.unschedulableGraceMs ?? UNSCHEDULABLE_GRACE_MS };
  switch (groupKind(obj)) {
    case 'Deployment.apps':
      return deploymentHealth(obj, ctx);
    case 'StatefulSet.apps':
      return statefulSetHealth(obj, ctx);
    case 'DaemonSet.apps':
      return daemonSetHealth(obj, ctx);
    case 'Job.batch':
      return jobHealth(obj, ctx);
    case 'Pod':
      return podHealth(obj, ctx);
    case 'Service':
      return serviceHealth(obj, related);
    case 'PersistentVolumeClaim':
      return claimHealth(obj);
    case 'CustomResourceDefinition.apiextensions.k8s.io':
      return crdHealth(obj);
    case 'Namespace':
      return namespaceHealth(obj);
    default:
      return genericHealth(obj);
  }
}

/**
 * Pods of the workload's CURRENT revision, i.e. the pods a rollout is waiting for:
 * - Deployment: pods of the ReplicaSet whose revision annotation equals the Deployment's;
 * - StatefulSet: `controller-revision-hash` == status.updateRevision;
 * - DaemonSet: `pod-template-generation` == the template generation (see `daemonSetTemplateGeneration`);
 * - Job: `batch.kubernetes.io/controller-uid` (or the legacy `controller-uid`) == the Job's uid;
 * - Pod: the pod itself.
 * Used for fail-fast and by diagnostics.
 */
export function currentPods(obj: KubeObject, related: RelatedObjects): KubeObject[] {
  const pods = (related.pods ?? []).filter((p) => p.metadata.namespace === obj.metadata.namespace);
  switch (groupKind(obj)) {
    case 'Deployment.apps': {
      const rs = currentReplicaSet(obj, related);
      return rs ? pods.filter((p) => isControlledBy(p, rs)) : [];
    }
    case 'StatefulSet.apps': {
      const revision: unknown = obj.status?.updateRevision;
      if (typeof revision !== 'string') return [];
      return pods.filter((p) => isControlledBy(p, obj) && p.metadata.labels?.['controller-revision-hash'] === revision);
    }
    case 'DaemonSet.apps': {
      const generation = daemonSetTemplateGeneration(obj);
      if (generation === undefined) return [];
      return pods.filter((p) => isControlledBy(p, obj) && p.metadata.labels?.['pod-template-generation'] === generation);
    }
    case 'Job.batch': {
      const uid = obj.metadata.uid;
      if (!uid) return [];
      return pods.filter((p) => (p.metadata.labels?.['batch.kubernetes.io/controller-uid'] ?? p.metadata.labels?.['controller-uid']) === uid);
    }
    case 'Pod':
      return [obj];
    default:
      return [];
  }
}

// ---------------------------------------------------------------------------------------------------------
// Workloads

interface Ctx {
  related: RelatedObjects;
  now: Date;
  graceMs: number;
}

/** kubectl rollout status' logic, plus fail-fast and `spec.paused`. */
function deploymentHealth(d: KubeObject, ctx: Ctx): Health {
  const st = d.status ?? {};
  if (typeof st.observedGeneration !== 'number') return notObservedYet();
  const desired = num(d.spec?.replicas, 1);
  const replicas = num(st.replicas);
  const updated = num(st.updatedReplicas);
  const available = num(st.availableReplicas);

  const progressingCond = condition(d, 'Progressing');
  if (progressingCond?.reason === 'ProgressDeadlineExceeded') {
    // The controller gave up; a pod of the new revision usually says why, and says it better.
    const pod = firstFailFast(d, ctx);
    return pod ?? failed('ProgressDeadlineExceeded', progressingCond.message ?? `rollout exceeded its progress deadline of ${d.spec?.progressDeadlineSeconds ?? 600} s`);
  }

  let pending: Health | undefined;
  if (updated < desired) pending = progressing('RolloutInProgress', `${updated} of ${desired} replicas updated`);
  // status.replicas counts the pods of every revision: more than wanted means old ones are still there.
  // They usually stay because the new ones are not available yet (status.availableReplicas counts old
  // pods too, so only the current ReplicaSet can tell), which is what the reader needs to know.
  else if (replicas > updated) {
    const rs = currentReplicaSet(d, ctx.related);
    const newAvailable = num(rs?.status?.availableReplicas);
    const detail = rs && newAvailable < updated ? `; ${newAvailable} of ${updated} updated replicas available` : '';
    pending = progressing('OldReplicasPending', `waiting for old replicas to terminate (${replicas} → ${desired})${detail}`);
  }
  else if (available < updated) pending = progressing('ReplicasUnavailable', `${available} of ${updated} updated replicas available`);
  if (!pending) return ready('Available', `${available} of ${desired} replicas available${d.spec?.paused ? ' (rollout paused)' : ''}`);

  const pod = firstFailFast(d, ctx);
  if (pod) return pod;
  // A paused Deployment does not progress until someone resumes it: waiting for it can only time out.
  if (d.spec?.paused) return failed('DeploymentPaused', `rollout is paused (spec.paused) with ${pending.message}; resume it with kubectl rollout resume`);
  return pending;
}

function statefulSetHealth(s: KubeObject, ctx: Ctx): Health {
  const st = s.status ?? {};
  if (typeof st.observedGeneration !== 'number') return notObservedYet();
  const desired = num(s.spec?.replicas, 1);
  const replicas = num(st.replicas);
  const readyReplicas = num(st.readyReplicas);
  const available = num(st.availableReplicas);
  const updated = num(st.updatedReplicas);
  const strategy = s.spec?.updateStrategy?.type ?? 'RollingUpdate';
  const partition = num(s.spec?.updateStrategy?.rollingUpdate?.partition);

  let pending: Health | undefined;
  if (replicas > desired) pending = progressing('ExtraReplicas', `waiting for extra replicas to terminate (${replicas} → ${desired})`);
  else if (readyReplicas < desired) pending = progressing('ReplicasNotReady', `${readyReplicas} of ${desired} replicas ready`);
  // availableReplicas lags readyReplicas by spec.minReadySeconds.
  else if (available < desired) pending = progressing('ReplicasUnavailable', `${available} of ${desired} replicas available`);
  else if (strategy === 'RollingUpdate') {
    // With a partition, pods below it keep the old revision on purpose: currentRevision never catches up.
    if (partition > 0) {
      const want = Math.max(desired - partition, 0);
      if (updated < want) pending = progressing('RolloutInProgress', `${updated} of ${want} replicas updated (partition ${partition})`);
    } else if (updated < desired) pending = progressing('RolloutInProgress', `${updated} of ${desired} replicas updated`);
    else if (st.currentRevision !== st.updateRevision) pending = progressing('RolloutInProgress', `waiting for the rolling update to revision ${st.updateRevision} to complete`);
  }
  // OnDelete: pods change revision only when someone deletes them, so ready replicas are all we can wait for.
  if (!pending) return ready('Ready', `${readyReplicas} of ${desired} replicas ready${strategy === 'OnDelete' ? ' (OnDelete)' : ''}`);
  return firstFailFast(s, ctx) ?? pending;
}

function daemonSetHealth(ds: KubeObject, ctx: Ctx): Health {
  const st = ds.status ?? {};
  if (typeof st.observedGeneration !== 'number') return notObservedYet();
  const desired = num(st.desiredNumberScheduled);
  const updated = num(st.updatedNumberScheduled);
  const available = num(st.numberAvailable);
  const unavailable = num(st.numberUnavailable);
  const onDelete = ds.spec?.updateStrategy?.type === 'OnDelete';

  let pending: Health | undefined;
  // OnDelete: old pods are replaced only when deleted, so updatedNumberScheduled may stay below desired.
  if (!onDelete && updated < desired) pending = progressing('RolloutInProgress', `${updated} of ${desired} pods updated`);
  else if (available < desired || unavailable > 0) pending = progressing('PodsUnavailable', `${available} of ${desired} pods available`);
  if (!pending) return ready('Available', `${available} of ${desired} pods available`);
  return firstFailFast(ds, ctx) ?? pending;
}

function jobHealth(job: KubeObject, ctx: Ctx): Health {
  const st = job.status ?? {};
  const succeeded = num(st.succeeded);
  const failedCount = num(st.failed);
  const complete = condition(job, 'Complete') ?? condition(job, 'SuccessCriteriaMet');
  if (complete?.status === 'True') return ready('Complete', `completed (${succeeded} succeeded)`);
  // FailureTarget=True is set first, while the controller terminates the remaining pods; Failed follows.
  // Both are final, so either one ends the wait.
  const fail = [condition(job, 'Failed'), condition(job, 'FailureTarget')].find((c) => c?.status === 'True');
  if (fail) return failed(fail.reason ?? 'JobFailed', `job failed: ${fail.reason ?? 'Failed'}: ${fail.message ?? `${failedCount} failed pods`}`);

  // Failed pods are the Job's own retries (backoffLimit decides); only states that never end by
  // themselves fail fast, exactly as for other workloads.
  const pod = firstFailFast(job, ctx, { jobPods: true });
  if (pod) return pod;
  if (job.spec?.suspend) return progressing('Suspended', 'job is suspended (spec.suspend)');
  const completions = job.spec?.completions;
  const parts = [`${num(st.active)} active`, `${succeeded}${typeof completions === 'number' ? ` of ${completions}` : ''} succeeded`];
  if (failedCount > 0) parts.push(`${failedCount} failed (backoffLimit ${num(job.spec?.backoffLimit, 6)})`);
  return progressing('Running', `waiting for completion: ${parts.join(', ')}`);
}

function podHealth(pod: KubeObject, ctx: Ctx): Health {
  const st = pod.status ?? {};
  const ref = podRef(pod);
  if (st.phase === 'Succeeded') return ready('Succeeded', 'pod completed');
  if (st.phase === 'Failed') {
    const term = allContainerStatuses(pod).find((c) => c.status.state?.terminated && c.status.state.terminated.exitCode !== 0);
    const detail = st.message
      ?? (term ? `${term.label} ${term.status.name}: ${describeTermination(term.status.state.terminated)}` : 'pod failed');
    return { ...failed(st.reason ?? 'PodFailed', `pod ${pod.metadata.name}: ${detail}`), pod: term ? { ...ref, container: term.status.name, restarts: num(term.status.restartCount) } : ref };
  }
  if (condition(pod, 'Ready')?.status === 'True') return ready('Ready', 'pod ready');
  const ff = podFailFast(pod, ctx, false);
  if (ff) return ff;
  // Say what it waits for: the scheduler's verdict while unscheduled, else the kubelet's readiness summary.
  const scheduled = condition(pod, 'PodScheduled');
  const detail = scheduled?.status === 'False'
    ? `${scheduled.reason ?? 'not scheduled'}: ${scheduled.message ?? ''}`.trim()
    : condition(pod, 'ContainersReady')?.message ?? condition(pod, 'Ready')?.message;
  const phase = st.phase ?? 'Pending';
  return progressing(phase === 'Pending' ? 'Pending' : 'NotReady', detail ? `pod ${phase}: ${detail}` : `pod ${phase}`);
}

// ---------------------------------------------------------------------------------------------------------
// Fail-fast

function firstFailFast(workload: KubeObject, ctx: Ctx, opts: { jobPods?: boolean } = {}): Health | undefined {
  for (const pod of currentPods(workload, ctx.related)) {
    const h = podFailFast(pod, ctx, opts.jobPods ?? false);
    if (h) return h;
  }
  return undefined;
}

/** The fail-fast state of one pod, if it has one; the message carries the kubelet's or scheduler's own words. */
function podFailFast(pod: KubeObject, ctx: Ctx, jobPod: boolean): Health | undefined {
  // A terminating pod is on its way out; whatever it shows no longer matters.
  if (pod.metadata.deletionTimestamp) return undefined;
  const ref = podRef(pod);
  for (const { label, status, restartPolicy } of allContainerStatuses(pod)) {
    const waiting = status.state?.waiting;
    const reason: unknown = waiting?.reason;
    if (typeof reason !== 'string' || !FAIL_FAST_WAITING_REASONS.has(reason)) continue;
    // A Job whose containers run under restartPolicy Never retries with new pods up to its backoffLimit,
    // and the kubelet never backs off such a container, so a CrashLoopBackOff there is left to the Job.
    // (Under OnFailure the kubelet restarts the same crashing container: that fails fast like a Deployment.)
    if (jobPod && reason === 'CrashLoopBackOff' && restartPolicy === 'Never') continue;
    let message = `pod ${pod.metadata.name}: ${label} ${status.name}: ${reason}`;
    if (waiting.message) message += `: ${waiting.message}`;
    // The CrashLoopBackOff message only says "back-off 20s restarting failed container"; how it ended says why.
    const last = status.lastState?.terminated;
    if (reason === 'CrashLoopBackOff' && last) message += ` (last exit: ${describeTermination(last)})`;
    return { ...failed(reason, message), pod: { ...ref, container: status.name, restarts: num(status.restartCount) } };
  }

  const scheduled = condition(pod, 'PodScheduled');
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable' && !pod.status?.nominatedNodeName) {
    const since = Date.parse(scheduled.lastTransitionTime ?? pod.metadata.creationTimestamp ?? '');
    if (Number.isFinite(since) && ctx.now.getTime() - since >= ctx.graceMs) {
      const seconds = Math.floor((ctx.now.getTime() - since) / 1000);
      return { ...failed('Unschedulable', `pod ${pod.metadata.name}: Unschedulable for ${seconds} s: ${scheduled.message ?? 'no node fits'}`), pod: ref };
    }
  }
  return undefined;
}

interface LabeledStatus {
  label: 'container' | 'init container';
  status: any;
  /** The restart policy that governs this container: its own (sidecars: Always) or the pod's. */
  restartPolicy: string;
}

/** Init containers first: while one of them fails, the app containers are merely waiting behind it. */
function allContainerStatuses(pod: KubeObject): LabeledStatus[] {
  const podPolicy: string = pod.spec?.restartPolicy ?? 'Always';
  const policyOf = (specs: any[] | undefined, name: string): string =>
    specs?.find((c) => c?.name === name)?.restartPolicy ?? podPolicy;
  const init = (pod.status?.initContainerStatuses ?? []).map((s: any): LabeledStatus =>
    ({ label: 'init container', status: s, restartPolicy: policyOf(pod.spec?.initContainers, s.name) }));
  const main = (pod.status?.containerStatuses ?? []).map((s: any): LabeledStatus =>
    ({ label: 'container', status: s, restartPolicy: podPolicy }));
  return [...init, ...main];
}

function describeTermination(t: any): string {
  const parts = [t.reason ?? 'terminated', `exit code ${t.exitCode}`];
  if (t.message) parts.push(t.message);
  return parts.join(', ');
}

function podRef(pod: KubeObject): { name: string; namespace: string } {
  return { name: pod.metadata.name, namespace: pod.metadata.namespace ?? '' };
}

// ---------------------------------------------------------------------------------------------------------
// Services, claims, definitions, namespaces, everything else

function serviceNeedsEndpoints(svc: KubeObject): boolean {
  if (svc.spec?.type === 'ExternalName') return false;
  const selector = svc.spec?.selector;
  return !!selector && Object.keys(selector).length > 0;
}

function serviceHealth(svc: KubeObject, related: RelatedObjects): Health {
  if (svc.spec?.type === 'ExternalName') return ready('ExternalName', `alias for ${svc.spec.externalName}`);
  // Without a selector no controller manages the endpoints: someone else writes them, maybe never.
  if (!serviceNeedsEndpoints(svc)) return ready('NoSelector', 'no selector: endpoints are managed outside Kubernetes');

  const slices = (related.endpointSlices ?? []).filter((s) =>
    s.metadata.namespace === svc.metadata.namespace && s.metadata.labels?.[SERVICE_NAME_LABEL] === svc.metadata.name);
  // Dual-stack Services get one slice per address family for the same pods: count pods, not addresses.
  const readyKeys = new Set<string>();
  const allKeys = new Set<string>();
  // Pods on their way out (an earlier rollout's) stay in the slices until they are gone. They are
  // named apart, not counted as endpoints that failed to turn ready: "1 of 4 ready" misleads.
  const terminatingKeys = new Set<string>();
  for (const slice of slices) {
    for (const ep of slice.endpoints ?? []) {
      const key = ep.targetRef?.uid ?? ep.addresses?.[0] ?? JSON.stringify(ep);
      if (ep.conditions?.terminating === true) {
        terminatingKeys.add(key);
        continue;
      }
      allKeys.add(key);
      // `ready` is false for unready endpoints unless the Service publishes not-ready addresses.
      if (ep.conditions?.ready === true) readyKeys.add(key);
    }
  }
  const counted = `${readyKeys.size} of ${allKeys.size} endpoints ready${terminatingKeys.size ? ` (${terminatingKeys.size} terminating)` : ''}`;
  if (readyKeys.size === 0) {
    return progressing('WaitingForEndpoints', allKeys.size === 0 && terminatingKeys.size === 0 ? 'no endpoints yet' : counted);
  }
  if (svc.spec?.type === 'LoadBalancer' && !(svc.status?.loadBalancer?.ingress?.length > 0)) {
    return progressing('WaitingForLoadBalancer', `${counted}; waiting for the load balancer's address`);
  }
  return ready('EndpointsReady', counted);
}

/**
 * Bound is ready and Lost is failed. A Pending claim is the hard case: with a WaitForFirstConsumer
 * StorageClass (kind's and this project's `standard`) it binds only after a pod that mounts it is
 * scheduled, and the claim itself cannot tell that apart from a claim that will never bind (e.g. a
 * StorageClass that does not exist: both carry no annotation at all, see the fixtures). So:
 * - Pending with `volume.kubernetes.io/selected-node`: a consumer was scheduled, the provisioner is at
 *   work → progressing;
 * - Pending with a `storage-provisioner` annotation: Immediate binding, provisioning underway → progressing;
 * - Pending otherwise: ready enough ("WaitingForFirstConsumer"), since waiting here would deadlock a
 *   deploy that creates the consumer later. The waiter also waits for the workload that mounts the claim,
 *   and that pod fails fast (Unschedulable) if the claim can never bind.
 */
function claimHealth(pvc: KubeObject): Health {
  const phase = pvc.status?.phase;
  const annotations = pvc.metadata.annotations ?? {};
  if (phase === 'Bound') return ready('Bound', `bound to ${pvc.spec?.volumeName ?? 'a volume'}`);
  if (phase === 'Lost') return failed('ClaimLost', `claim lost its volume ${pvc.spec?.volumeName ?? ''}`.trim());
  if (annotations['volume.kubernetes.io/selected-node']) {
    return progressing('Provisioning', `waiting for a volume on node ${annotations['volume.kubernetes.io/selected-node']}`);
  }
  const provisioner = annotations['volume.kubernetes.io/storage-provisioner'] ?? annotations['volume.beta.kubernetes.io/storage-provisioner'];
  if (provisioner) return progressing('Provisioning', `waiting for ${provisioner} to provision a volume`);
  return ready('WaitingForFirstConsumer', `Pending (WaitForFirstConsumer): binds when a pod that mounts it is scheduled (StorageClass ${pvc.spec?.storageClassName ?? 'default'})`);
}

function crdHealth(crd: KubeObject): Health {
  const names = condition(crd, 'NamesAccepted');
  if (names?.status === 'False') return failed(names.reason ?? 'NamesNotAccepted', `names not accepted: ${names.message ?? names.reason ?? ''}`);
  const established = condition(crd, 'Established');
  if (established?.status === 'True' && names?.status === 'True') return ready('Established', 'established');
  return progressing('NotEstablished', established?.message ?? 'waiting for the API server to establish it');
}

function namespaceHealth(ns: KubeObject): Health {
  const phase = ns.status?.phase;
  if (phase === 'Active') return ready('Active', 'active');
  return progressing(phase ?? 'Pending', `namespace ${phase ?? 'has no phase yet'}`);
}

/**
 * Everything else, like kstatus: the standard conditions `Stalled` (True: failed) and `Reconciling`
 * (True: progressing) first, then `Ready`: True → ready; False → failed when its reason ends with
 * "Failed" (Flux's InstallFailed/UpgradeFailed/ReconciliationFailed, Crossplane's ReconcileFailed...: the
 * controller reports a failure, not a step), else progressing; Unknown → progressing. An object without
 * those conditions (ConfigMap, Secret, RBAC, PDB, HPA, ...) is ready as soon as it exists.
 */
function genericHealth(obj: KubeObject): Health {
  const stalled = condition(obj, 'Stalled');
  if (stalled?.status === 'True') return failed(stalled.reason ?? 'Stalled', stalled.message ?? 'stalled');
  const reconciling = condition(obj, 'Reconciling');
  if (reconciling?.status === 'True') return progressing(reconciling.reason ?? 'Reconciling', reconciling.message ?? 'reconciling');

  const readyCond = condition(obj, 'Ready');
  if (!readyCond) return ready('Current', 'exists');
  // Controllers that stamp observedGeneration on their conditions (Flux, Crossplane) tell us when the
  // condition describes an older spec.
  const gen = obj.metadata.generation;
  if (typeof readyCond.observedGeneration === 'number' && typeof gen === 'number' && readyCond.observedGeneration < gen) {
    return progressing('LatestGenerationNotObserved', `Ready condition is for generation ${readyCond.observedGeneration}, object is at ${gen}`);
  }
  const reason = readyCond.reason ?? 'Ready';
  const message = readyCond.message ?? reason;
  if (readyCond.status === 'True') return ready(reason, message);
  if (readyCond.status === 'False' && /Failed$/.test(reason)) return failed(reason, message);
  return progressing(reason, message);
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

function notObservedYet(): Health {
  return progressing('LatestGenerationNotObserved', 'waiting for the controller to observe the object');
}

function condition(obj: KubeObject, type: string): Condition | undefined {
  const conditions: unknown = obj.status?.conditions;
  if (!Array.isArray(conditions)) return undefined;
  return conditions.find((c): c is Condition => c?.type === type);
}

/** Status counters are omitted when zero (omitempty), spec.replicas defaults to 1. */
function num(value: unknown, fallback = 0): number {
  return typeof value === 'number' ? value : fallback;
}

function isControlledBy(child: KubeObject, owner: KubeObject): boolean {
  return (child.metadata.ownerReferences ?? []).some((r) =>
    r.controller === true && (owner.metadata.uid ? r.uid === owner.metadata.uid : r.kind === owner.kind && r.name === owner.metadata.name));
}

function currentReplicaSet(d: KubeObject, related: RelatedObjects): KubeObject | undefined {
  const revision = d.metadata.annotations?.[REVISION_ANNOTATION];
  if (!revision) return undefined;
  return (related.replicaSets ?? []).find((rs) =>
    rs.metadata.namespace === d.metadata.namespace && isControlledBy(rs, d) && rs.metadata.annotations?.[REVISION_ANNOTATION] === revision);
}

/**
 * The DaemonSet controller labels pods with its *template* generation, which the API server keeps in
 * this annotation and bumps only when the pod template changes. metadata.generation also moves on other
 * spec changes (minReadySeconds, updateStrategy), after which no pod would match it (fixture
 * daemonset-ready-after-nontemplate-change). Fall back to metadata.generation when the annotation is missing.
 */
function daemonSetTemplateGeneration(ds: KubeObject): string | undefined {
  const annotated = ds.metadata.annotations?.[DS_TEMPLATE_GENERATION_ANNOTATION];
  if (annotated) return annotated;
  return typeof ds.metadata.generation === 'number' ? String(ds.metadata.generation) : undefined;
}
