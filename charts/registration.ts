/**
 * The cluster topology of the registration service.
 *
 * Two database modes (see DESIGN.md "The embedded database is single-writer"):
 *
 * - `embedded` (default): the libsql file lives on a PersistentVolumeClaim and exactly one pod
 *   writes it. The workload is a **StatefulSet with one replica**, not a Recreate Deployment:
 *   a StatefulSet guarantees at most one pod per identity at any time — it creates the
 *   replacement of `registration-0` only after the old pod is gone, whether the pod was rolled,
 *   deleted, evicted or lost with its node. A Recreate Deployment gives that guarantee only during
 *   a rollout; a deleted or evicted pod is replaced at once while the old one is still terminating,
 *   and both can mount a ReadWriteOnce volume when they share a node. The data volume comes from a
 *   `volumeClaimTemplate`, so the claim is not one of the manifest's objects: switching modes or
 *   pruning the manifest never deletes the data. Cost: a StatefulSet whose new revision never becomes
 *   ready does not roll back by itself — re-apply a good revision and delete the stuck pod
 *   (kubernetes/kubernetes#67250); kreg's deploy fails fast on exactly that.
 *   The service migrates at start (`DATABASE_MIGRATE=always`), the one place migrations run here.
 *
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

/** Names of the objects, stable across releases (and human-readable: no construct-path hashes). */
export const NAMES = {
  app: 'registration',
  config: 'registration-config',
  serviceAccount: 'registration',
  service: 'registration',
  workload: 'registration',
  networkPolicy: 'registration-ingress',
  disruptionBudget: 'registration',
  autoscaler: 'registration',
  migrationJobPrefix: 'registration-migrate-',
  dataVolume: 'data',
} as const;

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

export type DatabaseMode = EmbeddedDatabase | RemoteDatabase;

export interface EmbeddedDatabase {
  mode: 'embedded';
  /** Size of the data volume. Default 1 GiB. */
  storageGiB?: number;
  /** StorageClass of the data volume; the cluster default when omitted. */
  storageClassName?: string;
}

export interface RemoteDatabase {
  mode: 'remote';
  /** libsql server URL: `libsql://…`, `http(s)://…` or `ws(s)://…`. */
  url: string;
  /** Secret holding the database token. The chart references it; it never creates or reads it. */
  authToken?: { secretName: string; key: string };
}

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
  /** Deployment environment, e.g. `dev`; becomes part of `app.kubernetes.io/instance`. */
  environment: string;
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
  readonly workload: kplus.Deployment | kplus.StatefulSet;
  readonly migrationJob?: kplus.Job;
  readonly autoscaler?: kplus.HorizontalPodAutoscaler;
  readonly appLabels: AppLabels;

  constructor(scope: Construct, id: string, props: RegistrationChartProps) {
    super(scope, id, { ...props, namespace: props.namespace, disableResourceNameHashes: true });
    const database: DatabaseMode = props.database ?? { mode: 'embedded' };
    this.mode = database.mode;
    validate(props, database);

    const version = imageTag(props.image);
    this.appLabels = {
      name: NAMES.app,
      instance: `${NAMES.app}-${props.environment}`,
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
      [ENV.databaseUrl]: database.mode === 'embedded' ? EMBEDDED_DATABASE_URL : database.url,
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
    this.configMap = new kplus.ConfigMap(this, 'config', { metadata: meta(NAMES.config), data: sortedRecord(configData) });
    this.configHash = contentHash(configData, 16);

    const serviceAccount = new kplus.ServiceAccount(this, 'service-account', {
      metadata: meta(NAMES.serviceAccount),
      automountToken: false,
    });

    // The discovery name: http://registration.<namespace>.svc/ → the pods' named port `http`.
    this.service = new kplus.Service(this, 'service', {
      metadata: meta(NAMES.service),
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
      metadata: meta(NAMES.workload),
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

    let workload: kplus.Deployment | kplus.StatefulSet;
    if (database.mode === 'embedded') {
      workload = new kplus.StatefulSet(this, 'workload', {
        ...workloadProps,
        // The ClusterIP Service doubles as the governing service: one replica needs no per-pod DNS.
        service: this.service,
        replicas: 1,
        podManagementPolicy: kplus.PodManagementPolicy.ORDERED_READY,
        strategy: kplus.StatefulSetUpdateStrategy.rollingUpdate(),
      });
    } else {
      workload = new kplus.Deployment(this, 'workload', {
        ...workloadProps,
        ...(props.replicas !== undefined && !props.autoscaling ? { replicas: props.replicas } : {}),
        strategy: kplus.DeploymentStrategy.rollingUpdate({
          maxSurge: kplus.PercentOrAbsolute.absolute(1),
          maxUnavailable: kplus.PercentOrAbsolute.absolute(0),
        }),
        progressDeadline: Duration.minutes(5),
      });
    }
    this.workload = workload;
    workload.select(kplus.LabelSelector.of({ labels: podSelector }));
    // Select by the standard labels only. kplus' own select() also adds its construct-path label
    // (`cdk8s.io/metadata.addr`), which would change if the construct were ever moved.
    ApiObject.of(this.service).addJsonPatch(JsonPatch.add('/spec/selector', podSelector));

    const container = workload.addContainer(
      this.containerProps(props.image, resources, memoryMiB, {
        name: 'registration',
        args: undefined,
        readiness: kplus.Probe.fromHttpGet(HEALTH_PATHS.readiness, {
          port: DEFAULT_PORT,
          periodSeconds: Duration.seconds(5),
          timeoutSeconds: Duration.seconds(3),
          failureThreshold: 2,
        }),
        liveness: kplus.Probe.fromHttpGet(HEALTH_PATHS.liveness, {
          port: DEFAULT_PORT,
          periodSeconds: Duration.seconds(10),
          timeoutSeconds: Duration.seconds(3),
          failureThreshold: 3,
        }),
        // Start-up (config, database open, embedded migrations) may take a while on a cold volume;
        // liveness only starts once this passes, so a slow start is not killed mid-migration.
        startup: kplus.Probe.fromHttpGet(HEALTH_PATHS.liveness, {
          port: DEFAULT_PORT,
          periodSeconds: Duration.seconds(2),
          timeoutSeconds: Duration.seconds(2),
          failureThreshold: 60,
        }),
      }),
    );
    container.env.copyFrom(kplus.Env.fromConfigMap(this.configMap));
    if (database.mode === 'remote' && database.authToken) {
      container.env.addVariable(ENV.databaseAuthToken, tokenEnv(this, database.authToken));
    }
    const tmp = kplus.Volume.fromEmptyDir(this, 'tmp-volume', 'tmp', { sizeLimit: Size.mebibytes(64) });
    container.mount('/tmp', tmp);

    hardenPodSpec(workload, '/spec/template/spec', 1);
    const workloadApi = ApiObject.of(workload);
    workloadApi.addJsonPatch(JsonPatch.add('/spec/revisionHistoryLimit', 5));

    if (database.mode === 'embedded') {
      // cdk8s-plus-27 has no volumeClaimTemplates (cdk8s-team/cdk8s#2183): patch them in, with a
      // typed Quantity (a raw '1Gi' string would be dropped by the mapper, notes §2.4).
      workloadApi.addJsonPatch(
        JsonPatch.add('/spec/volumeClaimTemplates', [
          {
            metadata: { name: NAMES.dataVolume, labels },
            spec: {
              accessModes: ['ReadWriteOnce'],
              ...(database.storageClassName ? { storageClassName: database.storageClassName } : {}),
              resources: { requests: { storage: k8s.Quantity.fromString(`${database.storageGiB ?? 1}Gi`) } },
            },
          },
        ]),
        JsonPatch.add('/spec/template/spec/containers/0/volumeMounts/-', {
          name: NAMES.dataVolume,
          mountPath: DATA_MOUNT,
        }),
        // Keep the data when the StatefulSet is deleted or scaled (the API default, said explicitly).
        JsonPatch.add('/spec/persistentVolumeClaimRetentionPolicy', { whenDeleted: 'Retain', whenScaled: 'Retain' }),
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
        metadata: meta(NAMES.disruptionBudget),
        spec: {
          maxUnavailable: k8s.IntOrString.fromNumber(1),
          selector: { matchLabels: podSelector },
          // Let node drains evict pods that are not ready anyway (crash-looping), instead of blocking.
          unhealthyPodEvictionPolicy: 'AlwaysAllow',
        },
      });

      if (props.autoscaling) {
        this.autoscaler = new kplus.HorizontalPodAutoscaler(this, 'autoscaler', {
          metadata: meta(NAMES.autoscaler),
          target: workload as kplus.Deployment,
          minReplicas: props.autoscaling.minReplicas,
          maxReplicas: props.autoscaling.maxReplicas,
          metrics: [
            kplus.Metric.resourceCpu(kplus.MetricTarget.averageUtilization(props.autoscaling.cpuUtilization ?? 70)),
          ],
        });
      }

      this.migrationJob = this.addMigrationJob(serviceAccount, props, database, resources, memoryMiB);
      workloadApi.addDependency(this.migrationJob);
    }

    // Ingress-only: pods accept traffic on the named port `http` from anywhere, nothing else.
    // Raw object: kplus' NetworkPolicy ports are numeric, and its allowFrom() also writes an *egress*
    // policy on the peer (notes §2.4) — this one has policyTypes [Ingress] and touches no one's egress.
    new k8s.KubeNetworkPolicy(this, 'network-policy', {
      metadata: meta(NAMES.networkPolicy),
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
    database: RemoteDatabase,
    resources: Resources,
    memoryMiB: number,
  ): kplus.Job {
    const jobLabels = standardLabels({ ...this.appLabels, component: 'migration' });
    const job = new kplus.Job(this, 'migration', {
      metadata: { name: `${NAMES.migrationJobPrefix}pending`, labels: jobLabels },
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
    if (database.authToken) container.env.addVariable(ENV.databaseAuthToken, tokenEnv(this, database.authToken));
    container.mount('/tmp', kplus.Volume.fromEmptyDir(this, 'migration-tmp-volume', 'tmp', { sizeLimit: Size.mebibytes(64) }));
    hardenPodSpec(job, '/spec/template/spec', 1);
    // Name = hash of the Job's rendered spec (image, DATABASE_URL via the ConfigMap *name*, token
    // reference, resources, security settings...): a Job's pod template is immutable, so any change
    // to it must be a new Job, and an unchanged release must keep its name so it never migrates
    // twice. The database URL is hashed in as well: it reaches the pod through the ConfigMap, whose
    // other settings (log level, rate limits) must not re-run migrations.
    const api = ApiObject.of(job);
    const releaseHash = contentHash({ spec: api.toJson().spec, databaseUrl: database.url }, 8);
    api.addJsonPatch(JsonPatch.replace('/metadata/name', `${NAMES.migrationJobPrefix}${releaseHash}`));
    return job;
  }
}

function tokenEnv(scope: Construct, ref: { secretName: string; key: string }): kplus.EnvValue {
  const id = `secret-${ref.secretName}`;
  const secret =
    (scope.node.tryFindChild(id) as kplus.ISecret | undefined) ?? kplus.Secret.fromSecretName(scope, id, ref.secretName);
  return kplus.EnvValue.fromSecretValue({ secret, key: ref.key });
}

function validate(props: RegistrationChartProps, database: DatabaseMode): void {
  const where = `RegistrationChart(${props.environment})`;
  if (database.mode === 'embedded') {
    if (props.replicas !== undefined && props.replicas !== 1) {
      throw new Error(
        `${where}: the embedded database (a libsql file on a ReadWriteOnce volume) allows exactly one writer, ` +
          `so replicas must be 1 (got ${props.replicas}). To run more replicas use database: { mode: 'remote', url } ` +
          `with a libsql server (sqld or Turso).`,
      );
    }
    if (props.autoscaling) {
      throw new Error(`${where}: autoscaling needs database mode 'remote'; the embedded database runs exactly one replica.`);
    }
  } else {
    if (!/^(libsql|https?|wss?):\/\//.test(database.url)) {
      throw new Error(`${where}: remote database url must start with libsql://, http(s):// or ws(s):// (got "${database.url}")`);
    }
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
