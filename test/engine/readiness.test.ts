/**
 * Readiness rules against objects captured from a real cluster (test/engine/fixtures, see its README).
 * Expected names and kubelet messages are read from the fixtures themselves, so a recapture (new pod
 * names, new Kubernetes version) keeps the tests meaningful. Where a test changes a captured object to
 * reach a state that is hard to capture, a comment says "derived" and what was changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  currentPods,
  evaluateHealth,
  relatedNeeds,
  UNSCHEDULABLE_GRACE_MS,
  type ReadinessOptions,
  type RelatedObjects,
} from '../../infra/engine/readiness.js';
import type { Health, KubeObject } from '../../infra/engine/types.js';

interface Fixture {
  scenario: string;
  description: string;
  capturedAt: string;
  kubernetesVersion: string;
  object: KubeObject;
  related: RelatedObjects;
}

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const used = new Set<string>();

/** A fresh copy of a fixture (tests that derive variants may mutate it). */
function fixture(name: string): Fixture {
  used.add(name);
  return JSON.parse(readFileSync(`${FIXTURES}${name}.json`, 'utf8')) as Fixture;
}

function evaluate(f: Fixture, now: Date = new Date(f.capturedAt), options?: ReadinessOptions): Health {
  return evaluateHealth(f.object, f.related, now, options);
}

function expectHealth(h: Health, state: Health['state'], reason: string, message?: string | RegExp): void {
  assert.equal(h.state, state, `state (${h.reason}: ${h.message})`);
  assert.equal(h.reason, reason, `reason (${h.message})`);
  if (typeof message === 'string') assert.equal(h.message, message);
  else if (message) assert.match(h.message, message);
}

const revisionOf = (o: KubeObject): string | undefined => o.metadata.annotations?.['deployment.kubernetes.io/revision'];
function replicaSetOfRevision(f: Fixture, revision: string): KubeObject {
  const rs = f.related.replicaSets?.find((r) => revisionOf(r) === revision);
  assert.ok(rs, `${f.scenario}: no ReplicaSet of revision ${revision}`);
  return rs;
}
const podsOf = (f: Fixture, rs: KubeObject): KubeObject[] =>
  (f.related.pods ?? []).filter((p) => p.metadata.ownerReferences?.some((r) => r.uid === rs.metadata.uid));
const names = (objs: KubeObject[]): string[] => objs.map((o) => o.metadata.name).sort();

/** The pod (and its container status) of a fixture whose container waits for `reason`. */
function waitingContainer(f: Fixture, reason: string): { pod: KubeObject; status: any; init: boolean } {
  const pods = f.object.kind === 'Pod' ? [f.object] : (f.related.pods ?? []);
  for (const pod of pods) {
    for (const init of [true, false]) {
      const statuses: any[] = (init ? pod.status?.initContainerStatuses : pod.status?.containerStatuses) ?? [];
      const status = statuses.find((s) => s.state?.waiting?.reason === reason);
      if (status) return { pod, status, init };
    }
  }
  assert.fail(`${f.scenario}: no container waits with reason ${reason}`);
}

/** Fail-fast health must name the pod and container and carry the kubelet's own message verbatim. */
function expectFailFast(f: Fixture, h: Health, reason: string): { pod: KubeObject; status: any } {
  const w = waitingContainer(f, reason);
  expectHealth(h, 'failed', reason);
  const label = w.init ? 'init container' : 'container';
  assert.ok(h.message.startsWith(`pod ${w.pod.metadata.name}: ${label} ${w.status.name}: ${reason}: ${w.status.state.waiting.message}`), h.message);
  assert.deepEqual(h.pod, { name: w.pod.metadata.name, namespace: w.pod.metadata.namespace, container: w.status.name, restarts: w.status.restartCount });
  return w;
}

function podScheduledSince(pod: KubeObject): number {
  const cond = pod.status.conditions.find((c: any) => c.type === 'PodScheduled');
  assert.equal(cond.reason, 'Unschedulable');
  return Date.parse(cond.lastTransitionTime);
}

// ---------------------------------------------------------------------------------------------------------

test('fixtures are real captures: version and capture time recorded, managedFields stripped', () => {
  for (const file of readdirSync(FIXTURES).filter((n) => n.endsWith('.json'))) {
    const f = JSON.parse(readFileSync(`${FIXTURES}${file}`, 'utf8')) as Fixture;
    assert.match(f.kubernetesVersion, /^v1\.\d+\.\d+/, file);
    assert.ok(!Number.isNaN(Date.parse(f.capturedAt)), file);
    assert.equal(`${f.scenario}.json`, file);
    const all = [f.object, ...(f.related.pods ?? []), ...(f.related.replicaSets ?? []), ...(f.related.endpointSlices ?? [])];
    for (const o of all) {
      assert.equal(o.metadata.managedFields, undefined, `${file}: ${o.kind}/${o.metadata.name} has managedFields`);
      assert.ok(o.metadata.uid && o.metadata.resourceVersion, `${file}: ${o.kind}/${o.metadata.name} is not a live object`);
    }
  }
});

test('relatedNeeds: only what the kind is evaluated with', () => {
  const none = { pods: false, replicaSets: false, endpointSlices: false };
  assert.deepEqual(relatedNeeds(fixture('deployment-ready').object), { pods: true, replicaSets: true, endpointSlices: false });
  assert.deepEqual(relatedNeeds(fixture('statefulset-ready').object), { ...none, pods: true });
  assert.deepEqual(relatedNeeds(fixture('daemonset-ready').object), { ...none, pods: true });
  assert.deepEqual(relatedNeeds(fixture('job-complete').object), { ...none, pods: true });
  assert.deepEqual(relatedNeeds(fixture('service-ready-endpoints').object), { ...none, endpointSlices: true });
  assert.deepEqual(relatedNeeds(fixture('service-no-selector').object), none);
  assert.deepEqual(relatedNeeds(fixture('service-external-name').object), none);
  assert.deepEqual(relatedNeeds(fixture('pod-ready').object), none);
  assert.deepEqual(relatedNeeds(fixture('pvc-bound').object), none);
  assert.deepEqual(relatedNeeds(fixture('configmap').object), none);
});

// --- any object --------------------------------------------------------------------------------------------

test('any object: deletionTimestamp → progressing Terminating', () => {
  const f = fixture('namespace-terminating');
  expectHealth(evaluate(f), 'progressing', 'Terminating', `being deleted since ${f.object.metadata.deletionTimestamp}`);
  // Derived: a ready Deployment that is being deleted is not ready any more.
  const d = fixture('deployment-ready');
  d.object.metadata.deletionTimestamp = d.capturedAt;
  expectHealth(evaluate(d), 'progressing', 'Terminating');
});

test('any object: status.observedGeneration < metadata.generation → progressing (stale status)', () => {
  // Derived: deployment-ready with generation bumped by one, as right after an apply.
  const f = fixture('deployment-ready');
  assert.equal(evaluate(f).state, 'ready');
  f.object.metadata.generation = f.object.status.observedGeneration + 1;
  expectHealth(evaluate(f), 'progressing', 'LatestGenerationNotObserved',
    `waiting for the controller to observe generation ${f.object.metadata.generation} (status is for ${f.object.status.observedGeneration})`);
  // Derived: the same for a kind the evaluator knows nothing about (PodDisruptionBudget).
  const pdb = fixture('pdb');
  pdb.object.metadata.generation = 2;
  expectHealth(evaluate(pdb), 'progressing', 'LatestGenerationNotObserved');
});

test('workloads without status.observedGeneration (controller has not seen them) → progressing', () => {
  // Derived: status removed, as the API server returns a Deployment/StatefulSet/DaemonSet right after creation.
  for (const name of ['deployment-ready', 'statefulset-ready', 'daemonset-ready']) {
    const f = fixture(name);
    f.object.status = {};
    expectHealth(evaluate(f), 'progressing', 'LatestGenerationNotObserved');
  }
});

// --- Deployment ----------------------------------------------------------------------------------------------

test('Deployment rolled out → ready', () => {
  const f = fixture('deployment-ready');
  expectHealth(evaluate(f), 'ready', 'Available', '2 of 2 replicas available');
});

test('Deployment mid-rollout: fewer updated replicas than wanted → progressing', () => {
  const f = fixture('deployment-rollout-stuck');
  expectHealth(evaluate(f), 'progressing', 'RolloutInProgress', '1 of 2 replicas updated');
});

test('Deployment: all replicas updated but old ones still there → progressing (kubectl: pending termination)', () => {
  const f = fixture('deployment-rollout-old-replicas-pending');
  assert.equal(f.object.status.availableReplicas, f.object.status.updatedReplicas); // the counts alone would pass
  expectHealth(evaluate(f), 'progressing', 'OldReplicasPending',
    'waiting for old replicas to terminate (4 → 2); 0 of 2 updated replicas available');
  // Without the ReplicaSets, only the Deployment's counts (which include old pods) are known.
  expectHealth(evaluateHealth(f.object, {}, new Date(f.capturedAt)), 'progressing', 'OldReplicasPending',
    'waiting for old replicas to terminate (4 → 2)');
});

test('Deployment: updated replicas not available yet → progressing', () => {
  const f = fixture('deployment-new-not-available');
  expectHealth(evaluate(f), 'progressing', 'ReplicasUnavailable', '0 of 1 updated replicas available');
});

test('Deployment: no Helm bug — replicas 1 with maxUnavailable 1 still waits for the one pod', () => {
  // Derived: deployment-new-not-available with maxUnavailable set to 1 (Helm computes 1 - 1 = 0 pods to wait for).
  const f = fixture('deployment-new-not-available');
  f.object.spec.strategy = { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } };
  assert.equal(evaluate(f).state, 'progressing');
  // Derived: spec.replicas omitted defaults to 1, not 0, and a status with no pods yet is not "0 of 0 ready".
  delete f.object.spec.replicas;
  f.object.status = { observedGeneration: f.object.metadata.generation };
  expectHealth(evaluate(f), 'progressing', 'RolloutInProgress', '0 of 1 replicas updated');
});

test('Deployment: Progressing=False ProgressDeadlineExceeded → failed with the controller message', () => {
  const f = fixture('deployment-progress-deadline-exceeded');
  const cond = f.object.status.conditions.find((c: any) => c.type === 'Progressing');
  expectHealth(evaluate(f), 'failed', 'ProgressDeadlineExceeded', cond.message);
  assert.match(cond.message, /has timed out progressing/);
});

test('Deployment: image that cannot be pulled → failed at once with the kubelet message (ErrImagePull)', () => {
  const f = fixture('deployment-errimagepull');
  const h = evaluate(f);
  expectFailFast(f, h, 'ErrImagePull');
  assert.match(h.message, /container app: ErrImagePull: failed to pull and unpack image "docker\.io\/kreg\/does-not-exist:1"/);
});

test('Deployment: ImagePullBackOff → failed with the kubelet message', () => {
  const f = fixture('deployment-imagepullbackoff');
  const h = evaluate(f);
  expectFailFast(f, h, 'ImagePullBackOff');
  assert.match(h.message, /^pod bad-image-[a-z0-9]+-[a-z0-9]+: container app: ImagePullBackOff: Back-off pulling image "kreg\/does-not-exist:1": /);
});

test('Deployment: env from a missing ConfigMap key → failed CreateContainerConfigError', () => {
  const f = fixture('deployment-createcontainerconfigerror');
  const h = evaluate(f);
  expectFailFast(f, h, 'CreateContainerConfigError');
  assert.match(h.message, /couldn't find key missing in ConfigMap kreg-fixture-readiness\/fixture-config/);
});

test('Deployment: new revision crash-loops → failed, naming the new pod, its restarts and last exit', () => {
  const f = fixture('deployment-rollout-to-crashloop');
  const h = evaluate(f);
  const { pod, status } = expectFailFast(f, h, 'CrashLoopBackOff');
  assert.deepEqual(names([pod]), names(podsOf(f, replicaSetOfRevision(f, '2'))));
  assert.ok(status.restartCount >= 1);
  assert.match(h.message, /back-off \d+\w* restarting failed container=app .* \(last exit: Error, exit code 3\)$/);
  // Derived: the same pod being deleted (deletionTimestamp set) no longer fails the rollout.
  pod.metadata.deletionTimestamp = f.capturedAt;
  expectHealth(evaluate(f), 'progressing', 'OldReplicasPending');
});

test('Deployment: crash-looping pods of the OLD revision are ignored (the fix is rolling out)', () => {
  const f = fixture('deployment-rollout-from-crashloop');
  const old = podsOf(f, replicaSetOfRevision(f, '1'));
  assert.equal(waitingContainer(f, 'CrashLoopBackOff').pod.metadata.name, old[0]?.metadata.name);
  expectHealth(evaluate(f), 'progressing', 'OldReplicasPending',
    'waiting for old replicas to terminate (2 → 1); 0 of 1 updated replicas available');
  // Derived: if revision 1 were still current (annotation moved back), the same pods fail it.
  f.object.metadata.annotations!['deployment.kubernetes.io/revision'] = '1';
  expectHealth(evaluate(f), 'failed', 'CrashLoopBackOff');
});

test('Deployment: currentPods = pods of the ReplicaSet of the current revision only', () => {
  const f = fixture('deployment-rollout-stuck');
  const current = currentPods(f.object, f.related);
  const newRs = replicaSetOfRevision(f, '2');
  assert.equal(current.length, 1);
  assert.deepEqual(names(current), names(podsOf(f, newRs)));
  assert.equal(f.related.pods?.length, 3); // the 2 old pods are in the list and left out
  // Pods and ReplicaSets of other Deployments in the namespace are never picked.
  const other = fixture('deployment-ready');
  const mixed: RelatedObjects = {
    pods: [...(other.related.pods ?? []), ...(f.related.pods ?? [])],
    replicaSets: [...(other.related.replicaSets ?? []), ...(f.related.replicaSets ?? [])],
  };
  assert.deepEqual(names(currentPods(f.object, mixed)), names(current));
  assert.deepEqual(names(currentPods(other.object, mixed)), names(other.related.pods ?? []));
  // Without ReplicaSets the current revision cannot be told: nothing is current.
  assert.deepEqual(currentPods(f.object, { pods: f.related.pods ?? [] }), []);
});

test('Deployment: a crash-looping pod of another Deployment does not fail this one', () => {
  const f = fixture('deployment-new-not-available');
  const crash = fixture('deployment-rollout-to-crashloop');
  const related: RelatedObjects = {
    pods: [...(f.related.pods ?? []), ...(crash.related.pods ?? [])],
    replicaSets: [...(f.related.replicaSets ?? []), ...(crash.related.replicaSets ?? [])],
  };
  expectHealth(evaluateHealth(f.object, related, new Date(f.capturedAt)), 'progressing', 'ReplicasUnavailable');
});

test('Deployment: Unschedulable pod fails it only after 10 s (by lastTransitionTime vs now)', () => {
  const f = fixture('deployment-unschedulable');
  const pod = f.related.pods![0]!;
  const since = podScheduledSince(pod);
  assert.equal(UNSCHEDULABLE_GRACE_MS, 10_000);
  expectHealth(evaluate(f, new Date(since + 9_999)), 'progressing', 'ReplicasUnavailable');
  const h = evaluate(f, new Date(since + 10_000));
  expectHealth(h, 'failed', 'Unschedulable', /^pod unschedulable-[a-z0-9]+-[a-z0-9]+: Unschedulable for 10 s: 0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector/);
  assert.deepEqual(h.pod, { name: pod.metadata.name, namespace: pod.metadata.namespace });
  // A longer grace (cluster autoscaler) is an option.
  expectHealth(evaluate(f, new Date(since + 30_000), { unschedulableGraceMs: 120_000 }), 'progressing', 'ReplicasUnavailable');
  // Derived: a pod nominated to a node by preemption is about to be scheduled.
  pod.status.nominatedNodeName = '127.0.0.1';
  expectHealth(evaluate(f, new Date(since + 60_000)), 'progressing', 'ReplicasUnavailable');
});

test('Deployment paused after its rollout → ready; paused with a pending change → failed DeploymentPaused', () => {
  expectHealth(evaluate(fixture('deployment-paused-rolled-out')), 'ready', 'Available', '1 of 1 replicas available (rollout paused)');
  const f = fixture('deployment-paused-pending-change');
  expectHealth(evaluate(f), 'failed', 'DeploymentPaused', /^rollout is paused \(spec\.paused\) with 0 of 1 replicas updated; resume it/);
  // Derived: the same Deployment resumed (spec.paused removed) is just progressing.
  delete f.object.spec.paused;
  expectHealth(evaluate(f), 'progressing', 'RolloutInProgress', '0 of 1 replicas updated');
});

// --- StatefulSet -----------------------------------------------------------------------------------------------

test('StatefulSet rolled out → ready', () => {
  expectHealth(evaluate(fixture('statefulset-ready')), 'ready', 'Ready', '2 of 2 replicas ready');
});

test('StatefulSet mid rolling update → progressing; currentPods = pods of updateRevision', () => {
  const f = fixture('statefulset-rolling');
  expectHealth(evaluate(f), 'progressing', 'ReplicasNotReady', '1 of 2 replicas ready');
  assert.deepEqual(names(currentPods(f.object, f.related)), ['db-1']);
  assert.deepEqual(names(f.related.pods ?? []), ['db-0', 'db-1']);
  // Derived: both pods ready and updated but currentRevision not yet advanced → still rolling.
  f.object.status = { ...f.object.status, readyReplicas: 2, availableReplicas: 2, updatedReplicas: 2 };
  expectHealth(evaluate(f), 'progressing', 'RolloutInProgress', `waiting for the rolling update to revision ${f.object.status.updateRevision} to complete`);
});

test('StatefulSet with a partition: ready once the pods above the partition are updated', () => {
  // Derived: statefulset-rolling with partition 1, all replicas ready, 1 updated (db-1): db-0 stays old on purpose.
  const f = fixture('statefulset-rolling');
  f.object.spec.updateStrategy = { type: 'RollingUpdate', rollingUpdate: { partition: 1 } };
  f.object.status = { ...f.object.status, readyReplicas: 2, availableReplicas: 2, updatedReplicas: 1 };
  expectHealth(evaluate(f), 'ready', 'Ready');
  f.object.status.updatedReplicas = 0;
  expectHealth(evaluate(f), 'progressing', 'RolloutInProgress', '0 of 1 replicas updated (partition 1)');
});

test('StatefulSet OnDelete after a template change → ready on ready replicas alone', () => {
  const f = fixture('statefulset-ondelete-template-changed');
  assert.notEqual(f.object.status.currentRevision, f.object.status.updateRevision);
  expectHealth(evaluate(f), 'ready', 'Ready', '1 of 1 replicas ready (OnDelete)');
  // Derived: the same revisions under RollingUpdate mean the rollout has not happened.
  f.object.spec.updateStrategy = { type: 'RollingUpdate' };
  assert.equal(evaluate(f).state, 'progressing');
});

test('StatefulSet: scaled down, extra replicas still there → progressing', () => {
  // Derived: statefulset-ready with spec.replicas lowered to 1 while status still counts 2.
  const f = fixture('statefulset-ready');
  f.object.spec.replicas = 1;
  expectHealth(evaluate(f), 'progressing', 'ExtraReplicas', 'waiting for extra replicas to terminate (2 → 1)');
});

test('StatefulSet whose current pod crash-loops → failed', () => {
  const f = fixture('statefulset-crashloopbackoff');
  expectFailFast(f, evaluate(f), 'CrashLoopBackOff');
  // Derived: a pod of another revision (label changed) is not current and does not fail it.
  for (const p of f.related.pods ?? []) p.metadata.labels!['controller-revision-hash'] = 'sts-crash-older';
  expectHealth(evaluate(f), 'progressing', 'ReplicasNotReady');
});

// --- DaemonSet -------------------------------------------------------------------------------------------------

test('DaemonSet rolled out → ready; not all pods available → progressing', () => {
  const f = fixture('daemonset-ready');
  expectHealth(evaluate(f), 'ready', 'Available', '1 of 1 pods available');
  // Derived: numberAvailable 0 / numberUnavailable 1, as while its pod starts.
  f.object.status = { ...f.object.status, numberAvailable: 0, numberUnavailable: 1 };
  expectHealth(evaluate(f), 'progressing', 'PodsUnavailable', '0 of 1 pods available');
  // Derived: a new template not yet rolled to the node.
  f.object.status.updatedNumberScheduled = 0;
  expectHealth(evaluate(f), 'progressing', 'RolloutInProgress', '0 of 1 pods updated');
});

test('DaemonSet: current pods follow the template generation, not metadata.generation', () => {
  const f = fixture('daemonset-ready-after-nontemplate-change');
  assert.equal(f.object.metadata.generation, 2);
  assert.equal(f.related.pods?.[0]?.metadata.labels?.['pod-template-generation'], '1');
  expectHealth(evaluate(f), 'ready', 'Available');
  assert.deepEqual(names(currentPods(f.object, f.related)), names(f.related.pods ?? []));
  // Derived: without the template-generation annotation the fallback is metadata.generation (2): no pod matches.
  delete f.object.metadata.annotations!['deprecated.daemonset.template.generation'];
  assert.deepEqual(currentPods(f.object, f.related), []);
});

test('DaemonSet whose pod crash-loops → failed', () => {
  const f = fixture('daemonset-crashloopbackoff');
  expectFailFast(f, evaluate(f), 'CrashLoopBackOff');
});

// --- Job -------------------------------------------------------------------------------------------------------

test('Job complete → ready', () => {
  expectHealth(evaluate(fixture('job-complete')), 'ready', 'Complete', 'completed (1 succeeded)');
  // Derived: SuccessCriteriaMet=True alone (set before Complete) is enough.
  const f = fixture('job-complete');
  f.object.status.conditions = f.object.status.conditions.filter((c: any) => c.type === 'SuccessCriteriaMet');
  expectHealth(evaluate(f), 'ready', 'Complete');
});

test('Job failed (backoffLimit 0, exit 1) → failed with the condition message', () => {
  const f = fixture('job-failed');
  expectHealth(evaluate(f), 'failed', 'BackoffLimitExceeded', 'job failed: BackoffLimitExceeded: Job has reached the specified backoff limit');
  // Derived: FailureTarget=True alone (set before Failed while pods terminate) is final too.
  f.object.status.conditions = f.object.status.conditions.filter((c: any) => c.type === 'FailureTarget');
  expectHealth(evaluate(f), 'failed', 'BackoffLimitExceeded');
});

test('Job running, retrying after failed pods → progressing (kstatus would call it Current)', () => {
  const f = fixture('job-retrying');
  assert.ok((f.related.pods ?? []).every((p) => p.status.phase === 'Failed'));
  expectHealth(evaluate(f), 'progressing', 'Running',
    `waiting for completion: 0 active, 0 of 1 succeeded, ${f.object.status.failed} failed (backoffLimit 3)`);
});

test('Job: restartPolicy OnFailure container crash-looping → failed; pod image pull failure → failed', () => {
  const crash = fixture('job-crashloopbackoff');
  assert.equal(crash.related.pods?.[0]?.spec.restartPolicy, 'OnFailure');
  expectFailFast(crash, evaluate(crash), 'CrashLoopBackOff');
  const pull = fixture('job-imagepullbackoff');
  expectFailFast(pull, evaluate(pull), 'ImagePullBackOff');
});

test('Job: CrashLoopBackOff of a container under restartPolicy Never is left to the Job', () => {
  // Derived: job-crashloopbackoff with the pod's restartPolicy set to Never (the kubelet does not back off
  // such containers; the Job controller retries with new pods and its backoffLimit decides).
  const f = fixture('job-crashloopbackoff');
  f.related.pods![0]!.spec.restartPolicy = 'Never';
  expectHealth(evaluate(f), 'progressing', 'Running');
});

test('Job: currentPods by controller-uid, other Jobs\' pods ignored; suspended Job → progressing', () => {
  const f = fixture('job-crashloopbackoff');
  const other = fixture('job-imagepullbackoff');
  const related = { pods: [...(other.related.pods ?? []), ...(f.related.pods ?? [])] };
  assert.deepEqual(names(currentPods(f.object, related)), names(f.related.pods ?? []));
  // Derived: only the legacy `controller-uid` label (older clusters).
  const legacy = structuredClone(f.related.pods![0]!);
  delete legacy.metadata.labels!['batch.kubernetes.io/controller-uid'];
  assert.equal(currentPods(f.object, { pods: [legacy] }).length, 1);
  // Derived: a suspended Job without failing pods.
  const s = fixture('job-retrying');
  s.object.spec.suspend = true;
  expectHealth(evaluate(s), 'progressing', 'Suspended');
});

// --- Pod -------------------------------------------------------------------------------------------------------

test('Pod Ready → ready; Succeeded → ready; Failed → failed with the exit', () => {
  expectHealth(evaluate(fixture('pod-ready')), 'ready', 'Ready');
  expectHealth(evaluate(fixture('pod-succeeded')), 'ready', 'Succeeded');
  const f = fixture('pod-failed');
  const h = evaluate(f);
  expectHealth(h, 'failed', 'PodFailed', 'pod pod-failed: container main: Error, exit code 1');
  assert.deepEqual(h.pod, { name: 'pod-failed', namespace: 'kreg-fixture-readiness', container: 'main', restarts: 0 });
});

test('Pod: InvalidImageName, RunContainerError, init container CrashLoopBackOff → failed with kubelet messages', () => {
  const invalid = fixture('pod-invalid-image-name');
  const h1 = evaluate(invalid);
  expectFailFast(invalid, h1, 'InvalidImageName');
  assert.match(h1.message, /must be lowercase/);

  const exe = fixture('pod-missing-executable');
  const reason = exe.object.status.containerStatuses[0].state.waiting.reason; // RunContainerError or, later, CrashLoopBackOff
  const h2 = evaluate(exe);
  expectFailFast(exe, h2, reason);
  assert.match(h2.message, /exec: "\/does-not-exist": stat \/does-not-exist: no such file or directory/);

  const init = fixture('pod-init-crashloopbackoff');
  const h3 = evaluate(init);
  expectFailFast(init, h3, 'CrashLoopBackOff');
  assert.match(h3.message, /^pod pod-init-crashloop: init container init: CrashLoopBackOff: back-off .* \(last exit: Error, exit code 3\)$/);
});

test('Pod: Unschedulable (unbound claim) → progressing before 10 s, failed after, with the scheduler message', () => {
  const f = fixture('pod-unschedulable-unbound-claim');
  const since = podScheduledSince(f.object);
  expectHealth(evaluate(f, new Date(since + 3_000)), 'progressing', 'Pending',
    /^pod Pending: Unschedulable: 0\/1 nodes are available: pod has unbound immediate PersistentVolumeClaims/);
  expectHealth(evaluate(f, new Date(since + 15_000)), 'failed', 'Unschedulable',
    /^pod pvc-missing-class-user: Unschedulable for 15 s: 0\/1 nodes are available: pod has unbound immediate PersistentVolumeClaims/);
});

test('Pod running but not ready → progressing with the kubelet\'s reason', () => {
  const f = fixture('deployment-new-not-available');
  const pod = f.related.pods![0]!;
  expectHealth(evaluateHealth(pod, {}, new Date(f.capturedAt)), 'progressing', 'NotReady', 'pod Running: containers with unready status: [app]');
});

// --- Service ---------------------------------------------------------------------------------------------------

test('Service with ready endpoints → ready', () => {
  const f = fixture('service-ready-endpoints');
  expectHealth(evaluate(f), 'ready', 'EndpointsReady', '2 of 2 endpoints ready');
  // Derived: a dual-stack Service has a second (IPv6) slice for the same pods; pods are counted once.
  const v4 = f.related.endpointSlices![0]!;
  const v6 = structuredClone(v4);
  v6.metadata.name += '-v6';
  v6.addressType = 'IPv6';
  v6.endpoints.forEach((ep: any, i: number) => { ep.addresses = [`fd00::${i + 1}`]; });
  f.related.endpointSlices!.push(v6);
  expectHealth(evaluate(f), 'ready', 'EndpointsReady', '2 of 2 endpoints ready');
});

test('Service: endpoints of terminating pods are named apart, not counted as unready', () => {
  const f = fixture('service-ready-endpoints');
  const slice = f.related.endpointSlices![0]!;
  const leaving = structuredClone(slice.endpoints[0]);
  leaving.addresses = ['10.244.9.9'];
  leaving.targetRef = { ...leaving.targetRef, uid: 'old-pod', name: 'old-pod' };
  leaving.conditions = { ready: false, serving: true, terminating: true };
  slice.endpoints.push(leaving);
  expectHealth(evaluate(f), 'ready', 'EndpointsReady', '2 of 2 endpoints ready (1 terminating)');
  // Only terminating ones left: still waiting, and saying why.
  slice.endpoints = [leaving];
  expectHealth(evaluate(f), 'progressing', 'WaitingForEndpoints', '0 of 0 endpoints ready (1 terminating)');
});

test('Service whose endpoints are not ready → progressing (kstatus would call it Current)', () => {
  const f = fixture('service-endpoints-not-ready');
  expectHealth(evaluate(f), 'progressing', 'WaitingForEndpoints', '0 of 1 endpoints ready');
  // No slices listed at all.
  expectHealth(evaluateHealth(f.object, {}, new Date(f.capturedAt)), 'progressing', 'WaitingForEndpoints', 'no endpoints yet');
  // Ready slices of ANOTHER Service (web) do not count.
  const web = fixture('service-ready-endpoints');
  const related = { endpointSlices: [...(web.related.endpointSlices ?? []), ...(f.related.endpointSlices ?? [])] };
  expectHealth(evaluateHealth(f.object, related, new Date(f.capturedAt)), 'progressing', 'WaitingForEndpoints');
});

test('Service LoadBalancer without ingress → progressing WaitingForLoadBalancer; with ingress → ready', () => {
  const f = fixture('service-loadbalancer-pending');
  expectHealth(evaluate(f), 'progressing', 'WaitingForLoadBalancer', "2 of 2 endpoints ready; waiting for the load balancer's address");
  // Derived: status.loadBalancer.ingress filled, as a load-balancer controller would.
  f.object.status.loadBalancer = { ingress: [{ ip: '192.0.2.10' }] };
  expectHealth(evaluate(f), 'ready', 'EndpointsReady');
});

test('Service without selector, and ExternalName → ready without endpoints', () => {
  expectHealth(evaluate(fixture('service-no-selector')), 'ready', 'NoSelector');
  expectHealth(evaluate(fixture('service-external-name')), 'ready', 'ExternalName', 'alias for db.example.com');
});

// --- PersistentVolumeClaim ----------------------------------------------------------------------------------------

test('PVC Bound → ready; Lost → failed', () => {
  expectHealth(evaluate(fixture('pvc-bound')), 'ready', 'Bound');
  expectHealth(evaluate(fixture('pvc-lost')), 'failed', 'ClaimLost', 'claim lost its volume kreg-fixture-readiness-pv');
});

test('PVC Pending: ready enough while waiting for its first consumer; progressing once a node is selected', () => {
  const f = fixture('pvc-pending-no-consumer');
  expectHealth(evaluate(f), 'ready', 'WaitingForFirstConsumer', /^Pending \(WaitForFirstConsumer\): binds when a pod that mounts it is scheduled \(StorageClass standard\)$/);
  // A claim whose StorageClass does not exist looks exactly the same (documented limit: the pod that mounts
  // it fails fast as Unschedulable, see pod-unschedulable-unbound-claim).
  expectHealth(evaluate(fixture('pvc-pending-missing-class')), 'ready', 'WaitingForFirstConsumer');
  // Derived: the scheduler's selected-node annotation (as on pvc-bound) → provisioning is underway.
  f.object.metadata.annotations!['volume.kubernetes.io/selected-node'] = '127.0.0.1';
  expectHealth(evaluate(f), 'progressing', 'Provisioning', 'waiting for a volume on node 127.0.0.1');
  // Derived: only the provisioner annotation (Immediate binding mode).
  delete f.object.metadata.annotations!['volume.kubernetes.io/selected-node'];
  f.object.metadata.annotations!['volume.kubernetes.io/storage-provisioner'] = 'kreg.local/local-path';
  expectHealth(evaluate(f), 'progressing', 'Provisioning', 'waiting for kreg.local/local-path to provision a volume');
});

// --- CRD, Namespace ---------------------------------------------------------------------------------------------

test('CRD Established and NamesAccepted → ready; NamesAccepted=False → failed', () => {
  expectHealth(evaluate(fixture('crd-established')), 'ready', 'Established');
  expectHealth(evaluate(fixture('crd-names-not-accepted')), 'failed', 'SingularConflict', 'names not accepted: "widget" is already in use');
  // Derived: conditions not there yet (just created).
  const f = fixture('crd-established');
  delete f.object.status.conditions;
  expectHealth(evaluate(f), 'progressing', 'NotEstablished');
});

test('Namespace Active → ready; Terminating → progressing', () => {
  expectHealth(evaluate(fixture('namespace-active')), 'ready', 'Active');
  // Derived: phase Terminating without a deletionTimestamp still is not ready.
  const f = fixture('namespace-terminating');
  delete f.object.metadata.deletionTimestamp;
  expectHealth(evaluate(f), 'progressing', 'Terminating', 'namespace Terminating');
});

// --- anything else ------------------------------------------------------------------------------------------------

test('objects without a Ready condition are ready once they exist (ConfigMap, PDB, HPA without metrics, CR without status)', () => {
  for (const name of ['configmap', 'pdb', 'hpa-no-metrics', 'cr-no-status']) {
    expectHealth(evaluate(fixture(name)), 'ready', 'Current', 'exists');
  }
});

test('custom resource Ready condition (status written by capture.sh): True → ready, False → progressing, *Failed → failed', () => {
  expectHealth(evaluate(fixture('cr-status-written-by-capture-ready')), 'ready', 'Succeeded', 'widget is ready');
  expectHealth(evaluate(fixture('cr-status-written-by-capture-not-ready')), 'progressing', 'Progressing', 'waiting for 1 of 1 backends');
  expectHealth(evaluate(fixture('cr-status-written-by-capture-install-failed')), 'failed', 'InstallFailed', 'install failed: chart not found');
});

test('custom resource: stale Ready condition, Stalled and Reconciling conditions (kstatus conventions)', () => {
  // Derived: generation 2 while the Ready=True condition says observedGeneration 1 and status.observedGeneration
  // is removed (so only the condition can tell).
  const f = fixture('cr-status-written-by-capture-ready');
  f.object.metadata.generation = 2;
  delete f.object.status.observedGeneration;
  expectHealth(evaluate(f), 'progressing', 'LatestGenerationNotObserved', 'Ready condition is for generation 1, object is at 2');
  // Derived: Stalled=True → failed; Reconciling=True → progressing, whatever Ready says.
  const s = fixture('cr-status-written-by-capture-ready');
  s.object.status.conditions.push({ type: 'Stalled', status: 'True', reason: 'InvalidSpec', message: 'spec.size must be positive' });
  expectHealth(evaluate(s), 'failed', 'InvalidSpec', 'spec.size must be positive');
  const r = fixture('cr-status-written-by-capture-ready');
  r.object.status.conditions.push({ type: 'Reconciling', status: 'True', reason: 'Progressing', message: 'scaling up' });
  expectHealth(evaluate(r), 'progressing', 'Progressing', 'scaling up');
});

// Last: top-level tests run in order, so every test above has loaded its fixtures by now.
test('every captured fixture is exercised by a test', () => {
  const all = readdirSync(FIXTURES).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length));
  const unused = all.filter((n) => !used.has(n));
  assert.deepEqual(unused, [], `fixtures without a test: ${unused.join(', ')}`);
});
