import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { ENVIRONMENT_NAMES, ENVIRONMENT_NAMESPACES, parseCli, parseDuration, run } from '../../infra/cli.js';
import { NAMED_SPECS, SPEC_NAMES } from '../../infra/spec.js';
import { EXIT } from '../../infra/cli/render.js';
import { appManifests, parseManifests, readManifestSources } from '../../infra/cli/manifests.js';

const ROOT = new URL('../../', import.meta.url).pathname;

async function kreg(args: string[], environ: NodeJS.ProcessEnv = {}) {
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void) => new Writable({ write: (c, _e, cb) => (append(String(c)), cb()) });
  const code = await run(args, { stdout: sink((s) => (stdout += s)), stderr: sink((s) => (stderr += s)) }, { PATH: process.env.PATH, ...environ });
  return { code, stdout, stderr };
}

describe('kreg CLI', () => {
  it('knows the same environments as the spec (spelled twice so --help loads no schema library)', () => {
    assert.deepEqual([...ENVIRONMENT_NAMES], SPEC_NAMES);
    for (const name of SPEC_NAMES) assert.equal(ENVIRONMENT_NAMESPACES[name], NAMED_SPECS[name].namespace);
  });

  it('prints help with the exit codes, per command too', async () => {
    const main = await kreg(['--help']);
    assert.equal(main.code, EXIT.ok);
    for (const c of ['synth', 'diff', 'deploy', 'status', 'rollback', 'destroy', 'verify']) assert.match(main.stdout, new RegExp(`^  ${c} `, 'm'));
    assert.match(main.stdout, /3 {2}invalid objects/);
    const deploy = await kreg(['deploy', '--help']);
    assert.match(deploy.stdout, /--force-conflicts/);
    assert.match(deploy.stdout, /--adopt  .*were not created by this set/s);
    assert.match(deploy.stdout, /--no-prune/);
    assert.match(main.stdout, /4 {2}conflict: .*not created by this set \(--adopt takes them over\)/s);
  });

  it('--adopt is off unless given, for deploy, diff and rollback', () => {
    for (const command of ['deploy', 'diff', 'rollback']) {
      const without = parseCli([command]);
      const withIt = parseCli([command, '--adopt']);
      assert.ok(!('help' in without) && !('help' in withIt));
      assert.equal(without.adopt, false, command);
      assert.equal(withIt.adopt, true, command);
    }
  });

  it('an invalid spec is listed field by field, exit 2, before any cluster is contacted', async () => {
    for (const command of ['synth', 'diff', 'deploy']) {
      // An unreachable kubeconfig: the spec must be refused before it matters.
      const r = await kreg([command, '--image', 'Not An Image'], { KUBECONFIG: '/nonexistent/kubeconfig' });
      assert.equal(r.code, EXIT.usage, `${command}: ${r.stderr}`);
      assert.equal(r.stderr, `kreg ${command}: spec of environment "dev" is invalid:\n  image: must be an image reference like kreg/registration:1.2.3\n`);
    }
  });

  it('bad input: one line saying what is wrong and where to look, exit 2', async () => {
    for (const [args, pattern] of [
      [['launch'], /unknown command "launch"; expected one of: synth, diff/],
      [['deploy', '--env', 'staging'], /unknown environment "staging"; expected one of: dev, prod/],
      [['deploy', '--timeout', 'soon'], /--timeout: "soon" is not a duration/],
      [['deploy', '--bogus'], /Unknown option '--bogus'.*kreg deploy --help/],
      [['rollback', '--to', '0'], /--to must be a revision number/],
      [['status', '--output', 'yaml'], /--output must be text or json/],
    ] as const) {
      const r = await kreg([...args]);
      assert.equal(r.code, EXIT.usage, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });

  it('a missing kubeconfig or context is a usage error naming the problem', async () => {
    const missing = await kreg(['status', '--kubeconfig', '/nonexistent/kubeconfig']);
    assert.equal(missing.code, EXIT.usage);
    assert.match(missing.stderr, /cannot load the kubeconfig: .*nonexistent/);
  });

  it('an unreachable API server is exit 8 with the address and the cause', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kreg-kubeconfig-'));
    try {
      const file = join(dir, 'config');
      writeFileSync(
        file,
        `apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\n` +
          `users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\ncurrent-context: gone\n`,
      );
      const r = await kreg(['deploy', '--env', 'dev'], { KUBECONFIG: file });
      assert.equal(r.code, EXIT.unreachable, r.stdout + r.stderr);
      assert.match(r.stdout + r.stderr, /cannot reach the Kubernetes API at https:\/\/127\.0\.0\.1:1: ECONNREFUSED/);
      const ctx = await kreg(['status', '--context', 'nope'], { KUBECONFIG: file });
      assert.equal(ctx.code, EXIT.usage);
      assert.match(ctx.stderr, /no context "nope" in the kubeconfig \(known: gone\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no kubeconfig anywhere: the bin says so and how to give one, exit 2', () => {
    const env = { PATH: process.env.PATH!, HOME: '/nonexistent-home' };
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/kreg.mjs'), 'status'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, EXIT.usage, r.stderr);
    assert.match(r.stderr, /no kubeconfig found: set KUBECONFIG, pass --kubeconfig <file>, or create ~\/\.kube\/config/);
  });

  it('-f/--name/-n: any manifests as their own set; misuse is one line each, exit 2', async () => {
    const parsed = parseCli(['deploy', '-f', 'k8s/', '--name', 'web', '-n', 'demo']);
    assert.ok(!('help' in parsed));
    assert.deepEqual(parsed.set, { name: 'web', namespace: 'demo', filename: 'k8s/' });
    const status = parseCli(['status', '--name', 'web']);
    assert.ok(!('help' in status));
    assert.deepEqual(status.set, { name: 'web', namespace: 'default' });
    for (const [args, pattern] of [
      [['deploy', '-f', 'k8s/'], /-f needs --name <set>/],
      [['deploy', '--name', 'web'], /deploy --name needs -f/],
      [['status', '--name', 'web', '-f', 'x.yaml'], /-f is for deploy and diff/],
      [['deploy', '-f', 'x', '--name', 'web', '--env', 'dev'], /--env and --name/],
      [['deploy', '-f', 'x', '--name', 'web', '--image', 'a/b:1'], /--image sets an environment's image/],
      [['deploy', '-f', 'x', '--name', 'Web_1'], /must be a DNS label/],
      [['verify', '--name', 'web'], /works on the environments only/],
      [['status', '-n', 'demo'], /-n\/--namespace goes with --name/],
      [['deploy', '-f', '/nonexistent/dir', '--name', 'web'], /-f \/nonexistent\/dir: no such file or directory/],
    ] as const) {
      const r = await kreg([...args], { KUBECONFIG: '/nonexistent/kubeconfig' });
      assert.equal(r.code, EXIT.usage, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });

  it('reads manifests: files in name order, List items, empty documents skipped; a bad one names its file and document', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kreg-manifests-'));
    try {
      writeFileSync(join(dir, 'b.yaml'), 'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: two}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: three}}\n');
      writeFileSync(join(dir, 'a.yml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n---\n');
      writeFileSync(join(dir, 'notes.txt'), 'not a manifest');
      const names = parseManifests(readManifestSources(dir, () => '')).map((o) => o.metadata.name);
      assert.deepEqual(names, ['one', 'two', 'three']);
      writeFileSync(join(dir, 'c.json'), '{"apiVersion": "v1", "kind": "ConfigMap"}');
      assert.throws(() => parseManifests(readManifestSources(dir, () => '')), /c\.json, document 1: not a Kubernetes object \(it needs apiVersion, kind and metadata\.name\)/);
      assert.throws(() => parseManifests([{ name: '<stdin>', text: 'a: [' }]), /<stdin>, document 1: /);
      assert.throws(() => parseManifests([{ name: '<stdin>', text: '---\n' }]), /no objects in <stdin>/);
      assert.deepEqual(parseManifests(readManifestSources('-', () => 'apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n')).map((o) => o.kind), ['Secret']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--app runs a cdk8s app as cdk8s synth does and reads what it wrote; a failing or silent app is one line, exit 2', async () => {
    // This repository's own cdk8s app (cdk8s.yaml's app) writes the golden dev manifests.
    const objects = await appManifests('node --import tsx infra/main.ts', { ...process.env, KREG_ENV: 'dev' }, new Writable({ write: (_c, _e, cb) => cb() }));
    const golden = parseManifests(readManifestSources(join(ROOT, 'test/charts/golden/dev'), () => ''));
    assert.deepEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), golden.map((o) => `${o.kind}/${o.metadata.name}`).sort());
    for (const [args, pattern] of [
      [['deploy', '--app', 'echo building >&2; exit 3', '--name', 'web'], /the app "echo building >&2; exit 3" exited 3: building/],
      [['deploy', '--app', 'true', '--name', 'web'], /the app "true" wrote no manifests into CDK8S_OUTDIR/],
      [['deploy', '--app', 'true'], /--app needs --name <set>/],
      [['deploy', '--app', 'true', '-f', 'x', '--name', 'web'], /-f and --app are two sources/],
      [['status', '--app', 'true', '--name', 'web'], /--app is for deploy and diff/],
    ] as const) {
      const r = await kreg([...args], { KUBECONFIG: '/nonexistent/kubeconfig' });
      assert.equal(r.code, EXIT.usage, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr.trim().split('\n').pop()!, pattern);
    }
  });

  it('parses durations and defaults', () => {
    assert.equal(parseDuration('300'), 300_000);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('250ms'), 250);
    const cli = parseCli(['deploy', '--no-wait', '--no-prune', '--image', 'kreg/registration:abc'], { KREG_ENV: 'prod' });
    assert.ok(!('help' in cli));
    assert.equal(cli.env, 'prod');
    assert.equal(cli.wait, false);
    assert.equal(cli.prune, false);
    assert.equal(cli.image, 'kreg/registration:abc');
    assert.equal(cli.timeoutMs, 300_000);
  });

  it('kreg synth writes the same files as npm run synth', async () => {
    const a = mkdtempSync(join(tmpdir(), 'kreg-synth-a-'));
    const b = mkdtempSync(join(tmpdir(), 'kreg-synth-b-'));
    try {
      const r = await kreg(['synth', '--env', 'prod', '--outdir', a]);
      assert.equal(r.code, EXIT.ok, r.stderr);
      const npm = spawnSync('npm', ['run', '--silent', 'synth', '--', '--env', 'prod', '--outdir', b], { cwd: ROOT, encoding: 'utf8' });
      assert.equal(npm.status, 0, npm.stderr);
      const files = readdirSync(a).sort();
      assert.deepEqual(files, readdirSync(b).sort());
      assert.ok(files.length >= 2);
      for (const f of files) assert.equal(readFileSync(join(a, f), 'utf8'), readFileSync(join(b, f), 'utf8'), f);
      assert.equal(r.stdout.trim().split('\n').length, files.length, 'prints the paths');
    } finally {
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
  });
});
