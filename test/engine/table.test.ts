/**
 * The live table, through a small terminal model that applies what a terminal does with the bytes
 * the renderer writes (newlines, carriage return, cursor up, clear to end of screen, colours): the
 * screen must show one table, redrawn in place, with the failure or summary below it. The e2e test
 * reads a real terminal (tmux) running `kreg deploy`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EngineEvent } from '../../infra/engine/events.js';
import { TableRenderer } from '../../infra/cli/table.js';

/** A terminal that keeps every line (scrollback included) and understands CR, LF, CUU, ED and SGR. */
class Terminal {
  lines: string[] = [''];
  row = 0;
  col = 0;
  columns = 100;
  rows = 40;
  write(chunk: string): void {
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i]!;
      if (ch === '\x1b') {
        const m = /^\x1b\[(\d*)([A-Za-z])/.exec(chunk.slice(i))!;
        assert.ok(m, `an escape sequence the renderer should not write: ${JSON.stringify(chunk.slice(i, i + 8))}`);
        const n = Number(m[1] || 1);
        if (m[2] === 'A') this.row = Math.max(0, this.row - n);
        else if (m[2] === 'J') {
          this.lines = this.lines.slice(0, this.row + 1);
          this.lines[this.row] = this.lines[this.row]!.slice(0, this.col);
        } else assert.equal(m[2], 'm', `unexpected escape ${m[0]}`);
        i += m[0].length - 1;
      } else if (ch === '\r') this.col = 0;
      else if (ch === '\n') {
        this.row++;
        this.col = 0;
        if (this.lines.length <= this.row) this.lines.push('');
      } else {
        const line = this.lines[this.row]!.padEnd(this.col);
        this.lines[this.row] = line.slice(0, this.col) + ch + line.slice(this.col + 1);
        this.col++;
      }
    }
  }
  text(): string {
    return this.lines.join('\n').trimEnd();
  }
}

const deployment = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'demo', name: 'web' };
const service = { apiVersion: 'v1', kind: 'Service', namespace: 'demo', name: 'web' };
const events: EngineEvent[] = [
  { type: 'validation', objects: 2, ms: 40 },
  { type: 'apply', ref: service, action: 'unchanged' },
  { type: 'apply', ref: deployment, action: 'updated' },
  { type: 'applied', changed: 1, total: 2, ms: 30 },
  { type: 'status', ref: deployment, health: { state: 'progressing', reason: 'Rolling', message: '0 of 1 updated replicas available' } },
  { type: 'status', ref: service, health: { state: 'ready', reason: 'EndpointsReady', message: '1 of 1 endpoints ready' } },
];

describe('the live table on a terminal', () => {
  it('redraws one table in place; the summary goes below it', async () => {
    const term = new Terminal();
    const table = new TableRenderer(term, false, 'kreg deploy dev', 5);
    table.line('synth: 2 objects for dev', true);
    for (const e of events) table.onEvent(e);
    await new Promise((r) => setTimeout(r, 30)); // a few spinner redraws
    table.onEvent({ type: 'status', ref: deployment, health: { state: 'ready', reason: 'Available', message: '1 of 1 replicas available' } });
    table.onEvent({ type: 'ready', objects: 2, ms: 900 });
    table.close();
    table.line('deployed dev: revision 2', true);
    const screen = term.text();
    assert.equal(screen.match(/OBJECT +APPLY +STATE/g)?.length, 1, `exactly one table on the screen:\n${screen}`);
    const lines = screen.split('\n');
    assert.match(lines[0]!, /synth: 2 objects for dev/);
    assert.match(lines[1]!, /^kreg deploy dev: all 2 objects ready \(900 ms\)/);
    assert.match(screen, /Service\/demo\/web +unchanged +ready +\d+\.\ds +EndpointsReady: 1 of 1 endpoints ready/);
    assert.match(screen, /Deployment\/demo\/web +updated +ready +\d+\.\ds +Available: 1 of 1 replicas available/);
    assert.match(lines.at(-1)!, /deployed dev: revision 2$/);
  });

  it('a failure keeps the last table and prints the cause and its evidence below', () => {
    const term = new Terminal();
    const table = new TableRenderer(term, true, 'kreg deploy dev', 1000);
    for (const e of events) table.onEvent(e);
    table.onEvent({
      type: 'error',
      failure: {
        kind: 'failed',
        retryable: false,
        ref: deployment,
        message: 'ImagePullBackOff: Back-off pulling image "x"',
        evidence: { conditions: [], containers: ['web: waiting ImagePullBackOff'], events: ['Warning Failed Pod/web-1: ErrImagePull'], logs: [] },
      },
    });
    table.close();
    const screen = term.text();
    assert.equal(screen.match(/OBJECT +APPLY +STATE/g)?.length, 1, screen);
    assert.match(screen, /kreg deploy dev: failed/);
    assert.ok(screen.indexOf('✗ Deployment/demo/web: ImagePullBackOff') > screen.indexOf('OBJECT'), 'the failure is below the table');
    assert.match(screen, /Warning Failed Pod\/web-1: ErrImagePull/);
  });

  it('a set taller than the screen folds settled rows, so the redraw never scrolls away', () => {
    const term = new Terminal();
    term.rows = 8;
    const table = new TableRenderer(term, false, 'kreg deploy big', 1000);
    for (let i = 0; i < 20; i++) {
      const ref = { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'demo', name: `c${i}` };
      table.onEvent({ type: 'apply', ref, action: 'created' });
      table.onEvent({ type: 'status', ref, health: { state: i < 18 ? 'ready' : 'progressing', reason: 'R', message: 'm' } });
    }
    const screen = term.text().split('\n');
    assert.ok(screen.length <= term.rows, `${screen.length} lines on an ${term.rows}-line screen:\n${screen.join('\n')}`);
    assert.match(screen.join('\n'), /… and 18 more settled/);
    table.close();
    assert.match(term.text(), /ConfigMap\/demo\/c0 /, 'the final table lists every object');
  });
});
