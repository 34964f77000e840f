/** Stage 7, record: the parent's final state and, when something changed, a new revision. */
import type { KubeApi } from '../client.js';
import type { EventSink } from '../events.js';
import { withoutGeneratedValues } from '../generated.js';
import type { ApplySetRef, ParentState } from '../inventory.js';
import { digestObjects } from '../plan.js';
import { recordRevision, type Revision } from '../revisions.js';
import type { ReconcileMemo } from '../run.js';
import { writeParent } from './apply.js';

/**
 * Stage, record: the parent with its final kinds (unless it already says so) and, when something
 * changed (or a run that changed something failed), a new revision. Returns the current revision.
 */
export async function record(
  api: KubeApi,
  set: ApplySetRef,
  manager: string,
  memo: ReconcileMemo,
  finalState: ParentState,
  outcome: { status: Revision['status']; description: string; changed: boolean },
  emit: EventSink,
): Promise<number> {
  const previous = memo.parent.revision;
  const rv = memo.parentInCluster?.resourceVersion;
  if (!outcome.changed && previous > 0) {
    const same = (a: string[], b: string[]) => [...a].sort().join() === [...b].sort().join();
    const inCluster = memo.parentInCluster ?? memo.parent;
    if (!same(inCluster.groupKinds, finalState.groupKinds) || !same(inCluster.namespaces, finalState.namespaces)) {
      memo.parentInCluster = await writeParent(api, set, manager, { ...finalState, revision: inCluster.revision, ...(rv ? { resourceVersion: rv } : {}) });
    }
    return memo.parentInCluster?.revision ?? previous;
  }
  const failed = outcome.status === 'failed';
  // Generated values stay in their Secret only: a revision records the Secret without them.
  const recorded = memo.objects.map(withoutGeneratedValues);
  const number = await recordRevision(
    api,
    set,
    { status: outcome.status, deployedAt: new Date().toISOString(), description: outcome.description, digest: digestObjects(recorded), objects: recorded },
    previous,
    manager,
  );
  emit({ type: 'record', revision: number, status: failed ? 'failed' : 'deployed' });
  // A failed run still moves the parent (its kinds may have grown) but not the current revision.
  const current = failed ? (memo.parentInCluster?.revision ?? previous) : number;
  memo.parentInCluster = await writeParent(api, set, manager, { ...finalState, revision: current, ...(rv ? { resourceVersion: rv } : {}) });
  return current;
}
