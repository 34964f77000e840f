/**
 * `kreg dev` on the local cluster, as a developer uses it: start the loop, reach the service on the
 * port it prints, save a change under service/src and see the new pod serve it, save a change that
 * does not bundle and see the loop report it and keep serving the last good build, fix it and see
 * it recover, save a type error and see the type-check beside the loop name it, then Ctrl-C
 * (SIGINT): the process exits 0 and leaves no port, build or loader behind.
 *
 * It edits the working tree (service/src/app.ts and lifecycle.ts) and restores both files whatever
 * happens. Runs in the dev environment's namespace (kreg-dev); cleans it up before and after.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deleteNamespace, diagnostics, failureTracker, KUBECONFIG, kreg, ROOT, run, waitFor, waitForScreen } from './kube.js';

const NS = 'kreg-dev';
const APP = join(ROOT, 'service/src/app.ts');
const LIFECYCLE = join(ROOT, 'service/src/lifecycle.ts');
const originals = new Map([APP, LIFECYCLE].map((file) => [file, readFileSync(file, 'utf8')]));
const DESCRIPTION = "'User registration and credential checks. ";

const { guard, failed } = failureTracker();

async function clean(): Promise<void> {
  await kreg(['destroy', '--env', 'dev', '--include-kept', '--timeout', '120s']);
  await deleteNamespace(NS);
}

function restoreSources(): void {
  for (const [file, text] of originals) writeFileSync(file, text);
}

describe('kreg dev: the inner loop on the local cluster', { timeout: 15 * 60_000 }, () => {
  let dev: ChildProcess | undefined;
  let output = '';
  let url = '';
  const readyCount = () => output.match(/kreg dev: ready at /g)?.length ?? 0;

  before(clean);
  after(async () => {
    restoreSources();
    if (dev && dev.exitCode === null) dev.kill('SIGKILL');
    if (failed()) console.log(`kreg dev output:\n${output}\n${await diagnostics(NS)}`);
    await clean();
  });

  test(
    'start: build, load, deploy, port-forward; the printed URL serves the service',
    guard(async () => {
      dev = spawn(process.execPath, ['bin/kreg.mjs', 'dev', '--port', '0'], {
        cwd: ROOT,
        env: { ...process.env, KUBECONFIG, NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      dev.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      dev.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      await waitFor('kreg dev to be ready and watching', async () => dev!.exitCode === null && /kreg dev: watching /.test(output), 300_000);
      const ready = /kreg dev: ready at (http:\/\/127\.0\.0\.1:\d+) with (\S+): edit → ready [\d.]+ s \(build [\d.]+ s, transfer [\d.]+ s, rollout [\d.]+ s\)/.exec(output);
      assert.ok(ready, output);
      url = ready[1]!;
      // Tagged by content, and pushed to the registry the local cluster announces (KEP-1755).
      assert.match(ready[2]!, /^localhost:5001\/kreg\/registration:dev-[0-9a-f]{12}$/, output);
      assert.equal((await fetch(`${url}/readyz`)).status, 200);
      // The current pod's log is streamed, prefixed with its name.
      await waitFor('a log line of the pod', async () => /^\[registration-[a-z0-9-]+\] \{.*"msg":"listening"/m.test(output), 30_000, 250);
    }),
  );

  test(
    'a saved change under service/src reaches a ready pod, served through the same port',
    guard(async () => {
      const before = readyCount();
      writeFileSync(APP, originals.get(APP)!.replace(DESCRIPTION, "'User registration and credential checks (edited in kreg dev). "));
      await waitFor(
        'the edited description to be served',
        async () => ((await (await fetch(`${url}/openapi.json`)).text()).includes('edited in kreg dev')),
        300_000,
        500,
      );
      await waitFor('the cycle summary', async () => readyCount() > before, 30_000, 250);
      // Code only: bundled on the host and layered on the last full build, not built in Docker.
      assert.match(output, /kreg dev: changed service\/src\/app\.ts.*: bundle, transfer, deploy/);
    }),
  );

  test(
    'a change that does not bundle is reported, the last good pod keeps serving, and the fix recovers',
    guard(async () => {
      writeFileSync(LIFECYCLE, `${originals.get(LIFECYCLE)!}\nexport const broken = ;\n`);
      await waitFor('the bundling failure to be reported', async () => /kreg dev: bundling failed \(above\)/.test(output), 300_000, 500);
      assert.match(output, /lifecycle\.ts:\d+:\d+: ERROR: Unexpected ";"/, "esbuild's error is shown, with its place");
      assert.ok(dev!.exitCode === null, 'the loop is still running');
      assert.ok((await (await fetch(`${url}/openapi.json`)).text()).includes('edited in kreg dev'), 'the last good build still serves');
      const before = readyCount();
      writeFileSync(LIFECYCLE, originals.get(LIFECYCLE)!);
      await waitFor('the fixed build to be deployed', async () => readyCount() > before, 300_000, 500);
      assert.equal((await fetch(`${url}/readyz`)).status, 200);
    }),
  );

  test(
    'a type error is reported by the type-check beside the loop, named; the fix clears it',
    guard(async () => {
      writeFileSync(LIFECYCLE, `${originals.get(LIFECYCLE)!}\nexport const mistyped: number = 'not a number';\n`);
      await waitFor('the type error to be reported', async () => /kreg dev: type-check: 1 error \(above\)/.test(output), 300_000, 500);
      assert.match(output, /lifecycle\.ts\(\d+,\d+\): error TS2322/, "the compiler's error is shown");
      writeFileSync(LIFECYCLE, originals.get(LIFECYCLE)!);
      await waitFor('the type-check to pass again', async () => /kreg dev: type-check: no errors/.test(output), 300_000, 500);
      assert.ok(dev!.exitCode === null, 'the loop is still running');
    }),
  );

  test(
    'Ctrl-C stops everything it started: exit 0, the port closed, no build or loader left',
    guard(async () => {
      restoreSources();
      // Let the restore's cycle start, so SIGINT also has a build to stop.
      await new Promise((r) => setTimeout(r, 1000));
      const exited = new Promise<number | null>((resolve) => dev!.once('exit', resolve));
      dev!.kill('SIGINT');
      const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
      assert.equal(code, 0, output.slice(-2000));
      assert.match(output, /kreg dev: stopped/);
      await assert.rejects(fetch(`${url}/readyz`), 'nothing listens on the port any more');
      // What kreg dev runs: its build (the scratch tag), a push, a deploy. (Not the npm script that
      // started these tests, whose command line names image.sh too.)
      const left = spawnSync('pgrep', ['-af', 'image\\.sh kreg/registration:dev-build|docker push localhost:5001|kreg\\.mjs deploy --env dev --image'], { encoding: 'utf8' }).stdout.trim();
      assert.equal(left, '', `processes left behind: ${left}`);
    }),
  );

  test(
    'on a terminal (tmux): each deploy draws kreg deploy\'s live table, the cycle summary below it; Ctrl-C ends it',
    guard(async () => {
      const session = `kreg-dev-e2e-${process.pid}`;
      const command = `cd ${ROOT} && KUBECONFIG=${KUBECONFIG} ${process.execPath} bin/kreg.mjs dev --port 0; echo EXIT=$?; sleep 300`;
      await run('tmux', ['new-session', '-d', '-s', session, '-x', '160', '-y', '50', command]);
      try {
        // With its scrollback: the pods' log lines, printed once the table is done, can push the
        // table past the top of the window (a CI run: two pods' logs from their start, 50 lines).
        let seen = await waitForScreen(session, 'kreg dev to be ready on the terminal', (s) => /kreg dev: ready at /.test(s), { timeoutMs: 300_000, intervalMs: 250, history: true });
        assert.equal(seen.match(/OBJECT +APPLY +STATE +TIME +REASON/g)?.length, 1, `one table on the screen:\n${seen}`);
        assert.match(seen, /Deployment\/kreg-dev\/registration +\S+ +ready +\d+\.\ds/);
        assert.ok(seen.indexOf('kreg dev: ready at') > seen.indexOf('OBJECT'), 'the summary is below the table');
        await run('tmux', ['send-keys', '-t', session, 'C-c']);
        seen = await waitForScreen(session, 'kreg dev to stop', (s) => /EXIT=\d+/.test(s), { timeoutMs: 30_000, intervalMs: 250 });
        assert.match(seen, /kreg dev: stopped/);
        assert.match(seen, /EXIT=0/);
        console.log(`# kreg dev on a terminal, the final screen:\n${seen.trimEnd().split('\n').map((l) => `#   ${l}`).join('\n')}`);
      } finally {
        await run('tmux', ['kill-session', '-t', session]);
      }
    }),
  );
});
