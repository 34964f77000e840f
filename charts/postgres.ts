/**
 * A single PostgreSQL instance beside the service, for the `postgres` database mode when no
 * database exists yet: a StatefulSet of one with its data on a claim, reachable in the namespace as
 * `<name>:5432`. It is for evaluation and small installs: there is no replication, no failover and
 * no backup. Production points `database.urlSecretRef` at a managed PostgreSQL or a CloudNativePG
 * cluster instead (its `<cluster>-app` Secret has the whole URL under `uri`).
 *
 * - The image follows the official `postgres` image's contract (POSTGRES_USER, POSTGRES_DB,
 *   POSTGRES_PASSWORD, PGDATA as a subfolder of the volume), so `postgres:15-bookworm` can stand in
 *   for the one kreg builds without a registry (test/cluster/postgres-image.sh); kreg's also sets
 *   the role's password from the Secret at every start, so the Secret stays the truth.
 * - The password is a Secret kreg generates in the cluster (`kreg.dev/generate`: 192 random bits,
 *   made once, never overwritten, never pruned): neither git, the manifests nor a ConfigMap hold it.
 * - Pod Security "restricted": uid 999, read-only root filesystem (the socket and temporary files on
 *   emptyDirs), every capability dropped, seccomp RuntimeDefault.
 * - Probes run `pg_isready` on the local socket: ready means it accepts connections.
 * - Ingress only from the pods of the registration instance it serves (the service and its
 *   migration Job), on 5432.
 * - kreg applies it in the `backends` phase: ready before the migration Job runs against it.
 * - SIGINT stops it (the image's STOPSIGNAL): a fast shutdown that closes sessions, rather than
 *   SIGTERM's smart shutdown, which would wait on the service's pooled connections until SIGKILL.
 */
import { ApiObject, Chart, JsonPatch } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import type { Construct } from 'constructs';
import { GENERATE_ANNOTATION, PHASE_ANNOTATION, PRUNE_ANNOTATION, PRUNE_NEVER } from '../infra/engine/annotations.js';
import { imageTag, pullPolicyFor, selectorLabels, singleServerStatefulSet, standardLabels, type AppLabels } from './common.js';

export const POSTGRES_NAME = 'postgres';
export const POSTGRES_PORT = 5432;
/** The uid and gid PostgreSQL runs as (the official image's and kreg's image's `postgres` user). */
export const POSTGRES_USER_ID = 999;
export const DEFAULT_POSTGRES_IMAGE = 'kreg/postgres:15';
/** The role and database the service uses. */
export const POSTGRES_ROLE = 'kreg';
export const POSTGRES_DATABASE = 'kreg';
/** The key of the generated password in the credentials Secret. */
export const PASSWORD_KEY = 'password';

export interface PostgresChartProps {
  namespace: string;
  /** Name of the server's objects (Service, StatefulSet, Secret and policy prefixes). */
  name: string;
  /** Deployment environment: `app.kubernetes.io/instance` is `<name>-<environment>`, or `<name>` without. */
  environment?: string;
  image?: string;
  /** Size of the data volume, e.g. `5Gi`. Default `5Gi`. */
  storage?: string;
  storageClassName?: string;
  /** Labels of the pods that may connect (the registration instance's service and migration Job). */
  clientLabels: Record<string, string>;
}

export class PostgresChart extends Chart {
  /** Host the service connects to. */
  readonly host: string;
  readonly port = POSTGRES_PORT;
  readonly role = POSTGRES_ROLE;
  readonly database = POSTGRES_DATABASE;
  /** The Secret (and key) holding the generated password. */
  readonly passwordSecret: { secretName: string; key: string };

  constructor(scope: Construct, id: string, props: PostgresChartProps) {
    super(scope, id, { namespace: props.namespace, disableResourceNameHashes: true });
    const image = props.image ?? DEFAULT_POSTGRES_IMAGE;
    const version = imageTag(image);
    const { name } = props;
    const appLabels: AppLabels = {
      name: POSTGRES_NAME,
      instance: props.environment ? `${name}-${props.environment}` : name,
      component: 'database',
      ...(version ? { version } : {}),
    };
    const labels = standardLabels(appLabels);
    const selector = selectorLabels(appLabels);
    this.host = `${name}.${props.namespace}.svc.cluster.local`;
    this.passwordSecret = { secretName: `${name}-credentials`, key: PASSWORD_KEY };

    const credentials = new k8s.KubeSecret(this, 'credentials', {
      metadata: {
        name: this.passwordSecret.secretName,
        labels,
        // Made in the cluster, once; kept when the chart goes, as the data it opens is.
        annotations: { [GENERATE_ANNOTATION]: PASSWORD_KEY, [PRUNE_ANNOTATION]: PRUNE_NEVER },
      },
      type: 'Opaque',
    });

    const service = new k8s.KubeService(this, 'service', {
      metadata: { name, labels },
      spec: {
        type: 'ClusterIP',
        selector,
        ports: [{ name: 'postgres', port: POSTGRES_PORT, targetPort: k8s.IntOrString.fromString('postgres'), protocol: 'TCP' }],
      },
    });

    const isReady = { exec: { command: ['pg_isready', '--host=/var/run/postgresql', `--port=${POSTGRES_PORT}`, '--username=postgres', '--quiet'] } };
    const statefulSet = singleServerStatefulSet(this, 'statefulset', {
      name,
      labels,
      selector,
      // Applied and waited for before the migration Job, which runs against it.
      annotations: { [PHASE_ANNOTATION]: 'backends' },
      uid: POSTGRES_USER_ID,
      // A fast shutdown writes a checkpoint; give it time before SIGKILL turns it into crash recovery.
      terminationGracePeriodSeconds: 60,
      container: {
        name: 'postgres',
        image,
        imagePullPolicy: pullPolicyFor(image),
        ports: [{ name: 'postgres', containerPort: POSTGRES_PORT, protocol: 'TCP' }],
        env: [
          { name: 'POSTGRES_USER', value: POSTGRES_ROLE },
          { name: 'POSTGRES_DB', value: POSTGRES_DATABASE },
          { name: 'POSTGRES_PASSWORD', valueFrom: { secretKeyRef: { name: this.passwordSecret.secretName, key: PASSWORD_KEY } } },
          // A subfolder: initdb refuses a volume's root (lost+found, group-writable mode).
          { name: 'PGDATA', value: '/var/lib/postgresql/data/pgdata' },
        ],
        readinessProbe: { ...isReady, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 2 },
        livenessProbe: { ...isReady, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 6 },
        // initdb on a fresh volume, or crash recovery after a hard stop, may take a while.
        startupProbe: { ...isReady, periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 300 },
        resources: {
          requests: { cpu: k8s.Quantity.fromString('100m'), memory: k8s.Quantity.fromString('256Mi') },
          limits: { cpu: k8s.Quantity.fromString('1'), memory: k8s.Quantity.fromString('512Mi') },
        },
      },
      dataPath: '/var/lib/postgresql/data',
      // The server's socket and lock file.
      scratch: [{ name: 'run', mountPath: '/var/run/postgresql', sizeLimit: '1Mi' }],
      ...(props.storage ? { storage: props.storage } : {}),
      ...(props.storageClassName ? { storageClassName: props.storageClassName } : {}),
    });
    statefulSet.addDependency(service);
    statefulSet.addDependency(credentials);
    // cdk8s drops an empty `data`; a generated Secret has none to begin with.
    ApiObject.of(credentials).addJsonPatch(JsonPatch.remove('/data'));

    new k8s.KubeNetworkPolicy(this, 'network-policy', {
      metadata: { name: `${name}-ingress`, labels },
      spec: {
        podSelector: { matchLabels: selector },
        policyTypes: ['Ingress'],
        ingress: [{ from: [{ podSelector: { matchLabels: props.clientLabels } }], ports: [{ protocol: 'TCP', port: k8s.IntOrString.fromString('postgres') }] }],
      },
    });
  }
}
