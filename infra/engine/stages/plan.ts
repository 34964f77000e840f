/** Stage 3, plan: what applying each object would do. */
import { isGenerated } from '../generated.js';
import { type Change, classifyChange } from '../plan.js';
import { type KubeObject, refKey, refOf } from '../types.js';
import type { Prepared } from './prepare.js';
import type { Validation } from './validate.js';

/** Stage 3, plan: what applying each object would do, from its live state and its dry run. */
export function plan(prepared: Prepared, validation: Validation, manager: string): { live: Map<string, KubeObject | undefined>; changes: Map<string, Change> } {
  const changes = new Map<string, Change>();
  for (const obj of prepared.objects) {
    const key = refKey(refOf(obj));
    const dry = validation.dryRuns.get(key);
    const live = validation.live.get(key);
    // A generated Secret is written once, when it does not exist: its values were made for this run.
    if (live && isGenerated(obj)) changes.set(key, 'unchanged');
    else changes.set(key, dry ? classifyChange(live, dry, manager) : live ? 'update' : 'create');
  }
  for (const ns of validation.createdNamespaces) changes.set(refKey({ apiVersion: 'v1', kind: 'Namespace', name: ns }), 'create');
  return { live: validation.live, changes };
}
