/**
 * The operator's pure parts: the work queue's guarantees and the status it writes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KubeApiError, KubeConnectionError } from '../../infra/engine/client.js';
import { toEngineError, type EngineFailure } from '../../infra/engine/errors.js';
import type { ReconcileResult } from '../../infra/engine/reconcile.js';
import { WorkQueue } from '../../infra/operator/queue.js';
import { nextStatus, outcomeOf, statusChanged, type ResourceStatus } from '../../infra/operator/status.js';

describe('work queue', () => {
  it('a key is queued once however often it is added, and handed out in order', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(q.depth, 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
    q.shutdown();
  });

  it('a key being processed is not handed out twice; added meanwhile, it comes back after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const key = await q.get();
    q.add('a'); // an event while reconciling
    assert.equal(q.depth, 0, 'not queued while processing');
    let second: string | undefined;
    const waiting = q.get().then((k) => (second = k));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(second, undefined, 'nobody gets it during processing');
    q.done(key!);
    await waiting;
    assert.equal(second, 'a', 'the latest state is reconciled once more');
    q.shutdown();
  });

  it('backoff doubles per failure with jitter, caps, and starts over after forget', () => {
    const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000, jitter: 0.2 });
    const within = (ms: number, nominal: number) => ms >= nominal * 0.8 && ms <= nominal * 1.2;
    for (const [n, nominal] of [[1, 100], [2, 200], [3, 400], [4, 800], [5, 1000], [9, 1000]] as const) {
      for (let i = 0; i < 20; i++) assert.ok(within(q.backoff(n), nominal), `failure ${n}: ${q.backoff(n)} not ~${nominal}`);
    }
    assert.ok(within(q.addRateLimited('k'), 100));
    assert.ok(within(q.addRateLimited('k'), 200));
    assert.equal(q.failuresOf('k'), 2);
    q.forget('k');
    assert.equal(q.failuresOf('k'), 0);
    q.shutdown();
  });

  it('addAfter: the earliest requested look wins; shutdown releases waiters', async () => {
    const q = new WorkQueue();
    q.addAfter('k', 5000);
    q.addAfter('k', 30);
    const t0 = performance.now();
    assert.equal(await q.get(), 'k');
    assert.ok(performance.now() - t0 < 1000);
    q.done('k');
    const pending = q.get();
    q.shutdown();
    assert.equal(await pending, undefined);
  });
});

describe('resource status', () => {
  const failure: EngineFailure = {
    kind: 'failed',
    retryable: false,
    message: 'ImagePullBackOff: pod accounts-7b: container registration: Back-off pulling image "kreg/nope:1"',
    ref: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'team-a', name: 'accounts' },
  };

  it('a failed child: Ready=False and Stalled=True, the reason and message naming the child and its cause', () => {
    const s = nextStatus(undefined, 3, { kind: 'failed', failure }, '2026-11-29T04:00:00Z');
    const byType = Object.fromEntries(s.conditions!.map((c) => [c.type, c]));
    assert.equal(s.observedGeneration, 3);
    assert.deepEqual([byType.Ready!.status, byType.Stalled!.status, byType.Reconciling!.status], ['False', 'True', 'False']);
    assert.equal(byType.Ready!.reason, 'ImagePullBackOff');
    assert.match(byType.Ready!.message, /^Deployment\/accounts: ImagePullBackOff: .*kreg\/nope:1/);
    assert.ok(s.conditions!.every((c) => c.observedGeneration === 3));
  });

  it('what a restarting API server answers is retried with backoff, not Stalled; a failed child is Stalled', () => {
    const outcome = (err: unknown) => outcomeOf({ status: 'failed', failure: toEngineError(err).toFailure() } as ReconcileResult).kind;
    // The token and RBAC caches of a kube-apiserver that has just started are empty for a moment.
    assert.equal(outcome(new KubeApiError(401, 'Unauthorized', 'Unauthorized')), 'retrying');
    assert.equal(outcome(new KubeApiError(403, 'Forbidden', 'deployments.apps "accounts" is forbidden')), 'retrying');
    assert.equal(outcome(new KubeApiError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request')), 'retrying');
    assert.equal(outcome(new KubeApiError(500, 'InternalError', 'etcdserver: leader changed')), 'retrying');
    assert.equal(outcome(new KubeApiError(429, 'TooManyRequests', 'slow down')), 'retrying');
    assert.equal(outcome(new KubeConnectionError('https://10.96.0.1', Object.assign(new Error('reset'), { code: 'ECONNRESET' }))), 'retrying');
    assert.equal(outcome(new KubeApiError(422, 'Invalid', 'spec.replicas: Invalid value')), 'failed');
    assert.equal(outcomeOf({ status: 'failed', failure } as ReconcileResult).kind, 'failed');
    const forbidden = nextStatus(undefined, 1, outcomeOf({ status: 'failed', failure: toEngineError(new KubeApiError(403, 'Forbidden', 'no')).toFailure() } as ReconcileResult), 'T1');
    const ready = forbidden.conditions!.find((c) => c.type === 'Ready')!;
    assert.deepEqual([ready.status, ready.reason], ['Unknown', 'RetryingAfterError']);
    assert.match(ready.message, /^Forbidden: .*; retrying$/);
  });

  it('lastTransitionTime moves only when a condition flips; an unchanged outcome is no change at all', () => {
    const first = nextStatus(undefined, 1, { kind: 'progressing', waitingOn: [], detail: 'Deployment/accounts: 0 of 1 ready' }, 'T1');
    const same = nextStatus(first, 1, { kind: 'progressing', waitingOn: [], detail: 'Deployment/accounts: 0 of 1 ready' }, 'T2');
    assert.equal(statusChanged(first, same), false, 'nothing to write');
    const ready = nextStatus(same, 1, { kind: 'ready', revision: 1 }, 'T3', { revision: 1, readyReplicas: 1 });
    const readyCondition = ready.conditions!.find((c) => c.type === 'Ready')!;
    assert.equal(readyCondition.status, 'True');
    assert.equal(readyCondition.lastTransitionTime, 'T3');
    const stalled = ready.conditions!.find((c) => c.type === 'Stalled')!;
    assert.equal(stalled.lastTransitionTime, 'T1', 'Stalled stayed False since T1');
    assert.equal(ready.revision, 1);
  });

  it('suspended keeps the last Ready and says why nothing is reconciled; fields it does not speak of are kept', () => {
    const ready: ResourceStatus = nextStatus(undefined, 1, { kind: 'ready', revision: 4 }, 'T1', { revision: 4, url: 'http://accounts.team-a.svc.cluster.local' });
    const suspended = nextStatus(ready, 2, { kind: 'suspended' }, 'T2');
    const byType = Object.fromEntries(suspended.conditions!.map((c) => [c.type, c]));
    assert.equal(byType.Ready!.status, 'True');
    assert.equal(byType.Ready!.reason, 'Suspended');
    assert.equal(byType.Reconciling!.status, 'False');
    assert.equal(suspended.revision, 4);
    assert.equal(suspended.url, 'http://accounts.team-a.svc.cluster.local');
  });
});

describe('RegistrationServiceResource construct', () => {
  it('synthesizes the resource as written, and refuses a bad spec at synth time with every problem', async () => {
    const { Chart, Testing } = await import('cdk8s');
    const { RegistrationServiceResource } = await import('../../infra/operator/construct.js');
    const { SpecError } = await import('../../infra/spec.js');
    const chart = new Chart(Testing.app(), 'team-a', { namespace: 'team-a' });
    new RegistrationServiceResource(chart, 'accounts', {
      metadata: { name: 'accounts' },
      spec: { image: 'kreg/registration:1.2.3', database: { mode: 'embedded', storage: '1Gi' }, suspend: false },
    });
    assert.deepEqual(Testing.synth(chart), [
      {
        apiVersion: 'kreg.dev/v1alpha1',
        kind: 'RegistrationService',
        metadata: { name: 'accounts', namespace: 'team-a' },
        spec: { image: 'kreg/registration:1.2.3', database: { mode: 'embedded', storage: '1Gi' }, suspend: false },
      },
    ]);
    const bad = new Chart(Testing.app(), 'bad');
    assert.throws(
      () => new RegistrationServiceResource(bad, 'x', { metadata: { name: 'x' }, spec: { image: 'kreg/registration:1', replicas: 3, hashConcurrency: 0 } }),
      (err: unknown) => err instanceof SpecError && err.issues.map((i) => i.path).sort().join() === 'hashConcurrency,replicas',
    );
  });
});
