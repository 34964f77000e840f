/**
 * Small helpers shared by the charts: standard labels, image pull policy, content hashes,
 * and the hardened security settings cdk8s-plus-27 cannot express on its own.
 */
import { createHash } from 'node:crypto';
import { ApiObject, JsonPatch } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { k8s } from 'cdk8s-plus-27';
import type { Construct } from 'constructs';

/** Value of `app.kubernetes.io/part-of` and `managed-by` on everything the charts produce. */
export const PART_OF = 'kreg';
export const MANAGED_BY = 'cdk8s';

/** Pod template annotation carrying the hash of the ConfigMap data, so a config change rolls the pods. */
export const CONFIG_HASH_ANNOTATION = 'kreg.dev/config-hash';

export interface AppLabels {
  /** `app.kubernetes.io/name`, e.g. `registration`. */
  name: string;
  /** `app.kubernetes.io/instance`, e.g. `registration-dev`. */
  instance: string;
  /** `app.kubernetes.io/component`, e.g. `api`, `migration`, `database`. */
  component: string;
  /** `app.kubernetes.io/version`, usually the image tag. Never part of a selector. */
  version?: string;
}

/** Labels that identify pods; stable across releases, so safe for (immutable) workload selectors. */
export function selectorLabels(l: AppLabels): Record<string, string> {
  return {
    'app.kubernetes.io/name': l.name,
    'app.kubernetes.io/instance': l.instance,
    'app.kubernetes.io/component': l.component,
  };
}

/** The full set of recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/). */
export function standardLabels(l: AppLabels): Record<string, string> {
  return {
    ...selectorLabels(l),
    'app.kubernetes.io/part-of': PART_OF,
    'app.kubernetes.io/managed-by': MANAGED_BY,
    ...(l.version ? { 'app.kubernetes.io/version': toLabelValue(l.version) } : {}),
  };
}

/** Label values: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric. */
export function toLabelValue(value: string): string {
  const cleaned = value.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63);
  return cleaned.replace(/^[^A-Za-z0-9]+/, '').replace(/[^A-Za-z0-9]+$/, '');
}

/** The tag of an image reference (`repo/name:tag` → `tag`), or undefined for untagged/digest-only refs. */
export function imageTag(image: string): string | undefined {
  const withoutDigest = image.split('@')[0]!;
  const lastSlash = withoutDigest.lastIndexOf('/');
  const lastColon = withoutDigest.lastIndexOf(':');
  return lastColon > lastSlash ? withoutDigest.slice(lastColon + 1) : undefined;
}

/**
 * `IfNotPresent` for pinned images (a tag other than `latest`, or a digest), `Always` otherwise —
 * Kubernetes' own default rule, stated explicitly because cdk8s-plus-27 defaults to `Always`,
 * which breaks `kind load docker-image` and other locally loaded images.
 */
export function pullPolicyFor(image: string): kplus.ImagePullPolicy {
  if (image.includes('@')) return kplus.ImagePullPolicy.IF_NOT_PRESENT;
  const tag = imageTag(image);
  return tag && tag !== 'latest' ? kplus.ImagePullPolicy.IF_NOT_PRESENT : kplus.ImagePullPolicy.ALWAYS;
}

/** Deterministic short hash of JSON-serializable data (keys sorted, so insertion order does not matter). */
export function contentHash(data: unknown, length = 10): string {
  return createHash('sha256').update(stableJson(data)).digest('hex').slice(0, length);
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * What Pod Security "restricted" requires and cdk8s-plus-27 cannot say: `seccompProfile: RuntimeDefault`
 * on the pod and `capabilities.drop: [ALL]` on every container (its Capability enum has no ALL member and
 * uses CAP_-prefixed names). Plain fields survive cdk8s' JSON patches (see notes/libraries.md §2.4).
 * `podSpecPath` points at the pod spec inside the object (`/spec/template/spec` for workloads and Jobs).
 */
export function hardenPodSpec(
  workload: kplus.AbstractPod,
  podSpecPath: string,
  containerCount: number,
  initContainerCount = 0,
): void {
  const api = ApiObject.of(workload);
  api.addJsonPatch(JsonPatch.add(`${podSpecPath}/securityContext/seccompProfile`, { type: 'RuntimeDefault' }));
  // Service links would inject REGISTRATION_PORT=tcp://… style variables for every Service in the
  // namespace; the service reads its own PORT, so keep the environment to what the ConfigMap says.
  api.addJsonPatch(JsonPatch.add(`${podSpecPath}/enableServiceLinks`, false));
  for (let i = 0; i < containerCount; i++) {
    api.addJsonPatch(JsonPatch.add(`${podSpecPath}/containers/${i}/securityContext/capabilities`, { drop: ['ALL'] }));
  }
  for (let i = 0; i < initContainerCount; i++) {
    api.addJsonPatch(
      JsonPatch.add(`${podSpecPath}/initContainers/${i}/securityContext/capabilities`, { drop: ['ALL'] }),
    );
  }
}

export interface SingleServerProps {
  name: string;
  labels: Record<string, string>;
  selector: Record<string, string>;
  annotations?: Record<string, string>;
  /** The numeric user and group the server runs as; also the volume's fsGroup. */
  uid: number;
  terminationGracePeriodSeconds: number;
  /** The server's container without securityContext and volumeMounts, which this adds. */
  container: Omit<k8s.Container, 'securityContext' | 'volumeMounts'>;
  /** Where the data claim is mounted. */
  dataPath: string;
  /** Further emptyDir volumes (name → mount path, size), beside /tmp. */
  scratch?: Array<{ name: string; mountPath: string; sizeLimit: string }>;
  storage?: string;
  storageClassName?: string;
}

/**
 * A database server as a StatefulSet of one on a claim template, hardened for Pod Security
 * "restricted": a numeric non-root user, read-only root filesystem, every capability dropped,
 * seccomp RuntimeDefault, no ServiceAccount token or service links, /tmp on a bounded emptyDir,
 * and the claim kept when the set is deleted or scaled. Raw KubeStatefulSet: cdk8s-plus-27 cannot
 * render volumeClaimTemplates. charts/database.ts (sqld) and charts/postgres.ts use it.
 */
export function singleServerStatefulSet(scope: Construct, id: string, props: SingleServerProps): k8s.KubeStatefulSet {
  const scratch = [...(props.scratch ?? []), { name: 'tmp', mountPath: '/tmp', sizeLimit: '64Mi' }];
  return new k8s.KubeStatefulSet(scope, id, {
    metadata: { name: props.name, labels: props.labels, ...(props.annotations ? { annotations: props.annotations } : {}) },
    spec: {
      serviceName: props.name,
      replicas: 1,
      selector: { matchLabels: props.selector },
      persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
      template: {
        metadata: { labels: props.labels },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: props.terminationGracePeriodSeconds,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: props.uid,
            runAsGroup: props.uid,
            fsGroup: props.uid,
            fsGroupChangePolicy: 'OnRootMismatch',
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              ...props.container,
              securityContext: {
                runAsNonRoot: true,
                runAsUser: props.uid,
                runAsGroup: props.uid,
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                privileged: false,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [{ name: 'data', mountPath: props.dataPath }, ...scratch.map(({ name, mountPath }) => ({ name, mountPath }))],
            },
          ],
          volumes: scratch.map(({ name, sizeLimit }) => ({ name, emptyDir: { sizeLimit: k8s.Quantity.fromString(sizeLimit) } })),
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: 'data', labels: props.labels },
          spec: {
            accessModes: ['ReadWriteOnce'],
            ...(props.storageClassName ? { storageClassName: props.storageClassName } : {}),
            resources: { requests: { storage: k8s.Quantity.fromString(props.storage ?? '5Gi') } },
          },
        },
      ],
    },
  });
}
