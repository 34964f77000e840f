/**
 * Evidence for a failed object, gathered before anything else is done or printed: its conditions,
 * recent events (of the object and of the pod that failed), container states, and the last lines
 * of the container's log — the previous container's too when it restarted, because a crash loop's
 * cause is in the log of the container that died, not in the one waiting to start.
 */
import type { ClusterReader } from './client.js';
import { currentPods } from './readiness.js';
import type { Health, KubeObject, ObjectRef } from './types.js';

export interface Evidence {
  conditions: string[];
  events: string[];
  containers: string[];
  logs: Array<{ pod: string; container: string; previous: boolean; lines: string[] }>;
}

const LOG_LINES = 20;
const EVENT_LIMIT = 10;

export async function gatherEvidence(client: ClusterReader, ref: ObjectRef, health: Health): Promise<Evidence> {
  const evidence: Evidence = { conditions: [], events: [], containers: [], logs: [] };
  const obj = await client.get(ref).catch(() => undefined);
  for (const c of (obj?.status?.conditions ?? []) as Array<Record<string, string>>) {
    evidence.conditions.push(`${c.type}=${c.status}${c.reason ? ` ${c.reason}` : ''}${c.message ? `: ${c.message}` : ''}`);
  }

  // The pod that failed (named by readiness), else the workload's current pods.
  let pods: KubeObject[] = [];
  if (ref.namespace) {
    const allPods = await client.list('v1', 'Pod', { namespace: ref.namespace }).catch(() => [] as KubeObject[]);
    if (health.pod) pods = allPods.filter((p) => p.metadata.name === health.pod!.name);
    else if (obj) {
      const replicaSets = ref.kind === 'Deployment' ? await client.list('apps/v1', 'ReplicaSet', { namespace: ref.namespace }).catch(() => []) : [];
      pods = currentPods(obj, { pods: allPods, replicaSets }).slice(0, 3);
    }
  }

  const uids = [obj?.metadata.uid, ...pods.map((p) => p.metadata.uid)].filter(Boolean) as string[];
  if (ref.namespace && uids.length) {
    const events = await client.list('v1', 'Event', { namespace: ref.namespace }).catch(() => [] as KubeObject[]);
    evidence.events = events
      .filter((e) => uids.includes(e.involvedObject?.uid))
      .sort((a, b) => eventTime(a) - eventTime(b) || Number(a.metadata.resourceVersion ?? 0) - Number(b.metadata.resourceVersion ?? 0))
      .slice(-EVENT_LIMIT)
      .map((e) => `${e.type} ${e.reason} ${e.involvedObject.kind}/${e.involvedObject.name}: ${String(e.message ?? '').trim()}${e.count > 1 ? ` (×${e.count})` : ''}`);
  }

  for (const pod of pods) {
    const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])] as Array<Record<string, any>>;
    for (const s of statuses) {
      evidence.containers.push(`${pod.metadata.name}/${s.name}: ${describeState(s.state)}; restarts ${s.restartCount ?? 0}${s.lastState?.terminated ? `; last: ${describeState(s.lastState)}` : ''}`);
      const started = s.state?.running || s.state?.terminated || s.lastState?.terminated;
      if (!started) continue; // never ran: no log to read (image pull, config error)
      for (const previous of s.restartCount > 0 ? [true, false] : [false]) {
        const text = await client
          .podLog(pod.metadata.namespace!, pod.metadata.name, { container: s.name, tailLines: LOG_LINES, previous })
          .catch(() => '');
        const lines = text.split('\n').filter((l) => l.length > 0);
        if (lines.length) evidence.logs.push({ pod: pod.metadata.name, container: s.name, previous, lines });
      }
    }
  }
  return evidence;
}

/**
 * When an event last happened, to the second: core events carry second-precision timestamps and
 * newer ones a microsecond `eventTime`, so both are cut to seconds and ties go by resourceVersion
 * (the order the API server stored them in).
 */
function eventTime(e: KubeObject): number {
  const t = Date.parse(e.series?.lastObservedTime ?? e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp ?? '') || 0;
  return Math.floor(t / 1000);
}

function describeState(state: Record<string, any> | undefined): string {
  if (!state) return 'unknown';
  if (state.running) return `running since ${state.running.startedAt}`;
  if (state.waiting) return `waiting: ${state.waiting.reason}${state.waiting.message ? ` (${state.waiting.message})` : ''}`;
  if (state.terminated) return `terminated: ${state.terminated.reason ?? ''} exit ${state.terminated.exitCode}`;
  return 'unknown';
}

