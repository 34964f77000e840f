/**
 * The `RegistrationService` custom resource (kreg.dev/v1alpha1): its CRD, generated from the spec's
 * zod schema (infra/spec.ts) plus the fields only a controller has (suspend, the data claim's
 * deletion policy), with the status the operator writes, printer columns, a short name, and the
 * label that makes it an ApplySet parent (KEP-3659), so the resource is the inventory of
 * everything it renders and `kubectl` sees the same set as kreg.
 */
import type { KubeObject } from '../engine/types.js';
import { specOpenApiSchema } from '../spec.js';

export const GROUP = 'kreg.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'RegistrationService';
export const PLURAL = 'registrationservices';
export const CRD_NAME = `${PLURAL}.${GROUP}`;
export const SHORT_NAMES = ['regsvc'];

type JsonSchema = Record<string, unknown>;

const condition: JsonSchema = {
  type: 'object',
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
  properties: {
    type: { type: 'string', maxLength: 316 },
    status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
    observedGeneration: { type: 'integer', minimum: 0 },
    lastTransitionTime: { type: 'string', format: 'date-time' },
    reason: { type: 'string', maxLength: 1024, minLength: 1 },
    message: { type: 'string', maxLength: 32768 },
  },
};

const statusSchema: JsonSchema = {
  type: 'object',
  properties: {
    observedGeneration: { type: 'integer', description: 'The generation of the spec this status describes.' },
    conditions: {
      type: 'array',
      description: 'kstatus conditions: Ready, Reconciling, Stalled.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
      items: condition,
    },
    url: { type: 'string', description: 'In-cluster URL of the service.' },
    readyReplicas: { type: 'integer' },
    revision: { type: 'integer', description: 'The applied revision.' },
    history: {
      type: 'array',
      description: 'The latest applied revisions, newest first.',
      maxItems: 10,
      items: {
        type: 'object',
        properties: {
          revision: { type: 'integer' },
          digest: { type: 'string' },
          image: { type: 'string' },
          time: { type: 'string', format: 'date-time' },
          outcome: { type: 'string' },
        },
      },
    },
    lastHandledReconcileAt: { type: 'string', description: 'The last reconcile.kreg.dev/requestedAt value handled.' },
  },
};

/** The CR's spec: the deployment spec plus what only a controller acts on. */
export function resourceSpecSchema(): JsonSchema {
  const spec = specOpenApiSchema();
  const properties = spec.properties as Record<string, JsonSchema>;
  properties.suspend = { type: 'boolean', default: false, description: 'Stop reconciling (drift is not corrected) until set back to false.' };
  properties.dataDeletionPolicy = {
    type: 'string',
    enum: ['Retain', 'Delete'],
    default: 'Retain',
    description: 'What happens to the embedded database\'s claim when the resource is deleted.',
  };
  return spec;
}

export function registrationServiceCrd(): KubeObject {
  const readyColumn = (name: string, field: 'status' | 'reason') => ({
    name,
    type: 'string',
    jsonPath: `.status.conditions[?(@.type=="Ready")].${field}`,
  });
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: CRD_NAME,
      labels: {
        'applyset.kubernetes.io/is-parent-type': 'true',
        'app.kubernetes.io/name': 'kreg-operator',
        'app.kubernetes.io/part-of': 'kreg',
      },
    },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { kind: KIND, listKind: `${KIND}List`, plural: PLURAL, singular: 'registrationservice', shortNames: SHORT_NAMES, categories: ['kreg'] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            readyColumn('Ready', 'status'),
            readyColumn('Reason', 'reason'),
            { name: 'Image', type: 'string', jsonPath: '.spec.image' },
            { name: 'Replicas', type: 'integer', jsonPath: '.status.readyReplicas' },
            { name: 'Database', type: 'string', jsonPath: '.spec.database.mode' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: resourceSpecSchema(),
                status: statusSchema,
              },
            },
          },
        },
      ],
    },
  };
}
