/**
 * What the kreg entry point (infra/cli.ts) and the commands it loads share: the parsed command
 * line, the named environments, kubeconfig options, durations and usage errors. It imports nothing
 * of the commands, so none of them imports back from the entry point that loads them.
 */
import { NoKubeconfigError, type ClientOptions } from '../engine/client.js';

/**
 * The named environments (infra/spec.ts NAMED_SPECS), spelled here so that parsing arguments and
 * printing help load no schema library; a test keeps them equal to the spec's.
 */
export const ENVIRONMENT_NAMES = ['dev', 'prod'] as const;

/** KubeClient.create's options from --kubeconfig and --context; without --kubeconfig, `environ`'s KUBECONFIG. */
export function clientOptions(kubeconfig: string | undefined, context: string | undefined, environ: NodeJS.ProcessEnv): ClientOptions {
  const file = kubeconfig ?? environ.KUBECONFIG;
  return { ...(file ? { kubeconfig: file } : {}), ...(context ? { context } : {}) };
}
/** Each environment's namespace (NAMED_SPECS[env].namespace), for commands that do not synthesize. */
export const ENVIRONMENT_NAMESPACES: Record<(typeof ENVIRONMENT_NAMES)[number], string> = { dev: 'kreg-dev', prod: 'kreg-prod' };

export const COMMANDS = ['synth', 'diff', 'deploy', 'status', 'rollback', 'destroy', 'verify'] as const;
export type Command = (typeof COMMANDS)[number];

export interface Cli {
  command: Command;
  env: string;
  /** Any manifests instead of an environment: the ApplySet `name` in `namespace`, objects from `filename`. */
  set?: { name: string; namespace: string; filename?: string; app?: string };
  image?: string;
  outdir?: string;
  kubeconfig?: string;
  context?: string;
  json: boolean;
  timeoutMs: number;
  wait: boolean;
  prune: boolean;
  forceConflicts: boolean;
  /** Take over existing objects the set did not create. */
  adopt: boolean;
  includeKept: boolean;
  to?: number;
}

/** A bad command line: the entry point prints it in one line and exits 2. */
export class UsageError extends Error {}

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--timeout: "${text}" is not a duration (examples: 300, 90s, 5m)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!);
}

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

/** What the bin knows of the code it runs. */
export interface BuildInfo {
  /** The bundle's build id (build/cli/build-id); absent when running from source. */
  id?: string;
}

/** Why the kubeconfig could not be loaded, with what to do in terms of kreg's own flags. */
export function kubeconfigProblem(err: unknown): string {
  if (err instanceof NoKubeconfigError) {
    return 'no kubeconfig found: set KUBECONFIG, pass --kubeconfig <file>, or create ~/.kube/config (for the local test cluster: KUBECONFIG=.cluster/kubeconfig)';
  }
  return err instanceof Error ? err.message : String(err);
}
