/**
 * The part of the CLI that builds the app: the charts (cdk8s) and the spec's schema (zod). Loaded
 * only by the commands that synthesize (synth, diff, deploy), so status, rollback, destroy and
 * verify start without them.
 */
import { buildApp, environmentSpec, synthToDisk, type BuildAppOptions } from '../main.js';
import type { KubeObject } from '../engine/index.js';
import { parseSpec, SpecError } from '../spec.js';

export { environmentSpec, parseSpec, SpecError, synthToDisk };

/** The registration app's objects for an environment, built in-process. */
export function desiredObjects(options: BuildAppOptions): KubeObject[] {
  return buildApp(options).charts.flatMap((c) => c.toJson() as KubeObject[]);
}
