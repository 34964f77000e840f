/** Stage 1, prepare: discovery and normalisation of the desired objects. */
import { PHASE_ANNOTATION } from '../annotations.js';
import { type KubeApi, KubeApiError } from '../client.js';
import { EngineError } from '../errors.js';
import { withGeneratedValues } from '../generated.js';
import { type ApplySetRef, memberLabels } from '../inventory.js';
import { duplicates, PHASES, prepareObject } from '../plan.js';
import { describeRef, type KubeObject, refOf } from '../types.js';

/** A prepared desired set: namespaced, labelled, checked for duplicates. */
export interface Prepared {
  objects: KubeObject[];
  namespaces: string[];
}

/**
 * Stage 1, prepare: discovery and normalisation. Refuses sets kreg must not deploy (empty: pruning
 * against it would delete everything; objects without identity; duplicates).
 */
export async function prepare(api: KubeApi, input: KubeObject[], set: ApplySetRef): Promise<Prepared> {
  if (input.length === 0) {
    throw new EngineError({
      kind: 'invalid',
      message: 'the desired set is empty: refusing it, because pruning against an empty set would delete everything this ApplySet owns',
    });
  }
  const labels = memberLabels(set);
  const objects: KubeObject[] = [];
  const namespaces = new Set<string>();
  // Discovery of every group-version at once (the client keeps each answer), rather than one
  // round trip after another in the loop below; a failure is reported there, for its object.
  const kindPerVersion = new Map<string, string>();
  for (const o of input) if (o?.apiVersion && o.kind && !kindPerVersion.has(o.apiVersion)) kindPerVersion.set(o.apiVersion, o.kind);
  await Promise.all([...kindPerVersion].map(([apiVersion, kind]) => api.isNamespaced(apiVersion, kind).catch(() => undefined)));
  for (const obj of input) {
    if (!obj?.apiVersion || !obj.kind || !obj.metadata?.name) {
      throw new EngineError({ kind: 'invalid', message: `an object has no apiVersion, kind or metadata.name: ${JSON.stringify(obj).slice(0, 200)}` });
    }
    let namespaced: boolean;
    try {
      namespaced = await api.isNamespaced(obj.apiVersion, obj.kind);
    } catch (err) {
      // A custom resource whose CRD is part of this very set is not served yet: assume namespaced
      // unless it says otherwise; it is checked again when applied after its CRD.
      const definedHere = input.some((o) => o.kind === 'CustomResourceDefinition' && crdServes(o, obj));
      if (!definedHere) {
        if (err instanceof KubeApiError && err.reason === 'NoKindMatch') throw new EngineError({ kind: 'invalid', message: `${describeRef(refOf(obj))}: ${err.message}` });
        throw err;
      }
      namespaced = crdScope(input, obj) !== 'Cluster';
    }
    const phase = obj.metadata.annotations?.[PHASE_ANNOTATION];
    if (phase !== undefined && !(PHASES as readonly string[]).includes(phase)) {
      throw new EngineError({ kind: 'invalid', message: `${describeRef(refOf(obj))}: ${PHASE_ANNOTATION}: "${phase}" is not a phase; expected one of ${PHASES.join(', ')}` });
    }
    const prepared = withGeneratedValues(prepareObject(obj, { namespaced, defaultNamespace: set.namespace, extraLabels: labels }));
    if (prepared.metadata.namespace) namespaces.add(prepared.metadata.namespace);
    objects.push(prepared);
  }
  const dup = duplicates(objects.map(refOf));
  if (dup.length) throw new EngineError({ kind: 'invalid', message: `the desired set names an object twice: ${dup.join(', ')}` });
  namespaces.add(set.namespace);
  return { objects, namespaces: [...namespaces].sort() };
}

export function crdServes(crd: KubeObject, obj: KubeObject): boolean {
  const [group, version] = obj.apiVersion.split('/');
  return crd.spec?.group === group && crd.spec?.names?.kind === obj.kind && (crd.spec?.versions ?? []).some((v: { name: string }) => v.name === version);
}

function crdScope(all: KubeObject[], obj: KubeObject): string | undefined {
  return all.find((o) => o.kind === 'CustomResourceDefinition' && crdServes(o, obj))?.spec?.scope;
}
