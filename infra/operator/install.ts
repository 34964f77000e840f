/**
 * What `kreg operator install` puts in a cluster: the CRD, least-privilege RBAC, and the operator
 * Deployment (two copies, one leading through a Lease). It is deployed by kreg's own engine as the
 * ApplySet `kreg-operator` in the operator's namespace, so install is idempotent, waits for the CRD
 * to be Established and the Deployment to be ready (failing fast with evidence), prunes what a
 * newer kreg no longer installs, and `kreg operator uninstall` removes exactly what it put there.
 */
import { ADOPT_ANNOTATION, PRUNE_ANNOTATION, PRUNE_NEVER } from '../engine/annotations.js';
import type { KubeClient } from '../engine/client.js';
import { adoptionValue } from '../engine/inventory.js';
import type { KubeObject } from '../engine/types.js';
import { sleep } from '../engine/util.js';
import { CHILD_KINDS, OPERATOR_FIELD_MANAGER } from './controller.js';
import { CRD_NAME, GROUP, PLURAL, registrationServiceCrd } from './crd.js';

export const OPERATOR_NAME = 'kreg-operator';
export const DEFAULT_OPERATOR_NAMESPACE = 'kreg-system';
export const DEFAULT_OPERATOR_IMAGE = 'kreg/operator:dev';
export const METRICS_PORT = 8081;

export interface InstallOptions {
  namespace: string;
  image: string;
  replicas: number;
}

const LABELS = { 'app.kubernetes.io/name': OPERATOR_NAME, 'app.kubernetes.io/part-of': 'kreg', 'app.kubernetes.io/component': 'operator' };

/** The API resource (plural) of a kind, as RBAC names it. */
function resourceOf(kind: string): string {
  const lower = kind.toLowerCase();
  return lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : `${lower}s`;
}

function groupOf(apiVersion: string): string {
  return apiVersion.includes('/') ? apiVersion.split('/')[0]! : '';
}

/**
 * The ClusterRole: full rights only on the kinds the controller renders (and the Secrets holding
 * revision history), read-only on what readiness and evidence need, and its own resource.
 */
export function operatorClusterRole(): KubeObject {
  const write = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
  const byGroup = new Map<string, string[]>();
  for (const { apiVersion, kind } of [...CHILD_KINDS, { apiVersion: 'v1', kind: 'Secret' }]) {
    const group = groupOf(apiVersion);
    byGroup.set(group, [...(byGroup.get(group) ?? []), resourceOf(kind)]);
  }
  const rendered = [...byGroup].sort(([a], [b]) => a.localeCompare(b)).map(([group, resources]) => ({ apiGroups: [group], resources: resources.sort(), verbs: write }));
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: OPERATOR_NAME, labels: LABELS },
    rules: [
      { apiGroups: [GROUP], resources: [PLURAL], verbs: ['get', 'list', 'watch', 'update', 'patch'] },
      { apiGroups: [GROUP], resources: [`${PLURAL}/status`], verbs: ['get', 'update', 'patch'] },
      { apiGroups: [GROUP], resources: [`${PLURAL}/finalizers`], verbs: ['update'] },
      ...rendered,
      // Readiness and failure evidence: pods, their logs, replica sets of a rollout, events.
      { apiGroups: [''], resources: ['pods', 'pods/log'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['apps'], resources: ['replicasets'], verbs: ['get', 'list', 'watch'] },
      // A Service is ready when its endpoints are.
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['', 'events.k8s.io'], resources: ['events'], verbs: ['get', 'list', 'watch', 'create', 'patch'] },
      // The engine checks that a target namespace exists; it never creates one for a resource.
      { apiGroups: [''], resources: ['namespaces'], verbs: ['get'] },
      // The operator waits for its CRD to be Established; it does not change it (install does).
      { apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], verbs: ['get', 'list', 'watch'] },
    ],
  };
}

export function operatorManifests(options: InstallOptions): KubeObject[] {
  const { namespace, image, replicas } = options;
  const crd = registrationServiceCrd();
  // Deleting a CRD deletes every RegistrationService (and through them, their services); uninstall
  // keeps it unless asked.
  crd.metadata.annotations = { ...crd.metadata.annotations, [PRUNE_ANNOTATION]: PRUNE_NEVER };
  const meta = (name: string) => ({ name, namespace, labels: LABELS });
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels: LABELS } },
    crd,
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(OPERATOR_NAME) },
    operatorClusterRole(),
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: OPERATOR_NAME, labels: LABELS },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: OPERATOR_NAME },
      subjects: [{ kind: 'ServiceAccount', name: OPERATOR_NAME, namespace }],
    },
    {
      // Leader election: the Lease lives in the operator's namespace only.
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: meta(`${OPERATOR_NAME}-leader-election`),
      rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(`${OPERATOR_NAME}-leader-election`),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `${OPERATOR_NAME}-leader-election` },
      subjects: [{ kind: 'ServiceAccount', name: OPERATOR_NAME, namespace }],
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: meta(OPERATOR_NAME),
      spec: {
        replicas,
        selector: { matchLabels: { 'app.kubernetes.io/name': OPERATOR_NAME } },
        // A new copy starts (and stands by) before an old one stops; the old leader releases the
        // Lease on SIGTERM, so hand-over takes one acquire, not a lease expiry.
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: {
          metadata: { labels: LABELS },
          spec: {
            serviceAccountName: OPERATOR_NAME,
            terminationGracePeriodSeconds: 30,
            securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'operator',
                image,
                imagePullPolicy: 'IfNotPresent',
                args: ['--listen', `0.0.0.0:${METRICS_PORT}`, '--no-install-crd'],
                env: [
                  { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                  // V8 sizes its heap from the container limit; keep the old space well under it.
                  { name: 'NODE_OPTIONS', value: '--max-old-space-size=192' },
                ],
                ports: [{ name: 'metrics', containerPort: METRICS_PORT }],
                livenessProbe: { httpGet: { path: '/healthz', port: 'metrics' }, periodSeconds: 10, failureThreshold: 3 },
                readinessProbe: { httpGet: { path: '/readyz', port: 'metrics' }, periodSeconds: 2, failureThreshold: 3 },
                resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '320Mi' } },
                securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: meta(OPERATOR_NAME),
      spec: { maxUnavailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': OPERATOR_NAME } } },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(`${OPERATOR_NAME}-metrics`),
      spec: { selector: { 'app.kubernetes.io/name': OPERATOR_NAME }, ports: [{ name: 'metrics', port: METRICS_PORT, targetPort: 'metrics' }] },
    },
  ];
}

function isEstablished(crd: KubeObject | undefined): boolean {
  return (crd?.status?.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Established' && c.status === 'True');
}

/** Applies the CRD (server-side, as kreg's field manager) and waits until it is Established. */
export async function installCrd(client: KubeClient, log: (entry: Record<string, unknown>) => void): Promise<void> {
  // The operator wrote this CRD, so it hands it to the set `kreg operator install` deploys (which
  // renders the same CRD and would otherwise refuse it as an object it did not create).
  const crd = registrationServiceCrd();
  crd.metadata.annotations = { ...crd.metadata.annotations, [ADOPT_ANNOTATION]: adoptionValue({ name: OPERATOR_NAME, namespace: DEFAULT_OPERATOR_NAMESPACE }) };
  await client.apply(crd, { fieldManager: OPERATOR_FIELD_MANAGER, force: true });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const crd = await client.get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: CRD_NAME });
    if (isEstablished(crd)) break;
    if (Date.now() > deadline) throw new Error(`the CRD ${CRD_NAME} did not become Established within 60 s`);
    await sleep(200);
  }
  client.forgetDiscovery('kreg.dev/v1alpha1');
  log({ msg: 'CRD established', crd: CRD_NAME });
}

/**
 * Waits until the CRD exists and is Established, without changing it (the in-cluster operator's
 * RBAC cannot). Logs once a minute while it waits, naming the command that installs it.
 */
export async function awaitCrd(client: KubeClient, log: (entry: Record<string, unknown>) => void, signal: AbortSignal): Promise<void> {
  let lastSaid = 0;
  while (!signal.aborted) {
    const crd = await client.get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: CRD_NAME });
    if (isEstablished(crd)) {
      client.forgetDiscovery('kreg.dev/v1alpha1');
      log({ msg: 'CRD established', crd: CRD_NAME });
      return;
    }
    if (Date.now() - lastSaid > 60_000) {
      lastSaid = Date.now();
      log({ msg: crd ? 'waiting for the CRD to be Established' : 'the CRD is not installed: run kreg operator install, or kubectl apply the output of kreg operator crd', crd: CRD_NAME });
    }
    await sleep(1000);
  }
}
