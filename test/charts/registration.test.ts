import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App, Testing } from 'cdk8s';
import { DEFAULT_PORT, ENTRY_POINTS, ENV, HEALTH_PATHS } from '../../service/src/contract.js';
import { CONFIG_HASH_ANNOTATION } from '../../charts/common.js';
import { PRUNE_ANNOTATION, PRUNE_NEVER } from '../../infra/engine/annotations.js';
import {
  BASELINE_MEMORY_MIB,
  HASH_MEMORY_MIB,
  NAMES,
  PORT_NAME,
  RUN_AS_USER,
  RegistrationChart,
  externalDatabase,
  type RegistrationChartProps,
} from '../../charts/registration.js';
import { find, kinds, podSpec, synthEnv, type K8sObject } from './helpers.js';

const remoteDb = { mode: 'remote', server: externalDatabase('http://libsql:8080'), authToken: { secretName: 'db', key: 'token' } } as const;

function synthChart(props: Partial<RegistrationChartProps> = {}): K8sObject[] {
  const chart = new RegistrationChart(Testing.app(), 'test', {
    namespace: 'ns',
    environment: 'test',
    image: 'kreg/registration:1.0.0',
    ...props,
  });
  return Testing.synth(chart) as K8sObject[];
}

function mainContainer(objects: K8sObject[]): any {
  const workload = objects.find(
    (o) => (o.kind === 'StatefulSet' || o.kind === 'Deployment') && o.metadata.name === NAMES.workload,
  )!;
  return podSpec(workload).containers.find((c: any) => c.name === 'registration');
}

function mib(quantity: string): number {
  const m = /^(\d+)Mi$/.exec(quantity);
  assert.ok(m, `expected a Mi quantity, got ${quantity}`);
  return Number(m[1]);
}

describe('environments', () => {
  it('dev: namespace + embedded one-replica Deployment that surges onto its own node, and a kept claim', () => {
    const objects = synthEnv({ env: 'dev' });
    assert.deepEqual(kinds(objects), [
      'ConfigMap',
      'Deployment',
      'Namespace',
      'NetworkPolicy',
      'PersistentVolumeClaim',
      'Service',
      'ServiceAccount',
    ]);
    assert.equal(objects[0]!.kind, 'Namespace', 'the namespace comes first');
    const ns = find(objects, 'Namespace').metadata.name;
    assert.equal(ns, 'kreg-dev');
    for (const o of objects.filter((x) => x.kind !== 'Namespace')) assert.equal(o.metadata.namespace, ns, `${o.kind} namespace`);
    const dep = find(objects, 'Deployment', NAMES.workload);
    assert.equal(dep.spec.replicas, 1);
    assert.deepEqual(dep.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    assert.deepEqual(podSpec(dep).affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution, [
      { labelSelector: { matchLabels: dep.spec.selector.matchLabels }, topologyKey: 'kubernetes.io/hostname' },
    ]);
    const claim = find(objects, 'PersistentVolumeClaim', NAMES.dataClaim);
    assert.equal(claim.spec.resources.requests.storage, '1Gi');
    assert.deepEqual(claim.spec.accessModes, ['ReadWriteOnce']);
    assert.equal(claim.metadata.annotations![PRUNE_ANNOTATION], PRUNE_NEVER, 'the data outlives prune and destroy');
    assert.deepEqual(
      podSpec(dep).volumes.find((v: any) => v.name === NAMES.dataVolume),
      { name: NAMES.dataVolume, persistentVolumeClaim: { claimName: NAMES.dataClaim, readOnly: false } },
    );
    assert.equal(mainContainer(objects).image, 'kreg/registration:dev');
  });

  it('dev never pulls Always (kind load / local images)', () => {
    for (const o of synthEnv({ env: 'dev' })) {
      for (const c of o.spec?.template?.spec?.containers ?? []) assert.equal(c.imagePullPolicy, 'IfNotPresent');
    }
  });

  it('prod: PostgreSQL, Deployment without fixed replicas, HPA, PDB, migration Job, the database beside', () => {
    const objects = synthEnv({ env: 'prod' });
    assert.deepEqual(kinds(objects), [
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'Job',
      'Namespace',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'Secret',
      'Service',
      'ServiceAccount',
      'StatefulSet',
    ]);
    const dep = find(objects, 'Deployment', NAMES.workload);
    assert.equal(dep.spec.replicas, undefined, 'the HPA owns the replica count');
    const hpa = find(objects, 'HorizontalPodAutoscaler');
    assert.equal(hpa.spec.minReplicas, 3);
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: NAMES.workload });
    assert.equal(hpa.spec.metrics[0].resource.name, 'cpu');
    assert.equal(find(objects, 'StatefulSet').metadata.name, 'postgres');
    const config = find(objects, 'ConfigMap', NAMES.config);
    assert.equal(config.data![ENV.databaseMigrate], 'never');
    // The database chart and its Namespace come before the app that needs them.
    const order = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    assert.ok(order.indexOf('StatefulSet/postgres') < order.indexOf('Deployment/registration'));
  });

  it('the image can be overridden; unknown environments are refused', () => {
    assert.equal(mainContainer(synthEnv({ env: 'dev', image: 'ghcr.io/x/reg:abc' })).image, 'ghcr.io/x/reg:abc');
    assert.throws(() => synthEnv({ env: 'staging' }), /unknown environment "staging"; expected one of: dev, prod/);
  });

  it('synthesis is deterministic', () => {
    assert.deepEqual(synthEnv({ env: 'prod' }), synthEnv({ env: 'prod' }));
    assert.equal(new App({ outdir: '/nonexistent' }).synthYaml(), new App({ outdir: '/nonexistent' }).synthYaml());
  });
});

describe('RegistrationChart', () => {
  it('uses the standard labels, and every selector matches its pods', () => {
    const objects = synthChart({ database: remoteDb, autoscaling: { minReplicas: 2, maxReplicas: 4 } });
    for (const o of objects) {
      assert.equal(o.metadata.labels?.['app.kubernetes.io/name'], 'registration', `${o.kind} name label`);
      assert.equal(o.metadata.labels?.['app.kubernetes.io/part-of'], 'kreg');
      assert.equal(o.metadata.labels?.['app.kubernetes.io/instance'], 'registration-test');
      assert.equal(o.metadata.labels?.['app.kubernetes.io/version'], '1.0.0');
      assert.ok(o.metadata.labels?.['app.kubernetes.io/managed-by']);
      assert.ok(o.metadata.labels?.['app.kubernetes.io/component']);
    }
    const dep = find(objects, 'Deployment');
    const podLabels = dep.spec.template.metadata.labels;
    const matches = (selector: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => podLabels[k] === v) && Object.keys(selector).length > 0;
    assert.ok(matches(dep.spec.selector.matchLabels), 'Deployment selector');
    assert.ok(matches(find(objects, 'Service').spec.selector), 'Service selector');
    assert.ok(matches(find(objects, 'PodDisruptionBudget').spec.selector.matchLabels), 'PDB selector');
    assert.ok(matches(find(objects, 'NetworkPolicy').spec.podSelector.matchLabels), 'NetworkPolicy selector');
    for (const c of dep.spec.template.spec.topologySpreadConstraints) assert.ok(matches(c.labelSelector.matchLabels));
    // Selectors use only stable labels: a new version must not change an immutable selector.
    assert.equal(dep.spec.selector.matchLabels['app.kubernetes.io/version'], undefined);
    assert.equal(dep.spec.selector.matchLabels['cdk8s.io/metadata.addr'], undefined);
    // The migration Job's pods are not Service endpoints.
    const job = find(objects, 'Job');
    assert.equal(job.spec.template.metadata.labels['app.kubernetes.io/component'], 'migration');
    const jobLabels = job.spec.template.metadata.labels;
    const svcSelector: Record<string, string> = find(objects, 'Service').spec.selector;
    assert.ok(Object.entries(svcSelector).some(([k, v]) => jobLabels[k] !== v));
  });

  it('has stable, human-readable names', () => {
    const names = synthChart().map((o) => `${o.kind}/${o.metadata.name}`).sort();
    assert.deepEqual(names, [
      'ConfigMap/registration-config',
      'Deployment/registration',
      'NetworkPolicy/registration-ingress',
      'PersistentVolumeClaim/registration-data',
      'Service/registration',
      'ServiceAccount/registration',
    ]);
  });

  it('probes the service health paths on the contract port', () => {
    const c = mainContainer(synthChart());
    assert.deepEqual(c.ports, [{ containerPort: DEFAULT_PORT, name: PORT_NAME, protocol: 'TCP' }]);
    assert.equal(c.readinessProbe.httpGet.path, HEALTH_PATHS.readiness);
    assert.equal(c.livenessProbe.httpGet.path, HEALTH_PATHS.liveness);
    for (const p of [c.readinessProbe, c.livenessProbe]) assert.equal(p.httpGet.port, DEFAULT_PORT);
    // The process answers liveness itself while it starts (service/src/server.ts), so no startup
    // probe: one would only delay readiness to its next tick.
    assert.equal(c.startupProbe, undefined);
  });

  it('Service: ClusterIP port 80 to the named port http', () => {
    const svc = find(synthChart(), 'Service');
    assert.equal(svc.spec.type, 'ClusterIP');
    assert.deepEqual(svc.spec.ports, [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http' }]);
  });

  it('sets small explicit resources sized for the hash concurrency', () => {
    for (const concurrency of [1, 2, 4]) {
      const c = mainContainer(synthChart({ hashConcurrency: concurrency }));
      const limit = mib(c.resources.limits.memory);
      assert.ok(limit >= BASELINE_MEMORY_MIB + concurrency * HASH_MEMORY_MIB, `limit ${limit} for concurrency ${concurrency}`);
      assert.equal(c.resources.requests.memory, c.resources.limits.memory);
      assert.ok(limit <= 256, 'small');
    }
    const c = mainContainer(synthChart());
    assert.equal(c.resources.requests.cpu, '100m');
    const cm = find(synthChart({ hashConcurrency: 3 }), 'ConfigMap');
    assert.equal(cm.data![ENV.hashConcurrency], '3');
    // Several replicas fit on a 2-core node: 3 × request well below 2000m.
    const prod = mainContainer(synthEnv({ env: 'prod' }));
    assert.ok(3 * parseInt(prod.resources.requests.cpu) < 2000);
  });

  it('pull policy: IfNotPresent for tagged images and digests, Always for latest/untagged', () => {
    assert.equal(mainContainer(synthChart({ image: 'reg:1.2' })).imagePullPolicy, 'IfNotPresent');
    assert.equal(mainContainer(synthChart({ image: 'localhost:5000/reg@sha256:' + 'a'.repeat(64) })).imagePullPolicy, 'IfNotPresent');
    assert.equal(mainContainer(synthChart({ image: 'localhost:5000/reg' })).imagePullPolicy, 'Always');
    assert.equal(mainContainer(synthChart({ image: 'reg:latest' })).imagePullPolicy, 'Always');
  });

  it('runs hardened: numeric non-root user, read-only root fs, no capabilities, seccomp, no token', () => {
    for (const objects of [synthChart(), synthChart({ database: remoteDb })]) {
      for (const o of objects.filter((x) => ['StatefulSet', 'Deployment', 'Job'].includes(x.kind))) {
        const spec = podSpec(o);
        assert.equal(spec.securityContext.runAsNonRoot, true);
        assert.equal(spec.securityContext.runAsUser, RUN_AS_USER);
        assert.equal(spec.securityContext.runAsGroup, RUN_AS_USER);
        assert.deepEqual(spec.securityContext.seccompProfile, { type: 'RuntimeDefault' });
        assert.equal(spec.automountServiceAccountToken, false);
        assert.equal(spec.serviceAccountName, NAMES.serviceAccount);
        for (const c of spec.containers) {
          assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] }, `${o.kind} ${c.name}`);
          assert.equal(c.securityContext.readOnlyRootFilesystem, true);
          assert.equal(c.securityContext.allowPrivilegeEscalation, false);
          assert.equal(c.securityContext.runAsUser, RUN_AS_USER);
          assert.ok(c.volumeMounts.some((m: any) => m.mountPath === '/tmp'), 'writable /tmp');
        }
      }
    }
    const sts = find(synthChart(), 'Deployment');
    assert.equal(podSpec(sts).securityContext.fsGroup, RUN_AS_USER, 'fresh volumes writable by the user');
    assert.deepEqual(
      podSpec(sts).containers[0].volumeMounts.find((m: any) => m.name === NAMES.dataVolume),
      { name: NAMES.dataVolume, mountPath: '/data' },
    );
    assert.equal(find(synthChart(), 'ServiceAccount').automountServiceAccountToken, false);
  });

  it('grace period outlasts the service drain + grace; no preStop hook (no shell in the image)', () => {
    const objects = synthChart({ drainSeconds: 7, graceSeconds: 20 });
    const spec = podSpec(find(objects, 'Deployment'));
    assert.ok(spec.terminationGracePeriodSeconds > 7 + 20);
    assert.equal(spec.containers[0].lifecycle, undefined);
    const cm = find(objects, 'ConfigMap');
    assert.equal(cm.data![ENV.shutdownDrainSeconds], '7');
    assert.equal(cm.data![ENV.shutdownGraceSeconds], '20');
    assert.throws(() => synthChart({ drainSeconds: 10, graceSeconds: 10 }), /graceSeconds \(10\) must be greater than drainSeconds/);
  });

  it('config goes through a ConfigMap whose hash is on the pod template, so a change rolls the pods', () => {
    const hashOf = (objects: K8sObject[]) =>
      find(objects, 'Deployment').spec.template.metadata.annotations[CONFIG_HASH_ANNOTATION] as string;
    const a = synthChart({ settings: { LOG_LEVEL: 'info' } });
    const b = synthChart({ settings: { LOG_LEVEL: 'debug' } });
    assert.match(hashOf(a), /^[0-9a-f]{16}$/);
    assert.equal(hashOf(a), hashOf(synthChart({ settings: { LOG_LEVEL: 'info' } })), 'stable');
    assert.notEqual(hashOf(a), hashOf(b), 'changes with the config');
    const c = mainContainer(a);
    assert.deepEqual(c.envFrom, [{ configMapRef: { name: NAMES.config } }]);
    const cm = find(a, 'ConfigMap');
    assert.equal(cm.data![ENV.databaseUrl], 'file:/data/registrations.db');
    assert.equal(cm.data![ENV.databaseMigrate], 'always');
    assert.equal(cm.data![ENV.port], String(DEFAULT_PORT));
    for (const key of Object.keys(cm.data!)) assert.ok(Object.values(ENV).includes(key as never), `${key} is a contract env var`);
  });

  it('the database token comes from a Secret reference, never the ConfigMap', () => {
    const objects = synthChart({ database: remoteDb, replicas: 2 });
    assert.equal(find(objects, 'ConfigMap').data![ENV.databaseAuthToken], undefined);
    assert.equal(objects.some((o) => o.kind === 'Secret'), false, 'the chart never creates the Secret');
    for (const o of [find(objects, 'Deployment'), find(objects, 'Job')]) {
      const env = podSpec(o).containers[0].env;
      assert.deepEqual(env, [{ name: ENV.databaseAuthToken, valueFrom: { secretKeyRef: { name: 'db', key: 'token' } } }]);
    }
    assert.throws(
      () => synthChart({ settings: { DATABASE_AUTH_TOKEN: 'x' } }),
      /DATABASE_AUTH_TOKEN is a credential/,
    );
  });

  it('embedded mode refuses more than one replica (and autoscaling) with a clear message', () => {
    assert.throws(() => synthChart({ replicas: 2 }), /embedded database .* runs one replica, so replicas must be 1 \(got 2\)/);
    assert.throws(() => synthChart({ autoscaling: { minReplicas: 1, maxReplicas: 2 } }), /autoscaling needs database mode 'remote'/);
    assert.equal(find(synthChart({ replicas: 1 }), 'Deployment').spec.replicas, 1);
  });

  it('remote mode: stateless Deployment, PDB, HPA without fixed replicas, spread, and a per-release migration Job', () => {
    const objects = synthChart({ database: remoteDb, autoscaling: { minReplicas: 3, maxReplicas: 9 } });
    assert.equal(objects.some((o) => o.kind === 'PersistentVolumeClaim'), false);
    const dep = find(objects, 'Deployment');
    assert.equal(dep.spec.replicas, undefined);
    assert.equal(dep.spec.template.spec.volumes.some((v: any) => v.persistentVolumeClaim), false, 'stateless');
    assert.deepEqual(dep.spec.strategy.rollingUpdate, { maxSurge: 1, maxUnavailable: 0 });
    assert.deepEqual(
      dep.spec.template.spec.topologySpreadConstraints.map((c: any) => c.topologyKey),
      ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'],
    );
    const pdb = find(objects, 'PodDisruptionBudget');
    assert.equal(pdb.apiVersion, 'policy/v1');
    assert.equal(pdb.spec.maxUnavailable, 1);
    const hpa = find(objects, 'HorizontalPodAutoscaler');
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    assert.deepEqual([hpa.spec.minReplicas, hpa.spec.maxReplicas], [3, 9]);

    const job = find(objects, 'Job');
    assert.match(job.metadata.name, /^registration-migrate-[0-9a-f]{8}$/);
    assert.deepEqual(podSpec(job).containers[0].command, ['node', ENTRY_POINTS.migrate.built]);
    assert.equal(podSpec(job).restartPolicy, 'Never');
    // Ordered before the workload in the output (the deployer also applies Jobs before workloads).
    assert.ok(objects.indexOf(job) < objects.indexOf(dep));
    // Same release → same Job; new image → new Job (so each release migrates exactly once).
    const again = find(synthChart({ database: remoteDb, autoscaling: { minReplicas: 3, maxReplicas: 9 } }), 'Job');
    assert.equal(again.metadata.name, job.metadata.name);
    const next = find(synthChart({ image: 'kreg/registration:1.0.1', database: remoteDb, autoscaling: { minReplicas: 3, maxReplicas: 9 } }), 'Job');
    assert.notEqual(next.metadata.name, job.metadata.name);
    // A config-only change does not re-run migrations.
    const relog = find(synthChart({ database: remoteDb, settings: { LOG_LEVEL: 'warn' }, autoscaling: { minReplicas: 3, maxReplicas: 9 } }), 'Job');
    assert.equal(relog.metadata.name, job.metadata.name);
  });

  it('remote mode without autoscaling keeps a fixed replica count; both at once is refused', () => {
    assert.equal(find(synthChart({ database: remoteDb, replicas: 4 }), 'Deployment').spec.replicas, 4);
    assert.throws(
      () => synthChart({ database: remoteDb, replicas: 4, autoscaling: { minReplicas: 2, maxReplicas: 5 } }),
      /either replicas or autoscaling, not both/,
    );
    assert.throws(() => synthChart({ database: { mode: 'remote', server: externalDatabase('file:/x.db') } }), /remote database url must start with/);
  });

  it('NetworkPolicy: ingress only, on the named port only; nobody egress-isolated', () => {
    const objects = synthChart({ database: remoteDb, replicas: 2 });
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
    assert.equal(policies.length, 1);
    const np = policies[0]!;
    assert.deepEqual(np.spec.policyTypes, ['Ingress']);
    assert.equal(np.spec.egress, undefined);
    assert.deepEqual(np.spec.ingress, [{ ports: [{ port: 'http', protocol: 'TCP' }] }]);
  });
});

describe('migration Job naming', () => {
  const remote = { database: remoteDb, autoscaling: { minReplicas: 3, maxReplicas: 9 } } as const;
  const jobName = (props: Partial<RegistrationChartProps>) => find(synthChart({ ...remote, ...props }), 'Job').metadata.name;

  it('any change to the (immutable) Job template means a new Job name', () => {
    const base = jobName({});
    assert.notEqual(jobName({ resources: { cpuRequestMillis: 200, cpuLimitMillis: 1000 } }), base);
    assert.notEqual(jobName({ database: { ...remoteDb, server: externalDatabase('http://other:8080') } }), base);
    assert.notEqual(jobName({ database: { ...remoteDb, authToken: { secretName: 'db2', key: 'token' } } }), base);
    assert.equal(jobName({ settings: { RATE_LIMIT_LOGIN: '5' } }), base);
  });
});
