/**
 * A real kube-apiserver and etcd, started for one test file and nothing else — no kubelet, no
 * controller-manager, no scheduler (the tier controller-runtime calls envtest). Orchestration tests
 * run against it in seconds: discovery, server-side apply, dry runs, field conflicts, resourceVersion
 * preconditions, CRDs becoming Established and RBAC are the real ones. Nothing reconciles workloads
 * here, so a Job never completes by itself (tests write its status when they need it to).
 *
 * The binaries come from the local cluster's build cache (`test/cluster/build.sh`, run by
 * `npm run cluster:up`); ports are picked free, so it runs next to a running local cluster.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeClient } from '../../infra/engine/client.js';
import { waitFor } from '../wait.js';
import { freePort } from '../ports.js';

const ROOT = new URL('../../', import.meta.url).pathname;

/** The build cache's bin folder for the version test/cluster/lib.sh pins. */
export function binDir(): string {
  if (process.env.KREG_K8S_BIN) return process.env.KREG_K8S_BIN;
  const lib = readFileSync(join(ROOT, 'test/cluster/lib.sh'), 'utf8');
  const version = process.env.KREG_K8S_VERSION ?? /KREG_K8S_VERSION:-([^}"]+)/.exec(lib)?.[1];
  const cache = process.env.KREG_CACHE_ROOT ?? '/var/cache/kreg-k8s';
  return join(cache, version ?? 'unknown', 'bin');
}

export function binariesPresent(): boolean {
  return existsSync(join(binDir(), 'kube-apiserver')) && existsSync(join(binDir(), 'etcd'));
}

export interface TestApiServer {
  /** A kubeconfig file for a cluster admin (system:masters). */
  kubeconfig: string;
  /** A kubeconfig for a user with no permissions until a test grants them (RBAC is on). */
  limitedKubeconfig: string;
  limitedUser: string;
  url: string;
  port: number;
  adminToken: string;
  /**
   * Kills kube-apiserver (SIGKILL unless told), keeps it down `downMs` (default 0), then starts the
   * same one again (same port, same etcd); resolves when ready.
   */
  restartApiServer(signal?: NodeJS.Signals, downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export function kubeconfigFor(url: string, token: string, user: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: envtest',
    '  cluster:',
    `    server: ${url}`,
    '    insecure-skip-tls-verify: true',
    'users:',
    `- name: ${user}`,
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: envtest',
    '  context:',
    '    cluster: envtest',
    `    user: ${user}`,
    'current-context: envtest',
    '',
  ].join('\n');
}

export async function startApiServer(): Promise<TestApiServer> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), 'kreg-envtest-'));
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const stop = async () => {
    for (const child of children.reverse()) {
      if (child.exitCode !== null) continue;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const run = (name: string, args: string[]) => {
    const child = spawn(join(bin, name), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => {
      logs.push(`${name}: ${d.toString().trimEnd()}`);
      if (logs.length > 200) logs.shift();
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    children.push(child);
    return child;
  };
  try {
    const [clientPort, peerPort, securePort] = [await freePort(), await freePort(), await freePort()];
    run('etcd', [
      '--name', 'envtest', '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `envtest=http://127.0.0.1:${peerPort}`, '--unsafe-no-fsync', '--log-level', 'error',
    ]);
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const adminToken = randomBytes(16).toString('hex');
    const limitedToken = randomBytes(16).toString('hex');
    writeFileSync(join(dir, 'tokens.csv'), `${adminToken},envtest-admin,1,"system:masters"\n${limitedToken},envtest-limited,2\n`);
    const apiserverArgs = [
      `--etcd-servers=http://127.0.0.1:${clientPort}`,
      '--bind-address=127.0.0.1', `--secure-port=${securePort}`, '--advertise-address=127.0.0.1',
      `--cert-dir=${join(dir, 'certs')}`, `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC', '--service-cluster-ip-range=10.0.0.0/24', '--allow-privileged=true',
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${join(dir, 'sa.pub')}`, `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      // Without a controller-manager no ServiceAccount token controller runs; nothing here makes pods.
      '--disable-admission-plugins=ServiceAccount', '--profiling=false', '--v=0',
    ];
    let apiserver = run('kube-apiserver', apiserverArgs);
    const url = `https://127.0.0.1:${securePort}`;
    const waitReady = async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        // The serving certificate is self-signed (--cert-dir); the kubeconfigs skip verification too.
        const req = httpsGet(`${url}/readyz`, { rejectUnauthorized: false, headers: { authorization: `Bearer ${adminToken}` } }, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        });
        req.on('error', () => resolve(false));
      });
      if (ok) break;
      if (children.some((c) => c.exitCode !== null) || Date.now() > deadline) {
        throw new Error(`the test API server did not become ready:\n${logs.slice(-30).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    };
    await waitReady();
    /**
     * Kills kube-apiserver and starts it again on the same port and etcd. SIGKILL by default: a
     * crash, and fast (a SIGTERM'd apiserver drains open watches for about a minute).
     */
    const restartApiServer = async (signal: NodeJS.Signals = 'SIGKILL', downMs = 0) => {
      const exited = new Promise((r) => apiserver.once('exit', r));
      apiserver.kill(signal);
      await exited;
      await new Promise((r) => setTimeout(r, downMs));
      children.splice(children.indexOf(apiserver), 1);
      apiserver = run('kube-apiserver', apiserverArgs);
      await waitReady();
    };
    const kubeconfig = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfig, kubeconfigFor(url, adminToken, 'envtest-admin'));
    const limitedKubeconfig = join(dir, 'limited.kubeconfig');
    writeFileSync(limitedKubeconfig, kubeconfigFor(url, limitedToken, 'envtest-limited'));
    return { kubeconfig, limitedKubeconfig, limitedUser: 'envtest-limited', url, port: securePort, adminToken, restartApiServer, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Polls `fn` every 100 ms until it returns something truthy (errors count as not yet), for up to 15 s by default. */
export function eventually<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  return waitFor(what, async () => fn(), timeoutMs, 100);
}

/**
 * Marks a Job complete by writing its status, as the Job controller would: nothing runs pods on a
 * bare API server, so a test that needs a gate to pass says so itself.
 */
export async function completeJob(client: KubeClient, ref: { namespace: string; name: string }): Promise<void> {
  const live = await client.get({ apiVersion: 'batch/v1', kind: 'Job', ...ref });
  const now = new Date().toISOString();
  await client.request('PUT', `/apis/batch/v1/namespaces/${ref.namespace}/jobs/${ref.name}/status`, {
    body: {
      ...live,
      status: {
        startTime: now,
        completionTime: now,
        succeeded: 1,
        conditions: [
          { type: 'SuccessCriteriaMet', status: 'True', lastTransitionTime: now },
          { type: 'Complete', status: 'True', lastTransitionTime: now },
        ],
      },
    },
  });
}
