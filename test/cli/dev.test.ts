import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DevUsageError, parseDevArgs, parseLocalRegistryHosting } from '../../infra/cli/dev.js';

describe('kreg dev: arguments and the announced registry', () => {
  test('defaults, and each option', () => {
    assert.deepEqual(parseDevArgs([], {}), { env: 'dev', port: 8080, once: false, timeoutMs: 120_000 });
    assert.deepEqual(parseDevArgs(['--port', '0', '--once', '--registry', 'registry.example:5000/', '--timeout', '90s', '-e', 'prod'], {}), {
      env: 'prod',
      port: 0,
      once: true,
      timeoutMs: 90_000,
      registry: 'registry.example:5000',
    });
    assert.equal((parseDevArgs([], { KREG_ENV: 'prod' }) as { env: string }).env, 'prod');
    assert.equal(parseDevArgs(['--help'], {}), 'help');
  });

  test('bad arguments are usage errors that say what is wrong', () => {
    for (const [argv, message] of [
      [['--port', '70000'], /--port must be a port number/],
      [['--env', 'staging'], /unknown environment "staging"/],
      [['--timeout', 'soon'], /not a duration/],
      [['--bogus'], /Unknown option '--bogus'/],
    ] as const) {
      assert.throws(() => parseDevArgs([...argv], {}), (e: unknown) => e instanceof DevUsageError && message.test((e as Error).message), argv.join(' '));
    }
  });

  test("KEP-1755's localRegistryHosting.v1: host, and hostFromContainerRuntime when the node sees it elsewhere", () => {
    // The value kind's local-registry recipe writes, and the local test cluster's.
    assert.deepEqual(parseLocalRegistryHosting('host: "localhost:5001"\nhelp: "https://kind.sigs.k8s.io/docs/user/local-registry/"\n'), { host: 'localhost:5001' });
    assert.deepEqual(parseLocalRegistryHosting("host: localhost:5001\nhostFromContainerRuntime: 'kind-registry:5000'\n"), {
      host: 'localhost:5001',
      fromRuntime: 'kind-registry:5000',
    });
    assert.equal(parseLocalRegistryHosting('help: "no host here"\n'), undefined);
  });
});
