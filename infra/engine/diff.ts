/**
 * `kreg diff`: what a deploy would change, per object, as a readable YAML diff of the live object
 * against the server's dry-run result of applying the desired one (so defaults, admission and
 * other managers' fields are accounted for exactly as the real apply would), with status and
 * server bookkeeping (managedFields, resourceVersion, ...) left out; plus what prune would delete.
 */
import { stringify } from 'yaml';
import type { KubeClient } from './client.js';
import { EXIT, FIELD_MANAGER, EngineError, listMembers, mapLimit, prepare, toEngineError, type Target } from './deploy.js';
import { decidePrune, readParent } from './inventory.js';
import { classifyChange, normalizeForDiff, type Change } from './plan.js';
import type { KubeObject, ObjectRef } from './types.js';
import { describeRef, refKey, refOf } from './types.js';

export interface ObjectDiff {
  ref: ObjectRef;
  change: Change | 'prune';
  /** Unified diff lines (without file headers); empty when unchanged. */
  lines: string[];
}

export interface DiffReport {
  ok: boolean;
  exitCode: number;
  objects: ObjectDiff[];
  kept: Array<{ ref: ObjectRef; why: string }>;
  error?: string;
  details?: string[];
  apiCalls: number;
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

export async function diff(client: KubeClient, input: KubeObject[], target: Target, options: { prune: boolean }): Promise<DiffReport> {
  const manager = target.fieldManager ?? FIELD_MANAGER;
  const report: DiffReport = { ok: true, exitCode: EXIT.ok, objects: [], kept: [], apiCalls: 0 };
  try {
    const prepared = await prepare(client, input, target.set);
    const missingNamespaces = new Set<string>();
    for (const ns of prepared.namespaces) {
      if (!(await client.get({ apiVersion: 'v1', kind: 'Namespace', name: ns }))) missingNamespaces.add(ns);
    }
    const problems: string[] = [];
    const results = new Map<string, ObjectDiff>();
    await mapLimit(prepared.objects, 8, async (obj) => {
      const ref = refOf(obj);
      const live = await client.get(ref).catch(() => undefined);
      if (!live && obj.metadata.namespace && missingNamespaces.has(obj.metadata.namespace)) {
        // Its namespace does not exist yet, so the server cannot dry-run it: show the object as sent.
        results.set(refKey(ref), { ref, change: 'create', lines: toYamlLines(obj).map((l) => `+${l}`) });
        return;
      }
      try {
        const dry = await client.apply(obj, { fieldManager: manager, dryRun: true });
        const change = classifyChange(live, dry, manager);
        const lines = change === 'unchanged' ? [] : live ? unifiedDiff(toYamlLines(live), toYamlLines(dry)) : toYamlLines(dry).map((l) => `+${l}`);
        results.set(refKey(ref), { ref, change, lines });
      } catch (err) {
        problems.push(`${describeRef(ref)}: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
    if (problems.length) throw new EngineError(EXIT.invalid, `${problems.length} object(s) rejected by the server-side dry run`, undefined, undefined, problems);
    report.objects = prepared.objects.map((o) => results.get(refKey(refOf(o)))!);
    if (options.prune) {
      const parentLive = await client.get({ apiVersion: 'v1', kind: 'Secret', namespace: target.set.namespace, name: target.set.name });
      if (parentLive) {
        const members = await listMembers(client, target.set, readParent(target.set, parentLive), prepared.objects);
        const decision = decidePrune(members, prepared.objects.map(refOf));
        for (const p of decision.prune) report.objects.push({ ref: refOf(p), change: 'prune', lines: toYamlLines(p).map((l) => `-${l}`) });
        report.kept = decision.kept.map((k) => ({ ref: refOf(k.object), why: k.why }));
      }
    }
    report.exitCode = report.objects.some((o) => o.change !== 'unchanged') ? EXIT.changes : EXIT.ok;
  } catch (err) {
    const e = toEngineError(err);
    report.ok = false;
    report.exitCode = e.exitCode;
    report.error = e.message;
    if (e.details.length) report.details = e.details;
  }
  report.apiCalls = client.calls;
  return report;
}

/** The diff as text; colours for a TTY. */
export function renderDiff(report: DiffReport, color: boolean): string {
  const c = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const out: string[] = [];
  const symbol = { create: '+', update: '~', prune: '-', unchanged: '=' } as const;
  for (const o of report.objects) {
    if (o.change === 'unchanged') continue;
    out.push(c('1', `${symbol[o.change]} ${describeRef(o.ref)} (${o.change === 'prune' ? 'would be pruned' : o.change})`));
    for (const l of o.lines) out.push(`    ${l.startsWith('+') ? c('32', l) : l.startsWith('-') ? c('31', l) : l.startsWith('@@') ? c('36', l) : l}`);
  }
  for (const k of report.kept) out.push(c('2', `= ${describeRef(k.ref)} no longer desired, kept: ${k.why}`));
  const counts = { create: 0, update: 0, prune: 0, unchanged: 0 };
  for (const o of report.objects) counts[o.change]++;
  out.push(`${counts.create} to create, ${counts.update} to update, ${counts.prune} to prune, ${counts.unchanged} unchanged`);
  return out.join('\n') + '\n';
}
