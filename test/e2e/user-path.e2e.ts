/**
 * The path a user takes, against a real cluster (the local test cluster by default):
 * `npm run synth` → `kubectl apply --server-side -f dist/` → rollout → port-forward → HTTP.
 * Needs the image `kreg/registration:dev` in the cluster (`npm run test:e2e` builds and loads it).
 * The namespace is deleted before and after; on failure the pods' events and logs are printed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { buildApp } from '../../infra/main.js';
import { deleteNamespace, diagnostics, failureTracker, kubectl, kubectlJson, portForward, postJson, readManifests, ROOT, runNodePod, steadyLoadScript, waitFor } from './kube.js';

const manifests = (() => {
  const r = spawnSync('npm', ['run', '--silent', 'synth', '--', '--env', 'dev'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run synth failed: ${r.stderr}${r.stdout}`);
  return readManifests();
})();
const namespace: string = manifests.find((o) => o.kind === 'Namespace').metadata.name;
const service = manifests.find((o) => o.kind === 'Service');
const workload = manifests.find((o) => o.kind === 'StatefulSet' || o.kind === 'Deployment');
const image: string = workload.spec.template.spec.containers[0].image;
const servicePort: number = service.spec.ports[0].port;
const inClusterUrl = `http://${service.metadata.name}.${namespace}.svc.cluster.local:${servicePort}`;
const PASSWORD = 'violet-otter-meadow-42';

const { guard, failed } = failureTracker();

async function rolledOut(): Promise<void> {
  await kubectl(['-n', namespace, 'rollout', 'status', `${workload.kind.toLowerCase()}/${workload.metadata.name}`, '--timeout=180s'], {
    timeoutMs: 200_000,
  });
}

async function readyPod(): Promise<{ name: string; uid: string }> {
  const selector = Object.entries(workload.spec.selector.matchLabels as Record<string, string>)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return waitFor('a ready pod', async () => {
    const list = await kubectlJson<{ items: any[] }>(['-n', namespace, 'get', 'pods', '-l', selector]);
    const pod = list.items.find(
      (p) => !p.metadata.deletionTimestamp && p.status.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'),
    );
    return pod ? { name: pod.metadata.name as string, uid: pod.metadata.uid as string } : undefined;
  });
}

/** Runs a one-shot client pod (the service image has Node) that executes `script` and returns its stdout. */
const runClientPod = (name: string, script: string) => runNodePod(namespace, image, name, script);

describe(`e2e on a real cluster: ${namespace}`, { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await deleteNamespace(namespace);
    const t0 = performance.now();
    await kubectl(['apply', '--server-side', '--field-manager=kreg', '-f', `${ROOT}dist/`]);
    await rolledOut();
    console.log(`# first deploy: applied and rolled out in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  });

  after(async () => {
    if (failed()) console.log(await diagnostics(namespace));
    await deleteNamespace(namespace);
  });

  test(
    '1. port-forward to the Service: register 201, duplicate 409, login 200, wrong password 401',
    guard(async () => {
      const pf = await portForward(namespace, `svc/${service.metadata.name}`, servicePort);
      try {
        const created = await postJson(`${pf.url}/register`, { username: 'E2E-Alice', password: PASSWORD });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        assert.equal((await postJson(`${pf.url}/register`, { username: 'e2e-alice', password: PASSWORD })).status, 409);
        const login = await postJson(`${pf.url}/login`, { username: 'e2e-alice', password: PASSWORD });
        assert.equal(login.status, 200);
        assert.equal(login.body.id, created.body.id);
        assert.equal((await postJson(`${pf.url}/login`, { username: 'e2e-alice', password: 'wrong-password-1' })).status, 401);
      } finally {
        pf.stop();
      }
    }),
  );

  test(
    `2. discovery: another pod reaches ${inClusterUrl} by its cluster DNS name`,
    guard(async () => {
      const script = `
        const base = ${JSON.stringify(inClusterUrl)};
        // A refused connection for a moment after the pod turned Ready: kube-proxy programs a new
        // endpoint after the EndpointSlice says it is ready (its sync runs at most once a second),
        // and the fast start can beat it (a CI run saw ECONNREFUSED 2 s after the pod started).
        // A client in a cluster retries that; anything else fails at once.
        let ready;
        for (const until = Date.now() + 10000; ; ) {
          try { ready = await fetch(base + '/readyz'); break; }
          catch (e) { if (e.cause?.code !== 'ECONNREFUSED' || Date.now() > until) throw e; await new Promise((r) => setTimeout(r, 200)); }
        }
        const reg = await fetch(base + '/register', { method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: 'from-a-pod', password: ${JSON.stringify(PASSWORD)} }) });
        console.log(JSON.stringify({ readyz: ready.status, register: reg.status }));`;
      const out = await runClientPod('e2e-discovery-client', `(async () => { ${script} })().catch((e) => { console.error(e); process.exit(1); })`);
      assert.deepEqual(JSON.parse(out.trim().split('\n').pop()!), { readyz: 200, register: 201 });
    }),
  );

  test(
    '3. persistence: after the pod is deleted, its replacement still logs in the user',
    guard(async () => {
      const before = await readyPod();
      await kubectl(['-n', namespace, 'delete', 'pod', before.name, '--wait=true', '--timeout=90s'], { timeoutMs: 120_000 });
      const replacement = await waitFor('a replacement pod', async () => {
        const p = await readyPod();
        return p.uid !== before.uid ? p : undefined;
      });
      assert.notEqual(replacement.uid, before.uid);
      const pf = await portForward(namespace, `svc/${service.metadata.name}`, servicePort);
      try {
        const login = await postJson(`${pf.url}/login`, { username: 'E2E-ALICE', password: PASSWORD });
        assert.equal(login.status, 200, JSON.stringify(login.body));
      } finally {
        pf.stop();
      }
    }),
  );

  // Zero failed requests is the bar: the embedded Deployment surges (new pod ready before the old
  // one drains) and a draining pod answers `Connection: close`, so clients reconnect to the new pod.
  test(
    '4. rolling update after a config change: zero failed requests through the Service during the roll',
    guard(async () => {
      const before = await readyPod();
      // An in-cluster client sends a bounded load through the Service: 10 requests/s, 600 at most,
      // for about 60 s, which covers the re-apply (after 5 s) and the roll.
      const script = steadyLoadScript(`${inClusterUrl}/users/00000000-0000-4000-8000-000000000000`, 404);
      const client = runClientPod('e2e-rollout-client', script);
      await new Promise((r) => setTimeout(r, 5000));
      const objects = buildApp({ env: 'dev', settings: { RATE_LIMIT_LOGIN: '31' } }).charts.flatMap((c) => c.toJson());
      const t0 = performance.now();
      await kubectl(['apply', '--server-side', '--field-manager=kreg', '-f', '-'], {
        input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
      });
      await rolledOut();
      const after = await readyPod();
      const rollSeconds = (performance.now() - t0) / 1000;
      assert.notEqual(after.uid, before.uid, 'the config change replaced the pod');
      const counts = JSON.parse((await client).trim().split('\n').pop()!) as { ok: number; failed: number; errors: Record<string, number> };
      console.log(`# rolling update: rolled in ${rollSeconds.toFixed(1)} s; ${counts.ok} ok, ${counts.failed} failed ${JSON.stringify(counts.errors)}`);
      assert.ok(counts.ok > 100, `the client made requests: ${JSON.stringify(counts)}`);
      assert.ok(rollSeconds < 55, 'the roll finished while the client was still sending');
      assert.equal(counts.failed, 0, `failed requests during the roll: ${JSON.stringify(counts)}`);
    }),
  );

  test(
    '5. security posture of the live pod: non-root, read-only root fs, no capabilities',
    guard(async () => {
      const pod = await readyPod();
      const spec = (await kubectlJson(['-n', namespace, 'get', 'pod', pod.name])).spec;
      const container = spec.containers[0];
      assert.equal(container.securityContext.readOnlyRootFilesystem, true);
      assert.deepEqual(container.securityContext.capabilities.drop, ['ALL']);
      // What the kernel says about the running process, not just what the spec asked for.
      const probe = `
        const fs = require('node:fs');
        const status = fs.readFileSync('/proc/self/status', 'utf8');
        const field = (k) => status.split('\\n').find((l) => l.startsWith(k + ':')).split(/\\s+/).slice(1);
        let rootWritable = true;
        try { fs.writeFileSync('/probe-root', 'x'); } catch (e) { rootWritable = e.code !== 'EROFS' && e.code !== 'EACCES' ? e.code : false; }
        let tmpWritable = false;
        try { fs.writeFileSync('/tmp/probe', 'x'); fs.unlinkSync('/tmp/probe'); tmpWritable = true; } catch {}
        console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), capEff: field('CapEff')[0], noNewPrivs: field('NoNewPrivs')[0], rootWritable, tmpWritable }));`;
      const out = await kubectl(['-n', namespace, 'exec', pod.name, '-c', container.name, '--', 'node', '-e', probe]);
      const seen = JSON.parse(out.trim()) as Record<string, unknown>;
      assert.notEqual(seen.uid, 0, 'runs as non-root');
      assert.notEqual(seen.gid, 0);
      assert.equal(seen.capEff, '0000000000000000', 'no effective capabilities');
      assert.equal(seen.noNewPrivs, '1');
      assert.equal(seen.rootWritable, false, 'root filesystem is read-only');
      assert.equal(seen.tmpWritable, true, '/tmp is writable');
      console.log(`# live pod: ${JSON.stringify(seen)}`);
    }),
  );
});
