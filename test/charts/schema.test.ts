/**
 * Every synthesized object of every environment against the Kubernetes OpenAPI schema, offline.
 * Schemas: `kubernetes-models` 5.1.0 (tommy351/kubernetes-models-ts), generated from the Kubernetes
 * 1.34 OpenAPI spec (no 1.35 API in it, e.g. no certificates.k8s.io/v1beta1 PodCertificateRequest);
 * the local cluster runs 1.35, and every API used here (core/v1, apps/v1, batch/v1, policy/v1,
 * autoscaling/v2, networking.k8s.io/v1) is GA and unchanged between the two.
 * The schemas check types, formats, enums and required fields; like the API server's OpenAPI v2 they
 * do not reject unknown fields, so the patched-in fields are asserted to survive explicitly below.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ENV_NAMES } from '../../infra/main.js';
import { synthEnv, validateObject, find, podSpec } from './helpers.js';

describe('OpenAPI schema validation', () => {
  for (const env of ENV_NAMES) {
    it(`${env}: every object is valid`, () => {
      const objects = synthEnv({ env });
      assert.ok(objects.length > 0);
      for (const obj of objects) validateObject(obj);
    });
  }

  it('rejects an invalid object (the validator is live)', () => {
    const sts = structuredClone(find(synthEnv({ env: 'dev' }), 'Deployment'));
    sts.spec.replicas = 'one';
    assert.throws(() => validateObject(sts), /replicas must be integer/);
  });

  it('fields added by JSON patch survive rendering (cdk8s drops unknown ones and raw Quantity strings)', () => {
    const prod = synthEnv({ env: 'prod' });
    const dep = find(prod, 'Deployment');
    assert.equal(podSpec(dep).topologySpreadConstraints[0].matchLabelKeys[0], 'pod-template-hash');
    assert.equal(dep.spec.revisionHistoryLimit, 5);
    assert.equal(podSpec(dep).enableServiceLinks, false);
    const dev = synthEnv({ env: 'dev' });
    assert.equal(find(dev, 'PersistentVolumeClaim').spec.resources.requests.storage, '1Gi');
    assert.equal(podSpec(find(dev, 'Deployment')).affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution.length, 1);
    assert.equal(find(prod, 'PodDisruptionBudget').spec.unhealthyPodEvictionPolicy, 'AlwaysAllow');
  });
});
