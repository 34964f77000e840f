/**
 * Leader election on a real Lease: one leader at a time, hand-over on release within a retry
 * period, take-over after expiry when the leader vanishes, and never two leaders at once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeClient } from '../../infra/engine/client.js';
import { LeaderElector } from '../../infra/operator/leader.js';
import { binariesPresent, startApiServer, type TestApiServer } from './apiserver.js';
import { waitFor } from '../wait.js';

const skip = binariesPresent() || process.env.CI ? false : 'no kube-apiserver/etcd build (run npm run cluster:up once)';

describe('leader election on a real Lease', { skip, timeout: 120_000 }, () => {
  let server: TestApiServer;
  let client: KubeClient;
  before(async () => {
    server = await startApiServer();
    client = await KubeClient.create({ kubeconfig: server.kubeconfig });
    await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'le' } }, { fieldManager: 'test' });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  /** A candidate; records the intervals it led, to check they never overlap. */
  function candidate(identity: string, terms: Array<{ who: string; from: number; to?: number }>) {
    const stop = new AbortController();
    const elector = new LeaderElector(client, {
      namespace: 'le',
      name: 'kreg-operator',
      identity,
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 300,
      onStartedLeading: () => {
        terms.push({ who: identity, from: Date.now() });
      },
      onStoppedLeading: () => {
        const term = terms.findLast((t) => t.who === identity && t.to === undefined);
        if (term) term.to = Date.now();
      },
    });
    const running = elector.run(stop.signal);
    return { elector, stop: async () => (stop.abort(), await running) };
  }

  const waitUntil = (what: string, fn: () => boolean, ms: number) => waitFor(what, async () => fn(), ms, 50);

  it('one leads, the other waits; a released lease is taken over within a retry period', async () => {
    const terms: Array<{ who: string; from: number; to?: number }> = [];
    const a = candidate('a', terms);
    await waitUntil('a to lead', () => a.elector.isLeader, 5000);
    const b = candidate('b', terms);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(b.elector.isLeader, false, 'b waits while a renews');
    const t0 = Date.now();
    await a.stop(); // releases
    await waitUntil('b to take over', () => b.elector.isLeader, 3000);
    const handover = Date.now() - t0;
    assert.ok(handover < 1500, `hand-over took ${handover} ms`);
    const lease = await client.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: 'le', name: 'kreg-operator' });
    assert.equal(lease!.spec.holderIdentity, 'b');
    assert.equal(lease!.spec.leaseTransitions, 1);
    await b.stop();
    for (let i = 1; i < terms.length; i++) assert.ok(terms[i]!.from >= terms[i - 1]!.to!, `terms overlap: ${JSON.stringify(terms)}`);
    console.log(`# leader election: hand-over on release in ${handover} ms`);
  });

  it('a leader that vanishes (no release) is replaced only after the lease expires', async () => {
    const terms: Array<{ who: string; from: number; to?: number }> = [];
    // A holder that stopped renewing without releasing, as a killed pod leaves it.
    const lease = await client.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: 'le', name: 'kreg-operator' });
    await client.request('PUT', '/apis/coordination.k8s.io/v1/namespaces/le/leases/kreg-operator', {
      body: { ...lease, spec: { ...lease!.spec, holderIdentity: 'ghost', leaseDurationSeconds: 3, renewTime: new Date().toISOString().replace('Z', '000Z') } },
    });
    const t0 = Date.now();
    const c = candidate('c', terms);
    await waitUntil('c to take over from the ghost', () => c.elector.isLeader, 8000);
    const waited = Date.now() - t0;
    assert.ok(waited >= 3000, `took the lease after ${waited} ms, before it expired`);
    await c.stop();
    console.log(`# leader election: take-over from a vanished leader after ${waited} ms (lease 3 s)`);
  });
});
