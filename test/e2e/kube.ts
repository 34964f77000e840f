/**
 * What the end-to-end tests need from a real cluster, done the way a user does it: the `kubectl`
 * binary and a kubeconfig (the local test cluster's by default, any cluster via KUBECONFIG/KUBECTL).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { waitFor } from '../wait.js';

export { waitFor };

export const ROOT = new URL('../../', import.meta.url).pathname;

export const KUBECONFIG = process.env.KUBECONFIG ?? join(ROOT, '.cluster/kubeconfig');
export const KUBECTL =
  process.env.KUBECTL ?? (existsSync(join(ROOT, '.cluster/bin/kubectl')) ? join(ROOT, '.cluster/bin/kubectl') : 'kubectl');

export function kubectl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(KUBECTL, ['--kubeconfig', KUBECONFIG, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`kubectl ${args.join(' ')} could not start: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`kubectl ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${err.trim()}`));
    });
    child.stdin.end(opts.input ?? '');
  });
}

export async function kubectlJson<T = any>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, '-o', 'json'])) as T;
}

/** Every object in the synthesized manifests under `dir` (default `dist/`). */
export function readManifests(dir = join(ROOT, 'dist')): any[] {
  const objects: any[] = [];
  for (const file of readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      const value = doc.toJSON();
      if (value) objects.push(value);
    }
  }
  return objects;
}


/** Deletes a namespace and waits until it is gone (its objects with it); absent is fine. */
export async function deleteNamespace(namespace: string): Promise<void> {
  await kubectl(['delete', 'namespace', namespace, '--ignore-not-found', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
}

/**
 * Remembers whether any test of a suite failed, so its `after` hook prints the cluster's evidence
 * (pods, events, logs) only when there is something to explain.
 */
export function failureTracker(): { guard: (fn: () => Promise<void>) => () => Promise<void>; failed: () => boolean } {
  let failed = false;
  return {
    guard: (fn) => async () => {
      try {
        await fn();
      } catch (err) {
        failed = true;
        throw err;
      }
    },
    failed: () => failed,
  };
}

export interface PortForward {
  url: string;
  stop(): void;
}

/** `kubectl port-forward <target> :<port>`; resolves with the local URL once forwarding starts. */
export async function portForward(namespace: string, target: string, remotePort: number | string): Promise<PortForward> {
  const child: ChildProcess = spawn(
    KUBECTL,
    ['--kubeconfig', KUBECONFIG, '-n', namespace, 'port-forward', '--address', '127.0.0.1', target, `:${remotePort}`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`port-forward ${target} did not start: ${stderr}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(d.toString());
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`port-forward ${target} exited ${code}: ${stderr}`));
    });
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') };
}

/** The evidence a person needs when something in `namespace` went wrong: pods, events, logs. */
export async function diagnostics(namespace: string): Promise<string> {
  const sections: string[] = [];
  const add = async (title: string, args: string[]) => {
    try {
      sections.push(`--- ${title}\n${await kubectl(args, { timeoutMs: 30_000 })}`);
    } catch (err) {
      sections.push(`--- ${title}\n(${String(err)})`);
    }
  };
  await add('pods', ['-n', namespace, 'get', 'pods', '-o', 'wide']);
  await add('events', ['-n', namespace, 'get', 'events', '--sort-by=.lastTimestamp']);
  await add('describe pods', ['-n', namespace, 'describe', 'pods']);
  let pods: string[] = [];
  try {
    pods = (await kubectl(['-n', namespace, 'get', 'pods', '-o', 'name'])).split('\n').filter(Boolean);
  } catch {
    /* reported above */
  }
  for (const pod of pods) {
    await add(`logs ${pod}`, ['-n', namespace, 'logs', pod, '--all-containers', '--tail=50']);
    await add(`previous logs ${pod}`, ['-n', namespace, 'logs', pod, '--all-containers', '--previous', '--tail=50']);
  }
  return sections.join('\n');
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* keep text */
  }
  return { status: res.status, body: parsed };
}

/**
 * Runs `node -e script` in a pod of `image` (any image with node: the service's) in `namespace`, as
 * an in-cluster client, non-root and locked down; resolves with its logs once it succeeded.
 */
export async function runNodePod(namespace: string, image: string, name: string, script: string): Promise<string> {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'client',
          image,
          imagePullPolicy: 'IfNotPresent',
          command: ['node', '-e', script],
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '500m', memory: '128Mi' } },
        },
      ],
    },
  };
  await kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) });
  const phase = await waitFor(
    `client pod ${name} to finish`,
    async () => {
      const p = await kubectlJson(['-n', namespace, 'get', 'pod', name]);
      return ['Succeeded', 'Failed'].includes(p.status.phase) ? (p.status.phase as string) : undefined;
    },
    120_000,
  );
  const logs = await kubectl(['-n', namespace, 'logs', name]);
  await kubectl(['-n', namespace, 'delete', 'pod', name, '--wait=false']);
  assert.equal(phase, 'Succeeded', `client pod failed:\n${logs}`);
  return logs;
}

/**
 * A script for runNodePod: a bounded steady load, 10 requests a second (600 at most, about 60 s),
 * each with a 5 s timeout; prints `{ok, failed, errors}` as its last line. `expected` is the status
 * that counts as answered (a GET of an unknown user: 404).
 */
export function steadyLoadScript(url: string, expected: number): string {
  return `(async () => {
    const counts = { ok: 0, failed: 0, errors: {} };
    const started = Date.now();
    for (let i = 0; i < 600; i++) {
      const t = Date.now();
      try {
        const r = await fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(5000) });
        if (r.status === ${expected}) counts.ok++; else { counts.failed++; counts.errors[r.status] = (counts.errors[r.status] || 0) + 1; }
      } catch (e) { counts.failed++; const k = e.cause?.code || e.name; counts.errors[k] = (counts.errors[k] || 0) + 1; }
      await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - t))));
      if (Date.now() - started > 65000) break;
    }
    console.log(JSON.stringify(counts));
  })().catch((e) => { console.error(e); process.exit(1); })`;
}

/** Runs a command in the repository with the tests' kubeconfig; resolves with its exit code and output (never rejects). */
export function run(command: string, args: string[], timeoutMs = 240_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, KUBECONFIG, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d));
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `kreg <args>` through the bin, as a user runs it. */
export const kreg = (args: string[], timeoutMs?: number) => run(process.execPath, ['bin/kreg.mjs', ...args], timeoutMs);

/**
 * Polls a tmux session's screen until `done(screen)`; returns the last screen. `frames` (when given)
 * collects every screen seen, for tests that assert on what was drawn on the way. A timeout fails with
 * the last screen in the message: on a terminal, what was on it is the evidence.
 */
export async function waitForScreen(
  session: string,
  what: string,
  done: (screen: string) => boolean,
  options: { timeoutMs?: number; intervalMs?: number; frames?: string[]; history?: boolean } = {},
): Promise<string> {
  const { timeoutMs = 120_000, intervalMs = 200, frames, history = false } = options;
  const deadline = Date.now() + timeoutMs;
  let screen = '';
  for (;;) {
    // `history`: the scrollback too, for output that may have scrolled past the window's top.
    screen = (await run('tmux', ['capture-pane', '-p', '-t', session, ...(history ? ['-S', '-'] : [])])).stdout;
    frames?.push(screen);
    if (done(screen)) return screen;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; the screen:\n${screen}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
