/**
 * `kreg dev`: the inner loop. Build the service image from the working tree (tagged by content),
 * make it available to the cluster, deploy it with the engine, keep a port-forward open on a fixed
 * local port, stream the logs of the current pods, and on every change do it again: a change under
 * service/ (or to the Dockerfile or package files) rebuilds and redeploys, a change to the charts
 * or the spec only redeploys. Ctrl-C stops everything it started.
 *
 * Each deploy is a `kreg deploy` child process: it synthesizes from the files as they are now (the
 * charts this process loaded would be stale) and prints its own progress and failure evidence.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, watch, type FSWatcher } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { clientOptions, ENVIRONMENT_NAMES, ENVIRONMENT_NAMESPACES, type Io, kubeconfigProblem, parseDuration } from './args.js';
import { followPodLog, KubeClient } from '../engine/index.js';
import { openServiceTunnel, type ServiceTunnel } from '../engine/tunnel.js';
import { EXIT } from './render.js';

export const DEV_HELP = `Usage: kreg dev [--env <name>] [--port <8080>] [--registry <host>] [--once] [--timeout <2m>]

The inner loop, in the kreg project's directory. Builds the service image from the working tree
(npm run image; tagged by content: kreg/registration:dev-<image id>), makes it available to the
cluster, deploys it (kreg deploy --image), opens a port-forward on http://127.0.0.1:<port> that
follows rollouts, and streams the logs of the current pods. Then it watches the tree: a change under
service/src only bundles the code on the host and layers it on the last full build; any other change
under service/ (or Dockerfile, package.json, package-lock.json) rebuilds the image; both redeploy.
A change to charts/ or infra/ only redeploys. The builds only bundle, so the code is type-checked
beside the loop (tsc --noEmit); its errors are printed without holding the deploy back. Each cycle
prints its split (build, transfer, rollout) and how long the edit took to reach a ready pod. A failed
build or deploy is shown with its evidence and the loop keeps watching. Ctrl-C stops everything it
started.

How the image reaches the cluster, first match wins:
  --registry <host>    push there (only changed layers travel); the cluster pulls <host>/...
  KEP-1755             a local registry the cluster announces (ConfigMap kube-public/
                       local-registry-hosting, as kind and Tilt use): push to its host
  kind-<name> context  kind load docker-image --name <name>
  the local test cluster (context kreg): test/cluster/load-image.sh (docker save | ctr import)

  --port <n>           local port of the port-forward (default 8080; 0 picks a free one)
  --once               one cycle, then exit (0 when the service answered /readyz through the tunnel)
  --timeout <d>        deadline of each deploy (default 2m)
  -e, --env <name>     environment: ${ENVIRONMENT_NAMES.join(', ')} (default: $KREG_ENV or dev)
      --kubeconfig <path>, --context <name>   as for every command`;

const IMAGE_REPOSITORY = 'kreg/registration';
const SERVICE = 'registration';
/** Paths whose change needs a new image; anything else watched only needs a redeploy. */
const IMAGE_INPUTS = ['service/', 'Dockerfile', '.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'infra/scripts/build-service.mjs', 'infra/scripts/esbuild-node.mjs', 'infra/images/runtime/'];
const DEPLOY_INPUTS = ['charts/', 'infra/', 'cdk8s.yaml'];
/** Changes only under here rebuild the service's code alone, on the last full build (see buildCode). */
const CODE_INPUT = 'service/src/';
const IGNORED = /(^|\/)(node_modules|\.git|build|dist|data|\.cluster)(\/|$)|~$|\.swp$/;

type Transfer =
  | { kind: 'registry'; push: string; pull: string; why: string }
  | { kind: 'kind'; cluster: string }
  | { kind: 'local-cluster' };

export interface DevOptions {
  env: string;
  port: number;
  registry?: string;
  once: boolean;
  timeoutMs: number;
  kubeconfig?: string;
  context?: string;
}

export class DevUsageError extends Error {}

export function parseDevArgs(argv: string[], environ: NodeJS.ProcessEnv): DevOptions | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        env: { type: 'string', short: 'e' },
        port: { type: 'string' },
        registry: { type: 'string' },
        once: { type: 'boolean' },
        timeout: { type: 'string' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new DevUsageError(`${(err as Error).message} (kreg dev --help)`);
  }
  if (values.help) return 'help';
  const env = (values.env as string | undefined) ?? environ.KREG_ENV ?? 'dev';
  if (!(ENVIRONMENT_NAMES as readonly string[]).includes(env)) throw new DevUsageError(`unknown environment "${env}"; expected one of: ${ENVIRONMENT_NAMES.join(', ')}`);
  const port = Number(values.port ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new DevUsageError(`--port must be a port number (got "${values.port}")`);
  let timeoutMs = 120_000;
  try {
    if (values.timeout !== undefined) timeoutMs = parseDuration(values.timeout as string);
  } catch (err) {
    throw new DevUsageError((err as Error).message);
  }
  return {
    env,
    port,
    once: Boolean(values.once),
    timeoutMs,
    ...(values.registry ? { registry: String(values.registry).replace(/\/+$/, '') } : {}),
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig as string } : {}),
    ...(values.context ? { context: values.context as string } : {}),
  };
}

/** Runs `command` in its own process group (so Ctrl-C can stop all of it); resolves with its exit code and output. */
function runChild(
  command: string,
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; echo?: NodeJS.WritableStream; children: Set<ChildProcess>; terminal?: boolean },
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    // `terminal`: the child writes to this process's terminal itself (it then draws its own live
    // table); its output is not collected.
    const stdio = opts.terminal ? (['ignore', 'inherit', 'inherit'] as const) : (['ignore', 'pipe', 'pipe'] as const);
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: [...stdio] });
    opts.children.add(child);
    let output = '';
    const collect = (d: Buffer) => {
      output += d.toString();
      opts.echo?.write(d);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.once('error', (err) => {
      opts.children.delete(child);
      resolve({ code: 127, output: `${output}${err.message}\n` });
    });
    child.once('close', (code, signal) => {
      opts.children.delete(child);
      resolve({ code: code ?? (signal ? 130 : 1), output });
    });
  });
}

/**
 * KEP-1755's `localRegistryHosting.v1` value: a small YAML map whose `host` is where to push and
 * `hostFromContainerRuntime` (when the node sees the registry elsewhere) what pods pull from. Read
 * with a pattern rather than a YAML parser: the CLI bundle stays small, and the format is flat.
 */
export function parseLocalRegistryHosting(text: string): { host: string; fromRuntime?: string } | undefined {
  const field = (name: string) => new RegExp(`^\\s*${name}:\\s*["']?([^"'\\s]+)["']?\\s*$`, 'm').exec(text)?.[1];
  const host = field('host');
  if (!host) return undefined;
  const fromRuntime = field('hostFromContainerRuntime');
  return { host, ...(fromRuntime ? { fromRuntime } : {}) };
}

/** KEP-1755: the registry a cluster announces for local development, if it announces one. */
async function announcedRegistry(client: KubeClient): Promise<{ host: string; fromRuntime?: string } | undefined> {
  const cm = await client.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'kube-public', name: 'local-registry-hosting' }).catch(() => undefined);
  const text = (cm as { data?: Record<string, string> } | undefined)?.data?.['localRegistryHosting.v1'];
  return text ? parseLocalRegistryHosting(text) : undefined;
}

async function chooseTransfer(client: KubeClient, opts: DevOptions, root: string): Promise<Transfer> {
  if (opts.registry) return { kind: 'registry', push: opts.registry, pull: opts.registry, why: '--registry' };
  const announced = await announcedRegistry(client);
  if (announced) return { kind: 'registry', push: announced.host, pull: announced.fromRuntime ?? announced.host, why: 'announced by the cluster (KEP-1755)' };
  if (client.contextName.startsWith('kind-')) return { kind: 'kind', cluster: client.contextName.slice('kind-'.length) };
  if (client.contextName === 'kreg' && existsSync(join(root, 'test/cluster/load-image.sh'))) return { kind: 'local-cluster' };
  throw new DevUsageError(
    `cannot tell how to get an image into context "${client.contextName}": pass --registry <host> (a registry the cluster can pull from), ` +
      'or use a cluster that announces one (KEP-1755), a kind cluster, or the local test cluster',
  );
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export async function devCommand(argv: string[], io: Io, environ: NodeJS.ProcessEnv): Promise<number> {
  let opts: DevOptions;
  try {
    const parsed = parseDevArgs(argv, environ);
    if (parsed === 'help') {
      io.stdout.write(`${DEV_HELP}\n`);
      return EXIT.ok;
    }
    opts = parsed;
  } catch (err) {
    io.stderr.write(`kreg dev: ${(err as Error).message}\n`);
    return EXIT.usage;
  }
  const root = process.cwd();
  if (!existsSync(join(root, 'Dockerfile')) || !existsSync(join(root, 'service')) || !existsSync(join(root, 'bin/kreg.mjs'))) {
    io.stderr.write('kreg dev: run it in the kreg project\'s directory (it builds ./Dockerfile and watches ./service, ./charts and ./infra)\n');
    return EXIT.usage;
  }
  const namespace = ENVIRONMENT_NAMESPACES[opts.env as keyof typeof ENVIRONMENT_NAMESPACES];
  const say = (line: string) => io.stdout.write(`kreg dev: ${line}\n`);
  /** A failed step: the last `lines` of its output, then what failed. */
  const showFailure = (output: string, lines: number, what: string) => {
    io.stderr.write(output.split('\n').slice(-lines).join('\n'));
    say(what);
  };

  let client: KubeClient;
  try {
    client = await KubeClient.create(clientOptions(opts.kubeconfig, opts.context, environ));
  } catch (err) {
    io.stderr.write(`kreg dev: cannot load the kubeconfig: ${kubeconfigProblem(err)}\n`);
    return EXIT.usage;
  }
  let transfer: Transfer;
  try {
    transfer = await chooseTransfer(client, opts, root);
  } catch (err) {
    client.close();
    io.stderr.write(`kreg dev: ${(err as Error).message}\n`);
    return err instanceof DevUsageError ? EXIT.usage : EXIT.unreachable;
  }
  const transferName =
    transfer.kind === 'registry' ? `push to ${transfer.push} (${transfer.why})` : transfer.kind === 'kind' ? `kind load into cluster ${transfer.cluster}` : 'docker save | ctr import into the local test cluster';
  say(`context ${client.contextName}, namespace ${namespace}; images reach the cluster by ${transferName}`);

  const children = new Set<ChildProcess>();
  const stopping = new AbortController();
  const dockerWasUp = spawnSync('docker', ['info'], { stdio: 'ignore' }).status === 0;
  let deployedImage: string | undefined;
  let builtImage: string | undefined;
  let tunnel: ServiceTunnel | undefined;
  let lastCode: number = EXIT.ok;

  const scratch = `${IMAGE_REPOSITORY}:dev-build`;
  const libsTag = `${IMAGE_REPOSITORY}:dev-libs`;
  /** The runtime-libs stage of the last full build that succeeded: what a code-only change goes on. */
  let libsImage: string | undefined;
  // This session's scratch: the bundle's build context (code/) and the type-check's incremental state.
  const sessionDir = join(tmpdir(), `kreg-dev-${process.pid}`);
  const codeDir = join(sessionDir, 'code');
  // Labelled, so a kreg dev image never has the id of an `npm run image` build of the same tree:
  // containerd 1.6's CRI plugin loses the imported name of an image once the same image id is
  // pulled under another name (seen on the local cluster: kreg/registration:dev became unpullable).
  const DEV_LABEL = 'dev.kreg.build=kreg-dev';
  const tagBuilt = (): string => {
    const id = spawnSync('docker', ['image', 'inspect', '--format', '{{.Id}}', scratch], { encoding: 'utf8' }).stdout.trim();
    const tag = `${IMAGE_REPOSITORY}:dev-${id.replace(/^sha256:/, '').slice(0, 12)}`;
    spawnSync('docker', ['tag', scratch, tag]);
    return tag;
  };

  /** The whole image (npm run image), then its runtime-libs stage tagged (cached: a fraction of a second). */
  const build = async (): Promise<string | undefined> => {
    libsImage = undefined;
    const env = { ...environ, KREG_IMAGE_LABELS: DEV_LABEL };
    const result = await runChild('bash', ['test/cluster/image.sh', scratch], { cwd: root, env, children });
    if (stopping.signal.aborted) return undefined;
    if (result.code !== 0) {
      showFailure(result.output, 30, 'build failed (above); fix it and save: the loop is still watching');
      return undefined;
    }
    const libs = await runChild('bash', ['test/cluster/image.sh', libsTag], { cwd: root, env: { ...env, KREG_IMAGE_TARGET: 'runtime-libs' }, children });
    if (libs.code === 0) libsImage = libsTag;
    return tagBuilt();
  };

  /**
   * A change under service/src only: bundle on the host (infra/scripts/build-service.mjs, as the
   * image build does) and put the code on the last full build's runtime-libs (infra/images/dev/
   * Dockerfile) — the layer a full build would write, without a container to bundle in.
   */
  const buildCode = async (): Promise<string | undefined> => {
    if (!libsImage) return build();
    const bundled = await runChild(process.execPath, [join(root, 'infra/scripts/build-service.mjs'), '--code-only', '--quiet'], {
      cwd: root,
      env: { ...environ, KREG_SERVICE_OUT: codeDir },
      children,
    });
    if (stopping.signal.aborted) return undefined;
    if (bundled.code !== 0) {
      showFailure(bundled.output, 30, 'bundling failed (above); fix it and save: the loop is still watching');
      return undefined;
    }
    const layered = await runChild(
      'docker',
      ['build', '--quiet', '--file', join(root, 'infra/images/dev/Dockerfile'), '--build-arg', `LIBS_IMAGE=${libsImage}`, '--label', DEV_LABEL, '--tag', scratch, codeDir],
      { cwd: root, children },
    );
    if (stopping.signal.aborted) return undefined;
    if (layered.code !== 0) {
      showFailure(layered.output, 30, 'build failed (above); fix it and save: the loop is still watching');
      return undefined;
    }
    return tagBuilt();
  };

  /**
   * The image builds bundle only (esbuild strips types), so the code is type-checked beside the
   * loop: `tsc --noEmit` (incremental) after each build of the service, its errors printed when it
   * finishes, without holding the deploy. A check still running when the next build starts is
   * replaced by a new one.
   */
  const tsc = join(root, 'node_modules/typescript/bin/tsc');
  let typecheck: ChildProcess | undefined;
  let typeErrorsShown = false;
  const checkTypes = () => {
    if (!existsSync(tsc)) return;
    if (typecheck && typecheck.exitCode === null) {
      try {
        process.kill(-typecheck.pid!, 'SIGTERM');
      } catch {
        // it finished in the meantime
      }
    }
    const child = spawn(process.execPath, [tsc, '--noEmit', '--pretty', 'false', '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', join(sessionDir, 'tsbuildinfo')], {
      cwd: root,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    typecheck = child;
    children.add(child);
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code, signal) => {
      children.delete(child);
      if (signal || stopping.signal.aborted || typecheck !== child) return;
      const errors = output.split('\n').filter((l) => /error TS\d+/.test(l));
      if (code !== 0 && errors.length > 0) {
        io.stderr.write(`${errors.slice(0, 20).join('\n')}\n`);
        say(`type-check: ${errors.length} error${errors.length === 1 ? '' : 's'} (above); the deployed code runs as bundled, fix and save`);
        typeErrorsShown = true;
      } else if (code === 0 && typeErrorsShown) {
        say('type-check: no errors');
        typeErrorsShown = false;
      }
    });
  };

  /**
   * Makes `image` pullable by the cluster; returns the reference the pods should use. An image
   * already delivered (a charts-only change, or a save that built the same image) is not sent again:
   * on the local cluster that would be a full import.
   */
  let delivered: { image: string; ref: string } | undefined;
  const deliver = async (image: string): Promise<string | undefined> => {
    if (delivered?.image === image) return delivered.ref;
    const ref = await send(image);
    if (ref) delivered = { image, ref };
    return ref;
  };
  const send = async (image: string): Promise<string | undefined> => {
    if (transfer.kind === 'registry') {
      const pushRef = `${transfer.push}/${image}`;
      spawnSync('docker', ['tag', image, pushRef]);
      const pushed = await runChild('docker', ['push', pushRef], { cwd: root, children });
      if (pushed.code !== 0) {
        showFailure(pushed.output, 10, `docker push ${pushRef} failed (above)`);
        return undefined;
      }
      return `${transfer.pull}/${image}`;
    }
    const result =
      transfer.kind === 'kind'
        ? await runChild('kind', ['load', 'docker-image', image, '--name', transfer.cluster], { cwd: root, children })
        : await runChild('bash', ['test/cluster/load-image.sh', image], { cwd: root, children });
    if (result.code !== 0) {
      showFailure(result.output, 10, `loading ${image} into the cluster failed (above)`);
      return undefined;
    }
    return image;
  };

  // On a terminal each deploy draws kreg deploy's live table (the child gets the terminal), and the
  // pods' log lines wait until it is done, so they do not tear the table; elsewhere, plain lines.
  const terminal = Boolean(io.stdout.isTTY) && !environ.KREG_PLAIN;
  let heldLogLines: string[] | undefined;
  const printLog = (line: string) => {
    if (heldLogLines) heldLogLines.push(line);
    else io.stdout.write(line);
  };
  const deployImage = async (image: string): Promise<number> => {
    const args = [join(root, 'bin/kreg.mjs'), 'deploy', '--env', opts.env, '--image', image, '--timeout', `${Math.round(opts.timeoutMs / 1000)}s`, ...(opts.kubeconfig ? ['--kubeconfig', opts.kubeconfig] : []), ...(opts.context ? ['--context', opts.context] : [])];
    if (!terminal) return (await runChild(process.execPath, args, { cwd: root, env: { ...environ, KREG_PLAIN: '1' }, echo: io.stdout, children })).code;
    heldLogLines = [];
    try {
      return (await runChild(process.execPath, args, { cwd: root, env: environ, children, terminal: true })).code;
    } finally {
      const held = heldLogLines;
      heldLogLines = undefined;
      for (const line of held) io.stdout.write(line);
    }
  };

  /**
   * One cycle; `rebuild` false redeploys the image already built, `codeOnly` rebuilds just the
   * service's code. Returns the deploy's exit code, or undefined when it stopped early.
   */
  const cycle = async (rebuild: boolean, editedAt: number, why: string, codeOnly = false): Promise<number | undefined> => {
    const fast = rebuild && codeOnly && Boolean(libsImage);
    say(`${why}: ${rebuild ? `${fast ? 'bundle' : 'build'}, transfer, deploy` : 'deploy'}`);
    const t0 = performance.now();
    let image = builtImage;
    if (rebuild || !image) {
      image = fast ? await buildCode() : await build();
      if (!image) return undefined;
      builtImage = image;
      checkTypes();
    }
    const t1 = performance.now();
    const ref = await deliver(image);
    if (!ref || stopping.signal.aborted) return undefined;
    const t2 = performance.now();
    const code = await deployImage(ref);
    if (stopping.signal.aborted) return undefined;
    const t3 = performance.now();
    lastCode = code;
    if (code !== EXIT.ok) {
      say(`deploy failed (exit ${code}; evidence above); the loop is still watching`);
      return code;
    }
    deployedImage = ref;
    if (!tunnel) {
      tunnel = await openServiceTunnel(client, { namespace, service: SERVICE, localPort: opts.port, log: () => {} });
    }
    say(
      `ready at ${tunnel.url} with ${ref}: edit → ready ${seconds(performance.now() - editedAt)} ` +
        `(build ${seconds(t1 - t0)}, transfer ${seconds(t2 - t1)}, rollout ${seconds(t3 - t2)})`,
    );
    return code;
  };

  // Logs of the current pods: every pod behind the Service, followed from its start, each line
  // prefixed with the pod's name; new pods (a rollout) are picked up within a second.
  const followed = new Set<string>();
  const followLogs = async () => {
    const svc = await client.get({ apiVersion: 'v1', kind: 'Service', namespace, name: SERVICE }).catch(() => undefined);
    const selector = (svc as { spec?: { selector?: Record<string, string> } } | undefined)?.spec?.selector;
    if (!selector) return;
    const labelSelector = Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(',');
    const pods = await client.list('v1', 'Pod', { namespace, labelSelector }).catch(() => []);
    for (const pod of pods) {
      const name = pod.metadata.name!;
      const phase = (pod as { status?: { phase?: string } }).status?.phase;
      if (followed.has(name) || phase !== 'Running') continue;
      followed.add(name);
      void (async () => {
        try {
          for await (const line of followPodLog(client, namespace, name, { container: SERVICE, signal: stopping.signal })) {
            printLog(`[${name}] ${line}\n`);
          }
        } catch {
          // the pod went away or the stream broke: the next poll follows whatever runs now
        } finally {
          followed.delete(name);
        }
      })();
    }
  };

  const watchers: FSWatcher[] = [];
  let logTimer: NodeJS.Timeout | undefined;
  const stop = async () => {
    if (stopping.signal.aborted) return;
    stopping.abort();
    for (const w of watchers) w.close();
    if (logTimer) clearInterval(logTimer);
    for (const child of children) {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await tunnel?.close();
    client.close();
    rmSync(sessionDir, { recursive: true, force: true });
    // A Docker engine the build started for this session is stopped with it.
    if (!dockerWasUp) spawnSync('bash', ['-c', 'pkill -TERM -x dockerd'], { stdio: 'ignore' });
  };

  // Ctrl-C (or SIGTERM) at any point, the first build included, stops what runs: the children
  // run in process groups of their own, so a default exit would leave a build behind.
  const finished = new Promise<void>((resolve) => {
    const onSignal = () => {
      say('stopping');
      void stop().then(resolve);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });

  if (opts.once) {
    const code = await Promise.race([cycle(true, performance.now(), 'start'), finished.then(() => undefined)]);
    if (stopping.signal.aborted) return EXIT.ok;
    let answered = false;
    if (code === EXIT.ok && tunnel) {
      const res = await fetch(`${tunnel.url}/readyz`, { signal: AbortSignal.timeout(30_000) }).catch(() => undefined);
      answered = res?.status === 200;
      say(answered ? `${tunnel.url}/readyz answered 200` : `${tunnel.url}/readyz did not answer 200`);
    }
    await stop();
    return code === undefined ? EXIT.failed : code !== EXIT.ok ? code : answered ? EXIT.ok : EXIT.verify;
  }

  // Changes while a cycle runs are gathered into one more cycle after it.
  let pending: { rebuild: boolean; at: number; paths: Set<string> } | undefined;
  let running = false;
  let debounce: NodeJS.Timeout | undefined;
  const runPending = async () => {
    if (running || !pending || stopping.signal.aborted) return;
    running = true;
    const next = pending;
    pending = undefined;
    const paths = [...next.paths];
    const codeOnly = paths.every((p) => p.startsWith(CODE_INPUT));
    await cycle(next.rebuild, next.at, `changed ${paths.slice(0, 3).join(', ')}${paths.length > 3 ? ` and ${paths.length - 3} more` : ''}`, codeOnly).catch((err: Error) => {
      say(`cycle failed: ${err.message}; the loop is still watching`);
    });
    running = false;
    if (pending) void runPending();
  };
  const onChange = (path: string) => {
    const rel = path.split(sep).join('/');
    if (IGNORED.test(rel)) return;
    const rebuild = IMAGE_INPUTS.some((p) => rel === p || rel.startsWith(p));
    if (!rebuild && !DEPLOY_INPUTS.some((p) => rel === p || rel.startsWith(p))) return;
    pending ??= { rebuild: false, at: performance.now(), paths: new Set() };
    pending.rebuild ||= rebuild;
    pending.paths.add(rel);
    clearTimeout(debounce);
    debounce = setTimeout(() => void runPending(), 150);
  };
  for (const dir of ['service', 'charts', 'infra']) {
    watchers.push(watch(join(root, dir), { recursive: true }, (_event, file) => file && onChange(join(dir, file.toString()))));
  }
  watchers.push(
    watch(root, (_event, file) => {
      if (file && IMAGE_INPUTS.concat(DEPLOY_INPUTS).includes(file.toString())) onChange(file.toString());
    }),
  );

  running = true;
  await cycle(true, performance.now(), 'start').catch((err: Error) => say(`start failed: ${err.message}; the loop is still watching`));
  running = false;
  void runPending();
  logTimer = setInterval(() => void followLogs(), 1000);
  void followLogs();
  say('watching ./service, ./charts and ./infra: service/src re-bundles, the rest of service/ rebuilds the image, charts/ and infra/ redeploy; Ctrl-C stops');
  await finished;
  say(`stopped (last deploy ${deployedImage ?? 'none'}, exit ${lastCode})`);
  return EXIT.ok;
}
