import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import type { PostgresChart } from '../../charts/postgres.js';
import { buildApp, ENVIRONMENTS, parseCli, synthToDisk } from '../../infra/main.js';
import { find, synthEnv, podSpec } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

describe('infra/main.ts', () => {
  it('importing it writes nothing; buildApp is pure', () => {
    const out = mkdtempSync(join(tmpdir(), 'kreg-synth-'));
    rmSync(out, { recursive: true });
    const app = buildApp({ env: 'dev', outdir: out });
    assert.equal(app.outdir, out);
    assert.deepEqual(app.charts.map((c) => c.node.id), ['dev-namespace', 'dev-registration']);
    assert.equal(existsSync(out), false, 'buildApp must not touch the disk');
  });

  it('picks the environment from --env, then KREG_ENV, then dev', () => {
    assert.equal(parseCli([], {}).env, 'dev');
    assert.equal(parseCli([], { KREG_ENV: 'prod' }).env, 'prod');
    assert.equal(parseCli(['--env', 'dev'], { KREG_ENV: 'prod' }).env, 'dev');
    assert.deepEqual(parseCli(['-e', 'prod', '--image', 'r:1', '-o', 'x'], {}), { env: 'prod', image: 'r:1', outdir: 'x' });
    assert.throws(() => parseCli(['--nope'], {}), /Unknown option/);
  });

  it('synthToDisk writes one file per chart, namespace first, byte-identical on re-run, and clears stale files', () => {
    const out = mkdtempSync(join(tmpdir(), 'kreg-synth-'));
    try {
      writeFileSync(join(out, 'stale-other-env.k8s.yaml'), 'kind: Stale\n');
      const first = synthToDisk({ env: 'prod', outdir: out });
      assert.deepEqual(readdirSync(out).sort(), [
        '0000-prod-namespace.k8s.yaml',
        '0001-prod-postgres.k8s.yaml',
        '0002-prod-registration.k8s.yaml',
      ]);
      const bytes = first.files.map((f) => readFileSync(f, 'utf8'));
      const second = synthToDisk({ env: 'prod', outdir: out });
      assert.deepEqual(second.files.map((f) => readFileSync(f, 'utf8')), bytes, 'deterministic YAML');
      const docs = bytes.flatMap((text) => parseAllDocuments(text).map((d) => d.toJS()));
      assert.equal(docs[0].kind, 'Namespace');
      assert.deepEqual(docs, synthEnv({ env: 'prod' }), 'files = in-process objects');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('`cdk8s synth` (cdk8s.yaml, tsx) writes the same manifests', () => {
    const cdk8sYaml = readFileSync(join(ROOT, 'cdk8s.yaml'), 'utf8');
    assert.match(cdk8sYaml, /^app: .*tsx/m);
    assert.doesNotMatch(cdk8sYaml, /^app: .*ts-node/m);
    const out = mkdtempSync(join(tmpdir(), 'kreg-cdk8s-'));
    try {
      const r = spawnSync(join(ROOT, 'node_modules/.bin/cdk8s'), ['synth', '--no-check-upgrade', '--output', out], {
        cwd: ROOT,
        env: { ...process.env, KREG_ENV: 'dev' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(readdirSync(out).sort(), ['0000-dev-namespace.k8s.yaml', '0001-dev-registration.k8s.yaml']);
      const docs = readdirSync(out)
        .sort()
        .flatMap((f) => parseAllDocuments(readFileSync(join(out, f), 'utf8')).map((d) => d.toJS()));
      assert.deepEqual(docs, synthEnv({ env: 'dev' }));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('running the file synthesizes; a bad environment exits 1 with one line', () => {
    const out = mkdtempSync(join(tmpdir(), 'kreg-run-'));
    try {
      const listed = execFileSync(process.execPath, ['--import', 'tsx', 'infra/main.ts', '--env', 'dev', '--outdir', out], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      assert.equal(listed.trim().split('\n').length, 2);
      const bad = spawnSync(process.execPath, ['--import', 'tsx', 'infra/main.ts', '--env', 'qa', '--outdir', out], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      assert.equal(bad.status, 1);
      assert.equal(bad.stderr.trim(), 'kreg synth: unknown environment "qa"; expected one of: dev, prod');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('prod points the service at the in-cluster PostgreSQL it deploys, with a password no manifest holds', () => {
    const app = buildApp({ env: 'prod' });
    // Not `instanceof`: cdk8s' Chart[Symbol.hasInstance] is true for every chart, subclasses included.
    const db = app.charts.find((c) => c.node.id === 'prod-postgres') as PostgresChart | undefined;
    assert.ok(db);
    const objects = synthEnv({ env: 'prod' });
    assert.equal(db.host, 'postgres.kreg-prod.svc.cluster.local');
    assert.equal(find(objects, 'ConfigMap', 'registration-config').data!.DATABASE_URL, undefined, 'no URL with credentials in a ConfigMap');
    const env = podSpec(find(objects, 'Deployment', 'registration')).containers[0].env as Array<{ name: string; value?: string; valueFrom?: any }>;
    assert.deepEqual(env.find((e) => e.name === 'DATABASE_PASSWORD')!.valueFrom, { secretKeyRef: { name: 'postgres-credentials', key: 'password' } });
    assert.equal(env.find((e) => e.name === 'DATABASE_URL')!.value, `postgres://kreg:$(DATABASE_PASSWORD)@${db.host}:5432/kreg`, 'by reference, not a copied string');
    assert.ok(env.findIndex((e) => e.name === 'DATABASE_PASSWORD') < env.findIndex((e) => e.name === 'DATABASE_URL'), 'defined before it is expanded');
    const secret = find(objects, 'Secret', 'postgres-credentials');
    assert.equal(secret.data, undefined, 'generated in the cluster, not written here');
    assert.equal(secret.metadata.annotations!['kreg.dev/generate'], 'password');
    assert.equal(secret.metadata.annotations!['kreg.dev/prune'], 'never');
    const pg = find(objects, 'StatefulSet', 'postgres');
    const spec = podSpec(pg);
    assert.equal(pg.metadata.annotations!['kreg.dev/phase'], 'backends', 'ready before the migration Job runs against it');
    assert.equal(spec.securityContext.runAsNonRoot, true);
    assert.equal(spec.securityContext.runAsUser, 999);
    assert.equal(spec.containers[0].securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(spec.containers[0].securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(spec.containers[0].readinessProbe.exec.command[0], 'pg_isready');
    assert.equal(pg.spec.volumeClaimTemplates[0].spec.resources.requests.storage, '5Gi');
    const np = find(objects, 'NetworkPolicy', 'postgres-ingress');
    assert.deepEqual(np.spec.policyTypes, ['Ingress']);
    assert.deepEqual(np.spec.ingress[0].from[0].podSelector.matchLabels, { 'app.kubernetes.io/instance': 'registration-prod', 'app.kubernetes.io/name': 'registration' });
  });
});
