/**
 * `kreg deploy -f` with manifests that are not this app's — a ConfigMap, a Deployment and a Service
 * written here — get the same guarantees as the registration service: phased apply and readiness,
 * a change rolled out, an object removed from the files pruned, a bad image failing fast with its
 * evidence, rollback, status and destroy by the set's name; an object made by someone else is
 * refused unless adopted.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deleteNamespace, diagnostics, failureTracker, KUBECONFIG, kreg, kubectl, kubectlJson, ROOT, run, waitForScreen } from './kube.js';

const NS = 'kreg-manifests-e2e';
const { guard, failed } = failureTracker();

const configMap = (greeting: string) => `apiVersion: v1
kind: ConfigMap
metadata: { name: web-config }
data: { GREETING: ${JSON.stringify(greeting)} }
`;
// A small HTTP server from an image that is already in the cluster (the service image has node).
const deployment = (image: string) => `apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 1
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      securityContext: { runAsNonRoot: true, runAsUser: 10001 }
      containers:
      - name: web
        image: ${image}
        imagePullPolicy: IfNotPresent
        command: [node, -e, "require('http').createServer((q, s) => s.end(process.env.GREETING)).listen(8080)"]
        envFrom: [{ configMapRef: { name: web-config } }]
        ports: [{ containerPort: 8080 }]
        readinessProbe: { httpGet: { path: /, port: 8080 }, periodSeconds: 1 }
`;
const service = `apiVersion: v1
kind: Service
metadata: { name: web }
spec: { selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }
`;

describe('kreg deploy -f: any manifests through the engine', { timeout: 8 * 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kreg-manifests-'));
  const set = ['--name', 'web', '-n', NS];
  before(async () => {
    await deleteNamespace(NS);
    await kubectl(['create', 'namespace', NS]);
  });
  after(async () => {
    if (failed()) console.log(await diagnostics(NS));
    await deleteNamespace(NS);
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'first deploy: every object ready, revision 1; the same files again change nothing',
    guard(async () => {
      writeFileSync(join(dir, 'configmap.yaml'), configMap('hello'));
      writeFileSync(join(dir, 'deployment.yaml'), deployment('kreg/registration:dev'));
      writeFileSync(join(dir, 'service.yaml'), service);
      const first = await kreg(['deploy', '-f', dir, ...set]);
      assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
      assert.match(first.stdout, /read: 3 objects from /);
      assert.match(first.stdout, /deployed set web in namespace kreg-manifests-e2e: revision 1/);
      const again = await kreg(['deploy', '-f', dir, ...set]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /no changes: set web in namespace kreg-manifests-e2e is at revision 1 and ready/);
      assert.equal((await kreg(['diff', '-f', dir, ...set])).code, 0);
      const dep = await kubectlJson(['-n', NS, 'get', 'deployment', 'web']);
      assert.equal(dep.metadata.labels['applyset.kubernetes.io/part-of'] !== undefined, true, 'members carry the ApplySet label');
    }),
  );

  it(
    'a change is shown by diff (exit 1), rolled out by deploy, and a file removed is pruned',
    guard(async () => {
      writeFileSync(join(dir, 'configmap.yaml'), configMap('changed'));
      const d = await kreg(['diff', '-f', dir, ...set]);
      assert.equal(d.code, 1, d.stderr);
      assert.match(d.stdout, /GREETING/);
      rmSync(join(dir, 'service.yaml'));
      const r = await kreg(['deploy', '-f', dir, ...set]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /revision 2, pruned 1/);
      assert.equal((await kubectlJson(['-n', NS, 'get', 'configmap', 'web-config'])).data.GREETING, 'changed');
      assert.equal((await kubectlJson(['-n', NS, 'get', 'services'])).items.length, 0, 'the Service was pruned');
    }),
  );

  it(
    'a bad image fails fast with the pull error (exit 5); rollback by name restores the last good revision',
    guard(async () => {
      writeFileSync(join(dir, 'deployment.yaml'), deployment('kreg/does-not-exist:1'));
      const t0 = performance.now();
      const bad = await kreg(['deploy', '-f', dir, ...set, '--timeout', '2m']);
      const seconds = (performance.now() - t0) / 1000;
      assert.equal(bad.code, 5, `${bad.stdout}\n${bad.stderr}`);
      assert.match(bad.stdout + bad.stderr, /Deployment\/kreg-manifests-e2e\/web: .*(ErrImagePull|ImagePullBackOff)/);
      console.log(`# kreg deploy -f: bad image reported after ${seconds.toFixed(1)} s`);
      const back = await kreg(['rollback', ...set]);
      assert.equal(back.code, 0, `${back.stdout}\n${back.stderr}`);
      const dep = await kubectlJson(['-n', NS, 'get', 'deployment', 'web']);
      assert.equal(dep.spec.template.spec.containers[0].image, 'kreg/registration:dev');
      const status = await kreg(['status', ...set]);
      assert.equal(status.code, 0, status.stdout);
      assert.match(status.stdout, /^set web in namespace kreg-manifests-e2e: revision \d+, all ready/);
    }),
  );

  it(
    'destroy by name deletes the set and its history',
    guard(async () => {
      const r = await kreg(['destroy', ...set]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      const left = await kubectlJson(['-n', NS, 'get', 'deployments,configmaps,secrets']);
      assert.deepEqual(left.items.map((o: any) => `${o.kind}/${o.metadata.name}`).filter((n: string) => n !== 'ConfigMap/kube-root-ca.crt'), []);
      assert.equal((await kreg(['status', ...set])).code, 2, 'nothing deployed any more');
    }),
  );

  it(
    'on a terminal (tmux): one table redrawn in place, a spinner while waiting, the summary below',
    guard(async () => {
      writeFileSync(join(dir, 'deployment.yaml'), deployment('kreg/registration:dev'));
      writeFileSync(join(dir, 'service.yaml'), service);
      const session = `kreg-e2e-${process.pid}`;
      const command = `cd ${ROOT} && KUBECONFIG=${KUBECONFIG} ${process.execPath} bin/kreg.mjs deploy -f ${dir} --name web -n ${NS}; echo EXIT=$?; sleep 300`;
      await run('tmux', ['new-session', '-d', '-s', session, '-x', '140', '-y', '40', command]);
      try {
        const frames: string[] = [];
        const screen = await waitForScreen(session, 'kreg deploy to end', (s) => /EXIT=\d+/.test(s), { intervalMs: 100, frames });
        assert.match(screen, /EXIT=0/, screen);
        assert.equal(screen.match(/OBJECT +APPLY +STATE +TIME +REASON/g)?.length, 1, `one table on the screen:\n${screen}`);
        assert.match(screen, /Deployment\/kreg-manifests-e2e\/web +created +ready +\d+\.\ds +/);
        assert.match(screen, /Service\/kreg-manifests-e2e\/web +created +ready /);
        assert.match(screen, /deployed set web in namespace kreg-manifests-e2e: revision \d+/);
        assert.ok(screen.indexOf('deployed set web') > screen.indexOf('OBJECT'), 'the summary is below the table');
        assert.ok(frames.some((f) => /^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] kreg deploy web: /m.test(f)), 'a frame with the spinner was seen while it ran');
        console.log(`# kreg deploy on a terminal, the final screen:\n${screen.trimEnd().split('\n').map((l) => `#   ${l}`).join('\n')}`);
      } finally {
        await run('tmux', ['kill-session', '-t', session]);
      }
      assert.equal((await kreg(['destroy', ...set])).code, 0);
    }),
  );

  it(
    'on a terminal (tmux): rollback and destroy redraw their own table, and each title ends with what happened',
    guard(async () => {
      const own = mkdtempSync(join(tmpdir(), 'kreg-manifests-tty-'));
      try {
        writeFileSync(join(own, 'configmap.yaml'), configMap('hello'));
        writeFileSync(join(own, 'deployment.yaml'), deployment('kreg/registration:dev'));
        writeFileSync(join(own, 'service.yaml'), service);
        const first = await kreg(['deploy', '-f', own, ...set]);
        assert.equal(first.code, 0, `revision 1: all three objects\n${first.stdout}\n${first.stderr}`);
        rmSync(join(own, 'deployment.yaml'));
        const second = await kreg(['deploy', '-f', own, ...set]);
        assert.equal(second.code, 0, `revision 2: the Deployment pruned\n${second.stdout}\n${second.stderr}`);
        const session = `kreg-e2e-rb-${process.pid}`;
        const kregTty = `KUBECONFIG=${KUBECONFIG} ${process.execPath} bin/kreg.mjs`;
        const command = `cd ${ROOT} && ${kregTty} rollback --to 1 ${set.join(' ')}; echo EXIT=$?; ${kregTty} destroy ${set.join(' ')}; echo EXIT=$?; sleep 300`;
        await run('tmux', ['new-session', '-d', '-s', session, '-x', '140', '-y', '40', command]);
        try {
          const screen = await waitForScreen(session, 'kreg rollback and kreg destroy to end', (s) => (s.match(/EXIT=\d+/g) ?? []).length >= 2);
          assert.deepEqual(screen.match(/EXIT=\d+/g), ['EXIT=0', 'EXIT=0'], screen);
          assert.equal(screen.match(/OBJECT +APPLY +STATE +TIME +REASON/g)?.length, 2, `one table per command:\n${screen}`);
          assert.match(screen, /^kreg rollback web: recorded revision 3 \(deployed\) · /m);
          assert.match(screen, /Deployment\/kreg-manifests-e2e\/web +created +ready /);
          assert.match(screen, /^kreg destroy web: 3 deleted, 0 kept · /m);
          assert.match(screen, /Deployment\/kreg-manifests-e2e\/web +deleted +deleted /);
          assert.match(screen, /Service\/kreg-manifests-e2e\/web +deleted +deleted /);
          assert.ok(screen.indexOf('destroyed set web') > screen.lastIndexOf('OBJECT'), 'the summary is below the last table');
          console.log(`# kreg rollback and destroy on a terminal:\n${screen.trimEnd().split('\n').map((l) => `#   ${l}`).join('\n')}`);
        } finally {
          await run('tmux', ['kill-session', '-t', session]);
        }
      } finally {
        rmSync(own, { recursive: true, force: true });
      }
    }),
  );

  it(
    '--app: what a cdk8s-style app writes into CDK8S_OUTDIR is deployed, then destroyed by name',
    guard(async () => {
      const app = `cp ${dir}/*.yaml "$CDK8S_OUTDIR"/`;
      const r = await kreg(['deploy', '--app', app, '--name', 'from-app', '-n', NS]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /read: 3 objects from the app /);
      assert.match(r.stdout, /deployed set from-app in namespace kreg-manifests-e2e: revision 1/);
      assert.equal((await kreg(['diff', '--app', app, '--name', 'from-app', '-n', NS])).code, 0, 'no changes');
      assert.equal((await kreg(['destroy', '--name', 'from-app', '-n', NS])).code, 0);
    }),
  );

  it(
    'a ConfigMap made with kubectl is refused (exit 4), not merged, and destroy leaves it; --adopt takes it over',
    guard(async () => {
      await kubectl(['-n', NS, 'create', 'configmap', 'shared-cfg', '--from-literal=owner=team-b']);
      const file = join(dir, 'shared.yaml');
      writeFileSync(file, 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: shared-cfg }\ndata: { mine: "yes" }\n');
      const mine = ['--name', 'takes-nothing', '-n', NS];
      const refused = await kreg(['deploy', '-f', file, ...mine]);
      assert.equal(refused.code, 4, `${refused.stdout}\n${refused.stderr}`);
      // deploy says it in its live lines; diff on stderr.
      assert.match(refused.stdout, /✗ 1 object already exists and was not created by Secret\/kreg-manifests-e2e\/takes-nothing; nothing was applied/);
      assert.match(refused.stdout, /ConfigMap\/kreg-manifests-e2e\/shared-cfg: managed by "kubectl-create"/);
      assert.match(refused.stdout, /re-run with --adopt to take them over/);
      const diffed = await kreg(['diff', '-f', file, ...mine]);
      assert.equal(diffed.code, 4, `diff refuses it the same way: ${diffed.stderr}`);
      assert.match(diffed.stderr, /^kreg diff: 1 object already exists .*; nothing was applied; .*--adopt/m);
      const untouched = await kubectlJson(['-n', NS, 'get', 'configmap', 'shared-cfg']);
      assert.deepEqual(untouched.data, { owner: 'team-b' }, 'nothing merged');
      assert.equal(untouched.metadata.labels?.['applyset.kubernetes.io/part-of'], undefined);
      assert.equal((await kreg(['destroy', ...mine])).code, 0);
      assert.deepEqual((await kubectlJson(['-n', NS, 'get', 'configmap', 'shared-cfg'])).data, { owner: 'team-b' }, 'destroy deleted nothing');

      const adopted = await kreg(['deploy', '-f', file, ...mine, '--adopt']);
      assert.equal(adopted.code, 0, `${adopted.stdout}\n${adopted.stderr}`);
      assert.match(adopted.stdout, /adopting ConfigMap\/kreg-manifests-e2e\/shared-cfg, which this set did not create \(managed by "kubectl-create"\)/);
      assert.deepEqual((await kubectlJson(['-n', NS, 'get', 'configmap', 'shared-cfg'])).data, { owner: 'team-b', mine: 'yes' }, 'server-side apply merges into what it takes over');
      assert.equal((await kreg(['destroy', ...mine])).code, 0);
      assert.equal((await kubectl(['-n', NS, 'get', 'configmap', 'shared-cfg', '--ignore-not-found', '-o', 'name'])).trim(), '', 'adopted, so destroyed with the set');
    }),
  );
});

