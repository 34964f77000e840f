/**
 * The contract test: schemathesis (pinned, from PyPI) against a real server built from this tree,
 * with every check on. `npm run test:contract` is the bounded run CI makes (a fixed seed, so a
 * failure reproduces); `npm run test:contract -- --long` spends a few minutes exploring instead.
 *
 * The server runs as its own process on an embedded database in a temporary directory, with rate
 * limits off (the fuzzer sends hundreds of registrations from one address).
 * After the run its log is read too: an unhandled error or an argon2 hash in any line fails the test
 * even if every response looked right.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { commonPasswordList } from '../../service/src/users/credentials.js';
import { waitFor } from '../wait.js';
import { freePort } from '../ports.js';

/** The version CI installs (.ci/run) and this script expects; bump both together. */
export const SCHEMATHESIS_VERSION = '4.32.5';
const SEED = 20261129;

const root = resolve(import.meta.dirname, '../..');
const long = process.argv.includes('--long');
const schemathesis = process.env.SCHEMATHESIS ?? join(process.env.KREG_SCHEMATHESIS_VENV ?? '/var/cache/kreg/schemathesis', 'bin/schemathesis');

function fail(message: string): never {
  console.error(`test:contract: ${message}`);
  process.exit(1);
}

const version = spawnSync(schemathesis, ['--version'], { encoding: 'utf8' });
if (version.status !== 0) {
  fail(`cannot run ${schemathesis} (${version.error?.message ?? version.stderr.trim()}); install it with .ci/run, or set SCHEMATHESIS to its path`);
}
if (!version.stdout.includes(SCHEMATHESIS_VERSION)) {
  fail(`expected schemathesis ${SCHEMATHESIS_VERSION}, found "${version.stdout.trim()}"; the run is only reproducible on the pinned version`);
}

const work = mkdtempSync(join(tmpdir(), 'kreg-contract-'));
const passwordsFile = join(work, 'common-passwords.json');
writeFileSync(passwordsFile, JSON.stringify([...commonPasswordList()]));

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const serverLog: string[] = [];
const server = spawn(process.execPath, ['--import', 'tsx', 'service/src/server.ts'], {
  cwd: root,
  detached: true,
  stdio: ['ignore', 'pipe', 'pipe'],
  env: {
    ...process.env,
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: `file:${join(work, 'registrations.db')}`,
    RATE_LIMIT_REGISTER: '0',
    RATE_LIMIT_LOGIN: '0',
    LOG_LEVEL: 'info',
    SHUTDOWN_DRAIN_SECONDS: '0',
  },
});
for (const stream of [server.stdout, server.stderr]) {
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => serverLog.push(...chunk.split('\n').filter(Boolean)));
}
const stopServer = () => {
  try {
    process.kill(-server.pid!, 'SIGTERM');
  } catch {
    // already gone
  }
};
process.on('exit', () => {
  stopServer();
  rmSync(work, { recursive: true, force: true });
});

await waitFor('the server to be ready', async () => {
  if (server.exitCode !== null) fail(`the server exited with ${server.exitCode}:\n${serverLog.join('\n')}`);
  const res = await fetch(`${base}/readyz`).catch(() => undefined);
  return res?.status === 200;
}, 30_000, 200);

const args = [
  'run', `${base}/openapi.json`,
  '--checks', 'all',
  '--seed', String(SEED),
  '--max-examples', long ? '1000' : '100',
  '--workers', '1',
  '--generation-database', 'none',
  '--request-timeout', '10',
  '--no-color',
  ...(long ? ['--max-time', '600'] : []),
];
console.log(`schemathesis ${SCHEMATHESIS_VERSION} ${args.join(' ')}`);
const run = spawn(schemathesis, args, {
  cwd: work,
  stdio: 'inherit',
  env: {
    ...process.env,
    PYTHONPATH: join(root, 'test/contract'),
    SCHEMATHESIS_HOOKS: 'hooks',
    PYTHONDONTWRITEBYTECODE: '1',
    KREG_COMMON_PASSWORDS: passwordsFile,
  },
});
const status = await new Promise<number>((done) => run.on('exit', (code, signal) => done(code ?? (signal ? 1 : 0))));

stopServer();
await new Promise((done) => (server.exitCode !== null ? done(undefined) : server.once('exit', done)));
const problems = serverLog.filter((line) => line.includes('"unhandled error"') || line.includes('$argon2'));
if (problems.length > 0) fail(`the server logged ${problems.length} line(s) it must not:\n${problems.slice(0, 5).join('\n')}`);
if (status !== 0) fail(`schemathesis reported failures (exit ${status}); reproduce with the seed above`);
console.log(`test:contract: passed; the server logged ${serverLog.length} lines, none an unhandled error or a hash`);
