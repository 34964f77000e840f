/**
 * The operator on the real cluster, as a user runs it: `kreg operator run` (a child process,
 * against the kubeconfig) reconciles a RegistrationService applied with kubectl to Ready, the
 * service answers through its Service, a bad image turns the resource Stalled with the pull error
 * named, drift is put back, an idle operator writes nothing, and deleting the resource prunes its
 * children but keeps the data claim.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { deleteNamespace, diagnostics, failureTracker, KUBECONFIG, kubectl, kubectlJson, portForward, postJson, ROOT, waitFor } from './kube.js';

const NS = 'kreg-operator-e2e';
const { guard, failed } = failureTracker();

function resource(image: string): string {
  return JSON.stringify({
    apiVersion: 'kreg.dev/v1alpha1',
    kind: 'RegistrationService',
    metadata: { name: 'accounts', namespace: NS },
    spec: { image, database: { mode: 'embedded', storage: '1Gi' } },
  });
}

const condition = (cr: any, type: string) => (cr?.status?.conditions ?? []).find((c: { type: string }) => c.type === type);

interface RunningOperator {
  child: ChildProcess;
  metricsUrl: string;
  logs: string[];
  leading: () => boolean;
}

/** `kreg operator run` as a child process, with leader election on a Lease in the test namespace. */
async function startOperator(): Promise<RunningOperator> {
  const child = spawn(process.execPath, ['bin/kreg.mjs', 'operator', 'run', '--namespace', NS, '--leader-election-namespace', NS, '--listen', '127.0.0.1:0'], {
    cwd: ROOT,
    env: { ...process.env, KUBECONFIG },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  let leading = false;
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const metricsUrl = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logs.push(line);
      const entry = JSON.parse(line) as { msg: string; address?: string };
      if (entry.msg === 'serving health and metrics') resolve(`http://${entry.address}`);
      if (entry.msg === 'leader election: leading') leading = true;
      if (entry.msg === 'stopped' || /stepping down/.test(entry.msg)) leading = false;
    });
    child.once('exit', (code) => reject(new Error(`the operator exited ${code}:\n${logs.join('\n')}`)));
  });
  return { child, metricsUrl, logs, leading: () => leading };
}

describe('kreg operator on a real cluster', { timeout: 10 * 60_000 }, () => {
  const operators: RunningOperator[] = [];
  let metricsUrl = '';
  const logs: string[] = [];

  before(async () => {
    await deleteNamespace(NS);
    await kubectl(['create', 'namespace', NS]);
    // Two copies, as the Deployment will run them: one leads, one stands by.
    operators.push(await startOperator(), await startOperator());
    await waitFor('a leader', async () => operators.some((o) => o.leading()), 60_000, 200);
    const leader = operators.find((o) => o.leading())!;
    metricsUrl = leader.metricsUrl;
    await waitFor('the leader to start its controller', async () => leader.logs.some((l) => l.includes('"controller started"')), 60_000, 200);
  });
  after(async () => {
    if (failed()) console.log(`${await diagnostics(NS)}\n--- operator logs\n${operators.map((o) => o.logs.slice(-40).join('\n')).join('\n---\n')}`);
    for (const o of operators) {
      if (o.child.exitCode !== null || o.child.signalCode !== null) continue;
      const exited = new Promise((r) => o.child.once('exit', r));
      o.child.kill('SIGTERM');
      await exited;
    }
    await deleteNamespace(NS);
  });

  it(
    'two copies: exactly one leads; the standby is ready and says it is not the leader',
    guard(async () => {
      assert.equal(operators.filter((o) => o.leading()).length, 1);
      const standby = operators.find((o) => !o.leading())!;
      assert.equal((await fetch(`${standby.metricsUrl}/readyz`)).status, 200);
      assert.match(await (await fetch(`${standby.metricsUrl}/metrics`)).text(), /^leader_election_master_status\{name="kreg-operator"\} 0$/m);
      assert.match(await (await fetch(`${metricsUrl}/metrics`)).text(), /^leader_election_master_status\{name="kreg-operator"\} 1$/m);
    }),
  );

  it(
    'kubectl apply → Ready; kubectl get shows the columns; the service answers through its Service',
    guard(async () => {
      const t0 = performance.now();
      await kubectl(['apply', '-f', '-'], { input: resource('kreg/registration:dev') });
      await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'registrationservice/accounts', '--timeout=180s'], { timeoutMs: 200_000 });
      console.log(`# operator: resource Ready ${((performance.now() - t0) / 1000).toFixed(1)} s after kubectl apply`);
      const table = await kubectl(['-n', NS, 'get', 'registrationservices']);
      assert.match(table, /NAME\s+READY\s+REASON\s+IMAGE\s+REPLICAS\s+DATABASE\s+AGE/);
      assert.match(table, /accounts\s+True\s+Ready\s+kreg\/registration:dev\s+1\s+embedded/);
      const cr = await kubectlJson(['-n', NS, 'get', 'registrationservice', 'accounts']);
      assert.equal(cr.status.observedGeneration, cr.metadata.generation);
      assert.equal(cr.status.url, `http://accounts.${NS}.svc.cluster.local`);
      assert.equal(cr.status.revision, 1);

      const pf = await portForward(NS, 'svc/accounts', 80);
      try {
        const body = { username: 'operator-alice', password: 'violet-otter-meadow-42' };
        assert.equal((await postJson(`${pf.url}/register`, body)).status, 201);
        assert.equal((await postJson(`${pf.url}/register`, body)).status, 409);
        assert.equal((await postJson(`${pf.url}/login`, body)).status, 200);
      } finally {
        pf.stop();
      }
    }),
  );

  it(
    'drift: a scaled Deployment, a changed image and a deleted Service are put back',
    guard(async () => {
      await kubectl(['-n', NS, 'scale', 'deployment/accounts', '--replicas=3']);
      await kubectl(['-n', NS, 'set', 'image', 'deployment/accounts', 'registration=kreg/registration:drifted']);
      await kubectl(['-n', NS, 'delete', 'service', 'accounts']);
      const t0 = performance.now();
      await waitFor('the Service to come back', async () => (await kubectlJson(['-n', NS, 'get', 'services'])).items.some((s: any) => s.metadata.name === 'accounts'), 30_000, 200);
      await waitFor(
        'the Deployment to be put back',
        async () => {
          const dep = await kubectlJson(['-n', NS, 'get', 'deployment', 'accounts']);
          return dep.spec.replicas === 1 && dep.spec.template.spec.containers[0].image === 'kreg/registration:dev';
        },
        30_000,
        200,
      );
      console.log(`# operator: drift corrected within ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      const events = await waitFor('a DriftCorrected event naming kubectl', async () => {
        const list = await kubectlJson(['-n', NS, 'get', 'events', '--field-selector', 'reason=DriftCorrected']);
        const messages = list.items.map((e: any) => e.message as string);
        return messages.some((m: string) => /^Deployment\/accounts: .*changed by "kubectl[^"]*"/.test(m)) ? messages : undefined;
      }, 15_000, 200);
      console.log(`# operator: ${events.find((m: string) => m.startsWith('Deployment/'))}`);
      await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'registrationservice/accounts', '--timeout=120s'], { timeoutMs: 150_000 });
    }),
  );

  it(
    'a bad image: Ready=False, Stalled=True naming the pull error, within 30 s; the fix recovers',
    guard(async () => {
      const t0 = performance.now();
      await kubectl(['apply', '-f', '-'], { input: resource('kreg/does-not-exist:1') });
      const cr = await waitFor(
        'Stalled=True',
        async () => {
          const now = await kubectlJson(['-n', NS, 'get', 'registrationservice', 'accounts']);
          return condition(now, 'Stalled')?.status === 'True' ? now : undefined;
        },
        30_000,
      );
      console.log(`# operator: bad image Stalled after ${((performance.now() - t0) / 1000).toFixed(1)} s: ${condition(cr, 'Ready').message.slice(0, 160)}`);
      assert.equal(condition(cr, 'Ready').status, 'False');
      assert.match(condition(cr, 'Ready').message, /^Deployment\/accounts: (ErrImagePull|ImagePullBackOff)/);
      assert.match(condition(cr, 'Ready').reason, /^(ErrImagePull|ImagePullBackOff)$/);
      await kubectl(['apply', '-f', '-'], { input: resource('kreg/registration:dev') });
      await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'registrationservice/accounts', '--timeout=120s'], { timeoutMs: 150_000 });
    }),
  );

  it(
    'idle after convergence: no writes, no resourceVersion change of the resource or its children',
    guard(async () => {
      const snapshot = async () => {
        const cr = await kubectlJson(['-n', NS, 'get', 'registrationservice', 'accounts']);
        const children = await kubectlJson(['-n', NS, 'get', 'deployments,services,configmaps,networkpolicies,serviceaccounts']);
        const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
        const writes = [...metrics.matchAll(/^kreg_operator_writes_total\{what="(\w+)"\} (\d+)$/gm)].map((m) => `${m[1]}=${m[2]}`).join(',');
        return { versions: [cr.metadata.resourceVersion, ...children.items.map((o: any) => `${o.kind}/${o.metadata.name}@${o.metadata.resourceVersion}`)].join(' '), writes };
      };
      await new Promise((r) => setTimeout(r, 5000)); // the last rollout's status updates settle
      const before = await snapshot();
      await new Promise((r) => setTimeout(r, 20_000));
      const after = await snapshot();
      assert.equal(after.writes, before.writes, 'the operator wrote while idle');
      assert.equal(after.versions, before.versions, 'something changed while idle');
      console.log(`# operator: idle 20 s, writes ${after.writes}`);
      assert.equal((await fetch(`${metricsUrl}/readyz`)).status, 200);
    }),
  );

  it(
    'the leader is killed (SIGKILL, no hand-over): the standby takes over and reconciles a change',
    guard(async () => {
      const leader = operators.find((o) => o.leading())!;
      const standby = operators.find((o) => o !== leader)!;
      const t0 = performance.now();
      leader.child.kill('SIGKILL');
      await kubectl(['apply', '-f', '-'], { input: resource('kreg/registration:dev').replace('"spec":{', '"spec":{"settings":{"LOG_LEVEL":"warn"},') });
      await waitFor('the standby to lead', async () => standby.leading(), 60_000, 200);
      const tookOver = performance.now() - t0;
      await waitFor(
        'the change to be reconciled',
        async () => (await kubectlJson(['-n', NS, 'get', 'configmap', 'accounts-config'])).data.LOG_LEVEL === 'warn',
        60_000,
        200,
      );
      await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'registrationservice/accounts', '--timeout=120s'], { timeoutMs: 150_000 });
      console.log(`# operator: standby leading ${(tookOver / 1000).toFixed(1)} s after the leader was killed; change reconciled after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      metricsUrl = standby.metricsUrl;
    }),
  );

  it(
    'deleting the resource prunes its children through the finalizer and keeps the data claim',
    guard(async () => {
      await kubectl(['-n', NS, 'delete', 'registrationservice', 'accounts', '--timeout=120s'], { timeoutMs: 150_000 });
      const left = await kubectlJson(['-n', NS, 'get', 'deployments,services,configmaps,persistentvolumeclaims']);
      const names = left.items.map((o: any) => `${o.kind}/${o.metadata.name}`).filter((n: string) => n !== 'ConfigMap/kube-root-ca.crt');
      assert.deepEqual(names, ['PersistentVolumeClaim/accounts-data']);
    }),
  );

  it(
    'a Service made with kubectl is not rewritten or owned (Stalled ForeignObject); its owner\'s annotation hands it over, and the resource becomes Ready',
    guard(async () => {
      await kubectl(['-n', NS, 'create', 'service', 'clusterip', 'other-team', '--tcp=5678:5678']);
      const before = await kubectlJson(['-n', NS, 'get', 'service', 'other-team']);
      await kubectl(['apply', '-f', '-'], { input: resource('kreg/registration:dev').replaceAll('"accounts"', '"other-team"') });
      const stalled = await waitFor('Stalled ForeignObject', async () => {
        const now = await kubectlJson(['-n', NS, 'get', 'registrationservice', 'other-team']);
        return condition(now, 'Stalled')?.reason === 'ForeignObject' ? now : undefined;
      }, 30_000);
      assert.match(condition(stalled, 'Stalled').message, /Service\/kreg-operator-e2e\/other-team: managed by "kubectl-create"/);
      await new Promise((r) => setTimeout(r, 3000)); // time enough for a write, were one coming
      const after = await kubectlJson(['-n', NS, 'get', 'service', 'other-team']);
      assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, 'the Service was not written');
      assert.equal(after.metadata.ownerReferences, undefined);
      assert.match(await kubectl(['-n', NS, 'get', 'events', '--field-selector', 'reason=ForeignObject,involvedObject.name=other-team', '-o', 'name']), /event/);

      const t0 = performance.now();
      await kubectl(['-n', NS, 'annotate', 'service', 'other-team', `kreg.dev/adopt=RegistrationService/${NS}/other-team`]);
      await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'registrationservice/other-team', '--timeout=180s'], { timeoutMs: 200_000 });
      console.log(`# operator: handed-over Service; resource Ready ${((performance.now() - t0) / 1000).toFixed(1)} s after the annotation`);
      const taken = await kubectlJson(['-n', NS, 'get', 'service', 'other-team']);
      assert.equal(taken.metadata.ownerReferences[0].kind, 'RegistrationService');
      await kubectl(['-n', NS, 'delete', 'registrationservice', 'other-team', '--timeout=120s'], { timeoutMs: 150_000 });
    }),
  );

  it(
    'a remote-mode resource applied with kubectl is stored without a storage default and reconciled, not refused as InvalidSpec',
    guard(async () => {
      const remote = {
        apiVersion: 'kreg.dev/v1alpha1',
        kind: 'RegistrationService',
        metadata: { name: 'remote-db', namespace: NS },
        spec: { image: 'kreg/registration:dev', database: { mode: 'remote', url: 'http://libsql.nowhere.invalid:8080', authTokenSecretRef: { name: 'remote-db-token', key: 'token' } } },
      };
      await kubectl(['apply', '-f', '-'], { input: JSON.stringify(remote) });
      const stored = await kubectlJson(['-n', NS, 'get', 'registrationservice', 'remote-db']);
      assert.deepEqual(stored.spec.database, remote.spec.database, 'the API server added nothing to the database');
      // Its token Secret does not exist, so it cannot get Ready; what matters is that the controller runs it.
      const seen = await waitFor('the migration Job', async () => {
        const jobs = await kubectlJson(['-n', NS, 'get', 'jobs', '-l', 'app.kubernetes.io/instance=remote-db']).catch(() => ({ items: [] }));
        return jobs.items.length ? jobs : undefined;
      }, 30_000);
      assert.equal(seen.items.length, 1);
      const now = await kubectlJson(['-n', NS, 'get', 'registrationservice', 'remote-db']);
      assert.notEqual(condition(now, 'Stalled')?.reason, 'InvalidSpec', JSON.stringify(now.status));
      await kubectl(['-n', NS, 'delete', 'registrationservice', 'remote-db', '--timeout=120s'], { timeoutMs: 150_000 });
    }),
  );

  it(
    'a postgres-mode resource with the server beside it: PostgreSQL, its generated password, two replicas, Ready; a deleted database Service is put back',
    guard(async () => {
      const t0 = performance.now();
      const pg = {
        apiVersion: 'kreg.dev/v1alpha1',
        kind: 'RegistrationService',
        metadata: { name: 'pg-accounts', namespace: NS },
        spec: { image: 'kreg/registration:dev', replicas: 2, database: { mode: 'postgres', server: { storage: '1Gi' } } },
      };
      await kubectl(['apply', '-f', '-'], { input: JSON.stringify(pg) });
      await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'registrationservice/pg-accounts', '--timeout=240s'], { timeoutMs: 260_000 });
      console.log(`# operator: postgres-mode resource Ready ${((performance.now() - t0) / 1000).toFixed(1)} s after kubectl apply`);
      const deployment = await kubectlJson(['-n', NS, 'get', 'deployment', 'pg-accounts']);
      assert.equal(deployment.status.readyReplicas, 2);
      const secret = await kubectlJson(['-n', NS, 'get', 'secret', 'pg-accounts-postgres-credentials']);
      assert.match(Buffer.from(secret.data.password, 'base64').toString('utf8'), /^[A-Za-z0-9_-]{32}$/);
      const pf = await portForward(NS, 'svc/pg-accounts', 80);
      try {
        const body = { username: 'operator-pg', password: 'violet-otter-meadow-42' };
        assert.equal((await postJson(`${pf.url}/register`, body)).status, 201);
        assert.equal((await postJson(`${pf.url}/login`, body)).status, 200);

        // The database's Service deleted: put back within the drift bound (5 s, docs/benchmarks.md),
        // and the service, which finds the database by that name, keeps working.
        const before = await kubectlJson(['-n', NS, 'get', 'service', 'pg-accounts-postgres']);
        assert.equal(before.metadata.labels['app.kubernetes.io/component'], 'database');
        const t1 = performance.now();
        await kubectl(['-n', NS, 'delete', 'service', 'pg-accounts-postgres', '--wait=false']);
        const back = await waitFor('the database Service to be put back', async () => {
          const list = await kubectlJson(['-n', NS, 'get', 'services']);
          return list.items.find((s: any) => s.metadata.name === 'pg-accounts-postgres' && s.metadata.uid !== before.metadata.uid);
        }, 30_000, 100);
        const seconds = (performance.now() - t1) / 1000;
        console.log(`# operator: deleted database Service put back in ${seconds.toFixed(2)} s`);
        assert.ok(seconds <= 5, `put back in ${seconds.toFixed(1)} s, past the 5 s drift bound`);
        assert.equal(back.spec.ports[0].port, 5432);
        await waitFor('a login through the Service after the database Service came back', async () => (await postJson(`${pf.url}/login`, body)).status === 200, 30_000, 500);
      } finally {
        pf.stop();
      }
      await kubectl(['-n', NS, 'delete', 'registrationservice', 'pg-accounts', '--timeout=120s'], { timeoutMs: 150_000 });
      assert.ok(await kubectlJson(['-n', NS, 'get', 'secret', 'pg-accounts-postgres-credentials']), 'the password outlives the resource, as the data it opens does');
    }),
  );
});
