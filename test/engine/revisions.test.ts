import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatEvidence } from '../../infra/cli/render.js';
import { EngineError } from '../../infra/engine/errors.js';
import { pickRevision } from '../../infra/engine/lifecycle.js';
import { parseRevision, revisionName, revisionObject, type Revision } from '../../infra/engine/revisions.js';

const set = { name: 'kreg-dev', namespace: 'kreg-dev' };
const rev = (number: number, status: Revision['status']): Revision => ({
  number,
  status,
  deployedAt: `2026-11-29T0${number}:00:00.000Z`,
  description: `deploy ${number}`,
  digest: `d${number}`,
  objects: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `c${number}`, namespace: 'kreg-dev' }, data: { n: String(number), text: 'ünïcødé ✓' } }],
});

describe('revisions', () => {
  it('encode → decode is the identity, and the Secret is labelled for listing', () => {
    const r = rev(7, 'superseded');
    const secret = revisionObject(set, r);
    assert.equal(secret.metadata.name, revisionName(set, 7));
    assert.equal(secret.metadata.name, 'kreg-dev.v7');
    assert.equal(secret.type, 'kreg.dev/revision');
    assert.deepEqual(secret.metadata.labels, { 'kreg.dev/applyset': 'kreg-dev', 'kreg.dev/revision': '7', 'app.kubernetes.io/managed-by': 'kreg' });
    assert.deepEqual(parseRevision(secret), r);
  });

  it('rollback picks the last successful revision before the current one, or the one asked for', () => {
    const history = [rev(1, 'superseded'), rev(2, 'superseded'), rev(3, 'failed'), rev(4, 'deployed')];
    assert.equal(pickRevision(history, 4, undefined).number, 2, 'skips the failed 3');
    assert.equal(pickRevision(history, 2, undefined).number, 1);
    assert.equal(pickRevision(history, 4, 3).number, 3, 'an explicit number is honoured, even a failed one');
    const refusal = (fn: () => unknown, message: RegExp) =>
      assert.throws(fn, (err: unknown) => err instanceof EngineError && err.kind === 'usage' && message.test(err.message));
    refusal(() => pickRevision(history, 1, undefined), /no successful revision before the current one \(1\)/);
    refusal(() => pickRevision(history, 4, 9), /no revision 9; recorded: 1, 2, 3, 4/);
    refusal(() => pickRevision([], 0, undefined), /no recorded revisions/);
  });
});

describe('evidence formatting', () => {
  it('conditions, containers, events, then logs (previous container marked), indented', () => {
    const lines = formatEvidence({
      conditions: ['Available=False MinimumReplicasUnavailable'],
      containers: ['web-1/app: waiting: CrashLoopBackOff; restarts 3'],
      events: ['Warning BackOff Pod/web-1: Back-off restarting failed container'],
      logs: [
        { pod: 'web-1', container: 'app', previous: true, lines: ['boom'] },
        { pod: 'web-1', container: 'app', previous: false, lines: ['starting'] },
      ],
    });
    assert.deepEqual(lines, [
      '  conditions:',
      '    Available=False MinimumReplicasUnavailable',
      '  containers:',
      '    web-1/app: waiting: CrashLoopBackOff; restarts 3',
      '  events:',
      '    Warning BackOff Pod/web-1: Back-off restarting failed container',
      '  logs of web-1/app (previous container):',
      '    | boom',
      '  logs of web-1/app:',
      '    | starting',
    ]);
    assert.deepEqual(formatEvidence({ conditions: [], containers: [], events: [], logs: [] }), []);
  });
});
