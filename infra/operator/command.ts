/**
 * `kreg operator`: the controller as a command.
 *
 *   kreg operator crd                 the RegistrationService CRD as YAML (kubectl apply -f -, GitOps)
 *   kreg operator run [--namespace n] installs or updates the CRD (waits until Established), then runs
 *                                     the controller against the kubeconfig's cluster until SIGINT/SIGTERM
 *
 * `run` logs JSON lines on stdout and serves /healthz, /readyz (informers synced) and /metrics
 * (controller-runtime's names where they exist) on --listen (default 127.0.0.1:8081).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { KubeClient } from '../engine/client.js';
import { sleep } from '../engine/util.js';
import { OPERATOR_FIELD_MANAGER, RegistrationServiceController } from './controller.js';
import { CRD_NAME, registrationServiceCrd } from './crd.js';
import { LeaderElector } from './leader.js';

export const OPERATOR_HELP = `Usage: kreg operator <crd|run> [options]

  crd                     print the RegistrationService CRD (kreg.dev/v1alpha1) as YAML
  run                     install or update the CRD, then reconcile RegistrationServices until stopped

Options of run:
      --namespace <name>  watch one namespace (default: all)
      --concurrency <n>   resources reconciled at once (default 2)
      --listen <host:port> health and metrics (default 127.0.0.1:8081; :0 for any free port)
      --no-leader-elect   act without a Lease (only when exactly one copy runs)
      --leader-election-namespace <ns>  where the Lease kreg-operator lives (default $POD_NAMESPACE, else default)
      --kubeconfig <path>, --context <name>  as for every kreg command

Endpoints: /healthz (the process runs), /readyz (every watch has listed once), /metrics.
Logs: one JSON object per line on stdout.`;

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export async function operatorCommand(argv: string[], io: Io, environ: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '-h' || sub === '--help' || sub === 'help') {
    io.stdout.write(`${OPERATOR_HELP}\n`);
    return 0;
  }
  if (sub === 'crd') {
    io.stdout.write(stringify(registrationServiceCrd(), { lineWidth: 0 }));
    return 0;
  }
  if (sub !== 'run') {
    io.stderr.write(`kreg operator: unknown subcommand "${sub}"; expected crd or run (kreg operator --help)\n`);
    return 2;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      options: {
        namespace: { type: 'string', short: 'n' },
        concurrency: { type: 'string' },
        listen: { type: 'string' },
        'no-leader-elect': { type: 'boolean' },
        'leader-election-namespace': { type: 'string' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    io.stderr.write(`kreg operator run: ${(err as Error).message} (kreg operator --help)\n`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(`${OPERATOR_HELP}\n`);
    return 0;
  }
  const concurrency = values.concurrency === undefined ? 2 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    io.stderr.write(`kreg operator run: --concurrency must be a whole number from 1 to 64 (got "${values.concurrency}")\n`);
    return 2;
  }
  const listen = /^(.*):(\d+)$/.exec((values.listen as string | undefined) ?? '127.0.0.1:8081');
  if (!listen) {
    io.stderr.write(`kreg operator run: --listen must be host:port (got "${values.listen}")\n`);
    return 2;
  }

  const log = (entry: Record<string, unknown>) => io.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...entry })}\n`);
  let client: KubeClient;
  try {
    const kubeconfig = (values.kubeconfig as string | undefined) ?? environ.KUBECONFIG;
    client = await KubeClient.create({ ...(kubeconfig ? { kubeconfig } : {}), ...(values.context ? { context: values.context as string } : {}) });
  } catch (err) {
    io.stderr.write(`kreg operator run: cannot load the kubeconfig: ${(err as Error).message}\n`);
    return 2;
  }
  let server: Server | undefined;
  let controller: RegistrationServiceController | undefined;
  const stopSignal = new AbortController();
  const stop = () => stopSignal.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  signal?.addEventListener('abort', stop, { once: true });
  const startController = async () => {
    controller = new RegistrationServiceController(client, {
      ...(values.namespace ? { namespace: values.namespace as string } : {}),
      concurrency,
      log,
    });
    await controller.start();
    log({ msg: 'controller started', namespace: values.namespace ?? '(all)', concurrency, server: client.server });
  };
  const stopController = async () => {
    const c = controller;
    controller = undefined;
    await c?.stop();
  };
  try {
    await installCrd(client, log);
    const elector = values['no-leader-elect']
      ? undefined
      : new LeaderElector(client, {
          namespace: (values['leader-election-namespace'] as string | undefined) ?? environ.POD_NAMESPACE ?? 'default',
          name: 'kreg-operator',
          identity: `${hostname()}_${randomUUID().slice(0, 8)}`,
          onStartedLeading: startController,
          onStoppedLeading: stopController,
          log,
        });
    server = await serve(() => controller, () => elector?.isLeader ?? true, listen[1] || '127.0.0.1', Number(listen[2]), log);
    if (elector) await elector.run(stopSignal.signal);
    else {
      await startController();
      await new Promise<void>((resolve) => stopSignal.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
    log({ msg: 'stopped' });
    return 0;
  } catch (err) {
    log({ msg: 'operator failed', error: err instanceof Error ? err.message : String(err) });
    return 8;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await stopController();
    server?.close();
    client.close();
  }
}

/** Applies the CRD (server-side, as kreg's field manager) and waits until it is Established. */
export async function installCrd(client: KubeClient, log: (entry: Record<string, unknown>) => void): Promise<void> {
  await client.apply(registrationServiceCrd(), { fieldManager: OPERATOR_FIELD_MANAGER, force: true });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const crd = await client.get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: CRD_NAME });
    const established = (crd?.status?.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Established' && c.status === 'True');
    if (established) break;
    if (Date.now() > deadline) throw new Error(`the CRD ${CRD_NAME} did not become Established within 60 s`);
    await sleep(200);
  }
  client.forgetDiscovery('kreg.dev/v1alpha1');
  log({ msg: 'CRD established', crd: CRD_NAME });
}

/** /healthz, /readyz and /metrics. Resolves once listening. */
function serve(
  current: () => RegistrationServiceController | undefined,
  leading: () => boolean,
  host: string,
  port: number,
  log: (entry: Record<string, unknown>) => void,
): Promise<Server> {
  const server = createServer((req, res) => {
    const controller = current();
    if (req.url === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (req.url === '/readyz') {
      // A standby is ready (it serves its purpose by waiting); a leader once its watches listed.
      const ready = !leading() || (controller?.informerHealth().every((h) => h.synced) ?? false);
      return void res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ok\n' : 'watches not synced\n');
    }
    if (req.url === '/metrics') return void res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metricsText(controller, leading()));
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      log({ msg: 'serving health and metrics', address: typeof address === 'object' && address ? `${address.address}:${address.port}` : String(address) });
      resolve(server);
    });
  });
}

/** Prometheus text: controller-runtime's metric names where one exists, kreg_ for the watch layer. */
export function metricsText(controller: RegistrationServiceController | undefined, leading: boolean): string {
  const name = 'registrationservice';
  const lines = [
    '# TYPE leader_election_master_status gauge',
    `leader_election_master_status{name="kreg-operator"} ${leading ? 1 : 0}`,
  ];
  if (!controller) return `${lines.join('\n')}\n`;
  const s = controller.stats;
  const q = controller.queue.stats();
  lines.push(
    '# TYPE controller_runtime_reconcile_total counter',
    `controller_runtime_reconcile_total{controller="${name}"} ${s.reconciles}`,
    '# TYPE controller_runtime_reconcile_errors_total counter',
    `controller_runtime_reconcile_errors_total{controller="${name}"} ${s.errors}`,
    '# TYPE workqueue_depth gauge',
    `workqueue_depth{name="${name}"} ${q.depth}`,
    '# TYPE workqueue_adds_total counter',
    `workqueue_adds_total{name="${name}"} ${q.adds}`,
    '# TYPE workqueue_retries_total counter',
    `workqueue_retries_total{name="${name}"} ${q.retries}`,
    '# TYPE kreg_operator_writes_total counter',
    `kreg_operator_writes_total{what="children"} ${s.writes}`,
    `kreg_operator_writes_total{what="status"} ${s.statusWrites}`,
    '# TYPE kreg_watch_last_event_age_seconds gauge',
    '# TYPE kreg_watch_relists_total counter',
    '# TYPE kreg_watch_reconnects_total counter',
  );
  const now = Date.now();
  for (const h of controller.informerHealth()) {
    lines.push(`kreg_watch_last_event_age_seconds{kind="${h.kind}"} ${h.lastEventAt ? ((now - h.lastEventAt) / 1000).toFixed(3) : 'NaN'}`);
    for (const [cause, n] of Object.entries(h.relists)) lines.push(`kreg_watch_relists_total{kind="${h.kind}",cause="${cause}"} ${n}`);
    for (const [cause, n] of Object.entries(h.reconnects)) lines.push(`kreg_watch_reconnects_total{kind="${h.kind}",cause="${cause}"} ${n}`);
  }
  return `${lines.join('\n')}\n`;
}
