/**
 * The bundled service (infra/scripts/build-service.mjs), as images and `node build/…` users run it:
 * built into a folder outside the repository, so nothing can resolve the repository's
 * node_modules, then run by plain node (no tsx) against a real libsql file and a real PostgreSQL.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { ENTRY_POINTS } from '../../service/src/contract.js';
import { postgresBinDir, startPostgres, type TestPostgres } from '../postgres.js';
import { GOOD_PASSWORD, tempDir, watchCredential, watchLogLine } from './helpers.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const out = tempDir('kreg-bundle-');
// The entry points' paths inside the bundle folder, as the image's CMD and the migration Job name them.
const bundled = (entry: string) => join(out.path, entry.replace(/^build\/service\//, ''));
const SERVER = bundled(ENTRY_POINTS.server.built);
const MIGRATE = bundled(ENTRY_POINTS.migrate.built);

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', RATE_LIMIT_REGISTER: '0', SHUTDOWN_DRAIN_SECONDS: '0', ...extra };
}

async function startBundled(extra: Record<string, string>): Promise<{ child: ChildProcess; url: string; logs: string[] }> {
  const child = spawn(process.execPath, [SERVER], { cwd: out.path, env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      watchLogLine(line, 'the bundled server');
      logs.push(line);
      const entry = JSON.parse(line) as { msg?: string; port?: number };
      if (entry.msg === 'listening' && entry.port) resolve(entry.port);
    });
    child.once('exit', (code) => reject(new Error(`the bundle exited with ${code} before listening:\n${logs.join('\n')}`)));
  });
  return { child, url: `http://127.0.0.1:${port}`, logs };
}

async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  return exited;
}

async function registerAndLogIn(url: string, username: string): Promise<void> {
  const body = JSON.stringify({ username, password: GOOD_PASSWORD });
  const headers = { 'content-type': 'application/json' };
  const created = await fetch(`${url}/register`, { method: 'POST', headers, body });
  assert.equal(created.status, 201, await created.text());
  const login = await fetch(`${url}/login`, { method: 'POST', headers, body });
  assert.equal(login.status, 200, await login.text());
}

describe('the bundled service', () => {
  before(() => {
    const build = spawnSync(process.execPath, [join(ROOT, 'infra/scripts/build-service.mjs'), '--quiet'], {
      cwd: ROOT,
      env: { ...process.env, KREG_SERVICE_OUT: out.path },
      encoding: 'utf8',
    });
    assert.equal(build.status, 0, build.stderr);
  });
  after(() => out.remove());

  it('holds the entry points, the migrations and only the packages that cannot be bundled', () => {
    assert.ok(existsSync(SERVER) && existsSync(MIGRATE));
    assert.ok(existsSync(join(out.path, 'drizzle/meta/_journal.json')) && existsSync(join(out.path, 'drizzle-pg/meta/_journal.json')));
    const packages = readdirSync(join(out.path, 'node_modules')).flatMap((d) =>
      d.startsWith('@') ? readdirSync(join(out.path, 'node_modules', d)).map((s) => `${d}/${s}`) : [d],
    );
    assert.deepEqual(packages.sort(), [
      '@libsql/linux-x64-gnu',
      '@neon-rs/load',
      '@node-rs/argon2',
      '@node-rs/argon2-linux-x64-gnu',
      'detect-libc',
      'libsql',
      'swagger-ui-dist',
    ]);
    // Swagger UI's two files, not its 12 MB.
    assert.deepEqual(readdirSync(join(out.path, 'node_modules/swagger-ui-dist')).sort(), ['LICENSE', 'package.json', 'swagger-ui-bundle.js', 'swagger-ui.css']);
    // Maps beside the code, naming the TypeScript without carrying it.
    const map = JSON.parse(readFileSync(`${SERVER}.map`, 'utf8')) as { sources: string[]; sourcesContent?: unknown };
    assert.ok(map.sources.some((s) => s.endsWith('service/src/server.ts')));
    assert.equal(map.sourcesContent, undefined);
  });

  it('migrates and serves an embedded database: register, log in, /docs assets, SIGTERM exit 0', async () => {
    const data = tempDir();
    try {
      const DATABASE_URL = `file:${join(data.path, 'registrations.db')}`;
      const migrate = spawnSync(process.execPath, [MIGRATE], { cwd: out.path, env: env({ DATABASE_URL }), encoding: 'utf8' });
      assert.equal(migrate.status, 0, migrate.stderr + migrate.stdout);
      assert.match(migrate.stdout, /migrations applied/);
      const { child, url } = await startBundled({ DATABASE_URL });
      try {
        await registerAndLogIn(url, 'bundled-file');
        const asset = await fetch(`${url}/docs/assets/swagger-ui-bundle.js`);
        assert.equal(asset.status, 200);
        assert.ok((await asset.arrayBuffer()).byteLength > 1_000_000);
      } finally {
        assert.equal(await stop(child), 0);
      }
    } finally {
      data.remove();
    }
  });

  it('serves PostgreSQL through the bundled driver', { skip: postgresBinDir() ? false : 'no PostgreSQL binaries on this machine' }, async () => {
    let pg: TestPostgres | undefined;
    try {
      pg = await startPostgres();
      watchCredential(pg.password);
      const migrate = spawnSync(process.execPath, [MIGRATE], { cwd: out.path, env: env({ DATABASE_URL: pg.url }), encoding: 'utf8' });
      assert.equal(migrate.status, 0, migrate.stderr + migrate.stdout);
      const { child, url } = await startBundled({ DATABASE_URL: pg.url });
      try {
        await registerAndLogIn(url, 'bundled-postgres');
        assert.match(pg.admin("SELECT count(*) FROM users WHERE username_canonical = 'bundled-postgres'"), /\b1\b/);
      } finally {
        assert.equal(await stop(child), 0);
      }
    } finally {
      await pg?.remove();
    }
  });

  it('logs a failure with a stack that names the TypeScript, not the bundle', async () => {
    const data = tempDir();
    try {
      // A directory where the database file should be: libsql cannot open it, start-up fails.
      const run = spawnSync(process.execPath, [SERVER], { cwd: out.path, env: env({ DATABASE_URL: `file:${data.path}` }), encoding: 'utf8', timeout: 30_000 });
      assert.equal(run.status, 1, run.stdout + run.stderr);
      const fatal = run.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: string; stack?: string }).find((l) => l.level === 'fatal');
      assert.ok(fatal?.stack, run.stdout);
      assert.match(fatal.stack, /\(service\/src\/db\/client\.ts:\d+:\d+\)/, fatal.stack);
      assert.doesNotMatch(fatal.stack, /shared-[A-Z0-9]+\.js/, 'no frame left pointing into the bundle');
    } finally {
      data.remove();
    }
  });
});
