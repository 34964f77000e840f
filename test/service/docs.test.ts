/**
 * /docs in a real headless browser (Chromium from Debian) against a real server: the page renders
 * the API's operations with every asset from this origin — the browser is denied every other host —
 * and under the page's Content-Security-Policy, with no violation reported.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startTestServer, tempDir } from './helpers.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
// CI installs Chromium (.ci/run); elsewhere the test says what it needs instead of failing.
const skip = CHROMIUM || process.env.CI ? false : 'no Chromium (apt-get install chromium)';

function chromium(url: string, profile: string): Promise<{ dom: string; log: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      CHROMIUM ?? 'chromium',
      [
        '--headless',
        '--no-sandbox', // tests run as root; the page is our own
        '--disable-gpu',
        '--no-first-run',
        `--user-data-dir=${profile}`,
        // Any host but this machine fails to resolve: an asset from a CDN could not load.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
        '--enable-logging=stderr',
        '--v=0',
        '--virtual-time-budget=15000',
        '--dump-dom',
        url,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let dom = '';
    let log = '';
    child.stdout.on('data', (d) => (dom += d));
    child.stderr.on('data', (d) => (log += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolve({ dom, log });
    });
  });
}

describe('/docs in a headless browser, offline', { skip, timeout: 120_000 }, () => {
  const dir = tempDir();
  let server: Awaited<ReturnType<typeof startTestServer>>;
  before(async () => {
    server = await startTestServer(dir.path);
  });
  after(async () => {
    await server?.shutdown('test done');
    dir.remove();
  });

  it('renders every operation from local assets, with no CSP violation and no outside request', async () => {
    const { dom, log } = await chromium(`${server.url}/docs`, `${dir.path}/chromium`);
    for (const path of ['/register', '/login', '/users/{id}', '/readyz']) {
      assert.ok(dom.includes(`data-path="${path}"`), `operation ${path} is not on the page:\n${dom.slice(0, 2000)}\n--- browser log\n${log.slice(-3000)}`);
    }
    assert.match(dom, /kreg registration service/);
    const violations = log.split('\n').filter((l) => /Content[- ]Security[- ]Policy|Refused to/i.test(l));
    assert.deepEqual(violations, [], 'the page broke its own Content-Security-Policy');
    const outside = log.split('\n').filter((l) => /ERR_NAME_NOT_RESOLVED|net::ERR_/.test(l));
    assert.deepEqual(outside, [], 'the page tried to load something from elsewhere');
  });

  it('serves the assets from the installed package with a policy, and nothing else under /docs/assets', async () => {
    const page = await fetch(`${server.url}/docs`);
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const bundle = await fetch(`${server.url}/docs/assets/swagger-ui-bundle.js`);
    assert.equal(bundle.status, 200);
    assert.match(bundle.headers.get('content-type') ?? '', /javascript/);
    assert.ok((await bundle.arrayBuffer()).byteLength > 100_000);
    for (const name of ['package.json', '..%2Fpackage.json', 'index.html']) {
      assert.equal((await fetch(`${server.url}/docs/assets/${name}`)).status, 404, name);
    }
    const api = await fetch(`${server.url}/livez`);
    assert.equal(api.headers.get('content-security-policy'), "default-src 'none'; frame-ancestors 'none'");
  });
});
