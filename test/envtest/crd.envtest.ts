/**
 * The RegistrationService CRD on a real API server: it is accepted and becomes Established, a good
 * resource gets its defaults, and every bad one is refused at admission with the field path — for
 * each case the API server (structural schema + CEL) and the spec's zod schema agree.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { KubeApiError, KubeClient } from '../../infra/engine/client.js';
import { refOf, type KubeObject } from '../../infra/engine/types.js';
import { installCrd } from '../../infra/operator/install.js';
import { childrenOf } from '../../infra/operator/controller.js';
import { API_VERSION, CRD_NAME, KIND } from '../../infra/operator/crd.js';
import { parseSpec, SpecError } from '../../infra/spec.js';
import { binariesPresent, startApiServer, type TestApiServer } from './apiserver.js';

const skip = binariesPresent() || process.env.CI ? false : 'no kube-apiserver/etcd build (run npm run cluster:up once)';

const resource = (name: string, spec: unknown): KubeObject => ({ apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace: 'crd-test' }, spec });
const token = { name: 'db', key: 'token' };

/** A small deterministic generator (mulberry32), so a failing spec is the same on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Valid specs of every database mode, each optional field present or not: what a user may write.
 * Each is checked valid by zod before it is used, so the generator cannot drift into bad input.
 */
function validSpecs(count: number, seed = 21): Array<Record<string, unknown>> {
  const next = random(seed);
  const maybe = <T>(value: T) => (next() < 0.5 ? value : undefined);
  const pick = <T>(values: T[]) => values[Math.floor(next() * values.length)]!;
  const specs: Array<Record<string, unknown>> = [];
  for (let i = 0; i < count; i++) {
    const mode = pick(['default', 'embedded', 'remote-url', 'remote-server', 'postgres-server', 'postgres-url'] as const);
    const spec: Record<string, unknown> = { image: `kreg/registration:1.${i}` };
    if (mode === 'embedded') spec.database = { mode: 'embedded', ...(maybe({ storage: pick(['512Mi', '2Gi']) }) ?? {}), ...(maybe({ storageClassName: 'fast' }) ?? {}) };
    if (mode === 'remote-url') spec.database = { mode: 'remote', url: pick(['libsql://db.example:8080', 'https://db.example', 'ws://db:8080']), authTokenSecretRef: token };
    if (mode === 'remote-server') {
      const server = { ...(maybe({ name: 'db' }) ?? {}), ...(maybe({ storage: '10Gi' }) ?? {}), ...(maybe({ storageClassName: 'fast' }) ?? {}), ...(maybe({ jwtKeySecretRef: { name: 'jwt', key: 'pub' } }) ?? {}) };
      spec.database = { mode: 'remote', server, authTokenSecretRef: token };
    }
    if (mode === 'postgres-server') spec.database = { mode: 'postgres', server: { ...(maybe({ name: 'db' }) ?? {}), ...(maybe({ storage: '10Gi' }) ?? {}), ...(maybe({ storageClassName: 'fast' }) ?? {}) } };
    if (mode === 'postgres-url') spec.database = { mode: 'postgres', urlSecretRef: { name: 'accounts-app', key: 'uri' } };
    const remote = mode.startsWith('remote') || mode.startsWith('postgres');
    if (remote) {
      const scaling = pick(['none', 'replicas', 'autoscaling'] as const);
      if (scaling === 'replicas') spec.replicas = pick([1, 3, 7]);
      if (scaling === 'autoscaling') spec.autoscaling = { minReplicas: 2, maxReplicas: pick([2, 5]), ...(maybe({ cpuUtilization: 60 }) ?? {}) };
    } else if (next() < 0.3) spec.replicas = 1;
    if (next() < 0.3) spec.hashConcurrency = pick([1, 4]);
    if (next() < 0.3) Object.assign(spec, { drainSeconds: 3, graceSeconds: 20 });
    if (next() < 0.3) spec.settings = { LOG_LEVEL: pick(['info', 'warn']) };
    if (next() < 0.2) spec.resources = { cpuRequestMillis: 200, cpuLimitMillis: 500, ...(maybe({ memoryMiB: 512 }) ?? {}) };
    if (next() < 0.3) spec.dataDeletionPolicy = pick(['Retain', 'Delete']);
    if (next() < 0.2) spec.suspend = false;
    const { dataDeletionPolicy: _d, suspend: _s, ...deploymentSpec } = spec;
    parseSpec(deploymentSpec); // throws if the generator made a spec zod refuses
    specs.push(spec);
  }
  return specs;
}

describe('RegistrationService CRD on a real API server', { skip, timeout: 120_000 }, () => {
  let server: TestApiServer;
  let client: KubeClient;

  before(async () => {
    server = await startApiServer();
    client = await KubeClient.create({ kubeconfig: server.kubeconfig });
    await installCrd(client, () => {});
    await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'crd-test' } }, { fieldManager: 'test' });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  /** A server-side dry run of creating it: undefined when accepted, else the refusal. */
  async function admission(obj: KubeObject): Promise<KubeApiError | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        await client.apply(obj, { fieldManager: 'test', dryRun: true });
        return undefined;
      } catch (err) {
        // Right after Established, discovery can lag a moment.
        if (err instanceof KubeApiError && err.reason === 'NoKindMatch' && attempt < 50) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        if (err instanceof KubeApiError) return err;
        throw err;
      }
    }
  }

  it('a minimal resource is accepted and defaulted like the spec', async () => {
    const created = await client.apply(resource('accounts', { image: 'kreg/registration:1.2.3' }), { fieldManager: 'test', dryRun: true });
    assert.deepEqual(created.spec, {
      image: 'kreg/registration:1.2.3',
      database: { mode: 'embedded', storage: '1Gi' },
      hashConcurrency: 2,
      resources: { cpuRequestMillis: 100, cpuLimitMillis: 1000 },
      drainSeconds: 5,
      graceSeconds: 25,
      settings: {},
      suspend: false,
      dataDeletionPolicy: 'Retain',
    });
    const { suspend: _s, dataDeletionPolicy: _d, ...spec } = created.spec;
    assert.deepEqual(parseSpec(spec), parseSpec({ image: 'kreg/registration:1.2.3' }), 'the same defaults as zod applies');
  });

  it('every valid resource of each database mode, as the API server stores it, passes the controller\'s own validation', async () => {
    const specs = validSpecs(40);
    const modes = new Set(specs.map((s) => (s.database as { mode?: string } | undefined)?.mode ?? 'default'));
    assert.deepEqual([...modes].sort(), ['default', 'embedded', 'postgres', 'remote'], 'every mode is generated');
    for (const [i, spec] of specs.entries()) {
      const name = `valid-${i}`;
      assert.equal(await admission(resource(name, spec)), undefined, `admitted: ${JSON.stringify(spec)}`);
      await client.apply(resource(name, spec), { fieldManager: 'test' });
      const stored = await client.get({ apiVersion: API_VERSION, kind: KIND, namespace: 'crd-test', name });
      const { suspend: _s, dataDeletionPolicy: _d, ...storedSpec } = stored!.spec;
      const { suspend: _s2, dataDeletionPolicy: _d2, ...writtenSpec } = spec;
      assert.doesNotThrow(() => childrenOf(stored!), `the controller refuses what the API server stored: ${JSON.stringify(stored!.spec)}`);
      assert.deepEqual(parseSpec(storedSpec), parseSpec(writtenSpec), `the API server's defaults mean what zod's do: ${JSON.stringify(spec)}`);
    }
  });

  it('the examples of docs/operator.md, one per database mode, are admitted as written and run by the controller', async () => {
    const page = readFileSync(new URL('../../docs/operator.md', import.meta.url), 'utf8');
    const examples = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((y) => /^kind: RegistrationService$/m.test(y)).map((y) => parse(y) as KubeObject);
    const kindOf = (o: KubeObject) => {
      const db = o.spec.database;
      if (db?.mode === 'remote') return db.server ? 'remote server' : 'remote url';
      if (db?.mode === 'postgres') return db.server ? 'postgres server' : 'postgres url';
      return 'embedded';
    };
    assert.deepEqual(examples.map(kindOf).sort(), ['embedded', 'postgres server', 'postgres url', 'remote server', 'remote url'], 'one example per database mode');
    await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'docs-example' } }, { fieldManager: 'test' });
    for (const example of examples) {
      assert.equal(example.apiVersion, API_VERSION);
      assert.equal(example.metadata.namespace, 'docs-example');
      assert.equal(await admission(example), undefined, `${example.metadata.name} is refused`);
      await client.apply(example, { fieldManager: 'test' });
      const stored = await client.get(refOf(example));
      assert.doesNotThrow(() => childrenOf(stored!), `${example.metadata.name}: the controller refuses it`);
    }
  });

  it('a field of one database mode is refused in another, by the API server as by zod', async () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['storage in remote mode', { mode: 'remote', url: 'http://db:8080', authTokenSecretRef: token, storage: '1Gi' }],
      ['storageClassName in remote mode', { mode: 'remote', url: 'http://db:8080', authTokenSecretRef: token, storageClassName: 'fast' }],
      ['url in embedded mode', { mode: 'embedded', url: 'http://db:8080' }],
      ['server in embedded mode', { mode: 'embedded', server: {} }],
      ['authTokenSecretRef in embedded mode', { mode: 'embedded', authTokenSecretRef: token }],
      ['urlSecretRef in remote mode', { mode: 'remote', url: 'http://db:8080', authTokenSecretRef: token, urlSecretRef: token }],
      ['a libsql server\'s key in postgres mode', { mode: 'postgres', server: { jwtKeySecretRef: token } }],
      ['authTokenSecretRef in postgres mode', { mode: 'postgres', urlSecretRef: token, authTokenSecretRef: token }],
    ];
    for (const [what, database] of cases) {
      const spec = { image: 'kreg/registration:1', database };
      const refusal = await admission(resource('wrong-mode', spec));
      assert.ok(refusal, `${what}: admitted`);
      assert.match(refusal.message, /belongs to mode/, what);
      assert.throws(() => parseSpec(spec), SpecError, `${what}: zod accepts it`);
    }
  });

  it('each bad resource is refused at admission, naming the field; zod refuses the same ones', async () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['embedded with 3 replicas', { image: 'kreg/registration:1', replicas: 3 }, /replicas.*exactly one replica/s],
      ['remote without a url or server', { image: 'kreg/registration:1', database: { mode: 'remote', authTokenSecretRef: token } }, /database\.url.*exactly one of database\.url/s],
      ['remote without a token Secret', { image: 'kreg/registration:1', database: { mode: 'remote', url: 'http://db:8080' } }, /authTokenSecretRef.*Secret holding the database token/s],
      ['remote with a bad url', { image: 'kreg/registration:1', database: { mode: 'remote', url: 'postgres://db', authTokenSecretRef: token } }, /spec\.database\.url/],
      ['a bad image', { image: 'Not An Image' }, /spec\.image/],
      ['autoscaling on embedded', { image: 'kreg/registration:1', autoscaling: { minReplicas: 2, maxReplicas: 3 } }, /autoscaling needs database\.mode postgres \(or remote\)/],
      ['min above max', { image: 'kreg/registration:1', database: { mode: 'remote', url: 'http://db:8080', authTokenSecretRef: token }, autoscaling: { minReplicas: 5, maxReplicas: 3 } }, /maxReplicas.*must not be less than/s],
      ['grace not above drain', { image: 'kreg/registration:1', drainSeconds: 30, graceSeconds: 30 }, /graceSeconds.*greater than drainSeconds/s],
      ['an unknown setting', { image: 'kreg/registration:1', settings: { LOG_LEVL: 'debug' } }, /unknown setting/],
      ['a storage size in GB', { image: 'kreg/registration:1', database: { mode: 'embedded', storage: '1GB' } }, /spec\.database\.storage/],
      ['an unknown database mode', { image: 'kreg/registration:1', database: { mode: 'sqlite' } }, /spec\.database\.mode/],
      ['postgres with neither a server nor a URL Secret', { image: 'kreg/registration:1', database: { mode: 'postgres' } }, /exactly one of database\.urlSecretRef/],
      ['postgres with both', { image: 'kreg/registration:1', database: { mode: 'postgres', server: {}, urlSecretRef: token } }, /exactly one of database\.urlSecretRef/],
    ];
    for (const [what, spec, message] of cases) {
      const refusal = await admission(resource('bad', spec));
      assert.ok(refusal, `${what}: accepted by the API server`);
      assert.equal(refusal.status, 422, `${what}: ${refusal.message}`);
      assert.match(refusal.message, message, what);
      assert.throws(() => parseSpec(spec), SpecError, `${what}: zod accepts what the API server refuses`);
    }
  });

  it('the database mode cannot change in place', async () => {
    await client.apply(resource('moving', { image: 'kreg/registration:1' }), { fieldManager: 'test' });
    const refusal = await admission(resource('moving', { image: 'kreg/registration:1', database: { mode: 'remote', url: 'http://db:8080', authTokenSecretRef: token } }));
    assert.ok(refusal, 'a mode change was accepted');
    assert.match(refusal.message, /database\.mode cannot change in place/);
    assert.equal(await admission(resource('moving', { image: 'kreg/registration:2' })), undefined, 'other changes are fine');
  });

  it('what the cdk8s construct synthesizes is accepted as it is', async () => {
    const { Chart, Testing } = await import('cdk8s');
    const { RegistrationServiceResource } = await import('../../infra/operator/construct.js');
    const chart = new Chart(Testing.app(), 'crd-test', { namespace: 'crd-test' });
    new RegistrationServiceResource(chart, 'from-cdk8s', {
      metadata: { name: 'from-cdk8s' },
      spec: { image: 'kreg/registration:1', database: { mode: 'remote', url: 'http://db:8080', authTokenSecretRef: token }, autoscaling: { minReplicas: 2, maxReplicas: 4 }, settings: { LOG_LEVEL: 'info' } },
    });
    const [obj] = Testing.synth(chart) as KubeObject[];
    assert.equal(await admission(obj!), undefined);
  });

  it('the printer columns and the ApplySet parent label are there', async () => {
    const crd = await client.get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: CRD_NAME });
    assert.equal(crd!.metadata.labels!['applyset.kubernetes.io/is-parent-type'], 'true');
    assert.deepEqual(
      crd!.spec.versions[0].additionalPrinterColumns.map((c: { name: string }) => c.name),
      ['Ready', 'Reason', 'Image', 'Replicas', 'Database', 'Age'],
    );
    assert.deepEqual(crd!.spec.names.shortNames, ['regsvc']);
  });
});
