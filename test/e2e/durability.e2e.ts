/**
 * Nothing acknowledged is lost: under a steady registration load through the Service (an
 * in-cluster client, unique usernames, two requests at a time), the embedded-database pod is killed
 * hard twice — the pod force-deleted with grace 0, then the server process SIGKILLed from the host —
 * and every registration that was answered 201 must afterwards log in, and be refused as taken when
 * registered again. The service must come back on its own each time.
 *
 * While the pod is down, clients may only see a refused or reset connection or a 503: anything else
 * was answered by something that is not the service (a CI run once saw 26,452 × 404 from the
 * sandbox's egress proxy, reached because packets to the endpoint-less Service left the node; the
 * local cluster now refuses them, test/cluster/up.sh) and fails the test, named.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeClient } from '../../infra/engine/client.js';
import { deploy } from '../../infra/engine/deploy.js';
import { synth } from '../../infra/main.js';
import { deleteNamespace, diagnostics, failureTracker, KUBECONFIG, kubectl, kubectlJson, run, runNodePod, waitFor } from './kube.js';

const NS = 'kreg-durability-e2e';
const IMAGE = 'kreg/registration:dev';
const PASSWORD = 'violet-otter-meadow-42';
const { guard, failed } = failureTracker();
/** What a client may see while the service's only pod is down: refused, reset, or the service's own 503. */
const DOWN_ANSWERS = new Set(['201', '503', 'ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET']);

// Registers unique users for `seconds`, two at a time; prints {acked, errors} as its last line.
const loadScript = (seconds: number) => `(async () => {
  const base = 'http://accounts.${NS}.svc.cluster.local';
  const acked = []; const errors = {};
  const started = Date.now(); let n = 0;
  const worker = async (w) => {
    while (Date.now() - started < ${seconds * 1000}) {
      const username = 'd' + started.toString(36) + 'w' + w + 'n' + (n++);
      try {
        const r = await fetch(base + '/register', { method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username, password: ${JSON.stringify(PASSWORD)} }), signal: AbortSignal.timeout(5000) });
        if (r.status === 201) acked.push(username); else errors[r.status] = (errors[r.status] || 0) + 1;
        await r.arrayBuffer();
      } catch (e) {
        const k = e.cause?.code || e.name; errors[k] = (errors[k] || 0) + 1;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  await Promise.all([worker(0), worker(1)]);
  console.log(JSON.stringify({ acked, errors }));
})().catch((e) => { console.error(e); process.exit(1); })`;

// Logs in as each user (argon2 verify, so few at a time); prints the names that failed and how.
const verifyScript = (names: string[]) => `(async () => {
  const base = 'http://accounts.${NS}.svc.cluster.local';
  const names = ${JSON.stringify(names)};
  const lost = []; const notTaken = [];
  for (let i = 0; i < names.length; i += 4) {
    await Promise.all(names.slice(i, i + 4).map(async (username) => {
      const body = JSON.stringify({ username, password: ${JSON.stringify(PASSWORD)} });
      const login = await fetch(base + '/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      if (login.status !== 200) lost.push(username + ':' + login.status);
      const again = await fetch(base + '/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      if (again.status !== 409) notTaken.push(username + ':' + again.status);
    }));
  }
  console.log(JSON.stringify({ checked: names.length, lost, notTaken }));
})().catch((e) => { console.error(e); process.exit(1); })`;

describe('durability: hard kills under registration load', { timeout: 10 * 60_000 }, () => {
  let client: KubeClient;
  before(async () => {
    await deleteNamespace(NS);
    await kubectl(['create', 'namespace', NS]);
    client = await KubeClient.create({ kubeconfig: KUBECONFIG });
    const objects = synth('accounts', NS, {
      image: IMAGE,
      database: { mode: 'embedded', storage: '1Gi' },
      // One client address sends everything: per-address limits would answer 429, not store.
      settings: { RATE_LIMIT_REGISTER: '0', RATE_LIMIT_LOGIN: '0' },
    });
    const report = await deploy(client, objects, { set: { name: 'durability', namespace: NS } }, { timeoutMs: 180_000, wait: true, prune: true, forceConflicts: false, description: 'durability e2e' });
    assert.ok(report.ok, report.failure?.message);
  });
  after(async () => {
    if (failed()) console.log(await diagnostics(NS));
    client?.close();
    await deleteNamespace(NS);
  });

  const readyPod = () =>
    waitFor('a ready pod', async () => {
      const pods = (await kubectlJson(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/instance=accounts'])).items;
      return pods.find((p: any) => !p.metadata.deletionTimestamp && p.status.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'));
    }, 120_000, 250);

  it(
    'every registration answered 201 is stored, across a force-deleted pod and a SIGKILLed process',
    guard(async () => {
      const first = await readyPod();
      const load = runNodePod(NS, IMAGE, 'durability-load', loadScript(50));
      await new Promise((r) => setTimeout(r, 12_000));
      const t0 = performance.now();
      await kubectl(['-n', NS, 'delete', 'pod', first.metadata.name, '--grace-period=0', '--force']);
      const second = await readyPod();
      const backAfterDelete = (performance.now() - t0) / 1000;
      await new Promise((r) => setTimeout(r, 12_000));
      const live = await kubectlJson(['-n', NS, 'get', 'pod', second.metadata.name]);
      const t1 = performance.now();
      const kill = await run('bash', ['test/cluster/kill-container.sh', live.status.containerStatuses[0].containerID]);
      assert.equal(kill.code, 0, kill.stdout + kill.stderr);
      const killed = kill.stdout.trim();
      await waitFor('the container to restart and be ready', async () => {
        const p = await kubectlJson(['-n', NS, 'get', 'pod', second.metadata.name]);
        const s = p.status.containerStatuses[0];
        return s.restartCount >= 1 && s.ready ? p : undefined;
      }, 120_000, 250);
      const backAfterKill = (performance.now() - t1) / 1000;

      const { acked, errors } = JSON.parse((await load).trim().split('\n').pop()!) as { acked: string[]; errors: Record<string, number> };
      assert.ok(acked.length > 100, `the load registered users: ${acked.length}`);
      assert.equal(new Set(acked).size, acked.length, 'a username was acknowledged twice');
      const result = JSON.parse((await runNodePod(NS, IMAGE, 'durability-verify', verifyScript(acked))).trim().split('\n').pop()!) as { checked: number; lost: string[]; notTaken: string[] };
      const failedRequests = Object.values(errors).reduce((a, b) => a + b, 0);
      console.log(
        `# durability: ${acked.length} acknowledged, ${result.checked - result.lost.length} of them stored and logging in, ${result.lost.length} lost; ` +
          `${failedRequests} requests not answered 201 while down ${JSON.stringify(errors)}; back ${backAfterDelete.toFixed(1)} s after the force delete, ` +
          `${backAfterKill.toFixed(1)} s after the SIGKILL (${killed})`,
      );
      assert.deepEqual(result.lost, [], 'acknowledged registrations were lost');
      const foreign = Object.entries(errors).filter(([kind]) => !DOWN_ANSWERS.has(kind));
      assert.deepEqual(foreign, [], 'while the pod was down, something other than the service answered (or the connection failed another way)');
      assert.deepEqual(result.notTaken, [], 'an acknowledged username could be registered again');
    }),
  );
});
