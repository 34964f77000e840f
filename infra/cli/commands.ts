/**
 * What `kreg <command>` does once its arguments parsed: everything that needs the charts, the spec
 * or a cluster. Loaded by `infra/cli.ts` only for a command that runs, so `kreg --help` and a usage
 * error never load cdk8s, zod or the Kubernetes client.
 */
import { TableRenderer, type TerminalOut } from './table.js';
import { EXIT, exitCodeOf, LineRenderer, printFailure, renderDiff, renderStatus } from './render.js';
import { chooseRevision, deploy, destroy, diff, KEPT_BY_ANNOTATION, KubeClient, rollback, status, toEngineError, type DeployReport, type EngineEvent, type KubeObject, type Target } from '../engine/index.js';
import { verifyRegistration } from '../verify.js';
import { readFileSync } from 'node:fs';
import { type BuildInfo, type Cli, clientOptions, ENVIRONMENT_NAMESPACES, type Io, kubeconfigProblem } from './args.js';
import { synthCache } from './synth-cache.js';

/** Where kreg records what it owns for an environment: Secret `kreg-<env>` in the env's namespace. */
export function targetFor(env: string): Target {
  const namespace = ENVIRONMENT_NAMESPACES[env as keyof typeof ENVIRONMENT_NAMESPACES];
  return { set: { name: `kreg-${env}`, namespace } };
}

/** Runs a parsed command; returns its exit code. */
export async function execute(cli: Cli, io: Io, environ: NodeJS.ProcessEnv, build: BuildInfo = {}): Promise<number> {
  // What is deployed: an environment's app, synthesized in-process (its spec checked first, before
  // any kubeconfig is read: a bad one is a usage error, listed field by field), or -f manifests.
  // The charts, cdk8s and the spec's schema load only for the commands that synthesize.
  const synthesizing = !cli.set && (cli.command === 'synth' || cli.command === 'diff' || cli.command === 'deploy');
  const appOptions = { env: cli.env, ...(cli.image ? { image: cli.image } : {}) };
  // diff and deploy reuse this bundle's earlier synth of the same environment and image; its spec
  // was valid then, since only a successful synth is kept.
  const cache = synthesizing && cli.command !== 'synth' ? synthCache(build.id, appOptions, environ) : undefined;
  const cached = cache?.read();
  const { desiredObjects, environmentSpec, parseSpec, SpecError, synthToDisk } =
    synthesizing && !cached ? await import('./synth.js') : ({} as typeof import('./synth.js'));
  if (synthesizing && !cached) {
    try {
      parseSpec(environmentSpec(appOptions).spec, `spec of environment "${cli.env}"`);
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      io.stderr.write(`kreg ${cli.command}: ${err.subject} is invalid:\n`);
      for (const issue of err.issues) io.stderr.write(`  ${issue.path || '(root)'}: ${issue.message}\n`);
      return EXIT.usage;
    }
  }
  let fromFiles: KubeObject[] | undefined;
  let sourceMs = 0;
  if (cli.set?.filename !== undefined || cli.set?.app !== undefined) {
    const t0 = performance.now();
    const { appManifests, ManifestError, parseManifests, readManifestSources } = await import('./manifests.js');
    try {
      fromFiles = cli.set.app !== undefined ? await appManifests(cli.set.app, environ, io.stderr) : parseManifests(readManifestSources(cli.set.filename!, () => readFileSync(0, 'utf8')));
      sourceMs = Math.round(performance.now() - t0);
    } catch (err) {
      if (!(err instanceof ManifestError) && (err as NodeJS.ErrnoException).code === undefined) throw err;
      io.stderr.write(`kreg ${cli.command}: ${(err as Error).message}\n`);
      return EXIT.usage;
    }
  }
  const desired = (): KubeObject[] => {
    if (fromFiles) return fromFiles;
    if (cached) return cached;
    const objects = desiredObjects(appOptions);
    cache?.write(objects);
    return objects;
  };
  /** What the command works on, in messages: `dev`, or `set web in namespace demo`. */
  const subject = cli.set ? `set ${cli.set.name} in namespace ${cli.set.namespace}` : cli.env;

  if (cli.command === 'synth') {
    try {
      const { files } = synthToDisk({ ...appOptions, ...(cli.outdir ? { outdir: cli.outdir } : {}) });
      for (const f of files) io.stdout.write(`${f}\n`);
      return EXIT.ok;
    } catch (err) {
      io.stderr.write(`kreg synth: ${(err as Error).message}\n`);
      return EXIT.invalid;
    }
  }

  let client: KubeClient;
  try {
    client = await KubeClient.create(clientOptions(cli.kubeconfig, cli.context, environ));
  } catch (err) {
    io.stderr.write(`kreg ${cli.command}: cannot load the kubeconfig: ${kubeconfigProblem(err)}\n`);
    return EXIT.usage;
  }
  // Live lines go to stderr with --output json, so stdout holds nothing but the report.
  const live = cli.json ? io.stderr : io.stdout;
  const color = Boolean(live.isTTY) && !environ.NO_COLOR;
  // On a terminal, deploy, rollback and destroy redraw one table; anywhere else, plain lines.
  const table = !cli.json && live.isTTY && !environ.KREG_PLAIN && ['deploy', 'rollback', 'destroy'].includes(cli.command);
  const renderer: { line(text: string, bold?: boolean): void; onEvent(e: EngineEvent): void; close?(finalPhase?: string): void } = table
    ? new TableRenderer(live as TerminalOut, color, `kreg ${cli.command} ${cli.set ? cli.set.name : cli.env}`, undefined, cli.command === 'destroy' ? 'deleting' : 'validating')
    : new LineRenderer(live, color);
  const onEvent = cli.json ? (_: EngineEvent) => {} : renderer.onEvent;
  const say = (line: string) => {
    if (!cli.json) renderer.line(line, true);
  };
  const emit = (value: unknown) => io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  const target: Target = cli.set ? { set: { name: cli.set.name, namespace: cli.set.namespace } } : targetFor(cli.env);
  try {
    switch (cli.command) {
      case 'diff': {
        const objects = desired();
        const report = await diff(client, objects, target, { prune: cli.prune, forceConflicts: cli.forceConflicts, adopt: cli.adopt });
        const code = report.failure ? exitCodeOf(report.failure) : report.changes ? EXIT.changes : EXIT.ok;
        if (cli.json) emit({ ...report, exitCode: code });
        else if (report.failure) printFailure(io.stderr, `kreg ${cli.command}`, report.failure);
        else io.stdout.write(renderDiff(report, Boolean(io.stdout.isTTY) && !environ.NO_COLOR));
        return code;
      }
      case 'deploy':
      case 'rollback': {
        const t0 = performance.now();
        const objects = cli.command === 'deploy' ? desired() : [];
        const synthMs = Math.round(performance.now() - t0);
        if (cli.command === 'deploy') {
          const source = !fromFiles ? `for ${cli.env} in-process (${cached ? 'cached, ' : ''}${synthMs} ms)` : cli.set!.app !== undefined ? `from the app "${cli.set!.app}" (${sourceMs} ms)` : `from ${cli.set!.filename === '-' ? 'standard input' : cli.set!.filename}`;
          say(`${fromFiles ? 'read' : 'synth'}: ${objects.length} objects ${source} → context ${client.contextName} (${client.server})`);
        }
        const options = {
          timeoutMs: cli.timeoutMs,
          wait: cli.wait,
          prune: cli.prune,
          forceConflicts: cli.forceConflicts,
          adopt: cli.adopt,
          description: `${cli.command} ${cli.set ? (cli.set.app !== undefined ? `--app ${cli.set.app}` : `-f ${cli.set.filename ?? ''}`.trim()) : cli.env}${cli.image ? ` (image ${cli.image})` : ''}`,
          onEvent,
        };
        let report: DeployReport & { rolledBackTo?: number };
        if (cli.command === 'deploy') report = await deploy(client, objects, target, options);
        else {
          const revision = await chooseRevision(client, target.set, cli.to);
          say(`rollback: re-applying revision ${revision.number} (${revision.description || 'no description'}, ${revision.deployedAt})`);
          report = await rollback(client, target, revision, options);
        }
        report.timingsMs.synth = synthMs;
        const code = exitCodeOf(report.failure);
        if (cli.json) emit({ ...report, exitCode: code });
        else if (report.ok) {
          renderer.close?.(); // the summary goes below the final table
          say(
            report.changed
              ? `deployed ${subject}: revision ${report.revision}${report.pruned.length ? `, pruned ${report.pruned.length}` : ''} (${report.timingsMs.total} ms, ${report.apiCalls} API calls)`
              : `no changes: ${subject} is at revision ${report.revision} and ready (${report.timingsMs.total} ms, ${report.apiCalls} API calls)`,
          );
        }
        return code;
      }
      case 'status': {
        const s = await status(client, target.set);
        if (cli.json) emit(s);
        else if (!s.deployed) io.stdout.write(`nothing deployed: no ApplySet ${target.set.namespace}/${target.set.name} in context ${client.contextName}\n`);
        else io.stdout.write(renderStatus(subject, s));
        return !s.deployed ? EXIT.usage : s.ready ? EXIT.ok : EXIT.failed;
      }
      case 'destroy': {
        // The engine says why an object stays; the flag that deletes it anyway is this command's.
        const withFlag = (why: string) => (why === KEPT_BY_ANNOTATION ? `${why} (--include-kept deletes it)` : why);
        const report = await destroy(client, target, {
          includeKept: cli.includeKept,
          wait: cli.wait,
          timeoutMs: cli.timeoutMs,
          onEvent: (e) => onEvent(e.type === 'prune' && e.why ? { ...e, why: withFlag(e.why) } : e),
        });
        report.kept = report.kept.map((k) => ({ ...k, why: withFlag(k.why) }));
        renderer.close?.(report.ok ? `${report.deleted.length} deleted, ${report.kept.length} kept` : 'still terminating');
        if (cli.json) emit(report);
        else if (report.absent) say(`nothing to destroy: no ApplySet ${target.set.namespace}/${target.set.name}`);
        else say(`destroyed ${subject}: ${report.deleted.length} deleted, ${report.kept.length} kept`);
        return report.ok ? EXIT.ok : EXIT.timeout;
      }
      case 'verify': {
        const ns = target.set.namespace;
        const report = await verifyRegistration(client, {
          namespace: ns,
          timeoutMs: cli.timeoutMs,
          ...(cli.json ? {} : { log: say }),
        });
        if (cli.json) emit(report);
        else {
          live.write(`${report.ok ? 'verified' : 'verify FAILED'}: ${report.target} (${report.tunnel.connections} connections, ${report.tunnel.rerouted} re-routed)\n`);
        }
        return report.ok ? EXIT.ok : EXIT.verify;
      }
    }
  } catch (err) {
    const failure = toEngineError(err).toFailure();
    if (cli.json) emit({ ok: false, exitCode: exitCodeOf(failure), failure });
    else printFailure(io.stderr, `kreg ${cli.command}`, failure);
    return exitCodeOf(failure);
  } finally {
    renderer.close?.();
    client.close();
  }
  return EXIT.ok;
}
