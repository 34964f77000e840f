/**
 * The cdk8s app: environments → charts. `cdk8s synth` (see cdk8s.yaml) and `npm run synth` run
 * this file; the deploy CLI imports `buildApp` and synthesizes in-process (`chart.toJson()`).
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
import { App, YamlOutputType } from 'cdk8s';
import { DatabaseChart } from '../charts/database.js';
import { NamespaceChart } from '../charts/namespace.js';
import { RegistrationChart, type RegistrationChartProps } from '../charts/registration.js';

export interface Environment {
  namespace: string;
  image: string;
  /** Everything of RegistrationChartProps except what the environment itself decides. */
  registration: Omit<RegistrationChartProps, 'namespace' | 'environment' | 'image'>;
  /** Run an in-cluster libsql server (sqld) in the namespace (remote mode). */
  database?: { storageGiB: number; jwtKey?: { secretName: string; key: string } };
}

/** Secret (created out of band, never in git) holding the token the pods present to the libsql server. */
export const DATABASE_TOKEN_SECRET = { secretName: 'registration-database', key: 'auth-token' } as const;
/** Secret (out of band) holding the Ed25519 public key sqld verifies that token with. */
export const DATABASE_JWT_KEY_SECRET = { secretName: 'libsql-auth', key: 'jwt-public-key' } as const;

export const ENVIRONMENTS = {
  /** Local clusters (kind, test/cluster): one replica on the embedded database, small requests. */
  dev: {
    namespace: 'kreg-dev',
    image: 'kreg/registration:dev',
    registration: {
      database: { mode: 'embedded', storageGiB: 1 },
      replicas: 1,
      hashConcurrency: 2,
      resources: { cpuRequestMillis: 100, cpuLimitMillis: 1000 },
      settings: { LOG_LEVEL: 'debug' },
    },
  },
  /** Scale-out: stateless replicas on a libsql server, autoscaled 3‥10 on CPU, PDB, spread. */
  prod: {
    namespace: 'kreg-prod',
    image: 'kreg/registration:0.1.0',
    registration: {
      database: {
        mode: 'remote',
        url: 'http://libsql.kreg-prod.svc.cluster.local:8080',
        authToken: DATABASE_TOKEN_SECRET,
      },
      autoscaling: { minReplicas: 3, maxReplicas: 10, cpuUtilization: 70 },
      hashConcurrency: 2,
      resources: { cpuRequestMillis: 250, cpuLimitMillis: 1000 },
      // Behind one ingress proxy: its X-Forwarded-For hop is trusted for the rate limiter.
      settings: { LOG_LEVEL: 'info', TRUST_PROXY_HOPS: '1' },
    },
    database: { storageGiB: 5, jwtKey: DATABASE_JWT_KEY_SECRET },
  },
} as const satisfies Record<string, Environment>;

export type EnvName = keyof typeof ENVIRONMENTS;
export const ENV_NAMES = Object.keys(ENVIRONMENTS) as EnvName[];

export interface BuildAppOptions {
  env: string;
  /** Where `app.synth()` writes; default `CDK8S_OUTDIR` or `dist`. Nothing is written unless synth() is called. */
  outdir?: string;
  /** Overrides the environment's image (e.g. a CI-built tag). */
  image?: string;
  /** Extra non-secret settings (env var → value) merged over the environment's, e.g. for a config change. */
  settings?: Record<string, string>;
}

export function isEnvName(name: string): name is EnvName {
  return Object.hasOwn(ENVIRONMENTS, name);
}

/** Builds the cdk8s App of one environment. Pure: no files are written, nothing is read. */
export function buildApp(options: BuildAppOptions): App {
  if (!isEnvName(options.env)) {
    throw new Error(`unknown environment "${options.env}"; expected one of: ${ENV_NAMES.join(', ')}`);
  }
  const env: Environment = ENVIRONMENTS[options.env];
  const app = new App({
    outdir: options.outdir ?? process.env.CDK8S_OUTDIR ?? 'dist',
    yamlOutputType: YamlOutputType.FILE_PER_CHART,
  });
  const namespace = new NamespaceChart(app, `${options.env}-namespace`, {
    namespace: env.namespace,
    environment: options.env,
  });
  let database: DatabaseChart | undefined;
  if (env.database) {
    database = new DatabaseChart(app, `${options.env}-database`, {
      namespace: env.namespace,
      environment: options.env,
      storageGiB: env.database.storageGiB,
      ...(env.database.jwtKey ? { jwtKey: env.database.jwtKey } : {}),
    });
    database.addDependency(namespace);
  }
  const registration = new RegistrationChart(app, `${options.env}-registration`, {
    namespace: env.namespace,
    environment: options.env,
    image: options.image ?? env.image,
    ...env.registration,
    ...(options.settings ? { settings: { ...env.registration.settings, ...options.settings } } : {}),
  });
  registration.addDependency(namespace);
  if (database) registration.addDependency(database);
  return app;
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
    process.stderr.write(`kreg synth: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
