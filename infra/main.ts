/**
 * The cdk8s app: spec → charts. `synth(instance, namespace, spec)` is the pure core (the operator
 * will call it with a custom resource's spec); `buildApp` applies it to a named environment (see
 * spec.ts). `cdk8s synth` (see cdk8s.yaml) and `npm run synth` run this file; the deploy CLI
 * synthesizes in-process (`chart.toJson()`).
 * Importing has no side effects: only running the file as the main module writes manifests.
 *
 *   npm run synth                      # dev (default), writes dist/
 *   npm run synth -- --env prod        # or KREG_ENV=prod; the cdk8s CLI passes no args, so use KREG_ENV there
 *   npm run synth -- --env dev --image kreg/registration:1.2.3 --outdir out/
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { App, YamlOutputType, type Chart } from 'cdk8s';
import { DatabaseChart } from '../charts/database.js';
import { PostgresChart } from '../charts/postgres.js';
import { NamespaceChart } from '../charts/namespace.js';
import { APP_NAME, externalDatabase, RegistrationChart, type DatabaseMode } from '../charts/registration.js';
import type { KubeObject } from './engine/types.js';
import { isSpecName, NAMED_SPECS, parseSpec, SPEC_NAMES, SpecError, type RegistrationSpec, type RegistrationSpecInput } from './spec.js';

export { NAMED_SPECS as ENVIRONMENTS, SPEC_NAMES as ENV_NAMES } from './spec.js';

export interface SynthOptions {
  /**
   * The named environment this instance belongs to (`dev`, `prod`): it names the charts (and so the
   * files), goes into `app.kubernetes.io/instance` as `<instance>-<environment>`, and makes the
   * Namespace part of the output. Without it (an operator's resource) the namespace exists already.
   */
  environment?: string;
  /** Where `app.synth()` writes; default `CDK8S_OUTDIR` or `dist`. Nothing is written unless synth() is called. */
  outdir?: string;
}

/**
 * The cdk8s App of one instance of the service. Pure: validates the spec (throws `SpecError`
 * listing every problem), reads no environment and writes no file.
 */
export function synthApp(instance: string, namespace: string, input: RegistrationSpecInput | RegistrationSpec, options: SynthOptions = {}): App {
  const spec = parseSpec(input, options.environment ? `spec of environment "${options.environment}"` : `spec of "${instance}"`);
  const prefix = options.environment ?? instance;
  const app = new App({
    outdir: options.outdir ?? 'dist',
    yamlOutputType: YamlOutputType.FILE_PER_CHART,
  });
  const namespaceChart = options.environment
    ? new NamespaceChart(app, `${prefix}-namespace`, { namespace, environment: options.environment })
    : undefined;
  const environment = options.environment ? { environment: options.environment } : {};

  let databaseChart: Chart | undefined;
  let database: DatabaseMode;
  if (spec.database.mode === 'embedded') {
    database = {
      mode: 'embedded',
      storage: spec.database.storage,
      ...(spec.database.storageClassName ? { storageClassName: spec.database.storageClassName } : {}),
    };
  } else if (spec.database.mode === 'postgres') {
    const { server, urlSecretRef } = spec.database;
    let postgresChart: PostgresChart | undefined;
    if (server) {
      postgresChart = new PostgresChart(app, `${prefix}-postgres`, {
        namespace,
        name: server.name ?? `${instance}-postgres`,
        ...environment,
        storage: server.storage,
        ...(server.storageClassName ? { storageClassName: server.storageClassName } : {}),
        clientLabels: { 'app.kubernetes.io/name': APP_NAME, 'app.kubernetes.io/instance': options.environment ? `${instance}-${options.environment}` : instance },
      });
      if (namespaceChart) postgresChart.addDependency(namespaceChart);
      databaseChart = postgresChart;
    }
    database = postgresChart
      ? { mode: 'postgres', server: { host: postgresChart.host, port: postgresChart.port, role: postgresChart.role, database: postgresChart.database, passwordSecret: postgresChart.passwordSecret } }
      : { mode: 'postgres', url: { secretName: urlSecretRef!.name, key: urlSecretRef!.key } };
  } else {
    const { server, url, authTokenSecretRef } = spec.database;
    let libsqlChart: DatabaseChart | undefined;
    if (server) {
      libsqlChart = databaseChart = new DatabaseChart(app, `${prefix}-database`, {
        namespace,
        name: server.name ?? `${instance}-libsql`,
        ...environment,
        storage: server.storage,
        ...(server.storageClassName ? { storageClassName: server.storageClassName } : {}),
        ...(server.jwtKeySecretRef ? { jwtKey: { secretName: server.jwtKeySecretRef.name, key: server.jwtKeySecretRef.key } } : {}),
      });
      if (namespaceChart) libsqlChart.addDependency(namespaceChart);
    }
    database = {
      mode: 'remote',
      server: libsqlChart ?? externalDatabase(url!),
      ...(authTokenSecretRef ? { authToken: { secretName: authTokenSecretRef.name, key: authTokenSecretRef.key } } : {}),
    };
  }

  const registration = new RegistrationChart(app, `${prefix}-registration`, {
    namespace,
    instance,
    ...environment,
    image: spec.image,
    database,
    ...(spec.replicas !== undefined ? { replicas: spec.replicas } : {}),
    ...(spec.autoscaling ? { autoscaling: spec.autoscaling } : {}),
    hashConcurrency: spec.hashConcurrency,
    resources: spec.resources,
    drainSeconds: spec.drainSeconds,
    graceSeconds: spec.graceSeconds,
    settings: spec.settings,
  });
  if (namespaceChart) registration.addDependency(namespaceChart);
  if (databaseChart) registration.addDependency(databaseChart);
  return app;
}

/** The objects of one instance, charts in dependency order, as the engine takes them. Pure. */
export function synth(instance: string, namespace: string, spec: RegistrationSpecInput | RegistrationSpec, options: SynthOptions = {}): KubeObject[] {
  return synthApp(instance, namespace, spec, options).charts.flatMap((chart) => chart.toJson() as KubeObject[]);
}

export interface BuildAppOptions {
  env: string;
  /** Where `app.synth()` writes; default `CDK8S_OUTDIR` or `dist`. */
  outdir?: string;
  /** Overrides the environment's image (e.g. a CI-built tag). */
  image?: string;
  /** Extra non-secret settings (env var → value) merged over the environment's, e.g. for a config change. */
  settings?: Record<string, string>;
}

export function isEnvName(name: string): boolean {
  return isSpecName(name);
}

/** A named environment's spec with the CLI's overrides (image, settings) applied; not yet validated. */
export function environmentSpec(options: BuildAppOptions): { namespace: string; spec: RegistrationSpecInput } {
  if (!isSpecName(options.env)) {
    throw new Error(`unknown environment "${options.env}"; expected one of: ${SPEC_NAMES.join(', ')}`);
  }
  const named = NAMED_SPECS[options.env];
  const spec: RegistrationSpecInput = {
    ...named.spec,
    ...(options.image ? { image: options.image } : {}),
    ...(options.settings ? { settings: { ...named.spec.settings, ...options.settings } } : {}),
  };
  return { namespace: named.namespace, spec };
}

/**
 * The cdk8s App of a named environment: its spec (with overrides) synthesized as the instance
 * `registration`. Reads `CDK8S_OUTDIR` for the output folder, as the cdk8s CLI expects; nothing else.
 */
export function buildApp(options: BuildAppOptions): App {
  const { namespace, spec } = environmentSpec(options);
  return synthApp(APP_NAME, namespace, spec, {
    environment: options.env,
    outdir: options.outdir ?? process.env.CDK8S_OUTDIR ?? 'dist',
  });
}

/** `--env`, else `KREG_ENV`, else `dev`. */
export function parseCli(argv: string[], environ: NodeJS.ProcessEnv = process.env): BuildAppOptions {
  const { values } = parseArgs({
    args: argv,
    options: { env: { type: 'string', short: 'e' }, outdir: { type: 'string', short: 'o' }, image: { type: 'string' } },
    strict: true,
  });
  return {
    env: values.env ?? environ.KREG_ENV ?? 'dev',
    ...(values.outdir ? { outdir: values.outdir } : {}),
    ...((values.image ?? environ.KREG_IMAGE) ? { image: (values.image ?? environ.KREG_IMAGE)! } : {}),
  };
}

/** Synthesizes to the outdir after removing stale manifests, so `kubectl apply -f dist/` never applies another env's files. */
export function synthToDisk(options: BuildAppOptions): { outdir: string; files: string[] } {
  const app = buildApp(options);
  rmSync(app.outdir, { recursive: true, force: true });
  app.synth();
  const files = readdirSync(app.outdir)
    .filter((f) => f.endsWith('.k8s.yaml'))
    .sort()
    .map((f) => join(app.outdir, f));
  return { outdir: app.outdir, files };
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  try {
    const { files } = synthToDisk(parseCli(process.argv.slice(2)));
    for (const file of files) process.stdout.write(`${file}\n`);
  } catch (err) {
    if (err instanceof SpecError) {
      process.stderr.write(`kreg synth: ${err.subject} is invalid:\n${err.issues.map((i) => `  ${i.path || '(root)'}: ${i.message}\n`).join('')}`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`kreg synth: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  }
}
