/**
 * Live progress on a terminal: one table of the objects (what apply did, readiness state, reason,
 * how long it has taken), redrawn in place as engine events arrive, with a spinner while the run
 * waits — as kapp shows it. Lines the command says (`synth: …`, the summary, a failure with its
 * evidence) are printed above the table and stay in the scrollback. Used only when the output is a
 * TTY and not JSON; elsewhere the LineRenderer's plain lines are the interface.
 */
import type { EngineEvent } from '../engine/events.js';
import { describeRef, refKey, type ObjectRef } from '../engine/types.js';
import { adviceFor, formatEvidence, waitingFor } from './render.js';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const SGR = { reset: '\x1b[0m', dim: '\x1b[2m', red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', cyan: '\x1b[36m', bold: '\x1b[1m' } as const;

interface Row {
  ref: ObjectRef;
  apply: string;
  state: string;
  reason: string;
  message: string;
  since: number;
  settledAt?: number;
}

export interface TerminalOut {
  write(chunk: string): unknown;
  columns?: number;
  rows?: number;
}

export class TableRenderer {
  private readonly started = performance.now();
  private readonly rows = new Map<string, Row>();
  private drawnLines = 0;
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly out: TerminalOut,
    private readonly color: boolean,
    private readonly title: string,
    redrawMs = 120,
    /** What the title says until the first event: deploy and rollback start with the dry run. */
    private phase = 'validating',
  ) {
    this.timer = setInterval(() => this.draw(), redrawMs);
    this.timer.unref();
  }

  private c(color: keyof typeof SGR, text: string): string {
    return this.color ? `${SGR[color]}${text}${SGR.reset}` : text;
  }

  private elapsed(from = this.started, to = performance.now()): string {
    return `${((to - from) / 1000).toFixed(1)}s`;
  }

  /** A line above the table (kept in the scrollback). */
  line(text: string, bold = false): void {
    this.clear();
    this.out.write(`${this.c('dim', this.elapsed().padStart(6))} ${bold ? this.c('bold', text) : text}\n`);
    this.draw();
  }

  private row(ref: ObjectRef): Row {
    const key = refKey(ref);
    let row = this.rows.get(key);
    if (!row) this.rows.set(key, (row = { ref, apply: '', state: 'pending', reason: '', message: '', since: performance.now() }));
    return row;
  }

  readonly onEvent = (e: EngineEvent): void => {
    switch (e.type) {
      case 'validation':
        this.phase = `validated ${e.objects} objects (server-side dry run, ${e.ms} ms); applying`;
        break;
      case 'apply': {
        const row = this.row(e.ref);
        row.apply = e.action;
        if (e.action === 'unchanged' && row.state === 'pending') row.state = 'unchanged';
        break;
      }
      case 'applied':
        this.phase = `applied ${e.changed} of ${e.total} changed objects (${e.ms} ms); waiting for readiness`;
        break;
      case 'wait':
        this.phase = waitingFor(e.phase);
        break;
      case 'status': {
        const row = this.row(e.ref);
        row.state = e.health.state;
        row.reason = e.health.reason;
        row.message = e.health.message;
        if (e.health.state === 'ready' || e.health.state === 'failed') row.settledAt ??= performance.now();
        else row.settledAt = undefined;
        break;
      }
      case 'ready':
        this.phase = `all ${e.objects} objects ready (${e.ms} ms)`;
        break;
      case 'prune': {
        const row = this.row(e.ref);
        row.apply = e.action;
        row.state = e.action === 'kept' ? 'kept' : 'deleted';
        row.message = e.why ?? '';
        row.settledAt = performance.now();
        break;
      }
      case 'record':
        this.phase = `recorded revision ${e.revision} (${e.status})`;
        break;
      case 'warning':
        this.line(this.c('yellow', `! ${e.message}`));
        return;
      case 'error': {
        const f = e.failure;
        this.phase = 'failed';
        this.close(); // the last table stays above the failure and its evidence
        this.out.write(`${this.c('red', `✗ ${f.ref ? `${describeRef(f.ref)}: ` : ''}${f.message}`)}\n`);
        if (f.evidence) for (const l of formatEvidence(f.evidence)) this.out.write(`${l}\n`);
        for (const d of f.details ?? []) this.out.write(`${this.c('yellow', `! ${d}`)}\n`);
        const advice = adviceFor(f);
        if (advice) this.out.write(`${advice}\n`);
        return;
      }
    }
    this.draw();
  };

  /**
   * Stops redrawing and leaves the last table in place, its title naming `finalPhase` when given
   * (destroy has no revision to record, so nothing else would say it is over). Idempotent.
   */
  close(finalPhase?: string): void {
    if (this.closed) return;
    if (finalPhase !== undefined) this.phase = finalPhase;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.clear();
    if (this.rows.size) this.drawTable(false);
    this.drawnLines = 0;
  }

  /** Erases what the last draw wrote (cursor up over it, then clear to the end of the screen). */
  private clear(): void {
    if (this.drawnLines > 0) this.out.write(`\x1b[${this.drawnLines}A\r\x1b[J`);
    this.drawnLines = 0;
  }

  private draw(): void {
    if (this.closed) return;
    this.clear();
    this.drawnLines = this.drawTable(true);
  }

  /** Writes the table; returns how many lines it took. */
  private drawTable(live: boolean): number {
    const width = Math.max(40, (this.out.columns ?? 100) - 1);
    const fit = (text: string) => (text.length > width ? `${text.slice(0, width - 1)}…` : text);
    const now = performance.now();
    const rows = [...this.rows.values()];
    const nameWidth = Math.min(Math.max(6, ...rows.map((r) => describeRef(r.ref).length)), Math.floor(width / 2));
    const lines: string[] = [];
    const spinner = live && this.phase !== 'failed' ? `${SPINNER[this.frame++ % SPINNER.length]} ` : '';
    lines.push(this.c('bold', fit(`${spinner}${this.title}: ${this.phase} · ${this.elapsed()}`)));
    lines.push(this.c('dim', fit(`${'OBJECT'.padEnd(nameWidth)}  ${'APPLY'.padEnd(9)}  ${'STATE'.padEnd(11)}  ${'TIME'.padStart(6)}  REASON`)));
    // Taller than the screen, the cursor could not go back over it: settled rows fold into a count.
    const room = Math.max(3, (this.out.rows ?? 50) - 4);
    let shownRows = rows;
    if (live && rows.length > room) {
      const open = rows.filter((r) => !['ready', 'unchanged', 'kept', 'deleted'].includes(r.state));
      shownRows = open.slice(0, room - 1);
    }
    for (const r of shownRows) {
      const name = describeRef(r.ref);
      const shown = name.length > nameWidth ? `…${name.slice(name.length - nameWidth + 1)}` : name.padEnd(nameWidth);
      const time = this.elapsed(r.since, r.settledAt ?? now).padStart(6);
      const reason = [r.reason, r.message].filter(Boolean).join(': ');
      const plain = `${shown}  ${r.apply.padEnd(9)}  ${r.state.padEnd(11)}  ${time}  ${reason}`;
      const text = fit(plain);
      const stateColor = r.state === 'ready' ? 'green' : r.state === 'failed' ? 'red' : r.state === 'unchanged' || r.state === 'kept' ? 'dim' : r.state === 'deleted' ? 'yellow' : 'cyan';
      // Colour only the state word, so truncation above never cuts an escape sequence.
      const at = text.indexOf(r.state, nameWidth + 13);
      lines.push(this.color && at >= 0 ? `${text.slice(0, at)}${this.c(stateColor, r.state)}${text.slice(at + r.state.length)}` : text);
    }
    if (shownRows.length < rows.length) lines.push(this.c('dim', `… and ${rows.length - shownRows.length} more settled`));
    this.out.write(`${lines.join('\n')}\n`);
    return lines.length;
  }
}
