/**
 * A libsql server (sqld) for the `remote` database mode: one writer on a PersistentVolumeClaim,
 * reachable in the namespace as http://libsql:8080 (Hrana over HTTP).
 *
 * The upstream image starts as root and drops to uid 666 through a wrapper script
 * (notes/libraries.md §2.2); that fails Pod Security "restricted", so the wrapper is bypassed:
 * `/bin/sqld` runs directly as 666 with fsGroup 666 on the volume, read-only root fs, /tmp on an emptyDir.
 * The StatefulSet is the charts' hardened single server (singleServerStatefulSet, common.ts).
 */
import { Chart } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import type { Construct } from 'constructs';
import { pullPolicyFor, selectorLabels, singleServerStatefulSet, standardLabels, imageTag, type AppLabels } from './common.js';

/** The server's `app.kubernetes.io/name`, and the chart's default object name. */
export const DATABASE_NAME = 'libsql';
export const DATABASE_PORT = 8080;
export const DATABASE_USER = 666;
export const DEFAULT_DATABASE_IMAGE = 'ghcr.io/tursodatabase/libsql-server:v0.24.32';

export interface DatabaseChartProps {
  namespace: string;
  /** Name of the server's objects (Service, StatefulSet, policy prefix). Default `libsql`. */
  name?: string;
  /** Deployment environment: `app.kubernetes.io/instance` is `<name>-<environment>`, or `<name>` without. */
  environment?: string;
  /** Default `ghcr.io/tursodatabase/libsql-server:<pinned tag>`. */
  image?: string;
  /** Size of the data volume, e.g. `5Gi`. Default `5Gi`. */
  storage?: string;
  storageClassName?: string;
  /**
   * Secret with the Ed25519 public key (base64url, as sqld expects in SQLD_AUTH_JWT_KEY) that
   * verifies client tokens. Without it sqld accepts unauthenticated clients — only for dev.
   */
  jwtKey?: { secretName: string; key: string };
  /** Namespaces (by `kubernetes.io/metadata.name`) whose pods may connect besides this one. */
  allowFromNamespaces?: string[];
}

/** A DatabaseEndpoint (charts/registration.ts): the registration chart takes this chart by reference. */
export class DatabaseChart extends Chart {
  /** In-cluster URL of the server for `DATABASE_URL`. */
  readonly url: string;

  constructor(scope: Construct, id: string, props: DatabaseChartProps) {
    super(scope, id, { namespace: props.namespace, disableResourceNameHashes: true });
    const image = props.image ?? DEFAULT_DATABASE_IMAGE;
    const version = imageTag(image);
    const name = props.name ?? DATABASE_NAME;
    const appLabels: AppLabels = {
      name: DATABASE_NAME,
      instance: props.environment ? `${name}-${props.environment}` : name,
      component: 'database',
      ...(version ? { version } : {}),
    };
    const labels = standardLabels(appLabels);
    const selector = selectorLabels(appLabels);
    this.url = `http://${name}.${props.namespace}.svc.cluster.local:${DATABASE_PORT}`;

    const service = new k8s.KubeService(this, 'service', {
      metadata: { name, labels },
      spec: {
        type: 'ClusterIP',
        selector,
        ports: [{ name: 'http', port: DATABASE_PORT, targetPort: k8s.IntOrString.fromString('http'), protocol: 'TCP' }],
      },
    });

    const health = { httpGet: { path: '/health', port: k8s.IntOrString.fromString('http') } };
    const statefulSet = singleServerStatefulSet(this, 'statefulset', {
      name,
      labels,
      selector,
      uid: DATABASE_USER,
      terminationGracePeriodSeconds: 30,
      container: {
        name: 'sqld',
        image,
        imagePullPolicy: pullPolicyFor(image),
        command: ['/bin/sqld'],
        args: ['--db-path', '/var/lib/sqld/data.sqld', '--http-listen-addr', `0.0.0.0:${DATABASE_PORT}`],
        ports: [{ name: 'http', containerPort: DATABASE_PORT, protocol: 'TCP' }],
        env: props.jwtKey
          ? [{ name: 'SQLD_AUTH_JWT_KEY', valueFrom: { secretKeyRef: { name: props.jwtKey.secretName, key: props.jwtKey.key } } }]
          : [],
        readinessProbe: { ...health, periodSeconds: 5, failureThreshold: 2 },
        livenessProbe: { ...health, periodSeconds: 10, failureThreshold: 3 },
        startupProbe: { ...health, periodSeconds: 2, failureThreshold: 60 },
        resources: {
          requests: { cpu: k8s.Quantity.fromString('100m'), memory: k8s.Quantity.fromString('128Mi') },
          limits: { cpu: k8s.Quantity.fromString('1'), memory: k8s.Quantity.fromString('512Mi') },
        },
      },
      dataPath: '/var/lib/sqld',
      ...(props.storage ? { storage: props.storage } : {}),
      ...(props.storageClassName ? { storageClassName: props.storageClassName } : {}),
    });
    statefulSet.addDependency(service);

    // Ingress-only: the registration pods (any component of the `registration` app, so the
    // migration Job too) may reach sqld; nothing else. Egress is untouched.
    new k8s.KubeNetworkPolicy(this, 'network-policy', {
      metadata: { name: `${name}-ingress`, labels },
      spec: {
        podSelector: { matchLabels: selector },
        policyTypes: ['Ingress'],
        ingress: [
          {
            from: [
              { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'registration' } } },
              ...(props.allowFromNamespaces ?? []).map((ns) => ({
                namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
              })),
            ],
            ports: [{ protocol: 'TCP', port: k8s.IntOrString.fromString('http') }],
          },
        ],
      },
    });
  }
}
