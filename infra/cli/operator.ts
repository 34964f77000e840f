/**
 * `kreg operator`: the controller as a command.
 *
 *   kreg operator crd                 the RegistrationService CRD as YAML (kubectl apply -f -, GitOps)
 *   kreg operator manifests           everything install applies, as YAML
 *   kreg operator install             CRD → RBAC → operator Deployment, deployed and waited for by the engine
 *   kreg operator uninstall           removes what install applied (the CRD stays unless asked)
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
import { clientOptions, kubeconfigProblem, parseDuration } from './args.js';
import { EXIT, exitCodeOf, LineRenderer, printFailure } from './render.js';
import { KubeClient } from '../engine/client.js';
import { deploy } from '../engine/deploy.js';
import { toEngineError } from '../engine/errors.js';
import { destroy } from '../engine/lifecycle.js';
import { describeRef } from '../engine/types.js';
import { sleep } from '../engine/util.js';
import { RegistrationServiceController } from '../operator/controller.js';
import { registrationServiceCrd } from '../operator/crd.js';
import { awaitCrd, DEFAULT_OPERATOR_IMAGE, DEFAULT_OPERATOR_NAMESPACE, installCrd, operatorManifests, OPERATOR_NAME } from '../operator/install.js';
import { LeaderElector } from '../operator/leader.js';

export const OPERATOR_HELP = `Usage: kreg operator <install|uninstall|manifests|crd|run> [options]

  install                 apply the CRD (waits until Established), RBAC and the operator Deployment
                          in --namespace (default kreg-system), then wait until it is ready and
                          one copy holds the leader Lease
  uninstall               delete what install applied; the CRD (and so every RegistrationService)
                          stays unless --include-crd is given
  manifests               print what install applies, as YAML (for GitOps or kubectl apply)
  crd                     print the RegistrationService CRD (kreg.dev/v1alpha1) as YAML
  run                     reconcile RegistrationServices from this process until stopped
                          (installs or updates the CRD first unless --no-install-crd)

Options of install, uninstall and manifests:
      --namespace <name>  the operator's namespace (default kreg-system)
      --image <ref>       operator image (default kreg/operator:dev; npm run image:operator builds it)
      --replicas <n>      copies, one leading (default 2)
      --timeout <d>       how long install waits for readiness (default 3m)
      --include-crd       uninstall: delete the CRD too, and with it every RegistrationService
      --kubeconfig <path>, --context <name>

Options of run:
      --namespace <name>  watch one namespace (default: all)
      --no-install-crd    do not apply the CRD; wait until it is Established (in-cluster, RBAC
                          lets the operator read the CRD, not change it)
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
  if (sub === 'install' || sub === 'uninstall' || sub === 'manifests') return installCommand(sub, rest, io, environ);
  if (sub !== 'run') {
    io.stderr.write(`kreg operator: unknown subcommand "${sub}"; expected install, uninstall, manifests, crd or run (kreg operator --help)\n`);
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
        'no-install-crd': { type: 'boolean' },
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
    client = await KubeClient.create(clientOptions(values.kubeconfig as string | undefined, values.context as string | undefined, environ));
  } catch (err) {
    io.stderr.write(`kreg operator run: cannot load the kubeconfig: ${kubeconfigProblem(err)}\n`);
    return 2;
  }
  let server: Server | undefined;
  let controller: RegistrationServiceController | undefined;
  const stopSignal = new AbortController();
  const stop = () => stopSignal.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  signal?.addEventListener('abort', stop, { once: true });
  const startController = async (leadership?: AbortSignal) => {
    controller = new RegistrationServiceController(client, {
      ...(values.namespace ? { namespace: values.namespace as string } : {}),
      concurrency,
      log,
    });
    const until = leadership ?? stopSignal.signal;
    await controller.start(until);
    if (until.aborted) return;
    log({ msg: 'controller started', namespace: values.namespace ?? '(all)', concurrency, server: client.server });
  };
  const stopController = async () => {
    const c = controller;
    controller = undefined;
    await c?.stop();
  };
  try {
    if (values['no-install-crd']) await awaitCrd(client, log, stopSignal.signal);
    else await installCrd(client, log);
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

async function installCommand(sub: 'install' | 'uninstall' | 'manifests', argv: string[], io: Io, environ: NodeJS.ProcessEnv): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let timeoutMs: number;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        namespace: { type: 'string', short: 'n' },
        image: { type: 'string' },
        replicas: { type: 'string' },
        timeout: { type: 'string' },
        'include-crd': { type: 'boolean' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
    timeoutMs = parseDuration((values.timeout as string | undefined) ?? '3m');
  } catch (err) {
    io.stderr.write(`kreg operator ${sub}: ${(err as Error).message} (kreg operator --help)\n`);
    return EXIT.usage;
  }
  if (values.help) {
    io.stdout.write(`${OPERATOR_HELP}\n`);
    return EXIT.ok;
  }
  const replicas = values.replicas === undefined ? 2 : Number(values.replicas);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 10) {
    io.stderr.write(`kreg operator ${sub}: --replicas must be a whole number from 1 to 10 (got "${values.replicas}")\n`);
    return EXIT.usage;
  }
  const namespace = (values.namespace as string | undefined) ?? DEFAULT_OPERATOR_NAMESPACE;
  const image = (values.image as string | undefined) ?? DEFAULT_OPERATOR_IMAGE;
  const objects = operatorManifests({ namespace, image, replicas });
  if (sub === 'manifests') {
    io.stdout.write(objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n'));
    return EXIT.ok;
  }
  let client: KubeClient;
  try {
    client = await KubeClient.create(clientOptions(values.kubeconfig as string | undefined, values.context as string | undefined, environ));
  } catch (err) {
    io.stderr.write(`kreg operator ${sub}: cannot load the kubeconfig: ${kubeconfigProblem(err)}\n`);
    return EXIT.usage;
  }
  const renderer = new LineRenderer(io.stdout, Boolean((io.stdout as { isTTY?: boolean }).isTTY) && !environ.NO_COLOR);
  const target = { set: { name: OPERATOR_NAME, namespace } };
  try {
    if (sub === 'uninstall') {
      const report = await destroy(client, target, { includeKept: Boolean(values['include-crd']), wait: true, timeoutMs, onEvent: renderer.onEvent });
      if (report.absent) renderer.line(`nothing to uninstall: no ApplySet ${namespace}/${OPERATOR_NAME}`, true);
      else renderer.line(`uninstalled the operator: ${report.deleted.length} deleted${report.kept.length ? `, kept ${report.kept.map((k) => describeRef(k.ref)).join(', ')} (--include-crd deletes it and every RegistrationService)` : ''}`, true);
      return report.ok ? EXIT.ok : EXIT.timeout;
    }
    renderer.line(`installing the operator (${objects.length} objects) into namespace ${namespace} → context ${client.contextName} (${client.server})`, true);
    const report = await deploy(client, objects, target, { timeoutMs, wait: true, prune: true, forceConflicts: true, description: `operator install (image ${image})`, onEvent: renderer.onEvent });
    if (!report.ok) {
      printFailure(io.stderr, 'kreg operator install', report.failure!);
      return exitCodeOf(report.failure);
    }
    const holder = await waitForLeader(client, namespace, image, Math.max(10_000, timeoutMs - (report.timingsMs.total ?? 0)));
    if (!holder) {
      io.stderr.write(`kreg operator install: the operator is ready but no copy took the Lease ${namespace}/${OPERATOR_NAME}; see kubectl -n ${namespace} logs deploy/${OPERATOR_NAME}\n`);
      return EXIT.timeout;
    }
    renderer.line(`operator installed: revision ${report.revision}, ${replicas} ${replicas === 1 ? 'copy' : 'copies'} ready, leader ${holder} (${report.timingsMs.total ?? 0} ms)`, true);
    return EXIT.ok;
  } catch (err) {
    const failure = toEngineError(err).toFailure();
    printFailure(io.stderr, `kreg operator ${sub}`, failure);
    return exitCodeOf(failure);
  } finally {
    client.close();
  }
}

/** The Lease's holder once a running copy with `image` holds and renews it, or undefined after timeoutMs. */
async function waitForLeader(client: KubeClient, namespace: string, image: string, timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const lease = await client.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace, name: OPERATOR_NAME });
    const holder = lease?.spec?.holderIdentity as string | undefined;
    const renewed = Date.parse(lease?.spec?.renewTime ?? '');
    if (holder && Date.now() - renewed < (lease?.spec?.leaseDurationSeconds ?? 15) * 1000) {
      // The identity is <pod name>_<random>. A copy of the replaced version may still hold the
      // Lease while it shuts down; the install is done when a running copy of this one leads.
      const pod = await client.get({ apiVersion: 'v1', kind: 'Pod', namespace, name: holder.slice(0, holder.lastIndexOf('_')) });
      if (pod && !pod.metadata.deletionTimestamp && pod.spec?.containers?.[0]?.image === image) return holder;
    }
    await sleep(500);
  }
  return undefined;
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
