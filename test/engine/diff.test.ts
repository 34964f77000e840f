import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderDiff } from '../../infra/cli/render.js';
import { toYamlLines, unifiedDiff } from '../../infra/engine/diff.js';

describe('diff rendering', () => {
  it('a unified diff shows changed lines with context and correct hunk headers', () => {
    const a = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'];
    const b = ['a', 'b', 'c', 'D', 'e', 'f', 'g', 'h', 'i', 'j', 'k'];
    assert.deepEqual(unifiedDiff(a, b, 1), ['@@ -3,3 +3,3 @@', ' c', '-d', '+D', ' e', '@@ -10,1 +10,2 @@', ' j', '+k']);
    assert.deepEqual(unifiedDiff(a, a), [], 'no change, no hunk');
  });

  it('leaves status and server bookkeeping out of the YAML', () => {
    const lines = toYamlLines({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'c', uid: 'x', resourceVersion: '3', managedFields: [{}], annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' } },
      data: { A: '1' },
      status: { x: 1 },
    });
    assert.deepEqual(lines, ['apiVersion: v1', 'data:', '  A: "1"', 'kind: ConfigMap', 'metadata:', '  name: c']);
  });

  it('summarises creates, updates, prunes and kept objects', () => {
    const text = renderDiff(
      {
        ok: true,
        changes: true,
        apiCalls: 3,
        objects: [
          { ref: { apiVersion: 'v1', kind: 'ConfigMap', name: 'c', namespace: 'n' }, change: 'update', lines: ['@@ -1,1 +1,1 @@', '-  A: "1"', '+  A: "2"'] },
          { ref: { apiVersion: 'v1', kind: 'Service', name: 's', namespace: 'n' }, change: 'unchanged', lines: [] },
          { ref: { apiVersion: 'v1', kind: 'ConfigMap', name: 'old', namespace: 'n' }, change: 'prune', lines: ['-kind: ConfigMap'] },
        ],
        kept: [{ ref: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data', namespace: 'n' }, why: 'annotated kreg.dev/prune: never' }],
      },
      false,
    );
    assert.match(text, /^~ ConfigMap\/n\/c \(update\)$/m);
    assert.match(text, /^    \+  A: "2"$/m);
    assert.match(text, /^- ConfigMap\/n\/old \(would be pruned\)$/m);
    assert.doesNotMatch(text, /Service\/n\/s/);
    assert.match(text, /PersistentVolumeClaim\/n\/data no longer desired, kept/);
    assert.match(text, /0 to create, 1 to update, 1 to prune, 1 unchanged/);
  });
});
