/**
 * The cluster topology of the registration service.
 *
 * Two database modes (see DESIGN.md "The embedded database is single-writer"):
 *
 * - `embedded` (default): the libsql file lives on a PersistentVolumeClaim. The workload is a
 *   **Deployment with one replica that rolls with a surge** (maxSurge 1, maxUnavailable 0): the new
 *   pod starts, migrates and turns ready next to the old one, and only then is the old one drained,
 *   so a rollout drops no request (e2e test 4 counts them). For a moment two processes open the same
 *   file; SQLite's WAL locking makes that safe as long as both run under one kernel, so a required
 *   pod affinity puts the surge pod on the node of the running one (a ReadWriteOnce volume may be
 *   mounted by several pods of one node; the first pod matches its own affinity term, so it schedules
 *   anywhere). The claim is a standalone object marked `kreg.dev/prune: never`: kreg never prunes or
 *   destroys it, so switching modes or dropping the chart keeps the data. A new revision that never
 *   turns ready leaves the old pod serving (maxUnavailable 0) and fails the rollout at the progress
 *   deadline; kreg's deploy reports it within seconds. The service migrates at start
 *   (`DATABASE_MIGRATE=always`), the one place migrations run in this mode, so — as in remote mode —
 *   a migration must keep the previous release working while its pod drains.
 *   Why not a one-replica StatefulSet (this chart's first design): it replaces a pod only after the
 *   old one is gone, so every rollout had a gap; the e2e test measured 2 of 600 requests failing.
 * - `remote`: a libsql server (sqld, Turso) via `DATABASE_URL` and a token from a Secret. The pods
 *   are stateless: a Deployment without a fixed replica count (the HorizontalPodAutoscaler owns it),
 *   a PodDisruptionBudget and topology spread. Migrations run once per release in a Job named after
 *   a hash of its own spec and the database URL (`registration-migrate-<hash>`): the same release
 *   never migrates twice, a new image migrates once, and the Job's immutable pod template is never
 *   patched in place. Use immutable image tags (or digests) in this mode: a rebuilt image under the
 *   same tag is the same release as far as the hash can tell.
 *   The pods run with `DATABASE_MIGRATE=never`. Ordering: the image has no shell or kubectl, so an
 *   init container cannot wait for the Job (and N init containers migrating at once would race:
 *   the second CREATE TABLE fails), and the service's readiness checks that the database answers,
 *   not the schema version. So the deployer orders it: kreg applies Jobs and waits for them to
 *   complete before it applies workloads. With plain `kubectl apply -f dist/` everything lands at
 *   once; `kubectl wait --for=condition=complete job -l app.kubernetes.io/component=migration`
 *   then bounds the window in which new pods may run against the previous schema. Migrations must
 *   be backward compatible anyway (expand now, contract in a later release), since old pods keep
 *   serving while new ones roll out.
 */
import { ApiObject, Chart, Duration, JsonPatch, Size, type ChartProps } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { k8s } from 'cdk8s-plus-27';
import type { Construct } from 'constructs';
import { PRUNE_ANNOTATION, PRUNE_NEVER } from '../infra/engine/annotations.js';
import { DEFAULT_PORT, ENTRY_POINTS, ENV, HEALTH_PATHS } from '../service/src/contract.js';
import {
  CONFIG_HASH_ANNOTATION,
  contentHash,
  hardenPodSpec,
  imageTag,
  pullPolicyFor,
  selectorLabels,
  standardLabels,
  type AppLabels,
} from './common.js';

/** The application's name (`app.kubernetes.io/name`) and the default instance name. */
export const APP_NAME = 'registration';

/**
 * Names of an instance's objects: derived from the instance name, so two instances in one
 * namespace never collide; stable across releases and readable (no construct-path hashes).
 */
export function namesFor(instance: string) {
  return {
    config: `${instance}-config`,
    serviceAccount: instance,
    service: instance,
    workload: instance,
    networkPolicy: `${instance}-ingress`,
    disruptionBudget: instance,
    autoscaler: instance,
    migrationJobPrefix: `${instance}-migrate-`,
    dataVolume: 'data',
    dataClaim: `${instance}-data`,
  } as const;
}

/** The names of the default instance (`registration`), which the named specs dev and prod use. */
export const NAMES = { app: APP_NAME, ...namesFor(APP_NAME) } as const;

/** Name of the container port; the Service and the NetworkPolicy target it by name. */
export const PORT_NAME = 'http';
/** Port the Service exposes inside the cluster (http://registration.<namespace>/). */
export const SERVICE_PORT = 80;
/** Numeric user/group the container runs as; matches `USER` in the Dockerfile. */
export const RUN_AS_USER = 10001;
/** Where the embedded database lives in the pod (a mounted volume; root fs is read-only). */
export const DATA_MOUNT = '/data';
export const EMBEDDED_DATABASE_URL = `file:${DATA_MOUNT}/registrations.db`;
/** Memory one argon2id hash holds (HASH_MEMORY_KIB default 19456 KiB = 19 MiB). */
export const HASH_MEMORY_MIB = 19;
/** Node + Hono + libsql + the common-password list, measured idle RSS plus headroom. */
export const BASELINE_MEMORY_MIB = 100;

export type DatabaseMode = EmbeddedDatabase | RemoteDatabase | PostgresDatabase;

export interface EmbeddedDatabase {
  mode: 'embedded';
  /** Size of the data volume, e.g. `1Gi` (Mi, Gi or Ti). Default `1Gi`. */
  storage?: string;
  /** StorageClass of the data volume; the cluster default when omitted. */
  storageClassName?: string;
}

/** Where a libsql server answers. `DatabaseChart` is one; `externalDatabase(url)` names any other. */
export interface DatabaseEndpoint {
  /** libsql server URL: `libsql://…`, `http(s)://…` or `ws(s)://…`. */
  readonly url: string;
}

/** A libsql server the charts do not run (Turso, a shared sqld). */
export function externalDatabase(url: string): DatabaseEndpoint {
  return { url };
}

export interface RemoteDatabase {
  mode: 'remote';
  /** The server, by reference: a `DatabaseChart` in the same app, or `externalDatabase(url)`. */
  server: DatabaseEndpoint;
  /** Secret holding the database token. The chart references it; it never creates or reads it. */
  authToken?: { secretName: string; key: string };
}

/** A PostgreSQL server the service connects to: the chart's own, or any other by a Secret. */
export interface PostgresDatabase {
  mode: 'postgres';
  /**
   * A server beside the service (`PostgresChart`): DATABASE_URL is put together in the pod from its
   * generated password, so the URL with the password is never written anywhere.
   */
  server?: { host: string; port: number; role: string; database: string; passwordSecret: { secretName: string; key: string } };
  /** Or a Secret key holding the whole DATABASE_URL (CloudNativePG's `<cluster>-app`, key `uri`). */
  url?: { secretName: string; key: string };
}

/** The environment variable the pod's DATABASE_URL is put together from (Kubernetes expands `$(VAR)`). */
export const DATABASE_PASSWORD_ENV = 'DATABASE_PASSWORD';

export interface Autoscaling {
  minReplicas: number;
  maxReplicas: number;
  /** Target average CPU utilization, percent of the CPU request. Default 70. */
  cpuUtilization?: number;
}

export interface Resources {
  cpuRequestMillis: number;
  cpuLimitMillis: number;
  /** Memory request and limit (equal: memory is not compressible, so no overcommit). Default from hashConcurrency. */
  memoryMiB?: number;
}

export interface RegistrationChartProps extends Omit<ChartProps, 'labels' | 'namespace'> {
  /** Namespace every object goes to (the Namespace object itself is `NamespaceChart`'s). */
  namespace: string;
  /** Instance name: every object's name derives from it (see `namesFor`). Default `registration`. */
  instance?: string;
  /**
   * Deployment environment, e.g. `dev`: `app.kubernetes.io/instance` is `<instance>-<environment>`,
   * or just the instance name without one (an operator's resources).
   */
  environment?: string;
  /** Container image, e.g. `kreg/registration:dev`. Tagged images get `imagePullPolicy: IfNotPresent`. */
  image: string;
  /** Default `{ mode: 'embedded' }`. */
  database?: DatabaseMode;
  /**
   * Embedded: must be 1 (the default). Remote: the fixed replica count when there is no
   * autoscaling; with `autoscaling` the HPA owns the count and this must be left unset.
   */
  replicas?: number;
  /** Remote mode only. Default `{ minReplicas: 2, maxReplicas: 6 }` in remote mode without `replicas`. */
  autoscaling?: Autoscaling;
  /** Argon2 hashes computed at once per pod (HASH_CONCURRENCY). Default 2. Sizes the memory limit. */
  hashConcurrency?: number;
  resources?: Resources;
  /** Seconds after SIGTERM during which the service still serves while failing readiness. Default 5. */
  drainSeconds?: number;
  /** Seconds after SIGTERM by which the service exits, draining included. Default 25. */
  graceSeconds?: number;
  /** Further non-secret settings (env var → value), e.g. `{ LOG_LEVEL: 'debug' }`. */
  settings?: Partial<Record<(typeof ENV)[keyof typeof ENV], string>>;
}

/** Memory limit that fits `concurrency` simultaneous argon2 hashes plus the process baseline, rounded up to 16 MiB. */
export function memoryForHashConcurrency(concurrency: number): number {
  const raw = BASELINE_MEMORY_MIB + concurrency * HASH_MEMORY_MIB;
  return Math.ceil((raw * 1.25) / 16) * 16;
}

export class RegistrationChart extends Chart {
  readonly mode: DatabaseMode['mode'];
  readonly configMap: kplus.ConfigMap;
  readonly configHash: string;
  readonly service: kplus.Service;
  readonly workload: kplus.Deployment;
  readonly dataClaim?: kplus.PersistentVolumeClaim;
  readonly migrationJob?: kplus.Job;
  readonly autoscaler?: kplus.HorizontalPodAutoscaler;
  readonly appLabels: AppLabels;
  readonly names: ReturnType<typeof namesFor>;

  constructor(scope: Construct, id: string, props: RegistrationChartProps) {
    super(scope, id, { ...props, namespace: props.namespace, disableResourceNameHashes: true });
    const database: DatabaseMode = props.database ?? { mode: 'embedded' };
    this.mode = database.mode;
    validate(props, database);
    const instance = props.instance ?? APP_NAME;
    const names = namesFor(instance);
    this.names = names;

    const version = imageTag(props.image);
    this.appLabels = {
      name: APP_NAME,
      instance: props.environment ? `${instance}-${props.environment}` : instance,
      component: 'api',
      ...(version ? { version } : {}),
    };
    const labels = standardLabels(this.appLabels);
    const podSelector = selectorLabels(this.appLabels);
    const meta = (name: string, extra: Record<string, string> = {}) => ({ name, labels: { ...labels, ...extra } });

    const hashConcurrency = props.hashConcurrency ?? 2;
    const drainSeconds = props.drainSeconds ?? 5;
    const graceSeconds = props.graceSeconds ?? 25;
    const resources = props.resources ?? { cpuRequestMillis: 100, cpuLimitMillis: 1000 };
    const memoryMiB = resources.memoryMiB ?? memoryForHashConcurrency(hashConcurrency);

    // Non-secret settings. Keys are the contract's env var names; values are strings (env semantics).
    const configData: Record<string, string> = {
      [ENV.port]: String(DEFAULT_PORT),
      [ENV.host]: '0.0.0.0',
      // PostgreSQL's URL carries credentials, so it comes from a Secret (see databaseEnv), never from here.
      ...(database.mode === 'postgres' ? {} : { [ENV.databaseUrl]: database.mode === 'embedded' ? EMBEDDED_DATABASE_URL : database.server.url }),
      // Exactly one place migrates per mode: the single embedded pod at start, or the release's Job.
      [ENV.databaseMigrate]: database.mode === 'embedded' ? 'always' : 'never',
      [ENV.hashConcurrency]: String(hashConcurrency),
      [ENV.shutdownDrainSeconds]: String(drainSeconds),
      [ENV.shutdownGraceSeconds]: String(graceSeconds),
      ...definedOnly(props.settings ?? {}),
    };
    if (ENV.databaseAuthToken in configData) {
      throw new Error(`${ENV.databaseAuthToken} is a credential: pass database.authToken (a Secret reference), not a setting`);
    }
    this.configMap = new kplus.ConfigMap(this, 'config', { metadata: meta(names.config), data: sortedRecord(configData) });
    this.configHash = contentHash(configData, 16);

    const serviceAccount = new kplus.ServiceAccount(this, 'service-account', {
      metadata: meta(names.serviceAccount),
      automountToken: false,
    });

    // The discovery name: http://registration.<namespace>.svc/ → the pods' named port `http`.
    this.service = new kplus.Service(this, 'service', {
      metadata: meta(names.service),
      type: kplus.ServiceType.CLUSTER_IP,
      ports: [{ name: PORT_NAME, port: SERVICE_PORT, targetPort: DEFAULT_PORT, protocol: kplus.Protocol.TCP }],
    });
    // kplus only takes a numeric targetPort; target the container port by name so a port change
    // in the pod needs no Service change. IntOrString, not a raw string: raw strings in JSON patches
    // are dropped by the generated mapper (notes/libraries.md §2.4).
    ApiObject.of(this.service).addJsonPatch(
      JsonPatch.replace('/spec/ports/0/targetPort', k8s.IntOrString.fromString(PORT_NAME)),
    );

    const workloadProps: kplus.WorkloadProps = {
      metadata: meta(names.workload),
      select: false,
      podMetadata: {
        labels,
        annotations: { [CONFIG_HASH_ANNOTATION]: this.configHash },
      },
      serviceAccount,
      automountServiceAccountToken: false,
      securityContext: {
        user: RUN_AS_USER,
        group: RUN_AS_USER,
        fsGroup: RUN_AS_USER,
        ensureNonRoot: true,
        fsGroupChangePolicy: kplus.FsGroupChangePolicy.ON_ROOT_MISMATCH,
      },
      // No preStop hook: the image has no shell or `sleep`, and none is needed. On SIGTERM the
      // service itself fails readiness, keeps serving for SHUTDOWN_DRAIN_SECONDS while endpoints
      // and kube-proxy catch up, then closes the listener and exits by SHUTDOWN_GRACE_SECONDS after
      // the signal. The kubelet's deadline must outlast that, or in-flight requests get SIGKILLed.
      terminationGracePeriod: Duration.seconds(drainSeconds + graceSeconds + 5),
    };

    // Both modes roll with a surge: the new pod is ready before the old one drains (see the header).
    const workload = new kplus.Deployment(this, 'workload', {
      ...workloadProps,
      ...(database.mode === 'embedded'
        ? { replicas: 1 }
        : props.replicas !== undefined && !props.autoscaling
          ? { replicas: props.replicas }
          : {}),
      strategy: kplus.DeploymentStrategy.rollingUpdate({
        maxSurge: kplus.PercentOrAbsolute.absolute(1),
        maxUnavailable: kplus.PercentOrAbsolute.absolute(0),
      }),
      progressDeadline: Duration.minutes(5),
    });
    this.workload = workload;
    workload.select(kplus.LabelSelector.of({ labels: podSelector }));
    // Select by the standard labels only. kplus' own select() also adds its construct-path label
    // (`cdk8s.io/metadata.addr`), which would change if the construct were ever moved.
    ApiObject.of(this.service).addJsonPatch(JsonPatch.add('/spec/selector', podSelector));

    const container = workload.addContainer(
      this.containerProps(props.image, resources, memoryMiB, {
        name: 'registration',
        args: undefined,
        // No startup probe. The process listens first and answers /livez itself while it starts
        // (service/src/server.ts), so liveness cannot kill a slow start; every other request,
        // readiness included, is held until the service can serve. The kubelet asks for readiness
        // as soon as it sees the container start, so the pod turns Ready the moment the service
        // can serve, instead of at the next tick of a startup probe (a second, with one before).
        // The period only matters after a failed probe: a start slower than the timeout, or a
        // database that stops answering.
        readiness: kplus.Probe.fromHttpGet(HEALTH_PATHS.readiness, {
          port: DEFAULT_PORT,
          periodSeconds: Duration.seconds(2),
          // Above the database deadline (DATABASE_TIMEOUT_MS, 2 s), so a slow database is reported
          // by the service's own 503, with its reason, rather than by a probe timeout.
          timeoutSeconds: Duration.seconds(3),
          failureThreshold: 3,
        }),
        liveness: kplus.Probe.fromHttpGet(HEALTH_PATHS.liveness, {
          port: DEFAULT_PORT,
          periodSeconds: Duration.seconds(10),
          timeoutSeconds: Duration.seconds(3),
          failureThreshold: 3,
        }),
      }),
    );
    container.env.copyFrom(kplus.Env.fromConfigMap(this.configMap));
    if (database.mode === 'remote' && database.authToken) {
      container.env.addVariable(ENV.databaseAuthToken, tokenEnv(this, database.authToken));
    }
    if (database.mode === 'postgres') addPostgresEnv(this, container, database);
    const tmp = kplus.Volume.fromEmptyDir(this, 'tmp-volume', 'tmp', { sizeLimit: Size.mebibytes(64) });
    container.mount('/tmp', tmp);

    hardenPodSpec(workload, '/spec/template/spec', 1);
    const workloadApi = ApiObject.of(workload);
    workloadApi.addJsonPatch(JsonPatch.add('/spec/revisionHistoryLimit', 5));

    if (database.mode === 'embedded') {
      const storage = database.storage ?? '1Gi';
      sizeOf(storage); // a malformed size is refused here, in the chart's words
      this.dataClaim = new kplus.PersistentVolumeClaim(this, 'data', {
        metadata: {
          ...meta(names.dataClaim),
          annotations: { [PRUNE_ANNOTATION]: PRUNE_NEVER },
        },
        accessModes: [kplus.PersistentVolumeAccessMode.READ_WRITE_ONCE],
        // cdk8s-plus writes a claim's size in whole gibibytes and throws for 512Mi, which the spec
        // allows: a placeholder here, and the size as written goes in by the patch below (as a
        // Quantity: the typed rendering drops a raw string).
        storage: Size.gibibytes(1),
        ...(database.storageClassName ? { storageClassName: database.storageClassName } : {}),
      });
      ApiObject.of(this.dataClaim).addJsonPatch(JsonPatch.replace('/spec/resources/requests/storage', k8s.Quantity.fromString(storage)));
      container.mount(DATA_MOUNT, kplus.Volume.fromPersistentVolumeClaim(this, 'data-volume', this.dataClaim, { name: names.dataVolume }));
      // The surge pod shares the node (and so the kernel, and SQLite's locks) of the running pod.
      workloadApi.addJsonPatch(
        JsonPatch.add('/spec/template/spec/affinity', {
          podAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: [
              { labelSelector: { matchLabels: podSelector }, topologyKey: 'kubernetes.io/hostname' },
            ],
          },
        }),
      );
    } else {
      // Spread replicas over nodes (and zones where there are any); soft, so a one-node cluster still schedules.
      // matchLabelKeys keeps old and new ReplicaSets from skewing each other during a rollout.
      workloadApi.addJsonPatch(
        JsonPatch.add(
          '/spec/template/spec/topologySpreadConstraints',
          ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
            maxSkew: 1,
            topologyKey,
            whenUnsatisfiable: 'ScheduleAnyway',
            labelSelector: { matchLabels: podSelector },
            matchLabelKeys: ['pod-template-hash'],
          })),
        ),
      );

      new k8s.KubePodDisruptionBudget(this, 'disruption-budget', {
        metadata: meta(names.disruptionBudget),
        spec: {
          maxUnavailable: k8s.IntOrString.fromNumber(1),
          selector: { matchLabels: podSelector },
          // Let node drains evict pods that are not ready anyway (crash-looping), instead of blocking.
          unhealthyPodEvictionPolicy: 'AlwaysAllow',
        },
      });

      if (props.autoscaling) {
        this.autoscaler = new kplus.HorizontalPodAutoscaler(this, 'autoscaler', {
          metadata: meta(names.autoscaler),
          target: workload as kplus.Deployment,
          minReplicas: props.autoscaling.minReplicas,
          maxReplicas: props.autoscaling.maxReplicas,
          metrics: [
            kplus.Metric.resourceCpu(kplus.MetricTarget.averageUtilization(props.autoscaling.cpuUtilization ?? 70)),
          ],
          // Kubernetes' own scale-up (double, or 4 more pods, every 15 s; cdk8s-plus' default waits
          // 60 s between steps). Down: back to what the last minute needed, in one step, instead of
          // cdk8s-plus' 5-minute window and 3 pods per 5 minutes: a registration burst is short,
          // and the replicas it needed hold memory for their hashes.
          scaleUp: {
            stabilizationWindow: Duration.seconds(0),
            strategy: kplus.ScalingStrategy.MAX_CHANGE,
            policies: [
              { replicas: kplus.Replicas.percent(100), duration: Duration.seconds(15) },
              { replicas: kplus.Replicas.absolute(4), duration: Duration.seconds(15) },
            ],
          },
          scaleDown: {
            stabilizationWindow: Duration.seconds(60),
            strategy: kplus.ScalingStrategy.MAX_CHANGE,
            policies: [{ replicas: kplus.Replicas.percent(100), duration: Duration.seconds(15) }],
          },
        });
      }

      this.migrationJob = this.addMigrationJob(serviceAccount, props, database, resources, memoryMiB);
      workloadApi.addDependency(this.migrationJob);
    }

    // Ingress-only: pods accept traffic on the named port `http` from anywhere, nothing else.
    // Raw object: kplus' NetworkPolicy ports are numeric, and its allowFrom() also writes an *egress*
    // policy on the peer (notes §2.4) — this one has policyTypes [Ingress] and touches no one's egress.
    new k8s.KubeNetworkPolicy(this, 'network-policy', {
      metadata: meta(names.networkPolicy),
      spec: {
        podSelector: { matchLabels: podSelector },
        policyTypes: ['Ingress'],
        ingress: [{ ports: [{ protocol: 'TCP', port: k8s.IntOrString.fromString(PORT_NAME) }] }],
      },
    });
  }

  private containerProps(
    image: string,
    resources: Resources,
    memoryMiB: number,
    extra: Partial<kplus.ContainerProps>,
  ): kplus.ContainerProps {
    return {
      image,
      imagePullPolicy: pullPolicyFor(image),
      ports: [{ number: DEFAULT_PORT, name: PORT_NAME, protocol: kplus.Protocol.TCP }],
      resources: {
        cpu: { request: kplus.Cpu.millis(resources.cpuRequestMillis), limit: kplus.Cpu.millis(resources.cpuLimitMillis) },
        memory: { request: Size.mebibytes(memoryMiB), limit: Size.mebibytes(memoryMiB) },
      },
      securityContext: {
        user: RUN_AS_USER,
        group: RUN_AS_USER,
        ensureNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
      },
      ...extra,
    };
  }

  private addMigrationJob(
    serviceAccount: kplus.IServiceAccount,
    props: RegistrationChartProps,
    database: RemoteDatabase | PostgresDatabase,
    resources: Resources,
    memoryMiB: number,
  ): kplus.Job {
    const jobLabels = standardLabels({ ...this.appLabels, component: 'migration' });
    const job = new kplus.Job(this, 'migration', {
      metadata: { name: `${this.names.migrationJobPrefix}pending`, labels: jobLabels },
      podMetadata: { labels: jobLabels },
      backoffLimit: 4,
      activeDeadline: Duration.minutes(10),
      serviceAccount,
      automountServiceAccountToken: false,
      securityContext: {
        user: RUN_AS_USER,
        group: RUN_AS_USER,
        ensureNonRoot: true,
      },
    });
    const container = job.addContainer(
      this.containerProps(props.image, resources, memoryMiB, {
        name: 'migrate',
        command: ['node', ENTRY_POINTS.migrate.built],
        ports: [],
      }),
    );
    container.env.copyFrom(kplus.Env.fromConfigMap(this.configMap));
    if (database.mode === 'remote' && database.authToken) container.env.addVariable(ENV.databaseAuthToken, tokenEnv(this, database.authToken));
    if (database.mode === 'postgres') addPostgresEnv(this, container, database);
    container.mount('/tmp', kplus.Volume.fromEmptyDir(this, 'migration-tmp-volume', 'tmp', { sizeLimit: Size.mebibytes(64) }));
    hardenPodSpec(job, '/spec/template/spec', 1);
    // Name = hash of the Job's rendered spec (image, DATABASE_URL via the ConfigMap *name*, token
    // reference, resources, security settings...): a Job's pod template is immutable, so any change
    // to it must be a new Job, and an unchanged release must keep its name so it never migrates
    // twice. The database URL is hashed in as well: it reaches the pod through the ConfigMap, whose
    // other settings (log level, rate limits) must not re-run migrations.
    const api = ApiObject.of(job);
    const releaseHash = contentHash({ spec: api.toJson().spec, databaseUrl: databaseIdentity(database) }, 8);
    api.addJsonPatch(JsonPatch.replace('/metadata/name', `${this.names.migrationJobPrefix}${releaseHash}`));
    return job;
  }
}

/** What says which database a release migrates (a Job runs again when it changes). */
function databaseIdentity(database: RemoteDatabase | PostgresDatabase): string {
  if (database.mode === 'remote') return database.server.url;
  if (database.server) return `postgres://${database.server.host}:${database.server.port}/${database.server.database}`;
  return `secret:${database.url!.secretName}/${database.url!.key}`;
}

/**
 * DATABASE_URL for PostgreSQL: from its Secret as it is, or, for the server beside, put together
 * from the generated password (`$(DATABASE_PASSWORD)` is expanded by the kubelet, and the
 * password, 192 bits in base64url, needs no escaping in a URL).
 */
function addPostgresEnv(scope: Construct, container: kplus.Container, database: PostgresDatabase): void {
  if (database.url) {
    container.env.addVariable(ENV.databaseUrl, tokenEnv(scope, database.url));
    return;
  }
  const server = database.server!;
  container.env.addVariable(DATABASE_PASSWORD_ENV, tokenEnv(scope, server.passwordSecret));
  container.env.addVariable(ENV.databaseUrl, kplus.EnvValue.fromValue(`postgres://${server.role}:$(${DATABASE_PASSWORD_ENV})@${server.host}:${server.port}/${server.database}`));
}

function tokenEnv(scope: Construct, ref: { secretName: string; key: string }): kplus.EnvValue {
  const id = `secret-${ref.secretName}`;
  const secret =
    (scope.node.tryFindChild(id) as kplus.ISecret | undefined) ?? kplus.Secret.fromSecretName(scope, id, ref.secretName);
  return kplus.EnvValue.fromSecretValue({ secret, key: ref.key });
}

/** A size in the spec's notation (`512Mi`, `1Gi`, `2Ti`) as a cdk8s Size. */
export function sizeOf(quantity: string): Size {
  const m = /^([1-9][0-9]*)(Mi|Gi|Ti)$/.exec(quantity);
  if (!m) throw new Error(`storage size must look like 512Mi, 1Gi or 2Ti (got "${quantity}")`);
  const n = Number(m[1]);
  return m[2] === 'Mi' ? Size.mebibytes(n) : m[2] === 'Gi' ? Size.gibibytes(n) : Size.tebibytes(n);
}

function validate(props: RegistrationChartProps, database: DatabaseMode): void {
  const where = `RegistrationChart(${props.instance ?? APP_NAME}${props.environment ? `, ${props.environment}` : ''})`;
  if (database.mode === 'embedded') {
    if (props.replicas !== undefined && props.replicas !== 1) {
      throw new Error(
        `${where}: the embedded database (a libsql file on a ReadWriteOnce volume) runs one replica, ` +
          `so replicas must be 1 (got ${props.replicas}). To run more replicas use database: { mode: 'remote', url } ` +
          `with a libsql server (sqld or Turso).`,
      );
    }
    if (props.autoscaling) {
      throw new Error(`${where}: autoscaling needs database mode 'remote'; the embedded database runs exactly one replica.`);
    }
  } else if (database.mode === 'postgres') {
    if ((database.server === undefined) === (database.url === undefined)) {
      throw new Error(`${where}: a postgres database needs exactly one of server (a PostgresChart) and url (a Secret key holding DATABASE_URL)`);
    }
  } else if (!/^(libsql|https?|wss?):\/\//.test(database.server.url)) {
    throw new Error(`${where}: remote database url must start with libsql://, http(s):// or ws(s):// (got "${database.server.url}")`);
  }
  if (database.mode !== 'embedded') {
    if (props.replicas !== undefined && props.autoscaling) {
      throw new Error(
        `${where}: set either replicas or autoscaling, not both: the HorizontalPodAutoscaler owns the replica count ` +
          `(use autoscaling.minReplicas).`,
      );
    }
    if (props.autoscaling && props.autoscaling.minReplicas > props.autoscaling.maxReplicas) {
      throw new Error(`${where}: autoscaling.minReplicas must not exceed maxReplicas`);
    }
  }
  if ((props.hashConcurrency ?? 2) < 1) throw new Error(`${where}: hashConcurrency must be at least 1`);
  const drain = props.drainSeconds ?? 5;
  const grace = props.graceSeconds ?? 25;
  if (grace <= drain) throw new Error(`${where}: graceSeconds (${grace}) must be greater than drainSeconds (${drain})`);
}

function definedOnly(record: Partial<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).filter((e): e is [string, string] => e[1] !== undefined));
}

function sortedRecord(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
