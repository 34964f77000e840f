/**
 * The production topology on the real cluster: `kreg deploy --env prod` runs PostgreSQL (the single
 * instance beside the service, its password generated in the cluster), migrates once, and rolls
 * three stateless replicas on it; `kreg verify` and `kreg status` pass; a user registered through
 * one pod logs in through each of the others; a redeploy changes nothing and keeps the password.
 * Needs kreg/registration:dev and kreg/postgres:15 in the cluster (npm run test:e2e loads them).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deleteNamespace, diagnostics, failureTracker, kreg, kubectl, kubectlJson, portForward, postJson, run, runNodePod, steadyLoadScript, waitFor } from './kube.js';

const NS = 'kreg-prod';
const IMAGE = 'kreg/registration:dev';
const SERVICE = `http://registration.${NS}.svc.cluster.local`;
const PASSWORD = 'violet-otter-meadow-42';
const UNKNOWN_USER = `${SERVICE}/users/00000000-0000-4000-8000-000000000000`;
const { guard, failed } = failureTracker();

/** The service's pods that are running and not going away. */
async function apiPods(): Promise<any[]> {
  const pods = (await kubectlJson(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/name=registration,app.kubernetes.io/component=api'])).items;
  return pods.filter((p: any) => !p.metadata.deletionTimestamp && p.status.phase === 'Running');
}

/** `GET /users/{id}` answered 404, as counted by one pod's own /metrics. */
async function notFoundCount(pod: string): Promise<number> {
  const pf = await portForward(NS, `pod/${pod}`, 8080);
  try {
    const text = await (await fetch(`${pf.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('http_requests_total{') && l.includes('route="/users/:id"') && l.includes('status="404"'));
    return line ? Number(line.split(' ').pop()) : 0;
  } finally {
    pf.stop();
  }
}

/**
 * Registers unique users for `seconds`, two at a time, through the Service; prints, as its last
 * line, the names answered 201 and every other outcome counted by kind: a status, or the
 * connection error's code. `firstFailure`/`recovered`: ms from the start to the first non-201 and
 * to the first 201 after it.
 */
const registrationLoad = (seconds: number, prefix: string, workers = 2) => `(async () => {
  const acked = []; const outcomes = {}; const started = Date.now(); let n = 0; let firstFailure; let recovered;
  const worker = async (w) => {
    while (Date.now() - started < ${seconds * 1000}) {
      const username = ${JSON.stringify(prefix)} + started.toString(36) + 'w' + w + 'n' + (n++);
      let outcome;
      try {
        // prod trusts one proxy hop (TRUST_PROXY_HOPS=1), as behind an ingress: each request comes
        // from another client address, so the per-client rate limit does not turn the load into 429s.
        const client = '10.' + ((n >> 16) & 255) + '.' + ((n >> 8) & 255) + '.' + (n & 255);
        const r = await fetch(${JSON.stringify(SERVICE)} + '/register', { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
          body: JSON.stringify({ username, password: ${JSON.stringify(PASSWORD)} }), signal: AbortSignal.timeout(5000) });
        await r.arrayBuffer();
        outcome = String(r.status);
        if (r.status === 201) acked.push(username);
      } catch (e) { outcome = e.cause?.code || e.name; }
      outcomes[outcome] = (outcomes[outcome] || 0) + 1;
      const t = Date.now() - started;
      if (outcome !== '201' && firstFailure === undefined) firstFailure = t;
      if (outcome === '201' && firstFailure !== undefined && recovered === undefined) recovered = t;
      if (outcome !== '201') await new Promise((r) => setTimeout(r, 100));
    }
  };
  await Promise.all(Array.from({ length: ${workers} }, (_, w) => worker(w)));
  console.log(JSON.stringify({ acked, outcomes, firstFailure, recovered }));
})().catch((e) => { console.error(e); process.exit(1); })`;

/** Logs in as each user, four at a time; prints the names that did not, and how. */
const verifyLogins = (names: string[]) => `(async () => {
  const names = ${JSON.stringify(names)}; const lost = [];
  for (let i = 0; i < names.length; i += 4) {
    await Promise.all(names.slice(i, i + 4).map(async (username, j) => {
      const client = '10.200.' + (((i + j) >> 8) & 255) + '.' + ((i + j) & 255);
      const r = await fetch(${JSON.stringify(SERVICE)} + '/login', { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
        body: JSON.stringify({ username, password: ${JSON.stringify(PASSWORD)} }) });
      if (r.status !== 200) lost.push(username + ':' + r.status);
    }));
  }
  console.log(JSON.stringify({ checked: names.length, lost }));
})().catch((e) => { console.error(e); process.exit(1); })`;

const lastJson = <T>(logs: string): T => JSON.parse(logs.trim().split('\n').pop()!) as T;

/** The acknowledged names the database does not hold, read with psql in the database pod (a login each would take minutes). */
async function notStored(acked: string[], prefix: string): Promise<string[]> {
  const out = await kubectl(['-n', NS, 'exec', 'postgres-0', '--', 'psql', '--host=/var/run/postgresql', '--username=postgres', '--dbname=kreg', '-Atc', `SELECT username FROM users WHERE username LIKE '${prefix}%'`]);
  const stored = new Set(out.split('\n').map((l) => l.trim()).filter(Boolean));
  return acked.filter((name) => !stored.has(name));
}

describe('prod on the cluster: replicas on PostgreSQL', { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await deleteNamespace(NS);
  });
  after(async () => {
    if (failed()) console.log(await diagnostics(NS));
    await kreg(['destroy', '--env', 'prod', '--include-kept', '--timeout', '120s']);
    await deleteNamespace(NS);
  });

  it(
    'kreg deploy --env prod: the database, the migration, three ready replicas; the password lives only in its Secret',
    guard(async () => {
      const t0 = performance.now();
      const r = await kreg(['deploy', '--env', 'prod', '--image', IMAGE, '--timeout', '6m'], 420_000);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /waiting for what the Jobs need to be ready: StatefulSet\/kreg-prod\/postgres/);
      assert.match(r.stdout, /waiting for Jobs to complete: Job\/kreg-prod\/registration-migrate-/);
      assert.match(r.stdout, /deployed prod: revision 1/);
      // The autoscaler owns the count: it raises the Deployment to its minimum of 3.
      const deployment = await waitFor(
        'three ready replicas',
        async () => {
          const d = await kubectlJson(['-n', NS, 'get', 'deployment', 'registration']);
          return d.status?.readyReplicas === 3 ? d : undefined;
        },
        180_000,
        1000,
      );
      console.log(`# prod: deployed and 3 replicas ready ${((performance.now() - t0) / 1000).toFixed(1)} s after kreg deploy started`);
      assert.equal(deployment.spec.template.spec.containers[0].image, IMAGE);

      const secret = await kubectlJson(['-n', NS, 'get', 'secret', 'postgres-credentials']);
      const password = Buffer.from(secret.data.password, 'base64').toString('utf8');
      assert.match(password, /^[A-Za-z0-9_-]{32}$/);
      const elsewhere = await kubectl(['-n', NS, 'get', 'configmaps,secrets', '-o', 'json']);
      const copies = elsewhere.split(secret.data.password).length - 1 + (elsewhere.split(password).length - 1);
      assert.equal(copies, 1, 'the password is in its Secret, and no ConfigMap or other Secret holds it as it is');

      const status = await kreg(['status', '--env', 'prod']);
      assert.equal(status.code, 0, `${status.stdout}\n${status.stderr}`);
      assert.match(status.stdout, /StatefulSet\/kreg-prod\/postgres/);
    }),
  );

  it(
    'kreg verify --env prod passes',
    guard(async () => {
      const r = await kreg(['verify', '--env', 'prod']);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /verified/);
    }),
  );

  it(
    'a user registered through one pod logs in through each of the others',
    guard(async () => {
      const pods = (await kubectlJson(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/name=registration,app.kubernetes.io/component=api'])).items
        .filter((p: any) => !p.metadata.deletionTimestamp && p.status.phase === 'Running')
        .map((p: any) => p.metadata.name as string);
      assert.equal(pods.length, 3, pods.join(', '));
      const user = { username: `prod-${Date.now()}`, password: 'violet-otter-meadow-42' };
      const forwards = await Promise.all(pods.map((p: string) => portForward(NS, `pod/${p}`, 8080)));
      try {
        assert.equal((await postJson(`${forwards[0]!.url}/register`, user)).status, 201);
        for (const [i, f] of forwards.entries()) {
          assert.equal((await postJson(`${f.url}/login`, user)).status, 200, `login through ${pods[i]}`);
          assert.equal((await postJson(`${f.url}/register`, user)).status, 409, `the name is taken, seen from ${pods[i]}`);
        }
      } finally {
        for (const f of forwards) f.stop();
      }
    }),
  );

  it(
    'the Service spreads load: with a new connection per request, each replica serves at least half of an even share',
    guard(async () => {
      const pods = (await apiPods()).map((p) => p.metadata.name as string);
      assert.equal(pods.length, 3);
      const before = await Promise.all(pods.map(notFoundCount));
      const total = 300;
      // node:http with agent false: one TCP connection per request, so kube-proxy picks each time.
      const script = `(async () => {
        const http = require('node:http'); const counts = { ok: 0, other: {} };
        for (let i = 0; i < ${total}; i++) {
          const status = await new Promise((resolve) => {
            const req = http.get(${JSON.stringify(UNKNOWN_USER)}, { agent: false, timeout: 5000 }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
            req.on('timeout', () => req.destroy(new Error('timeout')));
            req.on('error', (e) => resolve(e.code || e.message));
          });
          if (status === 404) counts.ok++; else counts.other[status] = (counts.other[status] || 0) + 1;
        }
        console.log(JSON.stringify(counts));
      })().catch((e) => { console.error(e); process.exit(1); })`;
      const counts = lastJson<{ ok: number; other: Record<string, number> }>(await runNodePod(NS, IMAGE, 'spread-client', script));
      assert.equal(counts.ok, total, JSON.stringify(counts));
      const after = await Promise.all(pods.map(notFoundCount));
      const served = pods.map((_, i) => after[i]! - before[i]!);
      console.log(`# prod: ${total} requests, one connection each, served per pod: ${served.join(', ')} (even share ${total / 3})`);
      assert.equal(served.reduce((a, b) => a + b, 0), total, 'every request was counted by exactly one pod');
      for (const [i, n] of served.entries()) assert.ok(n >= total / 3 / 2, `${pods[i]} served ${n} of ${total}`);
    }),
  );

  it(
    'a rolling update of 3 replicas under load: 600 requests from an in-cluster client, none failed',
    guard(async () => {
      const load = runNodePod(NS, IMAGE, 'rollout-client', steadyLoadScript(UNKNOWN_USER, 404));
      await new Promise((r) => setTimeout(r, 5000));
      const t0 = performance.now();
      await kubectl(['-n', NS, 'rollout', 'restart', 'deployment/registration']);
      await kubectl(['-n', NS, 'rollout', 'status', 'deployment/registration', '--timeout=180s'], { timeoutMs: 200_000 });
      const rolled = (performance.now() - t0) / 1000;
      const counts = lastJson<{ ok: number; failed: number; errors: Record<string, number> }>(await load);
      console.log(`# prod: rolling update of 3 replicas in ${rolled.toFixed(1)} s under load: ${counts.ok} ok, ${counts.failed} failed ${JSON.stringify(counts.errors)}`);
      assert.ok(counts.ok + counts.failed >= 590, `only ${counts.ok + counts.failed} requests were sent`);
      assert.equal(counts.failed, 0, JSON.stringify(counts.errors));
      assert.equal((await apiPods()).length, 3);
    }),
  );

  it(
    'the PDB holds: an eviction that would take a second replica away is refused (429)',
    guard(async () => {
      await waitFor('3 ready replicas', async () => ((await kubectlJson(['-n', NS, 'get', 'deployment', 'registration'])).status.readyReplicas === 3 ? true : undefined), 120_000, 1000);
      await waitFor('the budget to allow one disruption', async () => ((await kubectlJson(['-n', NS, 'get', 'pdb', 'registration'])).status?.disruptionsAllowed === 1 ? true : undefined), 60_000, 500);
      const [first, second] = (await apiPods()).map((p) => p.metadata.name as string);
      // The Eviction API, as `kubectl drain` uses it.
      const evict = (pod: string) =>
        kubectl(['create', '--raw', `/api/v1/namespaces/${NS}/pods/${pod}/eviction`, '-f', '-'], {
          input: JSON.stringify({ apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: pod, namespace: NS } }),
        });
      await evict(first!);
      await assert.rejects(evict(second!), /TooManyRequests|429|disruption budget/i, 'the second eviction went through');
      await waitFor('3 ready replicas again', async () => ((await kubectlJson(['-n', NS, 'get', 'deployment', 'registration'])).status.readyReplicas === 3 ? true : undefined), 120_000, 1000);
    }),
  );

  it(
    'the database pod killed under load: 503s (or refused connections) while it is down, every 201 stored, the service back by itself',
    guard(async () => {
      const load = runNodePod(NS, IMAGE, 'db-kill-client', registrationLoad(30, 'dbk'));
      await new Promise((r) => setTimeout(r, 8000));
      await kubectl(['-n', NS, 'delete', 'pod', 'postgres-0', '--grace-period=0', '--force']);
      const result = lastJson<{ acked: string[]; outcomes: Record<string, number>; firstFailure?: number; recovered?: number }>(await load);
      const { acked, outcomes } = result;
      // 503 from the service; refused connections once readiness (which probes the database) has
      // taken every pod out of the Service. Anything else reached something that is not the service.
      const unexpected = Object.entries(outcomes).filter(([k]) => !['201', '503', 'ECONNREFUSED', 'ECONNRESET'].includes(k));
      console.log(
        `# prod: database pod killed under load: ${JSON.stringify(outcomes)}; first failure at ${result.firstFailure} ms, ` +
          `first 201 after it ${result.recovered !== undefined && result.firstFailure !== undefined ? `${((result.recovered - result.firstFailure) / 1000).toFixed(1)} s later` : 'never'}`,
      );
      assert.deepEqual(unexpected, [], 'while the database is down: 503s or refused connections, nothing else');
      assert.ok((outcomes['503'] ?? 0) > 0, 'the outage was seen');
      assert.ok(result.recovered !== undefined, 'registrations succeeded again without a restart of the service');
      assert.deepEqual(await notStored(acked, 'dbk'), [], 'an acknowledged registration was lost');
      // And they work: a sample logs in through the Service.
      const sample = lastJson<{ checked: number; lost: string[] }>(await runNodePod(NS, IMAGE, 'db-kill-verify', verifyLogins(acked.filter((_, i) => i % 50 === 0))));
      assert.deepEqual(sample.lost, []);
    }),
  );

  it(
    'a replica SIGKILLed under load: every 201 stored; failures only refused or reset connections or 503s, bounded by the probes',
    guard(async () => {
      const [victim] = await apiPods();
      const load = runNodePod(NS, IMAGE, 'replica-kill-client', registrationLoad(30, 'rk'));
      await new Promise((r) => setTimeout(r, 8000));
      const kill = await run('bash', ['test/cluster/kill-container.sh', victim.status.containerStatuses[0].containerID]);
      assert.equal(kill.code, 0, kill.stdout + kill.stderr);
      const { acked, outcomes } = lastJson<{ acked: string[]; outcomes: Record<string, number> }>(await load);
      const failures = Object.entries(outcomes).filter(([k]) => k !== '201');
      const failedCount = failures.reduce((a, [, n]) => a + n, 0);
      console.log(`# prod: a replica SIGKILLed under load: ${JSON.stringify(outcomes)}`);
      for (const [kind] of failures) assert.match(kind, /^(503|ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)$/, `an answer from something that is not the service: ${kind}`);
      // Two clients; a failed request is retried after 100 ms. The kubelet sees the exit at once and
      // the endpoint leaves within a readiness period (5 s): at most 2 × 5 s / 0.1 s failures.
      assert.ok(failedCount <= 100, `${failedCount} failed requests`);
      assert.deepEqual(await notStored(acked, 'rk'), [], 'an acknowledged registration was lost');
      // The load may have made the autoscaler add replicas: at least the 3 again.
      await waitFor('3 ready replicas again', async () => ((await kubectlJson(['-n', NS, 'get', 'deployment', 'registration'])).status.readyReplicas >= 3 ? true : undefined), 120_000, 1000);
    }),
  );

  it(
    'the HPA acts on real metrics: sustained load raises the replicas above 3, and they return to 3 after it stops',
    guard(async () => {
      const hpa = () => kubectlJson(['-n', NS, 'get', 'hpa', 'registration']);
      const cpu = (h: any) => h.status?.currentMetrics?.[0]?.resource?.current?.averageUtilization as number | undefined;
      await waitFor('CPU figures for the HPA (metrics-server)', async () => (cpu(await hpa()) !== undefined ? true : undefined), 120_000, 2000);
      // The loads of the tests before may have scaled it up already: start from rest.
      await waitFor('the HPA at rest, 3 replicas', async () => {
        const h = await hpa();
        return h.status?.desiredReplicas === 3 && h.status?.currentReplicas === 3 ? true : undefined;
      }, 300_000, 2000);
      const t0 = performance.now();
      const load = runNodePod(NS, IMAGE, 'hpa-client', registrationLoad(90, 'hpa', 8));
      const scaled = await waitFor('the HPA to want more than 3 replicas', async () => {
        const h = await hpa();
        return h.status?.desiredReplicas > 3 ? h : undefined;
      }, 150_000, 2000);
      const upSeconds = (performance.now() - t0) / 1000;
      const outcome = lastJson<{ acked: string[]; outcomes: Record<string, number> }>(await load);
      const t1 = performance.now();
      await waitFor('the HPA to come back to 3', async () => {
        const h = await hpa();
        return h.status?.desiredReplicas === 3 && h.status?.currentReplicas === 3 ? h : undefined;
      }, 300_000, 2000);
      const downSeconds = (performance.now() - t1) / 1000;
      console.log(
        `# prod: HPA at ${cpu(scaled)} % CPU wanted ${scaled.status.desiredReplicas} replicas ${upSeconds.toFixed(0)} s after the load started; ` +
          `back to 3 ${downSeconds.toFixed(0)} s after it stopped; the load: ${JSON.stringify(outcome.outcomes)}`,
      );
      assert.ok(scaled.status.desiredReplicas <= 10);
    }),
  );

  it(
    'a second deploy changes nothing and keeps the generated password',
    guard(async () => {
      const before = await kubectlJson(['-n', NS, 'get', 'secret', 'postgres-credentials']);
      const r = await kreg(['deploy', '--env', 'prod', '--image', IMAGE]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /no changes: prod is at revision 1 and ready/);
      const after = await kubectlJson(['-n', NS, 'get', 'secret', 'postgres-credentials']);
      assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
      assert.equal(after.data.password, before.data.password);
    }),
  );
});
