/**
 * The API port-forward tunnel (infra/engine/tunnel.ts) and `kreg verify` (infra/verify.ts) against a
 * REAL cluster (the local test cluster by default: `npm run cluster:up`; any cluster via KUBECONFIG).
 * Needs the image `kreg/registration:dev` in the cluster (test/cluster/load-image.sh).
 *
 * Everything happens in a throwaway namespace `kreg-tunnel-<random>` holding the dev environment's
 * objects (namespace rewritten; rate limits off so the loops below can register many users),
 * deleted afterwards. On failure, the namespace's pods, events and logs are printed.
 *
 *   node --import tsx --test test/engine/tunnel.cluster.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { KubeClient } from '../../infra/engine/client.js';
import { openServiceTunnel, type ServiceTunnel } from '../../infra/engine/tunnel.js';
import { buildApp } from '../../infra/main.js';
import { verifyRegistration, verifyThrough, type VerifyStep } from '../../infra/verify.js';
import { deleteNamespace, diagnostics, failureTracker, KUBECONFIG, kubectl, kubectlJson, waitFor } from './kube.js';

const NS = `kreg-tunnel-${randomBytes(3).toString('hex')}`;
const SELECTOR = 'app.kubernetes.io/name=registration,app.kubernetes.io/instance=registration-dev,app.kubernetes.io/component=api';
const IMAGE = 'kreg/registration:dev';

/** The engine's client: the tunnel and verify use its credentials, as kreg does. */
let kc: KubeClient;

const { guard, failed } = failureTracker();
const say = (line: string) => process.stdout.write(`# ${line}\n`);

/** The dev environment's objects, moved into our namespace. */
function devObjects(): any[] {
  const app = buildApp({ env: 'dev', settings: { RATE_LIMIT_REGISTER: '0', RATE_LIMIT_LOGIN: '0' } });
  return app.charts
    .flatMap((c) => c.toJson())
    .map((o: any) => {
      const copy = structuredClone(o);
      if (copy.kind === 'Namespace') copy.metadata.name = NS;
      else if (copy.metadata.namespace) copy.metadata.namespace = NS;
      return copy;
    });
}

async function apply(objects: any[]): Promise<void> {
  await kubectl(['apply', '--server-side', '--field-manager=kreg-tunnel-test', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
  });
}

async function rolledOut(): Promise<void> {
  await kubectl(['-n', NS, 'rollout', 'status', 'deployment/registration', '--timeout=180s'], { timeoutMs: 200_000 });
}

interface PodInfo {
  name: string;
  uid: string;
  ip: string;
}

/** Ready, not terminating registration pods. */
async function readyPods(): Promise<PodInfo[]> {
  const list = await kubectlJson<{ items: any[] }>(['-n', NS, 'get', 'pods', '-l', SELECTOR]);
  return list.items
    .filter((p) => !p.metadata.deletionTimestamp && p.status.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'))
    .map((p) => ({ name: p.metadata.name, uid: p.metadata.uid, ip: p.status.podIP }));
}

async function scale(replicas: number): Promise<void> {
  await kubectl(['-n', NS, 'scale', 'deployment/registration', `--replicas=${replicas}`]);
  await rolledOut();
  await waitFor(`${replicas} ready pods`, async () => (await readyPods()).length === replicas, 120_000, 500);
}

/** A restricted-PSA-compliant pod running a Node one-liner from the service image. */
function nodePod(name: string, script: string, ports: Array<{ name: string; containerPort: number }>, labels: Record<string, string>): any {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels },
    spec: {
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 1,
      securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'main',
          image: IMAGE,
          imagePullPolicy: 'IfNotPresent',
          command: ['node', '-e', script],
          ports: ports.map((p) => ({ ...p, protocol: 'TCP' })),
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '128Mi' } },
        },
      ],
    },
  };
}

/** Sends `payload` through the tunnel and reads back as many bytes; resolves with what came back. */
function echoRoundTrip(port: number, payload: Buffer, timeoutMs = 60_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let received = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`echo: ${received}/${payload.length} bytes back after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      received += c.length;
      if (received >= payload.length) {
        clearTimeout(timer);
        socket.destroy();
        resolve(Buffer.concat(chunks));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (received < payload.length) reject(new Error(`echo: connection closed after ${received}/${payload.length} bytes`));
    });
    socket.write(payload);
  });
}

/** GET over a raw socket; resolves with what came back and when the tunnel closed the connection. */
function rawGet(port: number, path: string, timeoutMs = 20_000): Promise<{ response: string; closedAfterMs: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(timeoutMs, () => socket.destroy());
    let response = '';
    socket.on('data', (d: Buffer) => (response += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => resolve({ response, closedAfterMs: Date.now() - started }));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: tunnel\r\nConnection: close\r\n\r\n`);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const summary = (steps: VerifyStep[]) => steps.map((s) => `${s.name}=${s.ok ? 'ok' : 'FAIL'}(${s.ms}ms${s.attempts && s.attempts > 1 ? `,${s.attempts} tries` : ''})`).join(' ');

/**
 * Runs verifyThrough() back to back through one tunnel, calls `disrupt()` once `disruptAfter`
 * runs are done, and stops when `enough()` says so (or after `maxMs`).
 */
async function verifyLoop(
  tunnel: ServiceTunnel,
  opts: { disruptAfter: number; disrupt: () => Promise<void>; enough: (runsAfterDisruption: number) => boolean; maxMs: number },
): Promise<{ runs: Array<{ steps: VerifyStep[]; startedAt: number; ms: number }>; disruptedAt: number }> {
  const runs: Array<{ steps: VerifyStep[]; startedAt: number; ms: number }> = [];
  const started = Date.now();
  let disruptedAt = 0;
  let disruption: Promise<void> | undefined;
  while (Date.now() - started < opts.maxMs) {
    if (runs.length === opts.disruptAfter && !disruption) {
      disruptedAt = Date.now();
      // Not awaited: the disruption lands while the next verification runs.
      disruption = opts.disrupt();
    }
    const t = Date.now();
    const steps = await verifyThrough(tunnel.url, { deadline: t + 45_000, tunnelError: () => tunnel.lastError() });
    runs.push({ steps, startedAt: t, ms: Date.now() - t });
    const after = disruption ? runs.filter((r) => r.startedAt >= disruptedAt).length : 0;
    if (disruption && opts.enough(after)) break;
  }
  await disruption;
  return { runs, disruptedAt };
}

describe(`API port-forward tunnel and verify on a real cluster (namespace ${NS})`, { timeout: 600_000 }, () => {
  before(async () => {
    try {
      await kubectl(['get', 'namespaces', 'default'], { timeoutMs: 15_000 });
    } catch (err) {
      throw new Error(`no cluster reachable through ${KUBECONFIG} (start one with npm run cluster:up): ${String(err)}`);
    }
    kc = await KubeClient.create({ kubeconfig: KUBECONFIG });
    await apply(devObjects());
    await rolledOut();
    say(`deployed the dev objects into ${NS}; pods: ${(await readyPods()).map((p) => p.name).join(', ')}`);
  });

  after(async () => {
    kc?.close();
    if (failed()) process.stdout.write(`${await diagnostics(NS)}\n`);
    await deleteNamespace(NS).catch(
      (err: unknown) => say(`cleanup: ${String(err)}`),
    );
  });

  const check = (name: string, fn: () => Promise<void>, timeout = 180_000) =>
    test(name, { timeout }, guard(fn));

  check('(a) verifyRegistration through a fresh tunnel passes every step', async () => {
    const lines: string[] = [];
    const t0 = Date.now();
    const report = await verifyRegistration(kc, { namespace: NS, timeoutMs: 60_000, log: (l) => lines.push(l) });
    say(`verify: ${report.ok ? 'ok' : 'FAILED'} in ${Date.now() - t0} ms; ${summary(report.steps)}; tunnel ${JSON.stringify(report.tunnel)}`);
    for (const s of report.steps) say(`  ${s.name}: ${s.detail}`);
    assert.equal(report.ok, true, `verify failed:\n${report.steps.map((s) => `${s.name}: ${s.detail}`).join('\n')}\n${lines.join('\n')}`);
    assert.deepEqual(
      report.steps.map((s) => s.name),
      ['readyz', 'register', 'duplicate', 'login', 'wrong-password'],
    );
    assert.match(report.target, new RegExp(`${NS}/registration`));
    const pods = await readyPods();
    assert.equal(report.tunnel.pods.length, 1, `one pod served everything: ${report.tunnel.pods.join(', ')}`);
    assert.equal(report.tunnel.pods[0], pods[0]!.name);
    // One fresh connection per HTTP request, nothing re-routed on a healthy service.
    const attempts = report.steps.reduce((n, s) => n + (s.attempts ?? 0), 0);
    assert.equal(report.tunnel.connections, attempts);
    assert.equal(report.tunnel.rerouted, 0);
  });

  check('(b1) one replica: deleting the only pod mid-verify; connections wait for the replacement', async () => {
    const lines: string[] = [];
    const tunnel = await openServiceTunnel(kc, { namespace: NS, service: 'registration', readyTimeoutMs: 60_000, log: (l) => lines.push(`${Date.now()} ${l}`) });
    try {
      let victim = '';
      const { runs, disruptedAt } = await verifyLoop(tunnel, {
        disruptAfter: 2,
        disrupt: async () => {
          victim = tunnel.stats().pods.at(-1)!;
          await kubectl(['-n', NS, 'delete', 'pod', victim, '--wait=false']);
        },
        enough: (n) => n >= 2 && tunnel.stats().pods.at(-1) !== victim,
        maxMs: 120_000,
      });
      const stats = tunnel.stats();
      const attempts = runs.flatMap((r) => r.steps).reduce((n, s) => n + (s.attempts ?? 0), 0);
      const retried = runs.flatMap((r) => r.steps).filter((s) => (s.attempts ?? 0) > 1);
      const firstOnNew = lines.find((l) => / → pod /.test(l) && !l.includes(victim));
      const waitLine = lines.find((l) => /no ready pod .* waiting/.test(l));
      say(
        `b1: ${runs.length} verify runs (slowest ${Math.max(...runs.map((r) => r.ms))} ms), victim ${victim}; ` +
          `first connection on the replacement ${firstOnNew ? Number(firstOnNew.split(' ')[0]) - disruptedAt : '?'} ms after the delete; ` +
          `tunnel ${JSON.stringify(stats)}; HTTP attempts ${attempts}; retried steps: ${retried.map((s) => `${s.name}: ${s.detail}`).join(' | ') || 'none'}`,
      );
      for (const l of lines.filter((l) => !/ → pod [^ ]+$/.test(l))) say(`  ${l}`);
      const failedRuns = runs.filter((r) => !r.steps.every((s) => s.ok));
      assert.equal(failedRuns.length, 0, `verify failed during the pod deletion:\n${failedRuns.map((r) => summary(r.steps) + '\n' + r.steps.map((s) => s.detail).join('\n')).join('\n')}`);
      assert.ok(runs.filter((r) => r.startedAt >= disruptedAt).length >= 2, 'verify kept running after the delete');
      assert.equal(stats.pods[0], victim, 'the first pod served until it was deleted');
      assert.ok(stats.pods.length >= 2 && stats.pods.at(-1) !== victim, `a replacement pod took over: ${stats.pods.join(' → ')}`);
      assert.ok(!stats.pods.slice(stats.pods.indexOf(victim) + 1).includes(victim), 'nothing went back to the deleted pod');
      // With a single replica there is a gap without a ready pod: the tunnel must have waited in it.
      assert.ok(waitLine, 'the tunnel waited for a ready pod (log line "no ready pod ... waiting")');
      assert.equal(stats.connections, attempts, 'one tunnel connection per HTTP attempt');
      const reroutedConnections = new Set(lines.filter((l) => /re-routing$/.test(l)).map((l) => l.split(' ')[2]));
      assert.equal(stats.rerouted, reroutedConnections.size, 'rerouted counts the connections the log shows re-routed');
    } finally {
      await tunnel.close();
    }
  });

  check('(b2) two replicas: deleting the serving pod mid-verify moves the tunnel to the other pod', async () => {
    await scale(2);
    const lines: string[] = [];
    const tunnel = await openServiceTunnel(kc, { namespace: NS, service: 'registration', log: (l) => lines.push(`${Date.now()} ${l}`) });
    try {
      let victim = '';
      let survivors: string[] = [];
      const { runs, disruptedAt } = await verifyLoop(tunnel, {
        disruptAfter: 2,
        disrupt: async () => {
          victim = tunnel.stats().pods.at(-1)!;
          survivors = (await readyPods()).map((p) => p.name).filter((n) => n !== victim);
          await kubectl(['-n', NS, 'delete', 'pod', victim, '--wait=false']);
        },
        enough: (n) => n >= 3 && tunnel.stats().pods.at(-1) !== victim,
        maxMs: 90_000,
      });
      const stats = tunnel.stats();
      const attempts = runs.flatMap((r) => r.steps).reduce((n, s) => n + (s.attempts ?? 0), 0);
      const retried = runs.flatMap((r) => r.steps).filter((s) => (s.attempts ?? 0) > 1);
      const firstOnOther = lines.find((l) => / → pod /.test(l) && !l.includes(victim));
      say(
        `b2: ${runs.length} verify runs (slowest ${Math.max(...runs.map((r) => r.ms))} ms), victim ${victim}, survivor ${survivors.join(',')}; ` +
          `first connection on another pod ${firstOnOther ? Number(firstOnOther.split(' ')[0]) - disruptedAt : '?'} ms after the delete; ` +
          `tunnel ${JSON.stringify(stats)}; HTTP attempts ${attempts}; retried steps: ${retried.map((s) => `${s.name}: ${s.detail}`).join(' | ') || 'none'}`,
      );
      for (const l of lines.filter((l) => !/ → pod [^ ]+$/.test(l))) say(`  ${l}`);
      const failedRuns = runs.filter((r) => !r.steps.every((s) => s.ok));
      assert.equal(failedRuns.length, 0, `verify failed during the pod deletion:\n${failedRuns.map((r) => summary(r.steps) + '\n' + r.steps.map((s) => s.detail).join('\n')).join('\n')}`);
      assert.equal(stats.pods[0], victim);
      assert.ok(survivors.length === 1, `one other ready pod before the delete: ${survivors.join(', ')}`);
      // The other replica was ready all along, so the tunnel moves to it (not to the victim's replacement).
      assert.equal(stats.pods[1], survivors[0], `the tunnel moved to the other ready replica: ${stats.pods.join(' → ')}`);
      assert.ok(!stats.pods.slice(1).includes(victim), 'nothing went back to the deleted pod');
      assert.ok(Number(firstOnOther?.split(' ')[0]) - disruptedAt < 10_000, 'the switch happened within 10 s of the delete');
      assert.equal(stats.connections, attempts, 'one tunnel connection per HTTP attempt');
      const reroutedConnections = new Set(lines.filter((l) => /re-routing$/.test(l)).map((l) => l.split(' ')[2]));
      assert.equal(stats.rerouted, reroutedConnections.size);
    } finally {
      await tunnel.close();
    }
  });

  check('(b4) an idle keep-alive connection to a deleted pod is closed; the next connection goes to a ready pod', async () => {
    // (b2's deleted pod has a replacement coming up.)
    await waitFor('2 ready pods', async () => (await readyPods()).length === 2, 120_000, 500);
    const lines: string[] = [];
    const tunnel = await openServiceTunnel(kc, { namespace: NS, service: 'registration', log: (l) => lines.push(`${Date.now()} ${l}`) });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets: Array<{ opened: number; closed?: number }> = [];
    const get = (path: string) =>
      new Promise<{ status: number; socket: number }>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: tunnel.localPort, path, agent, timeout: 20_000 }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: sockets.length }));
        });
        req.on('socket', (s) => {
          if (!(s as any).kregSeen) {
            (s as any).kregSeen = true;
            const entry: { opened: number; closed?: number } = { opened: Date.now() };
            sockets.push(entry);
            s.on('close', () => (entry.closed = Date.now()));
          }
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
      });
    try {
      // Two requests on one kept-alive connection: bytes flowed, so the stream is committed to its pod.
      assert.deepEqual(await get('/livez'), { status: 200, socket: 1 });
      assert.deepEqual(await get('/livez'), { status: 200, socket: 1 });
      const victim = tunnel.stats().pods.at(-1)!;
      const deletedAt = Date.now();
      await kubectl(['-n', NS, 'delete', 'pod', victim, '--wait=false']);
      // No request now: the pod drains (5 s), closes its idle connections, and the tunnel must pass that on.
      await waitFor('the kept-alive connection to close', async () => sockets[0]!.closed !== undefined, 30_000, 100);
      const closedAfter = sockets[0]!.closed! - deletedAt;
      const next = await get('/livez');
      const stats = tunnel.stats();
      say(`b4: kept-alive connection closed ${closedAfter} ms after the delete (pod drain is 5 s); next request ${JSON.stringify(next)}; tunnel ${JSON.stringify(stats)}`);
      assert.ok(closedAfter >= 4000, `it stayed open while the pod drained (closed after ${closedAfter} ms)`);
      assert.ok(closedAfter < 20_000, `and was closed once the pod stopped (after ${closedAfter} ms)`);
      assert.deepEqual(next, { status: 200, socket: 2 }, 'the next request went over a new connection');
      assert.equal(stats.connections, 2);
      assert.equal(stats.rerouted, 0);
      assert.equal(stats.pods[0], victim);
      assert.equal(stats.pods.length, 2, `the new connection went to another pod: ${stats.pods.join(' → ')}`);
    } finally {
      agent.destroy();
      await tunnel.close();
    }
  });

  check('(b3) a stream that fails before the pod answers is re-routed (named targetPort per pod, ghost and refusing pods)', async () => {
    // `decoy` claims a container port named "http" (9999) where nothing listens; "ghost" does not exist.
    await apply([nodePod('decoy', 'setInterval(() => {}, 1 << 30)', [{ name: 'http', containerPort: 9999 }], { role: 'decoy' })]);
    await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod/decoy', '--timeout=120s'], { timeoutMs: 130_000 });
    const decoy = await kubectlJson(['-n', NS, 'get', 'pod', 'decoy']);
    const real = (await readyPods())[0]!;
    // A selector-less Service with a hand-made EndpointSlice, so the order of the endpoints is ours.
    await apply([
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'reroute', namespace: NS }, spec: { ports: [{ name: 'web', port: 80, targetPort: 'http' }] } },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'reroute-1', namespace: NS, labels: { 'kubernetes.io/service-name': 'reroute', 'endpointslice.kubernetes.io/managed-by': 'kreg-tunnel-test' } },
        addressType: 'IPv4',
        ports: [{ name: 'web', port: 8080, protocol: 'TCP' }],
        endpoints: [
          { addresses: ['10.244.0.253'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'ghost', namespace: NS } },
          { addresses: [decoy.status.podIP], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'decoy', namespace: NS, uid: decoy.metadata.uid } },
          { addresses: [real.ip], conditions: { ready: true }, targetRef: { kind: 'Pod', name: real.name, namespace: NS, uid: real.uid } },
        ],
      },
    ]);
    const lines: string[] = [];
    const stamped: string[] = [];
    const opened = Date.now();
    const tunnel = await openServiceTunnel(kc, {
      namespace: NS,
      service: 'reroute',
      port: 'web',
      readyTimeoutMs: 10_000,
      log: (l) => {
        lines.push(l);
        stamped.push(`+${Date.now() - opened} ms ${l}`);
      },
    });
    try {
      const t0 = Date.now();
      const first = await rawGet(tunnel.localPort, '/readyz');
      const firstMs = Date.now() - t0;
      const second = await rawGet(tunnel.localPort, '/readyz');
      say(`b3: first connection done in ${firstMs} ms (the kubelet closes a stream ~1 s after the pod closed it); stats ${JSON.stringify(tunnel.stats())}`);
      for (const l of stamped) say(`  ${l}`);
      assert.match(first.response, /^HTTP\/1\.1 200 /, `first: ${first.response.slice(0, 200)}`);
      assert.match(second.response, /^HTTP\/1\.1 200 /);
      assert.deepEqual(tunnel.stats(), { connections: 2, rerouted: 1, pods: [real.name] });
      assert.ok(lines.some((l) => /connection 1: pod ghost went away \(pod not found\); re-routing/.test(l)), 'ghost was tried and skipped');
      assert.ok(lines.some((l) => /connection 1: pod decoy failed before answering: .*9999/.test(l)), 'decoy (port 9999 by name) was tried and failed');
      assert.ok(lines.some((l) => l.startsWith(`connection 1 → pod ${real.name} (rerouted: pod ghost`)), 'connection 1 landed on the real pod');
      assert.ok(lines.includes(`connection 2 → pod ${real.name}`), 'connection 2 went straight to the pod used last');
    } finally {
      await tunnel.close();
    }
  });

  check('(c) no ready pod: the connection is closed with a clear error within readyTimeoutMs', async () => {
    const real = (await readyPods())[0]!;
    // The real, listening pod, but marked not ready: a tunnel that ignored readiness would get a 200.
    await apply([
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'notready', namespace: NS }, spec: { ports: [{ port: 80, targetPort: 8080 }] } },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'notready-1', namespace: NS, labels: { 'kubernetes.io/service-name': 'notready', 'endpointslice.kubernetes.io/managed-by': 'kreg-tunnel-test' } },
        addressType: 'IPv4',
        ports: [{ port: 8080, protocol: 'TCP' }],
        endpoints: [{ addresses: [real.ip], conditions: { ready: false, serving: true }, targetRef: { kind: 'Pod', name: real.name, namespace: NS, uid: real.uid } }],
      },
    ]);
    const readyTimeoutMs = 2500;
    const lines: string[] = [];
    const tunnel = await openServiceTunnel(kc, { namespace: NS, service: 'notready', readyTimeoutMs, log: (l) => lines.push(l) });
    try {
      const { response, closedAfterMs } = await rawGet(tunnel.localPort, '/readyz');
      const err = tunnel.lastError();
      say(`c: local connection closed after ${closedAfterMs} ms (readyTimeoutMs ${readyTimeoutMs}); lastError ${JSON.stringify(err)}`);
      assert.equal(response, '', 'nothing was forwarded');
      assert.ok(closedAfterMs >= readyTimeoutMs - 100, `waited for a ready pod (${closedAfterMs} ms)`);
      assert.ok(closedAfterMs <= readyTimeoutMs + 1500, `closed soon after readyTimeoutMs (${closedAfterMs} ms)`);
      assert.equal(err?.kind, 'no-ready-pod');
      assert.equal(err?.connection, 1);
      assert.match(err!.message, new RegExp(`no ready pod behind service ${NS}/notready after 2\\.5 s`));
      assert.deepEqual(tunnel.stats(), { connections: 1, rerouted: 0, pods: [] });
    } finally {
      await tunnel.close();
    }

    // The same through verify: one clear failed step, within its budget, no pointless retries.
    const t0 = Date.now();
    const report = await verifyRegistration(kc, { namespace: NS, service: 'notready', timeoutMs: 3000 });
    const ms = Date.now() - t0;
    say(`c: verify against notready: ${report.ok ? 'ok' : 'FAILED'} in ${ms} ms; readyz: ${report.steps[0]?.detail}`);
    assert.equal(report.ok, false);
    assert.equal(report.steps[0]?.name, 'readyz');
    assert.equal(report.steps[0]?.ok, false);
    assert.match(report.steps[0]!.detail, /no ready pod behind service .*\/notready after 1\.5 s/);
    assert.equal(report.steps[0]?.attempts, 1);
    assert.ok(ms <= 3000 + 1500, `verify gave up within its budget (${ms} ms)`);
    assert.ok(report.steps.slice(1).every((s) => !s.ok && s.detail.startsWith('skipped')));

    // And a Service that does not exist fails fast with the API's reason.
    const missing = await verifyRegistration(kc, { namespace: NS, service: 'nope', timeoutMs: 3000 });
    assert.equal(missing.ok, false);
    assert.equal(missing.steps[0]?.name, 'tunnel');
    assert.match(missing.steps[0]!.detail, /cannot read service .*\/nope: HTTP 404/);
    await assert.rejects(openServiceTunnel(kc, { namespace: NS, service: 'registration', port: 81 }), /has no port 81; it has http\(80\)/);
  });

  check('(d) bytes arrive intact both ways, under load and concurrency (echo pod)', async () => {
    const script = "require('net').createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen(7000)";
    await apply([
      nodePod('echo', script, [{ name: 'echo', containerPort: 7000 }], { role: 'echo' }),
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: NS }, spec: { selector: { role: 'echo' }, ports: [{ name: 'tcp', port: 7, targetPort: 'echo' }] } },
    ]);
    await kubectl(['-n', NS, 'wait', '--for=condition=Ready', 'pod/echo', '--timeout=120s'], { timeoutMs: 130_000 });
    await waitFor('echo endpoints', async () => {
      const s = await kubectlJson<{ items: any[] }>(['-n', NS, 'get', 'endpointslices', '-l', 'kubernetes.io/service-name=echo']);
      return s.items.some((i) => i.endpoints?.some((e: any) => e.conditions?.ready));
    }, 60_000, 500);
    const tunnel = await openServiceTunnel(kc, { namespace: NS, service: 'echo' });
    try {
      const big = randomBytes(16 * 1024 * 1024);
      let t0 = Date.now();
      const back = await echoRoundTrip(tunnel.localPort, big);
      const bigMs = Date.now() - t0;
      assert.equal(back.length, big.length);
      assert.equal(sha(back), sha(big), '16 MiB came back byte for byte');
      t0 = Date.now();
      const small = Array.from({ length: 25 }, (_, i) => randomBytes(1000 + i * 4001));
      const results = await Promise.all(small.map((b) => echoRoundTrip(tunnel.localPort, b)));
      const parallelMs = Date.now() - t0;
      results.forEach((r, i) => assert.equal(sha(r), sha(small[i]!), `parallel connection ${i} intact`));
      say(`d: 16 MiB echoed in ${bigMs} ms (${((2 * 16) / (bigMs / 1000)).toFixed(1)} MiB/s both ways); 25 parallel connections in ${parallelMs} ms; ${JSON.stringify(tunnel.stats())}`);
      assert.deepEqual(tunnel.stats(), { connections: 26, rerouted: 0, pods: ['echo'] });
    } finally {
      await tunnel.close();
    }
  });
});

/**
 * verifyThrough's lost-response rules, against an in-process stand-in for the service (no cluster
 * needed, kept here next to the scenarios that motivate it).
 */
describe('verifyThrough when a registration response is lost', () => {
  /** A tiny fake of the service; `dropFirstRegister` processes the first POST /register, then resets the connection. */
  async function fakeService(opts: { dropFirstRegister: boolean; stealName: boolean }) {
    const users = new Map<string, { id: string; password: string }>();
    let registers = 0;
    const problemJson = (res: http.ServerResponse, status: number, title: string) => {
      res.writeHead(status, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'about:blank', title, status, detail: title }));
    };
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        if (req.url === '/readyz') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}');
        const { username, password } = JSON.parse(body || '{}') as { username: string; password: string };
        if (req.url === '/register') {
          registers++;
          if (users.has(username)) return problemJson(res, 409, 'Username taken');
          // Someone else grabs the name in the window (the lost response was not ours).
          users.set(username, { id: randomBytes(8).toString('hex'), password: opts.stealName ? 'someone-else' : password });
          if (opts.dropFirstRegister && registers === 1) return req.socket.destroy();
          res.writeHead(201, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ id: users.get(username)!.id, username }));
        }
        if (req.url === '/login') {
          const user = users.get(username);
          if (!user || user.password !== password) return problemJson(res, 401, 'Invalid credentials');
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ id: user.id, username }));
        }
        res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, close: () => new Promise((r) => server.close(r)) };
  }

  test('a lost 201 then 409 on the retry counts as created once our password logs in', async () => {
    const fake = await fakeService({ dropFirstRegister: true, stealName: false });
    try {
      const steps = await verifyThrough(fake.url, { deadline: Date.now() + 10_000 });
      const register = steps.find((s) => s.name === 'register')!;
      assert.ok(steps.every((s) => s.ok), steps.map((s) => `${s.name}: ${s.detail}`).join('\n'));
      assert.equal(register.attempts, 2);
      assert.match(register.detail, /^409 on a retry after a lost response, confirmed ours by the login/);
      assert.match(register.detail, /attempt 1: connection closed before a response|ECONNRESET/);
    } finally {
      await fake.close();
    }
  });

  test('a 409 on the retry is not ours when our password does not log in', async () => {
    const fake = await fakeService({ dropFirstRegister: true, stealName: true });
    try {
      const steps = await verifyThrough(fake.url, { deadline: Date.now() + 10_000 });
      const byName = Object.fromEntries(steps.map((s) => [s.name, s]));
      assert.equal(byName.register!.ok, false);
      assert.match(byName.register!.detail, /the name belongs to someone else/);
      assert.equal(byName.login!.ok, false);
      assert.match(byName.login!.detail, /expected 200, got 401 Invalid credentials/);
    } finally {
      await fake.close();
    }
  });

  test('without a lost response, a 409 on register is a failure', async () => {
    const fake = await fakeService({ dropFirstRegister: false, stealName: false });
    try {
      const first = await verifyThrough(fake.url, { username: 'kreg-verify-fixed' });
      assert.ok(first.every((s) => s.ok));
      const again = await verifyThrough(fake.url, { username: 'kreg-verify-fixed' });
      const register = again.find((s) => s.name === 'register')!;
      assert.equal(register.ok, false);
      assert.match(register.detail, /^expected 201, got 409 Username taken/);
      assert.deepEqual(again.slice(2).map((s) => s.detail.startsWith('skipped')), [true, true, true]);
    } finally {
      await fake.close();
    }
  });
});
