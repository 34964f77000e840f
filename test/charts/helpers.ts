/**
 * Synthesizes environments in-process (as the deploy CLI does) and validates manifests against the
 * Kubernetes OpenAPI schemas shipped by `kubernetes-models` (offline, ajv-compiled).
 */
import * as models from 'kubernetes-models';
import { buildApp, type BuildAppOptions } from '../../infra/main.js';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
  [key: string]: any;
}

/** All manifest objects of an environment, charts in dependency order, as the deployer would get them. */
export function synthEnv(options: BuildAppOptions): K8sObject[] {
  const app = buildApp(options);
  return app.charts.flatMap((chart) => chart.toJson() as K8sObject[]);
}

export function find(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const hit = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (!hit) throw new Error(`no ${kind}${name ? `/${name}` : ''} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return hit;
}

export function kinds(objects: K8sObject[]): string[] {
  return [...new Set(objects.map((o) => o.kind))].sort();
}

/** Pod spec of a workload or Job. */
export function podSpec(obj: K8sObject): any {
  return obj.spec.template.spec;
}

type ModelClass = new (data: unknown) => { validate(): void };

/** `apps/v1` + `Deployment` → kubernetes-models' `apps.v1.Deployment`; throws if the schema set has no such kind. */
export function modelFor(apiVersion: string, kind: string): ModelClass {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const groupKey = group === '' ? undefined : group!.replace(/\.(\w)/g, (_, c: string) => c.toUpperCase());
  const root = models as unknown as Record<string, any>;
  const versions = groupKey === undefined ? { [version!]: root[version!] } : root[groupKey];
  const model = versions?.[version!]?.[kind];
  if (typeof model !== 'function') throw new Error(`kubernetes-models has no schema for ${apiVersion} ${kind}`);
  return model as ModelClass;
}

/** Validates one object against its OpenAPI schema; throws with the instance paths that failed. */
export function validateObject(obj: K8sObject): void {
  const Model = modelFor(obj.apiVersion, obj.kind);
  try {
    new Model(obj).validate();
  } catch (err) {
    const details = (err as { errors?: unknown }).errors;
    throw new Error(
      `${obj.kind}/${obj.metadata.name} is not valid: ${err instanceof Error ? err.message : String(err)}` +
        (details ? ` ${JSON.stringify(details)}` : ''),
    );
  }
}
