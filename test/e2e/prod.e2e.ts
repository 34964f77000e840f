/**
 * The production topology on the real cluster: `kreg deploy --env prod` runs PostgreSQL (the single
 * instance beside the service, its password generated in the cluster), migrates once, and rolls
 * three stateless replicas on it; `kreg verify` and `kreg status` pass; a user registered through
 * one pod logs in through each of the others; a redeploy changes nothing and keeps the password.
 * Needs kreg/registration:dev and kreg/postgres:15 in the cluster (npm run test:e2e loads them).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deleteNamespace, diagnostics, failureTracker, kreg, kubectl, kubectlJson, portForward, postJson, waitFor } from './kube.js';

const NS = 'kreg-prod';
const IMAGE = 'kreg/registration:dev';
const { guard, failed } = failureTracker();

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
