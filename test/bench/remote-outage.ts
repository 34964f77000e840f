/**
 * `SQLD=/path/to/sqld npm run bench:remote` — remote mode against a real libsql server (sqld).
 *
 * sqld cannot be installed from any registry these machines reach, so this is not part of CI: build
 * sqld from its public source beside the project (never inside it) and point SQLD at the binary.
 * Everything else is real and local: sqld on loopback with JWT auth, `npm run migrate`, and three
 * replicas of the service as separate processes.
 *
 *   1. Start-up with a bad DATABASE_AUTH_TOKEN (none, another key's, expired, read-only): each must
 *      exit 2 with one line naming the variable, and never print the token.
 *   2. For http:// and ws:// URLs: a light, steady load of registrations and logins across the three
 *      replicas while sqld is killed (SIGKILL, then restarted on the same files) and later frozen
 *      (SIGSTOP: connections open, nothing answers). Every answer is counted by status and problem
 *      type per phase. Afterwards every registration that was answered 201 must log in.
 * Exit 1 on any 500, any lost acknowledged registration, or a replica that did not recover by itself.
 * Environment: OUTAGE_SECONDS (default 8), CLIENTS (default 2; sqld 0.24 can wedge its WAL lock
 * under 4+ concurrent inserts, see README), SQLD_SCHEMES (default "http,ws").
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../wait.js';
import { freePort } from '../ports.js';

const SQLD = process.env.SQLD;
const OUTAGE_SECONDS = Number(process.env.OUTAGE_SECONDS ?? 8);
const CLIENTS = Number(process.env.CLIENTS ?? 2);
const SCHEMES = (process.env.SQLD_SCHEMES ?? 'http,ws').split(',');
const REPLICAS = 3;
const ROOT = new URL('../../', import.meta.url).pathname;
const PASSWORD = 'remote-outage-bench-password';

if (!SQLD) {
  console.error('bench:remote: set SQLD to a sqld binary (libsql-server, built from its public source beside the project)');
  process.exit(2);
}
const sqldVersion = spawnSync(SQLD, ['--version'], { encoding: 'utf8' }).stdout.trim();

const work = mkdtempSync(join(tmpdir(), 'kreg-remote-'));
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(work, { recursive: true, force: true });
});

// --- tokens: Ed25519-signed JWTs, as sqld's --auth-jwt-key-file expects -----------------------
const base64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');
function jwt(key: KeyObject, claims: Record<string, unknown>): string {
  const head = base64url(JSON.stringify({ alg: 'EdDSA', typ: 'JWT' }));
  const body = base64url(JSON.stringify(claims));
  return `${head}.${body}.${base64url(sign(null, Buffer.from(`${head}.${body}`), key))}`;
}
const keys = generateKeyPairSync('ed25519');
const otherKeys = generateKeyPairSync('ed25519');
const publicKeyFile = join(work, 'jwt.pem');
writeFileSync(publicKeyFile, keys.publicKey.export({ type: 'spki', format: 'pem' }));
const hour = () => Math.floor(Date.now() / 1000) + 3600;
const TOKENS = {
  readWrite: jwt(keys.privateKey, { exp: hour() }),
  readOnly: jwt(keys.privateKey, { a: 'ro', exp: hour() }),
  expired: jwt(keys.privateKey, { exp: Math.floor(Date.now() / 1000) - 600 }),
  otherKey: jwt(otherKeys.privateKey, { exp: hour() }),
};

// --- sqld ---------------------------------------------------------------------------------------
const sqldPort = await freePort();
const dbPath = join(work, 'sqld-data');
mkdirSync(dbPath);
let sqld: ChildProcess | undefined;
const sqldLog: string[] = [];

async function startSqld(): Promise<void> {
  sqld = spawn(SQLD!, ['--db-path', dbPath, '--http-listen-addr', `127.0.0.1:${sqldPort}`, '--auth-jwt-key-file', publicKeyFile, '--no-welcome'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  children.add(sqld);
  for (const stream of [sqld.stdout!, sqld.stderr!]) stream.on('data', (d: Buffer) => sqldLog.push(d.toString()));
  await waitFor('sqld to answer /health', async () => (await fetch(`http://127.0.0.1:${sqldPort}/health`).catch(() => undefined))?.ok, 20_000, 100);
}

function signalSqld(signal: NodeJS.Signals): void {
  process.kill(-sqld!.pid!, signal);
}

async function killSqld(): Promise<void> {
  const exited = new Promise((resolve) => sqld!.once('exit', resolve));
  signalSqld('SIGKILL');
  await exited;
  children.delete(sqld!);
}

// --- the service --------------------------------------------------------------------------------
function serviceEnv(url: string, token: string | undefined, port: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: url,
    DATABASE_MIGRATE: 'never',
    DATABASE_STARTUP_WAIT_SECONDS: '5',
    RATE_LIMIT_REGISTER: '0',
    RATE_LIMIT_LOGIN: '0',
    LOG_LEVEL: 'warn',
    SHUTDOWN_DRAIN_SECONDS: '0',
  };
  delete env.DATABASE_AUTH_TOKEN;
  if (token !== undefined) env.DATABASE_AUTH_TOKEN = token;
  return env;
}

function startReplica(url: string, port: number): { child: ChildProcess; log: string[] } {
  const log: string[] = [];
  const child = spawn(process.execPath, ['--import', 'tsx', 'service/src/server.ts'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: serviceEnv(url, TOKENS.readWrite, port),
  });
  children.add(child);
  for (const stream of [child.stdout!, child.stderr!]) stream.on('data', (d: Buffer) => log.push(...d.toString().split('\n').filter(Boolean)));
  return { child, log };
}

/** Runs the service with a token and returns its exit code and stderr, or 'running' after `ms`. */
async function startupWith(token: string | undefined, ms = 15_000): Promise<{ code: number | 'running'; stderr: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'service/src/server.ts'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: serviceEnv(`http://127.0.0.1:${sqldPort}`, token, port),
  });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | 'running'>((resolve) => {
    const timer = setTimeout(() => resolve('running'), ms);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c ?? 1);
    });
  });
  if (code === 'running') process.kill(-child.pid!, 'SIGKILL');
  children.delete(child);
  return { code, stderr: stderr.trim() };
}

// --- load and accounting ------------------------------------------------------------------------
type Phase = 'before' | 'killed' | 'restarted' | 'frozen' | 'thawed';
const PHASES: Phase[] = ['before', 'killed', 'restarted', 'frozen', 'thawed'];
interface Tally {
  requests: number;
  byOutcome: Map<string, number>;
}

async function loadAcrossOutages(url: string): Promise<{ tallies: Map<Phase, Tally>; acknowledged: string[]; recoverySeconds: Record<string, number>; replicaLogs: string[][] }> {
  const ports = await Promise.all(Array.from({ length: REPLICAS }, () => freePort()));
  const replicas = ports.map((port) => startReplica(url, port));
  await waitFor(`${REPLICAS} replicas to be ready`, async () => {
    const answers = await Promise.all(ports.map((p) => fetch(`http://127.0.0.1:${p}/readyz`).then((r) => r.status).catch(() => 0)));
    return answers.every((s) => s === 200);
  }, 30_000, 200);

  const tallies = new Map<Phase, Tally>(PHASES.map((p) => [p, { requests: 0, byOutcome: new Map() }]));
  let phase: Phase = 'before';
  let stop = false;
  const acknowledged: string[] = [];
  let lastSuccess = 0;
  const count = (outcome: string) => {
    const tally = tallies.get(phase)!;
    tally.requests++;
    tally.byOutcome.set(outcome, (tally.byOutcome.get(outcome) ?? 0) + 1);
  };
  const clients = Array.from({ length: CLIENTS }, async (_, client) => {
    for (let i = 0; !stop; i++) {
      const port = ports[(client + i) % REPLICAS]!;
      const username = `${url.slice(0, url.indexOf(':'))}-c${client}-${i}`;
      const path = i % 3 === 2 ? '/login' : '/register';
      const body = path === '/login' ? { username: `${url.slice(0, url.indexOf(':'))}-c${client}-${i - 2}`, password: PASSWORD } : { username, password: PASSWORD };
      try {
        const res = await fetch(`http://127.0.0.1:${port}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
        const text = await res.text();
        let type = '';
        if (res.headers.get('content-type')?.includes('problem+json')) type = ` ${(JSON.parse(text) as { type: string }).type.replace('urn:kreg:problem:', '')}`;
        count(`${res.status}${type}`);
        if (res.status === 201) acknowledged.push(username);
        if (res.status < 300) lastSuccess = performance.now();
        if (res.status >= 500) await new Promise((r) => setTimeout(r, 100));
      } catch (err) {
        count(`network error (${(err as Error).name})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));
  const untilSuccessAfter = async (t0: number) => {
    await waitFor('a successful request after the database came back', async () => lastSuccess > t0, 60_000, 50);
    return (lastSuccess - t0) / 1000;
  };
  const recoverySeconds: Record<string, number> = {};

  await sleep(4);
  phase = 'killed';
  await killSqld();
  await sleep(OUTAGE_SECONDS);
  phase = 'restarted';
  let t0 = performance.now();
  await startSqld();
  recoverySeconds.afterRestart = await untilSuccessAfter(t0);
  await sleep(4);
  phase = 'frozen';
  signalSqld('SIGSTOP');
  await sleep(OUTAGE_SECONDS);
  phase = 'thawed';
  t0 = performance.now();
  signalSqld('SIGCONT');
  recoverySeconds.afterThaw = await untilSuccessAfter(t0);
  await sleep(4);
  stop = true;
  await Promise.all(clients);

  // Every 201 must be a stored row: each of those users logs in (through any replica).
  let lost = 0;
  for (const [i, username] of acknowledged.entries()) {
    const res = await fetch(`http://127.0.0.1:${ports[i % REPLICAS]}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password: PASSWORD }),
    });
    if (res.status !== 200) lost++;
  }
  if (lost > 0) acknowledged.push(`LOST:${lost}`);
  const exits = replicas.map((r) => r.child.exitCode);
  for (const r of replicas) {
    process.kill(-r.child.pid!, 'SIGTERM');
    children.delete(r.child);
  }
  if (exits.some((c) => c !== null)) throw new Error(`a replica exited during the run (exit codes ${exits.join(', ')}); it must ride out the outage`);
  return { tallies, acknowledged, recoverySeconds, replicaLogs: replicas.map((r) => r.log) };
}

// --- the run ------------------------------------------------------------------------------------
console.log(`# remote mode against ${sqldVersion} on loopback, ${REPLICAS} replicas, ${CLIENTS} clients, outages of ${OUTAGE_SECONDS} s`);
await startSqld();
const migrate = spawnSync(process.execPath, ['--import', 'tsx', 'service/src/migrate.ts'], {
  cwd: ROOT,
  encoding: 'utf8',
  env: serviceEnv(`http://127.0.0.1:${sqldPort}`, TOKENS.readWrite, 0),
});
if (migrate.status !== 0) throw new Error(`npm run migrate failed: ${migrate.stderr}${migrate.stdout}`);
console.log('migrate: exit 0');

let failed = false;
console.log('\n## start-up with a bad DATABASE_AUTH_TOKEN');
console.log('| token | exit | stderr |\n|---|---|---|');
for (const [name, token] of [['missing', undefined], ['signed by another key', TOKENS.otherKey], ['expired', TOKENS.expired], ['read-only', TOKENS.readOnly]] as const) {
  const { code, stderr } = await startupWith(token);
  const ok = code === 2 && stderr.split('\n').length === 1 && stderr.includes('DATABASE_AUTH_TOKEN') && !(token && stderr.includes(token));
  if (!ok) failed = true;
  console.log(`| ${name} | ${code} | ${stderr.replace(/\|/g, '\\|').slice(0, 200)} |${ok ? '' : ' **FAIL**'}`);
}

for (const scheme of SCHEMES) {
  const url = `${scheme}://127.0.0.1:${sqldPort}`;
  const { tallies, acknowledged, recoverySeconds, replicaLogs } = await loadAcrossOutages(url);
  const lost = acknowledged.find((a) => a.startsWith('LOST:'));
  const stored = acknowledged.filter((a) => !a.startsWith('LOST:')).length;
  console.log(`\n## ${url}: sqld SIGKILLed for ${OUTAGE_SECONDS} s and restarted, then SIGSTOPped for ${OUTAGE_SECONDS} s`);
  console.log('| phase | requests | answers |\n|---|---|---|');
  let fiveHundreds = 0;
  for (const [phase, tally] of tallies) {
    const answers = [...tally.byOutcome].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} × ${k}`).join(', ');
    for (const [k, v] of tally.byOutcome) if (k.startsWith('500')) fiveHundreds += v;
    console.log(`| ${phase} | ${tally.requests} | ${answers} |`);
  }
  const errorLines = replicaLogs.flat().filter((l) => l.includes('"level":"error"') || l.includes('"level":"fatal"'));
  console.log(`\nacknowledged (201): ${stored}, of which lost: ${lost ? lost.slice(5) : 0}; 500s: ${fiveHundreds}`);
  console.log(`first success ${recoverySeconds.afterRestart!.toFixed(2)} s after sqld restarted, ${recoverySeconds.afterThaw!.toFixed(2)} s after it was thawed; no replica restarted`);
  console.log(`error-level log lines across the replicas: ${errorLines.length}${errorLines[0] ? ` (first: ${errorLines[0].slice(0, 1500)})` : ''}`);
  if (fiveHundreds > 0 || lost) failed = true;
}

signalSqld('SIGTERM');
process.exit(failed ? 1 : 0);
