/**
 * `kreg diff`: what a deploy would change, per object, as a readable YAML diff of the live object
 * against the server's dry-run result of applying the desired one (so defaults, admission and
 * other managers' fields are accounted for exactly as the real apply would), with status and
 * server bookkeeping (managedFields, resourceVersion, ...) left out; plus what prune would delete.
 */
import { stringify } from 'yaml';
import type { KubeApi } from './client.js';
import { toEngineError, type EngineFailure } from './errors.js';
import { decidePrune, parentRefOf, readParent } from './inventory.js';
import { normalizeForDiff, type Change } from './plan.js';
import { FIELD_MANAGER, listMembers, plan, prepare, validate, type Target } from './reconcile.js';
import type { KubeObject, ObjectRef } from './types.js';
import { refKey, refOf } from './types.js';

export interface ObjectDiff {
  ref: ObjectRef;
  change: Change | 'prune';
  /** Unified diff lines (without file headers); empty when unchanged. */
  lines: string[];
}

export interface DiffReport {
  ok: boolean;
  /** Something would be created, updated or pruned. */
  changes: boolean;
  objects: ObjectDiff[];
  kept: Array<{ ref: ObjectRef; why: string }>;
  /** Why no diff could be made: the same validation (and the same failure kinds) as a deploy's. */
  failure?: EngineFailure;
  apiCalls: number;
}

const isSecret = (obj: KubeObject | undefined): obj is KubeObject => obj?.apiVersion === 'v1' && obj.kind === 'Secret';

/** A Secret with each value shown as `***`, as kubectl diff shows them: a diff must not print credentials. */
export function maskSecret(obj: KubeObject): KubeObject {
  if (!isSecret(obj) || !obj.data) return obj;
  return { ...obj, data: Object.fromEntries(Object.keys(obj.data).map((k) => [k, '***'])) };
}

/** Both sides of a Secret's diff masked, values that differ marked so the change still shows. */
export function maskSecretPair(before: KubeObject | undefined, after: KubeObject): [KubeObject | undefined, KubeObject] {
  if (!isSecret(after)) return [before, after];
  if (!before) return [undefined, maskSecret(after)];
  const was = (before?.data ?? {}) as Record<string, string>;
  const now = (after.data ?? {}) as Record<string, string>;
  const mask = (own: Record<string, string>, other: Record<string, string>, side: string) =>
    Object.fromEntries(Object.keys(own).map((k) => [k, own[k] === other[k] ? '***' : `*** (${side})`]));
  return [
    { ...before, ...(before.data ? { data: mask(was, now, 'before') } : {}) },
    { ...after, ...(after.data ? { data: mask(now, was, 'after') } : {}) },
  ];
}

export function toYamlLines(obj: KubeObject | undefined): string[] {
  if (!obj) return [];
  return stringify(normalizeForDiff(obj), { sortMapEntries: true, lineWidth: 0 }).trimEnd().split('\n');
}

/** A unified diff of two line lists with `context` lines around each change. */
export function unifiedDiff(before: string[], after: string[], context = 3): string[] {
  // Longest common subsequence table; objects are a few hundred lines at most.
  const n = before.length;
  const m = after.length;
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] = before[i] === after[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const ops: Array<{ op: ' ' | '-' | '+'; text: string; a: number; b: number }> = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && before[i] === after[j]) ops.push({ op: ' ', text: before[i]!, a: i++, b: j++ });
    // Deletions before insertions, as in `diff -u`.
    else if (i < n && (j >= m || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) ops.push({ op: '-', text: before[i]!, a: i++, b: j });
    else ops.push({ op: '+', text: after[j]!, a: i, b: j++ });
  }
  const out: string[] = [];
  let k = 0;
  while (k < ops.length) {
    if (ops[k]!.op === ' ') {
      k++;
      continue;
    }
    // A hunk: from `context` lines before this change to `context` lines after the last change
    // that is not separated from the next by more than 2 * context unchanged lines.
    let start = Math.max(0, k - context);
    let end = k;
    while (end < ops.length) {
      if (ops[end]!.op !== ' ') {
        end++;
        continue;
      }
      let run = end;
      while (run < ops.length && ops[run]!.op === ' ') run++;
      if (run === ops.length || run - end > 2 * context) break;
      end = run;
    }
    const stop = Math.min(ops.length, end + context);
    const slice = ops.slice(start, stop);
    const aStart = slice[0]!.a + 1;
    const bStart = slice[0]!.b + 1;
    const aLen = slice.filter((o) => o.op !== '+').length;
    const bLen = slice.filter((o) => o.op !== '-').length;
    out.push(`@@ -${aStart},${aLen} +${bStart},${bLen} @@`);
    for (const o of slice) out.push(`${o.op}${o.text}`);
    k = stop;
    start = stop;
  }
  return out;
}

/**
 * What a deploy of `input` would do. Runs the deploy's own prepare and validate stages (so a
 * rejection or a field conflict is the same failure, with the same kind, as the deploy would hit),
 * without creating anything: objects in a namespace that does not exist yet are shown as sent.
 * Never throws for what happens in the cluster; the report carries the failure.
 */
export async function diff(client: KubeApi, input: KubeObject[], target: Target, options: { prune: boolean; forceConflicts?: boolean; adopt?: boolean; signal?: AbortSignal }): Promise<DiffReport> {
  const api = client.scoped(options.signal ? { signal: options.signal } : {});
  const manager = target.fieldManager ?? FIELD_MANAGER;
  const report: DiffReport = { ok: true, changes: false, objects: [], kept: [], apiCalls: 0 };
  try {
    const prepared = await prepare(api, input, target.set);
    const validation = await validate(api, prepared, manager, { force: options.forceConflicts ?? false, createNamespaces: false, set: target.set, ...(options.adopt ? { adopt: true } : {}) });
    // The deploy's own plan decides what changes; the diff only shows it.
    const { changes } = plan(prepared, validation, manager);
    report.objects = prepared.objects.map((obj): ObjectDiff => {
      const ref = refOf(obj);
      const key = refKey(ref);
      const change = changes.get(key) ?? 'unchanged';
      const dry = validation.dryRuns.get(key);
      // Not dry-run (its namespace or CRD does not exist yet): the object as sent.
      if (!dry) return { ref, change: 'create', lines: toYamlLines(maskSecret(obj)).map((l) => `+${l}`) };
      const live = validation.live.get(key);
      if (change === 'unchanged') return { ref, change, lines: [] };
      const [before, after] = maskSecretPair(live, dry);
      const lines = before ? unifiedDiff(toYamlLines(before), toYamlLines(after)) : toYamlLines(after).map((l) => `+${l}`);
      return { ref, change, lines };
    });
    if (options.prune) {
      const parentLive = await api.get(parentRefOf(target.set));
      if (parentLive) {
        const parent = readParent(target.set, parentLive);
        const { members } = await listMembers(api, target.set, parent, prepared.objects);
        const decision = decidePrune(members, prepared.objects.map(refOf), parent.uid);
        for (const p of decision.prune) report.objects.push({ ref: refOf(p), change: 'prune', lines: toYamlLines(maskSecret(p)).map((l) => `-${l}`) });
        report.kept = decision.kept.map((k) => ({ ref: refOf(k.object), why: k.why }));
      }
    }
    report.changes = report.objects.some((o) => o.change !== 'unchanged');
  } catch (err) {
    if (options.signal?.aborted) throw err;
    report.ok = false;
    report.failure = toEngineError(err).toFailure();
  }
  report.apiCalls = api.calls;
  return report;
}

