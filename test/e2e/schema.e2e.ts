/**
 * Every synthesized object of every environment, validated by the cluster's own API server
 * (Kubernetes 1.35 on the local cluster): server-side apply dry run with strict field validation,
 * so an unknown or misspelled field is an error, not a silently dropped warning. Nothing is changed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildApp, ENVIRONMENTS } from '../../infra/main.js';
import { kubectl } from './kube.js';

for (const env of Object.keys(ENVIRONMENTS) as Array<keyof typeof ENVIRONMENTS>) {
  test(`${env}: every object passes a strict server-side dry run on the cluster`, async () => {
    const objects = buildApp({ env }).charts.flatMap((chart) => chart.toJson());
    assert.ok(objects.length > 5, `${objects.length} objects`);
    const namespace = objects.find((o) => o.kind === 'Namespace');
    // The namespace must exist for a dry run of namespaced objects; create it for real only if
    // absent, and delete it again afterwards.
    const existed = (await kubectl(['get', 'namespace', namespace.metadata.name, '--ignore-not-found', '-o', 'name'])).trim() !== '';
    if (!existed) await kubectl(['create', 'namespace', namespace.metadata.name]);
    try {
      const out = await kubectl(
        ['apply', '--server-side', '--dry-run=server', '--validate=strict', '--field-manager=kreg-dryrun', '-f', '-'],
        { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }) },
      );
      const lines = out.trim().split('\n');
      assert.equal(lines.length, objects.length, out);
      for (const line of lines) assert.match(line, /serverside-applied \(server dry run\)$/);
    } finally {
      if (!existed) await kubectl(['delete', 'namespace', namespace.metadata.name, '--wait=false']);
    }
  });
}
