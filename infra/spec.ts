/**
 * The deployment spec of the registration service: one zod schema that validates input (a named
 * environment here, a `RegistrationService` custom resource in the operator), produces the JSON
 * Schema the CRD carries, and defines the named specs `dev` and `prod`.
 *
 * Cross-field rules are written once, in `CROSS_FIELD_RULES`: each has a predicate (run by zod) and
 * the same rule in CEL (carried by the CRD as `x-kubernetes-validations`, run by the API server).
 * Non-secret service settings are checked by the service's own start-up validation (`loadConfig`),
 * so a spec the charts accept is one the pods will start with.
 */
import { z } from 'zod';
import { ConfigError, loadConfig } from '../service/src/config.js';
import { ENV } from '../service/src/contract.js';

/** A storage size as Kubernetes writes it, restricted to the binary units a volume is sized in. */
const quantity = z
  .string()
  .regex(/^[1-9][0-9]{0,5}(Mi|Gi|Ti)$/, 'must be a size like 512Mi, 1Gi or 2Ti');

const secretKeyRef = z
  .object({
    name: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be a Secret name (DNS subdomain)'),
    key: z.string().regex(/^[-._a-zA-Z0-9]{1,253}$/, 'must be a Secret key ([-._a-zA-Z0-9])'),
  })
  .strict();

/** What a libsql URL may start with; the service refuses anything else at start-up. */
const REMOTE_URL_PATTERN = '^(libsql|https?|wss?)://[^\\s]+$';

const embeddedDatabase = z
  .object({
    mode: z.literal('embedded'),
    storage: quantity.default('1Gi').describe('Size of the data volume (the libsql file lives on it).'),
    storageClassName: z.string().min(1).optional().describe('StorageClass of the data volume; the cluster default when unset.'),
  })
  .strict();

/**
 * What a database server run beside the service has, in both modes that can run one. The CRD merges
 * the two `server` fields into one object, so their common part must be one and the same.
 */
const serverFields = {
  name: z
    .string()
    .regex(/^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$/)
    .optional()
    .describe('Name of the server\'s objects; default "<instance>-libsql" (remote) or "<instance>-postgres" (postgres).'),
  storage: quantity.default('5Gi'),
  storageClassName: z.string().min(1).optional(),
};

const databaseServer = z
  .object({
    ...serverFields,
    jwtKeySecretRef: secretKeyRef.optional().describe('Secret with the Ed25519 public key sqld verifies tokens with.'),
  })
  .strict();

const remoteDatabase = z
  .object({
    mode: z.literal('remote'),
    url: z.string().regex(new RegExp(REMOTE_URL_PATTERN), 'must be a libsql://, http(s):// or ws(s):// URL').optional(),
    server: databaseServer.optional().describe('Run a libsql server (sqld) next to the service instead of using url.'),
    authTokenSecretRef: secretKeyRef.optional().describe('Secret holding the token the pods present to the server.'),
  })
  .strict();

/** PostgreSQL run beside the service by the charts (one instance: for evaluation and small installs). */
const postgresServer = z.object(serverFields).strict();

const postgresDatabase = z
  .object({
    mode: z.literal('postgres'),
    server: postgresServer
      .optional()
      .describe('Run a single PostgreSQL instance beside the service (no replication, no backups: for evaluation and small installs).'),
    urlSecretRef: secretKeyRef
      .optional()
      .describe('Secret key holding the whole DATABASE_URL of an existing PostgreSQL (CloudNativePG: <cluster>-app, key uri; RDS or Cloud SQL: one you make).'),
  })
  .strict();

/**
 * Settings the spec may pass to the service as they are (env var → string). The rest of the
 * service's configuration is derived from typed spec fields (database, hashConcurrency, drain and
 * grace) or fixed by the charts (port, host); the token only ever comes from a Secret.
 */
export const PASSTHROUGH_SETTINGS = [
  ENV.logLevel,
  ENV.bodyLimitBytes,
  ENV.rateLimitWindowSeconds,
  ENV.rateLimitRegister,
  ENV.rateLimitLogin,
  ENV.trustProxyHops,
  ENV.hashMemoryKib,
  ENV.hashIterations,
  ENV.hashParallelism,
  ENV.hashQueueLimit,
  ENV.databaseTimeoutMs,
  ENV.databasePoolSize,
] as const;

const settings = z
  .object(Object.fromEntries(PASSTHROUGH_SETTINGS.map((name) => [name, z.string().optional()])) as Record<
    (typeof PASSTHROUGH_SETTINGS)[number],
    z.ZodOptional<z.ZodString>
  >)
  .strict();

const int = (min: number, max: number) => z.number().int().min(min).max(max);

const baseSpec = z
  .object({
    image: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._\-/:@]*$/i, 'must be an image reference like kreg/registration:1.2.3')
      .max(512)
      .describe('Container image of the service.'),
    replicas: int(1, 1000).optional().describe('Fixed replica count (remote mode without autoscaling; embedded: 1).'),
    autoscaling: z
      .object({
        minReplicas: int(1, 1000),
        maxReplicas: int(1, 1000),
        cpuUtilization: int(1, 100).default(70).describe('Target average CPU, percent of the request.'),
      })
      .strict()
      .optional(),
    database: z
      .discriminatedUnion('mode', [embeddedDatabase, remoteDatabase, postgresDatabase])
      .default({ mode: 'embedded', storage: '1Gi' }),
    hashConcurrency: int(1, 64).default(2).describe('argon2 hashes computed at once per pod; sizes the memory limit.'),
    resources: z
      .object({
        cpuRequestMillis: int(1, 64_000),
        cpuLimitMillis: int(1, 64_000),
        memoryMiB: int(64, 65_536).optional().describe('Memory request = limit; default from hashConcurrency.'),
      })
      .strict()
      .default({ cpuRequestMillis: 100, cpuLimitMillis: 1000 }),
    drainSeconds: int(0, 300).default(5).describe('After SIGTERM, seconds of serving while readiness fails.'),
    graceSeconds: int(1, 3600).default(25).describe('After SIGTERM, seconds by which the service exits.'),
    settings: settings.default({}).describe('Further non-secret service settings (environment variable → value).'),
  })
  .strict();

export type RegistrationSpec = z.output<typeof baseSpec>;
export type RegistrationSpecInput = z.input<typeof baseSpec>;

/** A rule across fields: `holds` for zod, `rule` (CEL, over `self` = the spec) for the CRD. */
interface CrossFieldRule {
  path: Array<string>;
  message: string;
  rule: string;
  holds(spec: RegistrationSpec): boolean;
}

export const CROSS_FIELD_RULES: CrossFieldRule[] = [
  {
    path: ['replicas'],
    message: 'the embedded database (a libsql file on a ReadWriteOnce volume) runs exactly one replica; use database.mode postgres (or remote) to scale out',
    rule: "self.database.mode != 'embedded' || !has(self.replicas) || self.replicas == 1",
    holds: (s) => s.database.mode !== 'embedded' || s.replicas === undefined || s.replicas === 1,
  },
  {
    path: ['autoscaling'],
    message: 'autoscaling needs database.mode postgres (or remote); the embedded database runs exactly one replica',
    rule: "self.database.mode != 'embedded' || !has(self.autoscaling)",
    holds: (s) => s.database.mode !== 'embedded' || s.autoscaling === undefined,
  },
  {
    path: ['replicas'],
    message: 'set either replicas or autoscaling, not both: the autoscaler owns the replica count',
    rule: '!has(self.replicas) || !has(self.autoscaling)',
    holds: (s) => s.replicas === undefined || s.autoscaling === undefined,
  },
  {
    path: ['autoscaling', 'maxReplicas'],
    message: 'must not be less than autoscaling.minReplicas',
    rule: '!has(self.autoscaling) || self.autoscaling.minReplicas <= self.autoscaling.maxReplicas',
    holds: (s) => !s.autoscaling || s.autoscaling.minReplicas <= s.autoscaling.maxReplicas,
  },
  {
    path: ['graceSeconds'],
    message: 'must be greater than drainSeconds',
    rule: 'self.graceSeconds > self.drainSeconds',
    holds: (s) => s.graceSeconds > s.drainSeconds,
  },
  {
    path: ['database', 'url'],
    message: 'remote mode needs exactly one of database.url (an existing server) and database.server (one run beside the service)',
    rule: "self.database.mode != 'remote' || has(self.database.url) != has(self.database.server)",
    holds: (s) => s.database.mode !== 'remote' || (s.database.url === undefined) !== (s.database.server === undefined),
  },
  {
    path: ['database', 'urlSecretRef'],
    message: 'postgres mode needs exactly one of database.urlSecretRef (an existing PostgreSQL) and database.server (one run beside the service)',
    rule: "self.database.mode != 'postgres' || has(self.database.urlSecretRef) != has(self.database.server)",
    holds: (s) => s.database.mode !== 'postgres' || (s.database.urlSecretRef === undefined) !== (s.database.server === undefined),
  },
  {
    path: ['database', 'authTokenSecretRef'],
    message: 'remote mode needs the Secret holding the database token',
    rule: "self.database.mode != 'remote' || has(self.database.authTokenSecretRef)",
    holds: (s) => s.database.mode !== 'remote' || s.database.authTokenSecretRef !== undefined,
  },
];

/** Transition rules (CRD only: they compare with the stored object, which a synth never sees). */
export const TRANSITION_RULES = [
  {
    path: ['database', 'mode'],
    message: 'database.mode cannot change in place: create a new resource and move the data',
    rule: 'self.database.mode == oldSelf.database.mode',
  },
];

/** One field problem of a spec. `path` is dotted from the spec's root, e.g. `database.url`. */
export interface SpecIssue {
  path: string;
  message: string;
}

/** A spec that does not validate, with every field problem (not just the first). */
export class SpecError extends Error {
  constructor(
    readonly issues: SpecIssue[],
    readonly subject = 'spec',
  ) {
    super(`invalid ${subject}: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`);
    this.name = 'SpecError';
  }
}

/** The service's configuration variable a spec field maps onto, for its start-up checks. */
const FIELD_OF_VARIABLE: Record<string, string> = {
  [ENV.hashConcurrency]: 'hashConcurrency',
  [ENV.shutdownDrainSeconds]: 'drainSeconds',
  [ENV.shutdownGraceSeconds]: 'graceSeconds',
  [ENV.databaseUrl]: 'database.url',
};

/** The environment the charts will give the pods, as far as the service validates it. */
function serviceEnvironment(spec: RegistrationSpec): Record<string, string> {
  return {
    ...Object.fromEntries(Object.entries(spec.settings).filter((e): e is [string, string] => e[1] !== undefined)),
    [ENV.hashConcurrency]: String(spec.hashConcurrency),
    [ENV.shutdownDrainSeconds]: String(spec.drainSeconds),
    [ENV.shutdownGraceSeconds]: String(spec.graceSeconds),
    ...(spec.database.mode === 'remote' && spec.database.url ? { [ENV.databaseUrl]: spec.database.url } : {}),
  };
}

/** Runs the service's start-up validation on what the pods will get; one issue per variable. */
function serviceIssues(spec: RegistrationSpec): SpecIssue[] {
  const env = serviceEnvironment(spec);
  const issues = new Map<string, SpecIssue>();
  const check = (subset: Record<string, string>, only?: string) => {
    try {
      loadConfig(subset);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      if (only !== undefined && err.variable !== only) return; // a rule across variables: checked below
      const path = FIELD_OF_VARIABLE[err.variable] ?? `settings.${err.variable}`;
      issues.set(path, { path, message: `${err.problem} (the service's own start-up check)` });
    }
  };
  // Each variable alone first (every bad value is named), then all together (rules across them).
  for (const [name, value] of Object.entries(env)) check({ [name]: value }, name);
  if (issues.size === 0) check(env);
  return [...issues.values()];
}

const specSchema = baseSpec.superRefine((spec, ctx) => {
  for (const rule of CROSS_FIELD_RULES) {
    if (!rule.holds(spec)) ctx.addIssue({ code: 'custom', path: rule.path, message: rule.message });
  }
  for (const issue of serviceIssues(spec)) {
    ctx.addIssue({ code: 'custom', path: issue.path.split('.'), message: issue.message });
  }
});

/** Validates a spec and applies its defaults; throws `SpecError` listing every problem. */
export function parseSpec(input: unknown, subject = 'spec'): RegistrationSpec {
  const result = specSchema.safeParse(input);
  if (result.success) return result.data;
  // zod runs the cross-field rules even on fields that failed their own type or range check; a
  // rule about a field that is already wrong only repeats the problem, so it is left out.
  const fieldProblems = new Set(result.error.issues.filter((i) => i.code !== 'custom').map((i) => i.path.join('.')));
  const issues = result.error.issues.filter((i) => i.code !== 'custom' || !fieldProblems.has(i.path.join('.')));
  throw new SpecError(
    issues.map((issue) => ({
      path: issue.path.map(String).join('.'),
      message:
        issue.code === 'unrecognized_keys'
          ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`
          : issue.message,
    })),
    subject,
  );
}

/** A named spec: where it deploys and what. */
export interface NamedSpec {
  namespace: string;
  spec: RegistrationSpecInput;
}

/** Secret (created out of band, never in git) holding the token the pods present to the libsql server. */
export const DATABASE_TOKEN_SECRET = { name: 'registration-database', key: 'auth-token' } as const;
/** Secret (out of band) holding the Ed25519 public key sqld verifies that token with. */
export const DATABASE_JWT_KEY_SECRET = { name: 'libsql-auth', key: 'jwt-public-key' } as const;

export const NAMED_SPECS = {
  /** Local clusters (kind, test/cluster): one replica on the embedded database, small requests. */
  dev: {
    namespace: 'kreg-dev',
    spec: {
      image: 'kreg/registration:dev',
      replicas: 1,
      database: { mode: 'embedded', storage: '1Gi' },
      hashConcurrency: 2,
      resources: { cpuRequestMillis: 100, cpuLimitMillis: 1000 },
      settings: { LOG_LEVEL: 'debug' },
    },
  },
  /**
   * Scale-out: stateless replicas on PostgreSQL, autoscaled 3‥10 on CPU, PDB, spread. The database
   * is the single instance the charts run beside the service; point `database.urlSecretRef` at a
   * managed or CloudNativePG server for real production.
   */
  prod: {
    namespace: 'kreg-prod',
    spec: {
      image: 'kreg/registration:0.1.0',
      database: { mode: 'postgres', server: { name: 'postgres', storage: '5Gi' } },
      autoscaling: { minReplicas: 3, maxReplicas: 10, cpuUtilization: 70 },
      hashConcurrency: 2,
      resources: { cpuRequestMillis: 250, cpuLimitMillis: 1000 },
      // Behind one ingress proxy: its X-Forwarded-For hop is trusted for the rate limiter.
      settings: { LOG_LEVEL: 'info', TRUST_PROXY_HOPS: '1' },
    },
  },
} as const satisfies Record<string, NamedSpec>;

export type SpecName = keyof typeof NAMED_SPECS;
export const SPEC_NAMES = Object.keys(NAMED_SPECS) as SpecName[];

export function isSpecName(name: string): name is SpecName {
  return Object.hasOwn(NAMED_SPECS, name);
}

type JsonSchema = Record<string, unknown>;

/**
 * The spec as a structural OpenAPI v3 schema for a CRD: every node typed, defaults kept, objects
 * closed by pruning rather than `additionalProperties: false` (which CRDs do not accept), the
 * database union flattened into one object with `mode` as an enum, and the cross-field and
 * transition rules attached as `x-kubernetes-validations`.
 */
export function specOpenApiSchema(): JsonSchema {
  const json = z.toJSONSchema(baseSpec, { io: 'input', unrepresentable: 'throw' }) as JsonSchema;
  const root = structural(json);
  // Settings as a map with its allowed keys in CEL: a CRD prunes unknown properties silently, and a
  // misspelt setting must be refused, not dropped.
  const props = root.properties as Record<string, JsonSchema>;
  props.settings = {
    type: 'object',
    description: props.settings!.description,
    default: {},
    // Bounds for the CEL cost estimate: without them the API server assumes a map as large as a
    // request allows, and the rule below went over its budget once the list had 12 names.
    maxProperties: PASSTHROUGH_SETTINGS.length,
    additionalProperties: { type: 'string', maxLength: 1024 },
    'x-kubernetes-validations': [
      {
        rule: `self.all(k, k in [${PASSTHROUGH_SETTINGS.map((k) => `'${k}'`).join(', ')}])`,
        message: `unknown setting; allowed: ${PASSTHROUGH_SETTINGS.join(', ')}`,
      },
    ],
  };
  root['x-kubernetes-validations'] = [
    ...CROSS_FIELD_RULES.map((r) => ({ rule: r.rule, message: r.message, fieldPath: `.${r.path.join('.')}` })),
  ];
  const database = (root.properties as Record<string, JsonSchema>).database!;
  database['x-kubernetes-validations'] = [
    ...((database['x-kubernetes-validations'] as unknown[] | undefined) ?? []),
    ...TRANSITION_RULES.map((r) => ({
      rule: r.rule.replaceAll('self.database.', 'self.').replaceAll('oldSelf.database.', 'oldSelf.'),
      message: r.message,
    })),
  ];
  return root;
}

const KEPT_KEYWORDS = ['description', 'default', 'pattern', 'minLength', 'maxLength', 'enum', 'required'] as const;

function structural(node: JsonSchema): JsonSchema {
  const variants = (node.oneOf ?? node.anyOf) as JsonSchema[] | undefined;
  if (variants) return mergeObjectVariants(variants.map(structural), node);
  const out: JsonSchema = {};
  if ('const' in node) {
    out.type = typeof node.const === 'number' ? 'number' : 'string';
    out.enum = [node.const];
  } else out.type = node.type;
  for (const key of KEPT_KEYWORDS) if (key in node) out[key] = node[key];
  if (node.type === 'integer' || node.type === 'number') {
    // zod's int() bounds are the safe-integer range: noise in a CRD; real bounds are kept.
    if (typeof node.minimum === 'number' && node.minimum > Number.MIN_SAFE_INTEGER) out.minimum = node.minimum;
    if (typeof node.maximum === 'number' && node.maximum < Number.MAX_SAFE_INTEGER) out.maximum = node.maximum;
  }
  if (node.type === 'object' && node.properties) {
    out.properties = Object.fromEntries(
      Object.entries(node.properties as Record<string, JsonSchema>).map(([k, v]) => [k, structural(v)]),
    );
  }
  return out;
}

/**
 * A union of object shapes as one object: all properties, `mode` as the enum of the variants. A
 * property only some modes have keeps no default (the API server would add it to every mode, and
 * the other modes refuse it), and carries a rule that refuses it in the modes that do not have it,
 * as zod's strict variants do.
 */
function mergeObjectVariants(variants: JsonSchema[], node: JsonSchema): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  const modesOf = new Map<string, string[]>();
  /** `server.jwtKeySecretRef` → the modes whose `server` has that field. */
  const subModesOf = new Map<string, string[]>();
  const modes: string[] = [];
  for (const v of variants) {
    const props = v.properties as Record<string, JsonSchema>;
    const variantModes = (props.mode?.enum as string[] | undefined) ?? [];
    modes.push(...variantModes);
    for (const [k, p] of Object.entries(props)) {
      if (k === 'mode') continue;
      const before = properties[k];
      // A field two modes share (`server`): one object with the fields of both; fields of one mode only are refused in the other, below.
      if (before?.type === 'object' && p.type === 'object' && before.properties && p.properties) {
        const merged = { ...(before.properties as Record<string, JsonSchema>) };
        for (const [sub, schema] of Object.entries(p.properties as Record<string, JsonSchema>)) {
          merged[sub] = schema;
          subModesOf.set(`${k}.${sub}`, [...(subModesOf.get(`${k}.${sub}`) ?? []), ...variantModes]);
        }
        properties[k] = { ...before, ...p, properties: merged };
      } else {
        properties[k] = p;
        if (p.type === 'object' && p.properties) for (const sub of Object.keys(p.properties)) subModesOf.set(`${k}.${sub}`, [...variantModes]);
      }
      modesOf.set(k, [...(modesOf.get(k) ?? []), ...variantModes]);
    }
  }
  const rules: Array<{ rule: string; message: string; fieldPath: string }> = [];
  for (const [path, only] of subModesOf) {
    const [k] = path.split('.') as [string, string];
    if (only.length === modesOf.get(k)!.length) continue;
    rules.push({
      rule: `!has(self.${k}) || !has(self.${path}) || self.mode in [${only.map((m) => `'${m}'`).join(', ')}]`,
      message: `${path} belongs to mode ${only.join(' or ')}`,
      fieldPath: `.${path}`,
    });
  }
  for (const [k, only] of modesOf) {
    if (only.length === modes.length) continue;
    const { default: dropped, ...withoutDefault } = properties[k]!;
    properties[k] = withoutDefault;
    // Still applied, by the controller's own validation, for the modes that have the field.
    if (dropped !== undefined) properties[k]!.description = `${withoutDefault.description ? `${withoutDefault.description} ` : ''}Default: ${JSON.stringify(dropped)} (mode ${only.join(' or ')}).`;
    rules.push({
      rule: `!has(self.${k}) || self.mode in [${only.map((m) => `'${m}'`).join(', ')}]`,
      message: `${k} belongs to mode ${only.join(' or ')}`,
      fieldPath: `.${k}`,
    });
  }
  return {
    type: 'object',
    ...(node.description ? { description: node.description } : {}),
    ...('default' in node ? { default: node.default } : {}),
    required: ['mode'],
    properties: { mode: { type: 'string', enum: modes }, ...properties },
    ...(rules.length ? { 'x-kubernetes-validations': rules } : {}),
  };
}
