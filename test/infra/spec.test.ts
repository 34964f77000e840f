/**
 * The deployment spec: validation (every field problem at once), defaults, the CRD schema it
 * generates, and the pure synth it drives — pinned byte for byte to the manifests it replaced.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { synth, synthToDisk } from '../../infra/main.js';
import {
  CROSS_FIELD_RULES,
  NAMED_SPECS,
  parseSpec,
  SPEC_NAMES,
  SpecError,
  specOpenApiSchema,
  TRANSITION_RULES,
  type RegistrationSpecInput,
} from '../../infra/spec.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const GOLDEN = join(ROOT, 'test/charts/golden');

function issuesOf(input: unknown): Record<string, string> {
  try {
    parseSpec(input);
  } catch (err) {
    assert.ok(err instanceof SpecError, String(err));
    const byPath: Record<string, string> = {};
    for (const i of err.issues) byPath[i.path] = byPath[i.path] ? `${byPath[i.path]} | ${i.message}` : i.message;
    return byPath;
  }
  assert.fail('the spec was accepted');
}

const minimal = { image: 'kreg/registration:1.2.3' };

describe('spec validation', () => {
  it('the named specs are valid, and a minimal spec gets the documented defaults', () => {
    for (const name of SPEC_NAMES) parseSpec(NAMED_SPECS[name].spec);
    assert.deepEqual(parseSpec(minimal), {
      image: 'kreg/registration:1.2.3',
      database: { mode: 'embedded', storage: '1Gi' },
      hashConcurrency: 2,
      resources: { cpuRequestMillis: 100, cpuLimitMillis: 1000 },
      drainSeconds: 5,
      graceSeconds: 25,
      settings: {},
    });
  });

  it('each field problem names its path', () => {
    const cases: Array<[RegistrationSpecInput | Record<string, unknown>, string, RegExp]> = [
      [{}, 'image', /expected string/i],
      [{ image: 'Has Spaces' }, 'image', /image reference/],
      [{ ...minimal, replicas: 0 }, 'replicas', />=\s*1/],
      [{ ...minimal, replicas: 2 }, 'replicas', /exactly one replica/],
      [{ ...minimal, replicas: 1.5 }, 'replicas', /expected int/],
      [{ ...minimal, autoscaling: { minReplicas: 2, maxReplicas: 4 } }, 'autoscaling', /needs database.mode postgres \(or remote\)/],
      [{ ...minimal, database: { mode: 'embedded', storage: '1GB' } }, 'database.storage', /512Mi, 1Gi or 2Ti/],
      [{ ...minimal, database: { mode: 'sqlite' } }, 'database.mode', /invalid/i],
      [{ ...minimal, database: { mode: 'remote', authTokenSecretRef: { name: 'db', key: 'token' } } }, 'database.url', /exactly one of database.url/],
      [{ ...minimal, database: { mode: 'remote', url: 'http://db:8080' } }, 'database.authTokenSecretRef', /Secret holding the database token/],
      [{ ...minimal, database: { mode: 'remote', url: 'postgres://db', authTokenSecretRef: { name: 'db', key: 'token' } } }, 'database.url', /libsql/],
      [{ ...minimal, database: { mode: 'remote', url: 'http://db', authTokenSecretRef: { name: 'Not_A_Name', key: 'token' } } }, 'database.authTokenSecretRef.name', /Secret name/],
      [{ ...minimal, database: { mode: 'embedded', url: 'http://db' } }, 'database', /unknown field "url"/],
      [{ ...minimal, hashConcurrency: 8 }, 'hashConcurrency', /thread pool has 4 threads.*start-up check/],
      [{ ...minimal, drainSeconds: 30 }, 'graceSeconds', /greater than drainSeconds/],
      [{ ...minimal, resources: { cpuRequestMillis: 100 } }, 'resources.cpuLimitMillis', /expected number/i],
      [{ ...minimal, settings: { LOG_LEVEL: 'loud' } }, 'settings.LOG_LEVEL', /expected one of .*got "loud".*start-up check/],
      [{ ...minimal, settings: { HASH_MEMORY_KIB: '1024' } }, 'settings.HASH_MEMORY_KIB', /19456/],
      [{ ...minimal, settings: { DATABASE_AUTH_TOKEN: 'secret' } }, 'settings', /unknown field "DATABASE_AUTH_TOKEN"/],
      [{ ...minimal, settings: { PORT: '1' } }, 'settings', /unknown field "PORT"/],
      [{ ...minimal, colour: 'blue' }, '', /unknown field "colour"/],
    ];
    for (const [input, path, message] of cases) {
      const issues = issuesOf(input);
      assert.ok(path in issues, `${JSON.stringify(input)}: expected an issue at "${path}", got ${JSON.stringify(issues)}`);
      assert.match(issues[path]!, message, `${JSON.stringify(input)} at ${path}`);
    }
  });

  it('one error lists every problem, and its message names each path', () => {
    const input = {
      image: 'kreg/registration:1',
      replicas: 3,
      hashConcurrency: 0,
      settings: { LOG_LEVEL: 'loud', RATE_LIMIT_LOGIN: '-1' },
    };
    const issues = issuesOf(input);
    assert.deepEqual(Object.keys(issues).sort(), ['hashConcurrency', 'replicas', 'settings.LOG_LEVEL', 'settings.RATE_LIMIT_LOGIN']);
    assert.throws(() => parseSpec(input), (err: Error) => /replicas: .*hashConcurrency: |hashConcurrency: .*replicas: /.test(err.message));
  });
});

describe('CRD schema from the spec', () => {
  const schema = specOpenApiSchema();

  function walk(node: Record<string, unknown>, path: string, visit: (node: Record<string, unknown>, path: string) => void): void {
    visit(node, path);
    for (const [key, child] of Object.entries((node.properties ?? {}) as Record<string, Record<string, unknown>>)) walk(child, `${path}.${key}`, visit);
  }

  it('is structural: every node typed, no unions, no additionalProperties: false, no $schema', () => {
    walk(schema, 'spec', (node, path) => {
      assert.ok(typeof node.type === 'string', `${path} has a type`);
      for (const forbidden of ['oneOf', 'anyOf', 'allOf', '$schema', 'const', 'exclusiveMinimum']) {
        assert.ok(!(forbidden in node), `${path} has ${forbidden}`);
      }
      // additionalProperties only as a map's value schema, never `false` and never beside properties.
      if ('additionalProperties' in node) {
        assert.equal(typeof node.additionalProperties, 'object', `${path}: additionalProperties is a schema`);
        assert.ok(!('properties' in node), `${path}: properties and additionalProperties together`);
      }
    });
  });

  it('carries defaults, the database modes, and every rule in CEL', () => {
    const props = schema.properties as Record<string, any>;
    assert.equal(props.hashConcurrency.default, 2);
    assert.deepEqual(props.database.default, { mode: 'embedded', storage: '1Gi' });
    assert.deepEqual(props.database.properties.mode.enum, ['embedded', 'remote', 'postgres']);
    assert.deepEqual(schema.required, ['image']);
    const rules = (schema['x-kubernetes-validations'] as Array<{ rule: string; fieldPath: string }>).map((r) => r.rule);
    assert.deepEqual(rules, CROSS_FIELD_RULES.map((r) => r.rule));
    const databaseRules = props.database['x-kubernetes-validations'] as Array<{ rule: string; fieldPath?: string }>;
    assert.equal(databaseRules.filter((r) => /oldSelf\.mode/.test(r.rule)).length, TRANSITION_RULES.length);
    // A field of one mode carries no default (the API server would add it to every mode) and is
    // refused in the others, as zod's strict variants refuse it.
    assert.equal(props.database.properties.storage.default, undefined);
    assert.match(props.database.properties.storage.description, /Default: "1Gi" \(mode embedded\)/);
    assert.deepEqual(
      databaseRules.filter((r) => r.fieldPath).map((r) => [r.fieldPath, r.rule]),
      [
        // A field two modes share holds the fields of both; one only remote's server has is refused for postgres.
        ['.server.jwtKeySecretRef', "!has(self.server) || !has(self.server.jwtKeySecretRef) || self.mode in ['remote']"],
        ['.storage', "!has(self.storage) || self.mode in ['embedded']"],
        ['.storageClassName', "!has(self.storageClassName) || self.mode in ['embedded']"],
        ['.url', "!has(self.url) || self.mode in ['remote']"],
        ['.server', "!has(self.server) || self.mode in ['remote', 'postgres']"],
        ['.authTokenSecretRef', "!has(self.authTokenSecretRef) || self.mode in ['remote']"],
        ['.urlSecretRef', "!has(self.urlSecretRef) || self.mode in ['postgres']"],
      ],
    );
  });
});

describe('synth(instance, namespace, spec)', () => {
  it('renders every storage size the spec accepts, as written (512Mi is not a whole number of gibibytes)', () => {
    for (const storage of ['512Mi', '1536Mi', '1Gi', '2Ti']) {
      const claim = synth('accounts', 'team-a', { image: 'kreg/registration:1', database: { mode: 'embedded', storage } }).find((o) => o.kind === 'PersistentVolumeClaim');
      assert.equal(claim?.spec.resources.requests.storage, storage);
    }
  });

  it('dev and prod are byte-identical to the manifests pinned before specs existed (npm run synth)', () => {
    for (const env of SPEC_NAMES) {
      const out = mkdtempSync(join(tmpdir(), 'kreg-golden-'));
      try {
        const { files } = synthToDisk({ env, outdir: out });
        const expected = readdirSync(join(GOLDEN, env)).sort();
        assert.deepEqual(files.map((f) => f.slice(out.length + 1)), expected, env);
        for (const file of expected) {
          assert.equal(readFileSync(join(out, file), 'utf8'), readFileSync(join(GOLDEN, env, file), 'utf8'), `${env}/${file}`);
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    }
  });

  it('the cdk8s CLI writes the same bytes (cdk8s.yaml runs the same app)', () => {
    const out = mkdtempSync(join(tmpdir(), 'kreg-golden-cdk8s-'));
    try {
      const r = spawnSync('npx', ['cdk8s', 'synth', '--no-check-upgrade', '--output', out], {
        cwd: ROOT,
        env: { ...process.env, KREG_ENV: 'prod' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(r.status, 0, r.stderr + r.stdout);
      for (const file of readdirSync(join(GOLDEN, 'prod'))) {
        assert.equal(readFileSync(join(out, file), 'utf8'), readFileSync(join(GOLDEN, 'prod', file), 'utf8'), file);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('two instances in one namespace have disjoint object names, labels and selectors', () => {
    const remote = {
      ...minimal,
      database: { mode: 'remote', server: {}, authTokenSecretRef: { name: 'db', key: 'token' } },
      replicas: 2,
    } as const;
    for (const spec of [minimal, remote]) {
      const a = synth('accounts', 'team-a', spec);
      const b = synth('billing', 'team-a', spec);
      const names = (objects: typeof a) => new Set(objects.map((o) => `${o.kind}/${o.metadata.name}`));
      const overlap = [...names(a)].filter((n) => names(b).has(n));
      assert.deepEqual(overlap, [], `${'database' in spec ? spec.database.mode : 'embedded'}: shared names`);
      assert.ok(a.every((o) => o.metadata.namespace === 'team-a'), 'no Namespace object, everything in the namespace');
      const deployment = a.find((o) => o.kind === 'Deployment')!;
      assert.equal(deployment.metadata.name, 'accounts');
      assert.equal(deployment.spec.selector.matchLabels['app.kubernetes.io/instance'], 'accounts');
      const service = a.find((o) => o.kind === 'Service' && o.metadata.name === 'accounts')!;
      assert.equal(service.spec.selector['app.kubernetes.io/instance'], 'accounts', 'a Service selects only its own instance');
    }
  });

  it('is pure: validates, writes nothing, ignores CDK8S_OUTDIR', () => {
    const out = join(tmpdir(), `kreg-never-${process.pid}`);
    process.env.CDK8S_OUTDIR = out;
    try {
      const objects = synth('accounts', 'team-a', minimal);
      assert.ok(objects.length > 0);
      assert.equal(existsSync(out), false);
      assert.deepEqual(synth('accounts', 'team-a', minimal), objects, 'same input, same objects');
      assert.throws(() => synth('accounts', 'team-a', { image: 'kreg/registration:1', replicas: 2 }), SpecError);
    } finally {
      delete process.env.CDK8S_OUTDIR;
    }
  });
});
