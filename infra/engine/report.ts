/**
 * How the engine tells the user what happens: live lines as objects change state (coloured on a
 * TTY, plain otherwise), or nothing until a JSON report at the end (`--output json`).
 */
import { formatEvidence, type Evidence } from './diagnostics.js';
import type { Health, ObjectRef } from './types.js';
import { describeRef } from './types.js';

export interface Reporter {
  /** A step of the run, e.g. `validate: 7 objects pass a server-side dry run (120 ms)`. */
  step(message: string): void;
  /** An object was created/updated/pruned/kept/unchanged. */
  action(ref: ObjectRef, action: string, detail?: string): void;
  /** An object's readiness changed. */
  health(ref: ObjectRef, health: Health): void;
  /** A failure with its evidence. */
  failure(ref: ObjectRef | undefined, message: string, evidence?: Evidence): void;
  warn(message: string): void;
}

const COLORS = { reset: '\x1b[0m', dim: '\x1b[2m', red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', cyan: '\x1b[36m', bold: '\x1b[1m' };

export class LineReporter implements Reporter {
  private readonly started = performance.now();
  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly color: boolean,
  ) {}

  private c(color: keyof typeof COLORS, text: string): string {
    return this.color ? `${COLORS[color]}${text}${COLORS.reset}` : text;
  }

  private line(text: string): void {
    const t = ((performance.now() - this.started) / 1000).toFixed(1).padStart(5);
    this.out.write(`${this.c('dim', `${t}s`)} ${text}\n`);
  }

  step(message: string): void {
    this.line(this.c('bold', message));
  }

  action(ref: ObjectRef, action: string, detail?: string): void {
    const color = action === 'unchanged' || action === 'kept' ? 'dim' : action === 'pruned' || action === 'deleted' ? 'yellow' : 'cyan';
    this.line(`  ${this.c(color, action.padEnd(11))} ${describeRef(ref)}${detail ? this.c('dim', ` (${detail})`) : ''}`);
  }

  health(ref: ObjectRef, health: Health): void {
    if (health.state === 'failed') return; // the failure line that follows says it, with the evidence
    const color = health.state === 'ready' ? 'green' : 'yellow';
    this.line(`  ${this.c(color, health.state.padEnd(11))} ${describeRef(ref)}: ${health.message}`);
  }

  failure(ref: ObjectRef | undefined, message: string, evidence?: Evidence): void {
    this.line(this.c('red', `✗ ${ref ? `${describeRef(ref)}: ` : ''}${message}`));
    if (evidence) {
      for (const l of formatEvidence(evidence)) this.out.write(`${l}\n`);
    }
  }

  warn(message: string): void {
    this.line(this.c('yellow', `! ${message}`));
  }
}

/** Collects nothing live; the CLI prints the final JSON report instead. */
export class SilentReporter implements Reporter {
  step(): void {}
  action(): void {}
  health(): void {}
  failure(): void {}
  warn(): void {}
}
