/**
 * The CLI's renderers: engine events as live lines (coloured on a TTY), evidence, diffs and the
 * status table as text, and the exit code of each failure kind. The engine only produces data.
 */
import type { Evidence } from '../engine/diagnostics.js';
import type { DiffReport } from '../engine/diff.js';
import type { EngineFailure, FailureKind } from '../engine/errors.js';
import type { EngineEvent } from '../engine/events.js';
import type { Phase } from '../engine/plan.js';
import type { StatusReport } from '../engine/lifecycle.js';
import { describeRef, type ObjectRef } from '../engine/types.js';

/** Exit codes, documented in `kreg --help`. */
export const EXIT = {
  ok: 0,
  changes: 1,
  usage: 2,
  invalid: 3,
  conflict: 4,
  failed: 5,
  timeout: 6,
  verify: 7,
  unreachable: 8,
} as const;

const EXIT_OF_KIND: Record<FailureKind, number> = {
  invalid: EXIT.invalid,
  conflict: EXIT.conflict,
  foreign: EXIT.conflict,
  failed: EXIT.failed,
  timeout: EXIT.timeout,
  unreachable: EXIT.unreachable,
  refused: EXIT.usage,
  usage: EXIT.usage,
  cancelled: EXIT.failed,
};

export function exitCodeOf(failure: Pick<EngineFailure, 'kind'> | undefined): number {
  return failure ? EXIT_OF_KIND[failure.kind] : EXIT.ok;
}

/** What to do next, for the failures where a flag is the answer. */
export function adviceFor(failure: EngineFailure): string | undefined {
  if (failure.kind === 'conflict') return 're-run with --force-conflicts to take them over';
  if (failure.kind === 'foreign') return 'deploy under other names, delete those objects, or re-run with --adopt to take them over (they are then pruned and destroyed with this set)';
  return undefined;
}

/** What a gate waits for, in the words of its phase. */
export function waitingFor(phase: Phase): string {
  if (phase === 'jobs') return 'waiting for Jobs to complete';
  if (phase === 'backends') return 'waiting for what the Jobs need to be ready';
  return 'waiting for CRDs to be established';
}

const COLORS = { reset: '\x1b[0m', dim: '\x1b[2m', red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', cyan: '\x1b[36m', bold: '\x1b[1m' };

/** Renders engine events as timestamped lines as they happen. */
export class LineRenderer {
  private readonly started = performance.now();
  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly color: boolean,
  ) {}

  private c(color: keyof typeof COLORS, text: string): string {
    return this.color ? `${COLORS[color]}${text}${COLORS.reset}` : text;
  }

  line(text: string, bold = false): void {
    const t = ((performance.now() - this.started) / 1000).toFixed(1).padStart(5);
    this.out.write(`${this.c('dim', `${t}s`)} ${bold ? this.c('bold', text) : text}\n`);
  }

  private object(action: string, ref: ObjectRef, detail?: string, color?: keyof typeof COLORS): void {
    const col = color ?? (action === 'unchanged' || action === 'kept' ? 'dim' : action === 'pruned' || action === 'deleted' ? 'yellow' : 'cyan');
    this.line(`  ${this.c(col, action.padEnd(11))} ${describeRef(ref)}${detail ? this.c('dim', ` (${detail})`) : ''}`);
  }

  readonly onEvent = (e: EngineEvent): void => {
    switch (e.type) {
      case 'validation':
        return this.line(`validate: ${e.objects} objects pass a server-side dry run (${e.ms} ms)`, true);
      case 'apply':
        return this.object(e.action, e.ref);
      case 'applied':
        return this.line(`apply: ${e.changed} of ${e.total} objects changed (${e.ms} ms)`, true);
      case 'wait':
        return this.line(`${waitingFor(e.phase)}: ${e.refs.map(describeRef).join(', ')}`, true);
      case 'status':
        if (e.health.state === 'failed') return; // the error line that follows says it, with the evidence
        return this.line(`  ${this.c(e.health.state === 'ready' ? 'green' : 'yellow', e.health.state.padEnd(11))} ${describeRef(e.ref)}: ${e.health.message}`);
      case 'ready':
        return this.line(`wait: all ${e.objects} objects ready (${e.ms} ms)`, true);
      case 'prune':
        return this.object(e.action, e.ref, e.why);
      case 'record':
        return this.line(`recorded revision ${e.revision} (${e.status})`);
      case 'warning':
        return this.line(this.c('yellow', `! ${e.message}`));
      case 'error': {
        const f = e.failure;
        this.line(this.c('red', `✗ ${f.ref ? `${describeRef(f.ref)}: ` : ''}${f.message}`));
        if (f.evidence) for (const l of formatEvidence(f.evidence)) this.out.write(`${l}\n`);
        for (const d of f.details ?? []) this.line(this.c('yellow', `! ${d}`));
        const advice = adviceFor(f);
        if (advice) this.line(advice);
        return;
      }
    }
  };
}

/**
 * A failure that ends a command, on stderr: `<command>: <message>; <advice>`, then the details
 * (conflicting fields, rejected objects) and the evidence (events, container states, logs).
 */
export function printFailure(stderr: NodeJS.WritableStream, command: string, failure: EngineFailure): void {
  const advice = adviceFor(failure);
  stderr.write(`${command}: ${failure.message}${advice ? `; ${advice}` : ''}\n`);
  for (const d of failure.details ?? []) stderr.write(`  ${d}\n`);
  if (failure.evidence) for (const line of formatEvidence(failure.evidence)) stderr.write(`${line}\n`);
}

/** Evidence as indented text lines, for the terminal. */
export function formatEvidence(e: Evidence): string[] {
  const out: string[] = [];
  if (e.conditions.length) out.push('  conditions:', ...e.conditions.map((c) => `    ${c}`));
  if (e.containers.length) out.push('  containers:', ...e.containers.map((c) => `    ${c}`));
  if (e.events.length) out.push('  events:', ...e.events.map((c) => `    ${c}`));
  for (const l of e.logs) {
    out.push(`  logs of ${l.pod}/${l.container}${l.previous ? ' (previous container)' : ''}:`, ...l.lines.map((x) => `    | ${x}`));
  }
  return out;
}

/** `kreg status` as text. */
export function renderStatus(env: string, s: StatusReport): string {
  const out: string[] = [`${env}: revision ${s.revision}, ${s.ready ? 'all ready' : 'NOT ready'}`];
  for (const o of s.objects) {
    out.push(`  ${o.health.state.padEnd(11)} ${describeRef(o.ref)}: ${o.health.message}`);
    if (o.evidence) for (const line of formatEvidence(o.evidence)) out.push(`    ${line}`);
  }
  for (const u of s.unlisted) out.push(`  unknown     cannot list ${u}`);
  out.push('history:');
  for (const h of s.history) out.push(`  ${String(h.number).padStart(3)}  ${h.status.padEnd(10)} ${h.deployedAt}  ${h.description}`);
  return out.join('\n') + '\n';
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
