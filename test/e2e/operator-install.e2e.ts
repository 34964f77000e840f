/**
 * The operator as a cluster runs it: `kreg operator install` (CRD → RBAC → a two-copy Deployment of
 * the operator image, one leading), then RegistrationServices in two namespaces reconciled by the
 * in-cluster copy with its ServiceAccount's least-privilege RBAC: Ready with independent status,
 * invalid resources refused at admission, suspend/resume/requestedAt, fields added with kubectl
 * removed, a rollout of the operator itself handed over, the kube-apiserver killed and restarted,
 * and uninstall keeping the CRD.
 *
 * Needs kreg/operator:dev and kreg/registration:dev loaded into the cluster (npm run test:e2e does).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deleteNamespace, diagnostics, failureTracker, kreg, kubectl, kubectlJson, portForward, postJson, run, runNodePod, steadyLoadScript, waitFor } from './kube.js';

const SYSTEM = 'kreg-e2e-system';
const TEAM_A = 'kreg-e2e-team-a';
const TEAM_B = 'kreg-e2e-team-b';
const { guard, failed } = failureTracker();


const resource = (name: string, namespace: string, spec: Record<string, unknown>, annotations?: Record<string, string>) =>
  JSON.stringify({ apiVersion: 'kreg.dev/v1alpha1', kind: 'RegistrationService', metadata: { name, namespace, ...(annotations ? { annotations } : {}) }, spec });
const embedded = { image: 'kreg/registration:dev', database: { mode: 'embedded', storage: '1Gi' } };
const condition = (cr: any, type: string) => (cr?.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
const getCr = (namespace: string, name: string) => kubectlJson(['-n', namespace, 'get', 'registrationservice', name]);
const waitReady = (namespace: string, name: string) =>
  kubectl(['-n', namespace, 'wait', '--for=condition=Ready', `registrationservice/${name}`, '--timeout=180s'], { timeoutMs: 200_000 });

/** The last `lines` log lines of every operator copy, each prefixed with its pod; never throws (evidence only). */
const operatorLogs = (lines: number) =>
  kubectl(['-n', SYSTEM, 'logs', '-l', 'app.kubernetes.io/name=kreg-operator', `--tail=${lines}`, '--prefix']).catch((e) => String(e));

/**
 * Runs `wait`; if it fails, the error carries what the operator said and the resource's status at
 * that moment. The after hook's logs come too late for this: a later test reinstalls the operator,
 * and the copies that failed are gone with their logs.
 */
async function withOperatorEvidence(wait: () => Promise<unknown>): Promise<void> {
  try {
    await wait();
  } catch (err) {
    const logs = await operatorLogs(80);
    const status = await getCr(TEAM_A, 'billing').then((cr) => JSON.stringify(cr.status, null, 1), (e) => String(e));
    throw new Error(`${(err as Error).message}\n--- RegistrationService billing status:\n${status}\n--- operator logs:\n${logs}`, { cause: err });
  }
}

describe('kreg operator install: the operator in the cluster', { timeout: 15 * 60_000 }, () => {
  before(async () => {
    for (const ns of [TEAM_A, TEAM_B]) await deleteNamespace(ns);
    await kreg(['operator', 'uninstall', '--namespace', SYSTEM]);
  });
  after(async () => {
    if (failed()) {
      console.log(`${await diagnostics(SYSTEM)}\n${await diagnostics(TEAM_A)}`);
      console.log(await operatorLogs(60));
    }
    // The resources go first, while the operator still runs to remove their finalizers.
    for (const ns of [TEAM_A, TEAM_B]) await deleteNamespace(ns);
    await kreg(['operator', 'uninstall', '--namespace', SYSTEM]);
  });

  it(
    'install: CRD Established, RBAC, two copies ready as non-root on a read-only root filesystem, one holds the Lease',
    guard(async () => {
      const r = await kreg(['operator', 'install', '--namespace', SYSTEM, '--image', 'kreg/operator:dev']);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /operator installed: revision \d+, 2 copies ready, leader kreg-operator-/);
      const crd = await kubectlJson(['get', 'crd', 'registrationservices.kreg.dev']);
      assert.ok(crd.status.conditions.some((c: any) => c.type === 'Established' && c.status === 'True'));
      const pods = (await kubectlJson(['-n', SYSTEM, 'get', 'pods', '-l', 'app.kubernetes.io/name=kreg-operator'])).items.filter((p: any) => !p.metadata.deletionTimestamp);
      assert.equal(pods.length, 2);
      for (const pod of pods) {
        assert.equal(pod.spec.securityContext.runAsNonRoot, true);
        assert.equal(pod.spec.containers[0].securityContext.readOnlyRootFilesystem, true);
        assert.equal(pod.spec.serviceAccountName, 'kreg-operator');
      }
      const lease = await kubectlJson(['-n', SYSTEM, 'get', 'lease', 'kreg-operator']);
      assert.ok(pods.some((p: any) => lease.spec.holderIdentity.startsWith(`${p.metadata.name}_`)), lease.spec.holderIdentity);
      // The ServiceAccount may do what the controller needs and no more.
      // `kubectl auth can-i` prints yes and exits 0, or prints no and exits 1.
      const can = async (verb: string, what: string, ns = TEAM_A) =>
        kubectl(['auth', 'can-i', verb, what, '-n', ns, `--as=system:serviceaccount:${SYSTEM}:kreg-operator`]).then(
          (out) => out.trim(),
          (e: Error) => (/failed \(exit 1\)/.test(e.message) ? 'no' : e.message),
        );
      assert.equal(await can('patch', 'deployments.apps'), 'yes');
      assert.equal(await can('update', 'registrationservices.kreg.dev/status'), 'yes');
      assert.equal(await can('create', 'clusterroles.rbac.authorization.k8s.io'), 'no');
      assert.equal(await can('delete', 'customresourcedefinitions.apiextensions.k8s.io'), 'no');
      assert.equal(await can('create', 'pods'), 'no');
      assert.equal(await can('update', 'leases.coordination.k8s.io'), 'no', 'leases only in its own namespace');
      assert.equal(await can('update', 'leases.coordination.k8s.io', SYSTEM), 'yes');
      // Installing again changes nothing.
      const again = await kreg(['operator', 'install', '--namespace', SYSTEM, '--image', 'kreg/operator:dev']);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /no changes|operator installed/);
    }),
  );

  it(
    'three resources in two namespaces: each Ready with its own status; the service answers',
    guard(async () => {
      for (const ns of [TEAM_A, TEAM_B]) await kubectl(['create', 'namespace', ns]);
      await kubectl(['apply', '-f', '-'], { input: resource('accounts', TEAM_A, embedded) });
      await kubectl(['apply', '-f', '-'], { input: resource('billing', TEAM_A, { ...embedded, settings: { LOG_LEVEL: 'warn' } }) });
      await kubectl(['apply', '-f', '-'], { input: resource('accounts', TEAM_B, embedded) });
      for (const [ns, name] of [[TEAM_A, 'accounts'], [TEAM_A, 'billing'], [TEAM_B, 'accounts']] as const) await waitReady(ns, name);
      const a = await getCr(TEAM_A, 'accounts');
      const b = await getCr(TEAM_B, 'accounts');
      assert.equal(a.status.url, `http://accounts.${TEAM_A}.svc.cluster.local`);
      assert.equal(b.status.url, `http://accounts.${TEAM_B}.svc.cluster.local`);
      assert.equal((await kubectlJson(['-n', TEAM_A, 'get', 'configmap', 'billing-config'])).data.LOG_LEVEL, 'warn');
      assert.notEqual((await kubectlJson(['-n', TEAM_A, 'get', 'configmap', 'accounts-config'])).data.LOG_LEVEL, 'warn');
      const table = await kubectl(['get', 'registrationservices', '-A']);
      assert.equal(table.split('\n').filter((l) => /\sTrue\s+Ready\s/.test(l)).length, 3, table);

      const pf = await portForward(TEAM_B, 'svc/accounts', 80);
      try {
        const body = { username: 'in-cluster-bob', password: 'violet-otter-meadow-42' };
        assert.equal((await postJson(`${pf.url}/register`, body)).status, 201);
        assert.equal((await postJson(`${pf.url}/login`, body)).status, 200);
      } finally {
        pf.stop();
      }
    }),
  );

  it(
    'an image change rolls the pods with zero failed requests of 600 from an in-cluster client',
    guard(async () => {
      const tagged = await run('bash', ['test/cluster/tag-image.sh', 'kreg/registration:dev', 'kreg/registration:e2e-rollout']);
      assert.equal(tagged.code, 0, tagged.stdout + tagged.stderr);
      const client = runNodePod(TEAM_A, 'kreg/registration:dev', 'operator-rollout-client', steadyLoadScript(`http://accounts.${TEAM_A}.svc.cluster.local/users/00000000-0000-4000-8000-000000000000`, 404));
      await new Promise((r) => setTimeout(r, 5000));
      const t0 = performance.now();
      await kubectl(['apply', '-f', '-'], { input: resource('accounts', TEAM_A, { ...embedded, image: 'kreg/registration:e2e-rollout' }) });
      await waitFor('the new image Ready', async () => {
        const cr = await getCr(TEAM_A, 'accounts');
        const dep = await kubectlJson(['-n', TEAM_A, 'get', 'deployment', 'accounts']);
        return cr.status.observedGeneration === cr.metadata.generation && condition(cr, 'Ready')?.status === 'True' && dep.spec.template.spec.containers[0].image === 'kreg/registration:e2e-rollout' && dep.status.updatedReplicas === 1 && (dep.status.replicas ?? 0) === 1;
      }, 55_000, 250);
      const rolled = (performance.now() - t0) / 1000;
      const counts = JSON.parse((await client).trim().split('\n').pop()!) as { ok: number; failed: number; errors: Record<string, number> };
      console.log(`# operator install: image change rolled and Ready in ${rolled.toFixed(1)} s; ${counts.ok} ok, ${counts.failed} failed ${JSON.stringify(counts.errors)}`);
      assert.ok(counts.ok > 100, JSON.stringify(counts));
      assert.equal(counts.failed, 0, `failed requests during the roll: ${JSON.stringify(counts)}`);
    }),
  );

  it(
    'invalid resources are refused at admission with the field path; nothing is applied',
    guard(async () => {
      const refused = async (body: string, pattern: RegExp) => {
        const err = await kubectl(['apply', '-f', '-'], { input: body }).then(
          () => undefined,
          (e: Error) => e.message,
        );
        assert.ok(err, `accepted: ${body}`);
        assert.match(err, pattern);
      };
      await refused(resource('broken', TEAM_A, { image: 'kreg/registration:dev', database: { mode: 'remote' } }), /spec\.database\.authTokenSecretRef: Invalid value: remote mode needs the Secret/);
      await refused(resource('broken', TEAM_A, { ...embedded, replicas: 3 }), /spec\.replicas: Invalid value: the embedded database .* runs exactly one replica/);
      const remote = { image: 'kreg/registration:dev', database: { mode: 'remote', url: 'libsql://db.example:8080', authTokenSecretRef: { name: 'db', key: 'token' } } };
      await refused(resource('accounts', TEAM_A, remote), /spec\.database: Invalid value: database\.mode cannot change in place/);
      const names = (await kubectlJson(['-n', TEAM_A, 'get', 'registrationservices,deployments'])).items.map((o: any) => `${o.kind}/${o.metadata.name}`);
      assert.ok(!names.some((n: string) => n.endsWith('/broken')), names.join(' '));
      assert.equal((await getCr(TEAM_A, 'accounts')).spec.database.mode, 'embedded');
    }),
  );

  it(
    'an env var added and a value changed with kubectl are both undone, and the Event names kubectl',
    guard(async () => {
      await kubectl(['-n', TEAM_A, 'set', 'env', 'deployment/accounts', 'INJECTED=1', 'LOG_LEVEL=debug']);
      await waitFor(
        'the Deployment to be put back',
        async () => {
          const dep = await kubectlJson(['-n', TEAM_A, 'get', 'deployment', 'accounts']);
          const env = dep.spec.template.spec.containers[0].env ?? [];
          return !env.some((e: any) => e.name === 'INJECTED' || (e.name === 'LOG_LEVEL' && e.value === 'debug')) ? dep : undefined;
        },
        30_000,
        250,
      );
      const events = (await kubectlJson(['-n', TEAM_A, 'get', 'events', '--field-selector', 'reason=DriftCorrected'])).items.map((e: any) => e.message as string);
      assert.ok(events.some((m: string) => /^Deployment\/accounts: .*kubectl/.test(m)), events.join('\n'));
      await waitReady(TEAM_A, 'accounts');
    }),
  );

  it(
    'suspend: drift stays and status says Suspended; resume corrects it; requestedAt is handled',
    guard(async () => {
      await kubectl(['-n', TEAM_B, 'patch', 'registrationservice', 'accounts', '--type=merge', '-p', '{"spec":{"suspend":true}}']);
      await waitFor('Suspended in status', async () => {
        const cr = await getCr(TEAM_B, 'accounts');
        return cr.status.observedGeneration === cr.metadata.generation && /Suspended/.test(JSON.stringify(cr.status.conditions)) ? cr : undefined;
      }, 30_000, 250);
      await kubectl(['-n', TEAM_B, 'delete', 'configmap', 'accounts-config']);
      await new Promise((r) => setTimeout(r, 4000));
      assert.equal((await kubectlJson(['-n', TEAM_B, 'get', 'configmaps'])).items.some((c: any) => c.metadata.name === 'accounts-config'), false, 'a suspended resource was corrected');
      await kubectl(['-n', TEAM_B, 'patch', 'registrationservice', 'accounts', '--type=merge', '-p', '{"spec":{"suspend":false}}']);
      await waitFor('the ConfigMap to come back', async () => (await kubectlJson(['-n', TEAM_B, 'get', 'configmaps'])).items.some((c: any) => c.metadata.name === 'accounts-config'), 30_000, 250);
      const stamp = new Date().toISOString();
      await kubectl(['-n', TEAM_B, 'annotate', '--overwrite', 'registrationservice', 'accounts', `reconcile.kreg.dev/requestedAt=${stamp}`]);
      await waitFor('lastHandledReconcileAt', async () => (await getCr(TEAM_B, 'accounts')).status.lastHandledReconcileAt === stamp, 30_000, 250);
      await waitReady(TEAM_B, 'accounts');
    }),
  );

  it(
    'a rollout of the operator hands over the Lease; the new leader reconciles a change',
    guard(async () => {
      const before = (await kubectlJson(['-n', SYSTEM, 'get', 'lease', 'kreg-operator'])).spec.holderIdentity;
      await kubectl(['-n', SYSTEM, 'rollout', 'restart', 'deployment/kreg-operator']);
      await kubectl(['-n', SYSTEM, 'rollout', 'status', 'deployment/kreg-operator', '--timeout=120s'], { timeoutMs: 150_000 });
      const holder = await waitFor('a new leader', async () => {
        const h = (await kubectlJson(['-n', SYSTEM, 'get', 'lease', 'kreg-operator'])).spec.holderIdentity;
        return h && h !== before ? h : undefined;
      }, 60_000, 250);
      await kubectl(['apply', '-f', '-'], { input: resource('billing', TEAM_A, { ...embedded, settings: { LOG_LEVEL: 'error' } }) });
      await waitFor('the change', async () => (await kubectlJson(['-n', TEAM_A, 'get', 'configmap', 'billing-config'])).data.LOG_LEVEL === 'error', 60_000, 250);
      const logs = await kubectl(['-n', SYSTEM, 'logs', '-l', 'app.kubernetes.io/name=kreg-operator', '--tail=-1']);
      assert.match(logs, /"leader election: leading"/);
      console.log(`# operator install: leader after the rollout ${holder}`);
    }),
  );

  it(
    'the kube-apiserver is killed mid-reconcile and restarted: the operator recovers without restarting and reconciles the next change',
    guard(async () => {
      const restarts = async () =>
        (await kubectlJson(['-n', SYSTEM, 'get', 'pods', '-l', 'app.kubernetes.io/name=kreg-operator'])).items.reduce((n: number, p: any) => n + (p.status.containerStatuses?.[0]?.restartCount ?? 0), 0);
      const restartsBefore = await restarts();
      await kubectl(['apply', '-f', '-'], { input: resource('billing', TEAM_A, { ...embedded, settings: { LOG_LEVEL: 'warn' } }) });
      const restarted = await run('bash', ['test/cluster/restart-apiserver.sh', '--down-seconds', '3']);
      assert.equal(restarted.code, 0, restarted.stdout + restarted.stderr);
      console.log(`# operator install: ${restarted.stdout.trim()}`);
      await withOperatorEvidence(() =>
        waitFor('the change made before the restart', async () => (await kubectlJson(['-n', TEAM_A, 'get', 'configmap', 'billing-config'])).data.LOG_LEVEL === 'warn', 90_000, 500),
      );
      // A change made after the restart reaches the operator through its re-established watches
      // (the periodic resync is 10 minutes away).
      const t0 = performance.now();
      await kubectl(['apply', '-f', '-'], { input: resource('billing', TEAM_A, { ...embedded, settings: { LOG_LEVEL: 'info' } }) });
      await withOperatorEvidence(() =>
        waitFor('the change made after the restart', async () => (await kubectlJson(['-n', TEAM_A, 'get', 'configmap', 'billing-config'])).data.LOG_LEVEL === 'info', 60_000, 250),
      );
      console.log(`# operator install: a change after the API server restart reconciled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      await waitReady(TEAM_A, 'billing');
      assert.equal(await restarts(), restartsBefore, 'an operator container restarted');
    }),
  );

  it(
    'uninstall removes the operator and keeps the CRD and the resources',
    guard(async () => {
      // The resources must not depend on the operator to be deleted later: delete one now, while it runs.
      await kubectl(['-n', TEAM_B, 'delete', 'registrationservice', 'accounts', '--timeout=120s'], { timeoutMs: 150_000 });
      const r = await kreg(['operator', 'uninstall', '--namespace', SYSTEM]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /kept CustomResourceDefinition\/registrationservices\.kreg\.dev/);
      await kubectlJson(['get', 'crd', 'registrationservices.kreg.dev']);
      assert.equal((await kubectlJson(['get', 'clusterroles', '-l', 'app.kubernetes.io/name=kreg-operator'])).items.length, 0);
      assert.equal((await kubectlJson(['-n', TEAM_A, 'get', 'registrationservices'])).items.length, 2);
      // Put it back so the after hook can delete the remaining resources through their finalizers.
      const again = await kreg(['operator', 'install', '--namespace', SYSTEM, '--image', 'kreg/operator:dev']);
      assert.equal(again.code, 0, again.stderr);
    }),
  );
});
