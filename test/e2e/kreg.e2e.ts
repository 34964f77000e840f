/**
 * The kreg CLI and engine against the real local cluster, in the order a user meets them: first
 * deploy, no-op redeploy, diff, config change, prune, failures (bad image, crash loop, invalid
 * object, field conflict), rollback, verify (with the pod deleted mid-way), kubectl's view of the
 * ApplySet, destroy. Runs in the dev environment's namespace (kreg-dev); cleans it up before and after.
 * Needs the image `kreg/registration:dev` in the cluster (`npm run test:e2e` loads it).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { run, type BuildInfo } from '../../infra/cli.js';
import { targetFor } from '../../infra/cli/commands.js';
import { desiredObjects } from '../../infra/cli/synth.js';
import { KubeClient } from '../../infra/engine/client.js';
import { EXIT } from '../../infra/cli/render.js';
import { deploy, type DeployReport } from '../../infra/engine/deploy.js';
import { applySetId } from '../../infra/engine/inventory.js';
import type { KubeObject } from '../../infra/engine/types.js';
import { deleteNamespace, diagnostics, failureTracker, KUBECONFIG, kubectl, kubectlJson, ROOT } from './kube.js';

const ENV = 'dev';
const target = targetFor(ENV);
const NS = target.set.namespace;
const environ = { ...process.env, KUBECONFIG, NO_COLOR: '1' };

/** Runs the CLI in-process, as the bin would with `build` (running from source: none); returns its exit code and what it wrote. */
async function kregAs(
  options: { environ?: NodeJS.ProcessEnv; build?: BuildInfo },
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void) => new Writable({ write: (chunk, _enc, cb) => (append(String(chunk)), cb()) });
  const t0 = performance.now();
  const code = await run(args, { stdout: sink((s) => (stdout += s)), stderr: sink((s) => (stderr += s)) }, options.environ ?? environ, options.build);
  return { code, stdout, stderr, ms: Math.round(performance.now() - t0) };
}

const kreg = (...args: string[]) => kregAs({}, ...args);

async function kregJson<T = DeployReport>(...args: string[]): Promise<{ code: number; report: T; stderr: string; ms: number }> {
  const r = await kreg(...args, '--output', 'json');
  try {
    return { code: r.code, report: JSON.parse(r.stdout) as T, stderr: r.stderr, ms: r.ms };
  } catch {
    throw new Error(`kreg ${args.join(' ')} printed no JSON report (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
}

/** Deploys a modified object list through the engine (what `kreg deploy` does, with other constructs). */
async function deployObjects(objects: KubeObject[], timeoutMs = 120_000): Promise<DeployReport> {
  const client = await KubeClient.create({ kubeconfig: KUBECONFIG });
  try {
    return await deploy(client, objects, target, { timeoutMs, wait: true, prune: true, forceConflicts: false, description: 'test', pollMs: 500 });
  } finally {
    client.close();
  }
}

function withDeployment(objects: KubeObject[], change: (d: KubeObject) => void): KubeObject[] {
  const copy = structuredClone(objects);
  change(copy.find((o) => o.kind === 'Deployment')!);
  return copy;
}

const configValue = async (key: string) => (await kubectlJson(['-n', NS, 'get', 'configmap', 'registration-config'])).data[key] as string;

const { guard, failed } = failureTracker();

async function clean(): Promise<void> {
  await kreg('destroy', '--env', ENV, '--include-kept', '--timeout', '120s');
  await deleteNamespace(NS);
}

describe('kreg on a real cluster', { timeout: 20 * 60_000 }, () => {
  before(clean);
  after(async () => {
    if (failed()) console.log(await diagnostics(NS));
    await clean();
  });

  test(
    'first deploy: validates, applies in order, waits until every object is ready, records revision 1',
    guard(async () => {
      const { code, report, ms } = await kregJson('deploy', '--env', ENV, '--timeout', '180s');
      assert.equal(code, EXIT.ok, JSON.stringify(report.failure));
      assert.equal(report.revision, 1);
      assert.ok(report.objects.length >= 7);
      for (const o of report.objects) {
        assert.equal(o.change, 'create', `${o.ref.kind} created`);
        assert.equal(o.health?.state, 'ready', `${o.ref.kind}/${o.ref.name}: ${o.health?.message}`);
      }
      const dep = await kubectlJson(['-n', NS, 'get', 'deployment', 'registration', '--show-managed-fields']);
      assert.equal(dep.status.readyReplicas, 1);
      assert.ok(dep.metadata.managedFields.some((f: any) => f.manager === 'kreg' && f.operation === 'Apply'), 'applied by field manager kreg');
      console.log(`# first deploy: ${ms} ms, ${report.apiCalls} API calls; timings ${JSON.stringify(report.timingsMs)}`);
    }),
  );

  test(
    'an immediate redeploy is a no-op: nothing applied, no new revision',
    guard(async () => {
      const { code, report, ms } = await kregJson('deploy', '--env', ENV);
      assert.equal(code, EXIT.ok);
      assert.equal(report.changed, false);
      assert.equal(report.revision, 1);
      assert.ok(report.objects.every((o) => o.change === 'unchanged' && o.health?.state === 'ready'));
      console.log(`# no-op redeploy: ${ms} ms in-process, ${report.apiCalls} API calls`);
      const diff = await kreg('diff', '--env', ENV);
      assert.equal(diff.code, EXIT.ok, diff.stdout + diff.stderr);
      assert.match(diff.stdout, /0 to create, 0 to update, 0 to prune/);
    }),
  );

  test(
    "a bundle's cached synth deploys the same objects: a no-op again, and another image is not taken from the cache",
    guard(async () => {
      const cacheDir = mkdtempSync(join(tmpdir(), 'kreg-e2e-cache-'));
      try {
        // What bin/kreg.mjs passes when it runs the bundle: its build id.
        const cached = (...args: string[]) => kregAs({ environ: { ...environ, KREG_CACHE_DIR: cacheDir }, build: { id: `e2e-${process.pid}` } }, ...args);
        const first = await cached('deploy', '--env', ENV);
        assert.equal(first.code, EXIT.ok, first.stdout + first.stderr);
        assert.match(first.stdout, /synth: \d+ objects for dev in-process \(\d+ ms\)/, 'the first run synthesizes');
        const second = await cached('deploy', '--env', ENV);
        assert.equal(second.code, EXIT.ok, second.stdout + second.stderr);
        assert.match(second.stdout, /in-process \(cached, \d+ ms\)/);
        assert.match(second.stdout, /no changes: dev is at revision 1 and ready/);
        const other = await cached('diff', '--env', ENV, '--image', 'kreg/registration:next');
        assert.equal(other.code, EXIT.changes, other.stdout + other.stderr);
        assert.match(other.stdout, /^\s+\+\s+image: kreg\/registration:next$/m);
      } finally {
        rmSync(cacheDir, { recursive: true, force: true });
      }
    }),
  );

  test(
    'diff shows a changed image as a readable per-object diff and exits 1',
    guard(async () => {
      const d = await kreg('diff', '--env', ENV, '--image', 'kreg/registration:next');
      assert.equal(d.code, EXIT.changes, d.stderr);
      assert.match(d.stdout, /^~ Deployment\/kreg-dev\/registration \(update\)$/m);
      assert.match(d.stdout, /^\s+-\s+image: kreg\/registration:dev$/m);
      assert.match(d.stdout, /^\s+\+\s+image: kreg\/registration:next$/m);
      assert.doesNotMatch(d.stdout, /managedFields|resourceVersion|status:/);
    }),
  );

  test(
    'a config change rolls the pods and is recorded as revision 2',
    guard(async () => {
      const before = (await kubectlJson(['-n', NS, 'get', 'deployment', 'registration'])).metadata.generation;
      const report = await deployObjects(desiredObjects({ env: ENV, settings: { LOG_LEVEL: 'info' } }));
      assert.equal(report.ok, true, JSON.stringify(report.failure));
      assert.equal(report.revision, 2);
      const changed = report.objects.filter((o) => o.change === 'update').map((o) => o.ref.kind).sort();
      assert.deepEqual(changed, ['ConfigMap', 'Deployment']);
      const dep = await kubectlJson(['-n', NS, 'get', 'deployment', 'registration']);
      assert.ok(dep.metadata.generation > before);
      assert.equal(dep.status.updatedReplicas, 1);
      assert.equal(await configValue('LOG_LEVEL'), 'info');
    }),
  );

  test(
    'removing a construct prunes its object; the data claim marked prune=never is kept',
    guard(async () => {
      const objects = desiredObjects({ env: ENV, settings: { LOG_LEVEL: 'info' } }).filter((o) => o.kind !== 'NetworkPolicy' && o.kind !== 'PersistentVolumeClaim');
      const report = await deployObjects(objects);
      assert.equal(report.ok, true, JSON.stringify(report.failure));
      assert.deepEqual(report.pruned.map((r) => r.kind), ['NetworkPolicy']);
      assert.deepEqual(report.kept.map((k) => [k.ref.kind, k.why]), [['PersistentVolumeClaim', 'annotated kreg.dev/prune: never']]);
      await assert.rejects(kubectl(['-n', NS, 'get', 'networkpolicy', 'registration-ingress']), /NotFound/);
      await kubectl(['-n', NS, 'get', 'pvc', 'registration-data']);
      // Back to the full set (revision 4), so the following tests start from the real app.
      const back = await deployObjects(desiredObjects({ env: ENV, settings: { LOG_LEVEL: 'info' } }));
      assert.equal(back.ok, true, JSON.stringify(back.failure));
    }),
  );

  test(
    'a bad image tag fails within 30 s with the pull error and events; the old pod keeps serving',
    guard(async () => {
      const t0 = performance.now();
      const report = await deployObjects(withDeployment(desiredObjects({ env: ENV }), (d) => (d.spec.template.spec.containers[0].image = 'kreg/does-not-exist:1')), 180_000);
      const seconds = (performance.now() - t0) / 1000;
      assert.equal(report.ok, false);
      assert.equal(report.failure?.kind, 'failed');
      assert.match(report.failure!.message, /ErrImagePull|ImagePullBackOff/);
      assert.equal(report.failure!.ref?.kind, 'Deployment');
      const events = report.failure!.evidence!.events.join('\n');
      assert.match(events, /kreg\/does-not-exist:1/, 'the events name the image');
      assert.ok(seconds < 30, `reported after ${seconds.toFixed(1)} s`);
      console.log(`# bad image reported after ${seconds.toFixed(1)} s: ${report.failure!.message}`);
      const dep = await kubectlJson(['-n', NS, 'get', 'deployment', 'registration']);
      assert.equal(dep.status.availableReplicas, 1, 'maxUnavailable 0: the old pod still serves');
    }),
  );

  test(
    'a crashing container is reported as CrashLoopBackOff with the log of the container that died',
    guard(async () => {
      const t0 = performance.now();
      const report = await deployObjects(
        withDeployment(desiredObjects({ env: ENV }), (d) => {
          d.spec.template.spec.containers[0].command = ['node', '-e', "console.error('kreg-test: config is broken, exiting'); process.exit(3)"];
        }),
        180_000,
      );
      const seconds = (performance.now() - t0) / 1000;
      assert.equal(report.failure?.kind, 'failed', JSON.stringify(report.failure));
      assert.match(report.failure!.message, /CrashLoopBackOff/);
      const logs = report.failure!.evidence!.logs;
      assert.ok(logs.some((l) => l.previous && l.lines.some((x) => x.includes('kreg-test: config is broken'))), JSON.stringify(logs));
      console.log(`# crash loop reported after ${seconds.toFixed(1)} s`);
      // A good deploy recovers from both failures.
      const good = await deployObjects(desiredObjects({ env: ENV }));
      assert.equal(good.ok, true, JSON.stringify(good.failure));
    }),
  );

  test(
    'an invalid object fails validation and nothing at all is applied',
    guard(async () => {
      const rvBefore = (await kubectlJson(['-n', NS, 'get', 'configmap', 'registration-config'])).metadata.resourceVersion;
      const objects = withDeployment(desiredObjects({ env: ENV, settings: { LOG_LEVEL: 'warn' } }), (d) => (d.spec.template.spec.containers[0].notAField = true));
      const report = await deployObjects(objects);
      assert.equal(report.failure?.kind, 'invalid');
      assert.match(report.failure!.message, /rejected by the server-side dry run; nothing was applied/);
      assert.match(report.failure!.details!.join('\n'), /Deployment\/kreg-dev\/registration: .*notAField/);
      const cm = await kubectlJson(['-n', NS, 'get', 'configmap', 'registration-config']);
      assert.equal(cm.metadata.resourceVersion, rvBefore, 'the valid ConfigMap change was not applied either');
    }),
  );

  test(
    'a field owned by another manager is a clear conflict; --force-conflicts takes it over',
    guard(async () => {
      const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'registration-config', namespace: NS }, data: { LOG_LEVEL: 'error' } };
      await kubectl(['apply', '--server-side', '--field-manager=someone-else', '--force-conflicts', '-f', '-'], { input: JSON.stringify(cm) });
      const conflict = await kregJson('deploy', '--env', ENV);
      assert.equal(conflict.code, EXIT.conflict, JSON.stringify(conflict.report));
      const details = (conflict.report as any).failure.details.join('\n');
      assert.match(details, /ConfigMap\/kreg-dev\/registration-config: \.data\.LOG_LEVEL is owned by "someone-else"/);
      assert.equal(await configValue('LOG_LEVEL'), 'error', 'nothing applied');
      const diffed = await kreg('diff', '--env', ENV);
      assert.equal(diffed.code, EXIT.conflict, `diff agrees with deploy on a conflict: ${diffed.stderr}`);
      assert.match(diffed.stderr, /re-run with --force-conflicts/);
      const forced = await kregJson('deploy', '--env', ENV, '--force-conflicts');
      assert.equal(forced.code, EXIT.ok, JSON.stringify(forced.report.failure));
      assert.equal(await configValue('LOG_LEVEL'), 'debug', 'the environment default (dev: debug) is back');
    }),
  );

  test(
    'rollback restores the previous revision (with prune and wait)',
    guard(async () => {
      const history = JSON.parse((await kreg('status', '--env', ENV, '--output', 'json')).stdout) as { revision: number; history: Array<{ number: number; status: string; description: string }> };
      const debugRevision = history.history.find((h) => h.number === 2)!;
      assert.ok(debugRevision, JSON.stringify(history.history));
      const r = await kregJson<DeployReport & { rolledBackTo: number }>('rollback', '--env', ENV, '--to', '2');
      assert.equal(r.code, EXIT.ok, JSON.stringify(r.report.failure));
      assert.equal(r.report.rolledBackTo, 2);
      assert.equal(await configValue('LOG_LEVEL'), 'info');
      const status = await kreg('status', '--env', ENV);
      assert.equal(status.code, EXIT.ok, status.stdout);
      assert.match(status.stdout, /all ready/);
      assert.match(status.stdout, /rollback to revision 2/);
    }),
  );

  test(
    'verify passes, and survives the serving pod being deleted mid-verify',
    guard(async () => {
      const plain = await kregJson<{ ok: boolean; steps: Array<{ name: string; ok: boolean }> }>('verify', '--env', ENV);
      assert.equal(plain.code, EXIT.ok, JSON.stringify(plain.report));
      assert.deepEqual(plain.report.steps.map((s) => s.name), ['readyz', 'register', 'duplicate', 'login', 'wrong-password']);
      const pod = (await kubectlJson(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/name=registration'])).items[0].metadata.name;
      // The pod is killed one second after the delete, while verify runs: verify's connections must
      // leave it and wait for the replacement the Deployment starts.
      const deleting = kubectl(['-n', NS, 'delete', 'pod', pod, '--wait=false', '--grace-period=1']);
      await new Promise((r) => setTimeout(r, 400));
      const verifying = kregJson<{ ok: boolean; tunnel: { pods: string[]; rerouted: number } }>('verify', '--env', ENV, '--timeout', '90s');
      await deleting;
      const v = await verifying;
      assert.equal(v.code, EXIT.ok, JSON.stringify(v.report));
      assert.ok(v.report.tunnel.pods.some((p) => p !== pod), `verify reached the replacement pod: ${JSON.stringify(v.report.tunnel)}`);
      console.log(`# verify with the pod deleted: ${JSON.stringify(v.report.tunnel)}`);
    }),
  );

  test(
    'kubectl sees the ApplySet: the parent with its id and kinds, members labelled part-of it',
    guard(async () => {
      const id = applySetId(target.set);
      const parents = await kubectlJson(['-n', NS, 'get', 'secrets', '-l', `applyset.kubernetes.io/id=${id}`]);
      assert.equal(parents.items.length, 1);
      assert.equal(parents.items[0].metadata.name, target.set.name);
      const kinds = parents.items[0].metadata.annotations['applyset.kubernetes.io/contains-group-kinds'];
      assert.equal(kinds, 'ConfigMap,Deployment.apps,Namespace,NetworkPolicy.networking.k8s.io,PersistentVolumeClaim,Service,ServiceAccount');
      const members = await kubectl(['-n', NS, 'get', 'deployment,service,configmap', '-l', `applyset.kubernetes.io/part-of=${id}`, '-o', 'name']);
      assert.deepEqual(members.trim().split('\n').sort(), ['configmap/registration-config', 'deployment.apps/registration', 'service/registration']);
      // kubectl's own ApplySet code reads our parent: it accepts the id (computed the same way) and
      // then refuses to take over a set another tool manages.
      const file = join(tmpdir(), 'kreg-applyset-probe.json');
      writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'probe', namespace: NS }, data: { a: 'b' } }));
      const out = await new Promise<string>((resolve) => {
        const child = spawn(process.env.KUBECTL ?? join(ROOT, '.cluster/bin/kubectl'), ['--kubeconfig', KUBECONFIG, 'apply', '--server-side', '--dry-run=server', '--prune', `--applyset=${target.set.name}`, '-n', NS, '-f', file], {
          env: { ...process.env, KUBECTL_APPLYSET: 'true' },
        });
        let text = '';
        child.stdout.on('data', (d) => (text += d));
        child.stderr.on('data', (d) => (text += d));
        child.on('close', () => resolve(text));
      });
      assert.match(out, /managed by tooling "kreg"/, `kubectl reads the parent's tooling: ${out}`);
      assert.doesNotMatch(out, /invalid|does not have required label/i, out);
    }),
  );

  test(
    'destroy deletes workloads first and keeps the data claim (and its namespace) unless asked',
    guard(async () => {
      const d = await kregJson<{ deleted: Array<{ kind: string }>; kept: Array<{ ref: { kind: string } }> }>('destroy', '--env', ENV);
      assert.equal(d.code, EXIT.ok);
      const order = d.report.deleted.map((r) => r.kind);
      assert.ok(order.indexOf('Deployment') < order.indexOf('ConfigMap'), order.join(','));
      assert.deepEqual(d.report.kept.map((k) => k.ref.kind).sort(), ['Namespace', 'PersistentVolumeClaim']);
      await kubectl(['-n', NS, 'get', 'pvc', 'registration-data']);
      await assert.rejects(kubectl(['-n', NS, 'get', 'deployment', 'registration']), /NotFound/);
      const status = await kreg('status', '--env', ENV);
      assert.equal(status.code, EXIT.usage);
      assert.match(status.stdout, /nothing deployed/);
    }),
  );
});
