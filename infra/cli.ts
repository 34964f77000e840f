/**
 * `kreg`: synth → diff → deploy → wait → verify for the registration service, from one process.
 * The app is built in-process (no `cdk8s synth` subprocess); everything cluster-side goes through
 * the generic engine in `infra/engine/`.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { COMMANDS, ENVIRONMENT_NAMES, parseDuration, UsageError, type BuildInfo, type Cli, type Command, type Io } from './cli/args.js';
import { EXIT } from './cli/render.js';

// The shared parts live in cli/args.ts (so the commands do not import back from this entry point);
// they are re-exported for whoever used them from here.
export { clientOptions, ENVIRONMENT_NAMES, ENVIRONMENT_NAMESPACES, parseDuration, type BuildInfo, type Cli, type Io } from './cli/args.js';

const EXIT_CODES = `Exit codes:
  0  success (diff: no changes)
  1  diff: there are changes
  2  usage or configuration error (bad flag, unknown environment, invalid spec: every field
     problem is listed; no kubeconfig/context)
  3  invalid objects: the server-side dry run rejected something; nothing was applied
  4  conflict: fields owned by another field manager (--force-conflicts takes them over), or
     objects that exist and were not created by this set (--adopt takes them over)
  5  an object failed: apply error, ImagePullBackOff, CrashLoopBackOff, failed Job, ...
  6  timeout: objects not ready within --timeout
  7  verify failed
  8  the Kubernetes API is unreachable or refused the credentials`;

const COMMON = `Common options:
  -e, --env <name>        environment: ${ENVIRONMENT_NAMES.join(', ')} (default: $KREG_ENV or dev)
  -f, --filename <path>   diff/deploy any manifests instead: a YAML/JSON file, a directory of them,
                          or - for standard input (with --name)
      --app "<cmd>"       diff/deploy what a cdk8s app writes (run as cdk8s synth runs cdk8s.yaml's
                          app: through the shell, CDK8S_OUTDIR set) (with --name)
      --name <set>        the ApplySet recording what -f deployed (status, rollback, destroy find
                          it by this name); its parent is the Secret <set> in -n
  -n, --namespace <ns>    the set's namespace, and where namespaced objects without one go (default: default)
      --kubeconfig <path> kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)
      --context <name>    kubeconfig context (default: the current context)
  -o, --output <format>   text (default; live lines, coloured on a TTY) or json (one report on stdout)
  -h, --help              this help`;

const HELP: Record<Command | 'main', string> = {
  main: `kreg — ship the registration service: synth → diff → deploy → wait → verify

Usage: kreg <command> [options]

Commands:
  synth      write the manifests to dist/ (same output as npm run synth)
  diff       show what a deploy would change (server-side dry run vs live), and what it would prune
  deploy     validate, apply (server-side, field manager kreg), wait for readiness, prune, record a revision
  status     readiness of every object kreg deployed, with reasons (events and last log lines
             for what is not ready), and the revision history
  rollback   re-apply a recorded revision (with prune and wait)
  destroy    delete what kreg deployed (workloads first); data marked kreg.dev/prune=never stays
  verify     through an API port-forward: /readyz, register a throwaway user, log in
  dev        the inner loop: build, deploy, port-forward and logs, again on every save (kreg dev --help)
  operator   the RegistrationService controller: print its CRD, or run it (kreg operator --help)

Run kreg <command> --help for its options. Any manifests, not only this app:
  kreg deploy -f k8s/ --name web -n demo; kreg deploy --app "npx ts-node main.ts" --name web -n demo;
  kreg status --name web -n demo; kreg destroy --name web -n demo

${COMMON}

${EXIT_CODES}`,
  synth: `Usage: kreg synth [--env <name>] [--image <ref>] [--outdir <dir>]

Writes one YAML file per chart to dist/ (or --outdir), numbered in apply order, and prints their paths.

${COMMON}`,
  diff: `Usage: kreg diff [--env <name>] [--image <ref>] [--no-prune] [--force-conflicts] [--adopt]
       kreg diff -f <file|dir|-> --name <set> [-n <namespace>] [same options]

  --force-conflicts, --adopt   show what deploy would do with the same flag

For each object, a YAML diff of the live object against the server's dry-run result of applying
the desired one (status and server bookkeeping left out), then the objects a deploy would prune.
Exit 0 = no changes, 1 = changes, >1 = error (like kubectl diff).

${COMMON}

${EXIT_CODES}`,
  deploy: `Usage: kreg deploy [--env <name>] [--image <ref>] [--timeout <5m>] [--no-wait] [--no-prune] [--force-conflicts] [--adopt]
       kreg deploy -f <file|dir|-> --name <set> [-n <namespace>] [same options]

  --image <ref>        deploy this image instead of the environment's (CI deploys the tag it built)
  --timeout <d>        overall deadline: 300, 90s, 5m (default 5m)
  --no-wait            apply and return; do not wait for readiness
  --no-prune           keep objects kreg deployed before that are no longer desired
  --force-conflicts    take over fields another field manager owns
  --adopt              take over objects that exist but were not created by this set (without it
                       they are refused, exit 4, and nothing is applied); adopted objects are
                       updated, pruned and destroyed with the set from then on. An object's owner
                       can consent instead: annotate it kreg.dev/adopt=Secret/<namespace>/<set>

Builds the app in-process, dry-runs every object on the server (nothing changes if one is
rejected), applies changed objects in dependency order (Namespaces, CRDs, RBAC/ServiceAccounts,
ConfigMaps/Secrets, PVCs, Services, Jobs waited to complete, workloads), waits for readiness and
stops at the first failure (image pull, crash loop, unschedulable, failed Job) with its events and
logs, prunes, and records the revision. An unchanged redeploy applies nothing.

${COMMON}

${EXIT_CODES}`,
  status: `Usage: kreg status [--env <name> | --name <set> [-n <namespace>]]

Readiness of every object in the ApplySet with its reason, and the recorded revisions.
Exit 0 when all are ready, 5 when one is not, 2 when nothing is deployed.

${COMMON}`,
  rollback: `Usage: kreg rollback [--env <name> | --name <set> [-n <namespace>]] [--to <N>] [--timeout <5m>] [--no-wait] [--force-conflicts] [--adopt]

Re-applies revision N (default: the last successful one before the current), with prune and wait;
the result is recorded as a new revision.

${COMMON}

${EXIT_CODES}`,
  destroy: `Usage: kreg destroy [--env <name> | --name <set> [-n <namespace>]] [--include-kept] [--timeout <5m>] [--no-wait]

Deletes every object of the ApplySet in reverse dependency order (workloads before what they use),
then its revision history. Objects annotated kreg.dev/prune=never (the embedded database's volume)
and namespaces holding them stay unless --include-kept is given.

${COMMON}`,
  verify: `Usage: kreg verify [--env <name>] [--timeout <60s>]

Port-forwards to the Service through the Kubernetes API (no kubectl needed; a connection whose pod
goes away is re-routed to a ready one), checks /readyz, registers a throwaway user, checks that a
duplicate is refused, logs in, and checks that a wrong password is refused.

${COMMON}

${EXIT_CODES}`,
};

const SET_COMMANDS: readonly Command[] = ['diff', 'deploy', 'status', 'rollback', 'destroy'];
const NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** `-f`, `--name`, `-n`: any manifests as an ApplySet of their own, instead of an environment. */
function parseSetOptions(command: Command, values: Record<string, string | boolean | undefined>): Cli['set'] {
  const filename = values.filename as string | undefined;
  const app = values.app as string | undefined;
  const name = values.name as string | undefined;
  const namespace = values.namespace as string | undefined;
  if (filename !== undefined && app !== undefined) throw new UsageError('-f and --app are two sources of objects; give one');
  if (app !== undefined) {
    if (!(command === 'deploy' || command === 'diff')) throw new UsageError(`--app is for deploy and diff; kreg ${command} finds the set by --name`);
    if (name === undefined) throw new UsageError('--app needs --name <set>: the ApplySet that records what was deployed, so the next deploy can prune what is gone');
  }
  if (filename === undefined && app === undefined && name === undefined) {
    if (namespace !== undefined) throw new UsageError('-n/--namespace goes with --name <set> (an environment has its own namespace)');
    return undefined;
  }
  if (!SET_COMMANDS.includes(command)) throw new UsageError(`kreg ${command} works on the environments only; -f/--name are for ${SET_COMMANDS.join(', ')}`);
  if (values.env !== undefined) throw new UsageError('--env and --name are two ways to say what to work on; give one');
  if (values.image !== undefined) throw new UsageError('--image sets an environment\'s image; with -f, the manifests say which images they run');
  if (name === undefined) throw new UsageError('-f needs --name <set>: the ApplySet that records what was deployed, so the next deploy can prune what is gone');
  if (!NAME_PATTERN.test(name) || name.length > 53) throw new UsageError(`--name "${name}" must be a DNS label: lowercase letters, digits and "-", at most 53 characters`);
  if (filename === undefined && app === undefined && (command === 'deploy' || command === 'diff')) throw new UsageError(`kreg ${command} --name needs -f <file|dir|-> or --app "<cmd>": the objects to ${command}`);
  if (filename !== undefined && !(command === 'deploy' || command === 'diff')) throw new UsageError(`-f is for deploy and diff; kreg ${command} finds the set by --name`);
  if (namespace !== undefined && !NAME_PATTERN.test(namespace)) throw new UsageError(`-n "${namespace}" is not a namespace name`);
  return { name, namespace: namespace ?? 'default', ...(filename !== undefined ? { filename } : {}), ...(app !== undefined ? { app } : {}) };
}

export function parseCli(argv: string[], environ: NodeJS.ProcessEnv = process.env): Cli | { help: string } {
  const [first, ...rest] = argv;
  if (!first || first === '-h' || first === '--help' || first === 'help') return { help: HELP.main };
  if (!COMMANDS.includes(first as Command)) throw new UsageError(`unknown command "${first}"; expected one of: ${COMMANDS.join(', ')}, dev, operator (kreg --help)`);
  const command = first as Command;
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      options: {
        env: { type: 'string', short: 'e' },
        image: { type: 'string' },
        outdir: { type: 'string' },
        kubeconfig: { type: 'string' },
        context: { type: 'string' },
        output: { type: 'string', short: 'o' },
        timeout: { type: 'string' },
        'no-wait': { type: 'boolean' },
        'no-prune': { type: 'boolean' },
        'force-conflicts': { type: 'boolean' },
        adopt: { type: 'boolean' },
        'include-kept': { type: 'boolean' },
        to: { type: 'string' },
        filename: { type: 'string', short: 'f' },
        app: { type: 'string' },
        name: { type: 'string' },
        namespace: { type: 'string', short: 'n' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (kreg ${command} --help)`);
  }
  if (values.help) return { help: HELP[command] };
  const set = parseSetOptions(command, values);
  const env = (values.env as string | undefined) ?? environ.KREG_ENV ?? 'dev';
  if (!(ENVIRONMENT_NAMES as readonly string[]).includes(env)) throw new UsageError(`unknown environment "${env}"; expected one of: ${ENVIRONMENT_NAMES.join(', ')}`);
  const output = (values.output as string | undefined) ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`--output must be text or json (got "${output}")`);
  let to: number | undefined;
  if (values.to !== undefined) {
    to = Number(values.to);
    if (!Number.isInteger(to) || to < 1) throw new UsageError(`--to must be a revision number (got "${values.to}")`);
  }
  const image = set ? undefined : ((values.image as string | undefined) ?? environ.KREG_IMAGE);
  return {
    command,
    env,
    ...(set ? { set } : {}),
    ...(image ? { image } : {}),
    ...(values.outdir ? { outdir: values.outdir as string } : {}),
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig as string } : {}),
    ...(values.context ? { context: values.context as string } : {}),
    json: output === 'json',
    timeoutMs: values.timeout ? parseDuration(values.timeout as string) : command === 'verify' ? 60_000 : 300_000,
    wait: !values['no-wait'],
    prune: !values['no-prune'],
    forceConflicts: Boolean(values['force-conflicts']),
    adopt: Boolean(values.adopt),
    includeKept: Boolean(values['include-kept']),
    ...(to !== undefined ? { to } : {}),
  };
}

export async function run(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }, environ = process.env, build: BuildInfo = {}): Promise<number> {
  if (argv[0] === 'operator') {
    const { operatorCommand } = await import('./cli/operator.js');
    return operatorCommand(argv.slice(1), io, environ);
  }
  if (argv[0] === 'dev') {
    const { devCommand } = await import('./cli/dev.js');
    return devCommand(argv.slice(1), io, environ);
  }
  let cli: Cli;
  try {
    const parsed = parseCli(argv, environ);
    if ('help' in parsed) {
      io.stdout.write(`${parsed.help}\n`);
      return EXIT.ok;
    }
    cli = parsed;
  } catch (err) {
    io.stderr.write(`kreg: ${(err as Error).message}\n`);
    return EXIT.usage;
  }
  const { execute } = await import('./cli/commands.js');
  return execute(cli, io, environ, build);
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
