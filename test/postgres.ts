/**
 * A throwaway PostgreSQL server for one test file or benchmark: initdb into a temporary folder, a
 * free loopback port, flushes to disk off (fsync, full_page_writes: safe against a crash of
 * PostgreSQL, not of the machine, which a test does not care about), started in the foreground so
 * the test owns the process, and stopped (fast shutdown) and removed after.
 *
 * synchronous_commit stays on: with it off, a commit is acknowledged before its WAL is written,
 * and an immediate shutdown (a crash, as far as PostgreSQL is concerned) loses it. Measured here:
 * with it off, a registration answered 201 was gone after SIGQUIT and restart.
 *
 * PostgreSQL refuses to run as root; as root, every tool runs as the `postgres` user the Debian
 * package creates. The binaries come from the Debian package (`/usr/lib/postgresql/<major>/bin`),
 * or from $KREG_PG_BIN.
 *
 * The service's role `kreg` logs in with a password over TCP (SCRAM), as it would in a cluster;
 * the superuser `postgres` uses the Unix socket in the temporary folder.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface TestPostgres {
  /** `postgres://kreg:<password>@127.0.0.1:<port>/kreg`: the service's own role and database. */
  url: string;
  port: number;
  password: string;
  /** Runs SQL as the superuser (psql over the socket), in the service's database unless told; returns psql's output. */
  admin(sql: string, database?: string): string;
  /** Stops the server: `fast` (SIGINT, sessions cut), `immediate` (SIGQUIT, crash-like) or `smart` (SIGTERM, waits for sessions). */
  stop(mode?: 'fast' | 'immediate' | 'smart'): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT of the postmaster and every backend: a server that accepts bytes and never answers. */
  freeze(): void;
  thaw(): void;
  /** Stops the server and removes its folder. */
  remove(): Promise<void>;
}

/** The newest PostgreSQL binaries on the machine, or undefined. */
export function postgresBinDir(): string | undefined {
  if (process.env.KREG_PG_BIN) return process.env.KREG_PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return majors.length ? join(root, majors[0]!, 'bin') : undefined;
}

/** uid/gid to run PostgreSQL as: the `postgres` user when we are root, else ourselves. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root, and there is no "postgres" user to run PostgreSQL as (apt-get install postgresql creates it)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

const running = new Set<ChildProcess>();
// A test that fails before its after hook still must not leave a server behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * `durable`: keep PostgreSQL's own defaults (fsync, full_page_writes), for a benchmark that compares
 * its commits with a durable libsql file.
 */
export async function startPostgres(options: { maxConnections?: number; durable?: boolean } = {}): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL binaries found (apt-get install postgresql, or set KREG_PG_BIN)');
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'kreg-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const superPassword = randomBytes(12).toString('hex');
  const password = randomBytes(12).toString('hex');
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${superPassword}\n`, { mode: 0o600 });
  if (user) chownSync(pwfile, user.uid, user.gid);
  const tool = (name: string, args: string[]) => {
    const r = spawnSync(join(bin, name), args, { ...(user ?? {}), encoding: 'utf8', cwd: dir });
    if (r.status !== 0) throw new Error(`${name} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  tool('initdb', ['-D', data, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256', '--encoding=UTF8', '--locale=C.UTF-8', '--no-sync']);
  const port = await freePort();
  let child: ChildProcess | undefined;
  let log = '';

  const start = async () => {
    const args = ['-D', data, '-k', dir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', ...(options.durable ? [] : ['-c', 'fsync=off', '-c', 'full_page_writes=off'])];
    if (options.maxConnections) args.push('-c', `max_connections=${options.maxConnections}`);
    const c = spawn(join(bin, 'postgres'), args, { ...(user ?? {}), cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    running.add(c);
    c.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
    c.once('exit', () => running.delete(c));
    const deadline = Date.now() + 20_000;
    for (;;) {
      const ready = spawnSync(join(bin, 'pg_isready'), ['-h', dir, '-p', String(port), '-U', 'postgres', '-q'], { ...(user ?? {}) });
      if (ready.status === 0) return;
      if (c.exitCode !== null) throw new Error(`postgres exited ${c.exitCode} at start:\n${log}`);
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 20 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const stop = async (mode: 'fast' | 'immediate' | 'smart' = 'fast') => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGCONT'); // a frozen server cannot shut down
    c.kill(mode === 'fast' ? 'SIGINT' : mode === 'immediate' ? 'SIGQUIT' : 'SIGTERM');
    await exited;
  };

  /** Every process of this server: the postmaster and its children. */
  const pids = (): number[] => {
    if (!child?.pid) return [];
    const out = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout;
    return [child.pid, ...out.split('\n').filter(Boolean).map(Number)];
  };

  const admin = (sql: string, database = 'kreg') => tool('psql', ['-h', dir, '-p', String(port), '-U', 'postgres', '-d', database, '-v', 'ON_ERROR_STOP=1', '-X', '-q', '-A', '-t', '-c', sql]);

  await start();
  admin(`CREATE ROLE kreg LOGIN PASSWORD '${password}'`, 'postgres');
  admin('CREATE DATABASE kreg OWNER kreg', 'postgres');
  return {
    url: `postgres://kreg:${password}@127.0.0.1:${port}/kreg`,
    port,
    password,
    admin,
    stop,
    start,
    freeze: () => {
      for (const pid of pids()) process.kill(pid, 'SIGSTOP');
    },
    thaw: () => {
      for (const pid of pids()) process.kill(pid, 'SIGCONT');
    },
    remove: async () => {
      await stop('fast');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
