/**
 * kreg as a user gets it: `npm pack`, the tarball installed into an empty folder, `npx kreg` run
 * there. The bundle must carry every module the CLI loads (nothing from this checkout's
 * node_modules), start fast, synthesize the same manifests as the checkout, and reach the
 * Kubernetes client for cluster commands.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

const ROOT = new URL('../../', import.meta.url).pathname;
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function sh(command: string, args: string[], cwd: string, timeoutMs = 180_000): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, npm_config_update_notifier: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

describe('kreg as an installed package', { timeout: 300_000 }, () => {
  let dir = '';
  let files: string[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kreg-package-'));
    const built = await sh(process.execPath, ['infra/scripts/build-cli.mjs', '--quiet'], ROOT);
    assert.equal(built.code, 0, built.stderr);
    const packed = await sh(NPM, ['pack', '--json', '--pack-destination', dir], ROOT);
    assert.equal(packed.code, 0, packed.stderr);
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = info!.files.map((f) => f.path);
    const project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), '{"name":"uses-kreg","private":true}\n');
    const installed = await sh(NPM, ['install', '--no-audit', '--no-fund', '--ignore-scripts', join(dir, info!.filename)], project);
    assert.equal(installed.code, 0, installed.stderr);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('ships the bin and the bundle, no TypeScript sources or tests', () => {
    assert.ok(files.includes('bin/kreg.mjs'), files.join(' '));
    assert.ok(files.includes('build/cli/cli.js'), files.join(' '));
    assert.deepEqual(files.filter((f) => f.endsWith('.ts') || f.startsWith('test/') || f.startsWith('infra/')), []);
  });

  it('npx kreg --help answers from the installed package', async () => {
    const r = await sh('npx', ['--no-install', 'kreg', '--help'], join(dir, 'project'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^kreg — ship the registration service/);
    assert.match(r.stdout, /^ {2}operator /m);
    assert.equal(r.stderr, '');
  });

  it('kreg synth writes the same manifests as the checkout', async () => {
    const out = join(dir, 'out');
    const r = await sh(process.execPath, ['node_modules/kreg/bin/kreg.mjs', 'synth', '--outdir', out], join(dir, 'project'));
    assert.equal(r.code, 0, r.stderr);
    const golden = join(ROOT, 'test/charts/golden/dev');
    assert.deepEqual(readdirSync(out).sort(), readdirSync(golden).sort());
    for (const f of readdirSync(golden)) assert.equal(readFileSync(join(out, f), 'utf8'), readFileSync(join(golden, f), 'utf8'), f);
  });

  it('cluster commands load the Kubernetes client from the bundle and explain a missing kubeconfig', async () => {
    const r = await sh(process.execPath, ['node_modules/kreg/bin/kreg.mjs', 'status', '--kubeconfig', '/nonexistent/kubeconfig'], join(dir, 'project'));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^kreg status: cannot load the kubeconfig: .*nonexistent/);
    const crd = await sh(process.execPath, ['node_modules/kreg/bin/kreg.mjs', 'operator', 'crd'], join(dir, 'project'));
    assert.equal(crd.code, 0, crd.stderr);
    assert.match(crd.stdout, /^kind: CustomResourceDefinition$/m);
  });
});
