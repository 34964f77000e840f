/**
 * The informer against a real API server, made to fail the ways real ones do: the kube-apiserver
 * restarted under it, a connection that goes silent (a proxy that stops forwarding), a
 * resourceVersion the server no longer has (410). Each time the watch must come back by itself and
 * miss nothing.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KubeClient } from '../../infra/engine/client.js';
import type { KubeObject } from '../../infra/engine/types.js';
import { RegistrationServiceController } from '../../infra/operator/controller.js';
import { installCrd } from '../../infra/operator/install.js';
import { API_VERSION, KIND } from '../../infra/operator/crd.js';
import { Informer, type InformerOptions } from '../../infra/operator/informer.js';
import { binariesPresent, eventually, kubeconfigFor, startApiServer, type TestApiServer } from './apiserver.js';

const skip = binariesPresent() || process.env.CI ? false : 'no kube-apiserver/etcd build (run npm run cluster:up once)';

/** A TCP proxy to the API server that can stop forwarding bytes while keeping every connection open. */
async function silentProxy(port: number): Promise<{ port: number; silence(on: boolean): void; close(): Promise<void> }> {
  let silent = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => silent || upstream.write(d));
    upstream.on('data', (d) => silent || client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    silence: (on) => (silent = on),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('watches that recover by themselves', { skip, timeout: 180_000 }, () => {
  let server: TestApiServer;
  let client: KubeClient;
  const cm = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'w' }, data: { a: '1' } });

  before(async () => {
    server = await startApiServer();
    client = await KubeClient.create({ kubeconfig: server.kubeconfig });
    await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'w' } }, { fieldManager: 'test' });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  /** A started informer of namespace w's ConfigMaps, and the set of `<event> <name>` it has seen. */
  const watchConfigMaps = (via: KubeClient, options: Pick<InformerOptions, 'backoff' | 'inactivityMs'>) => {
    const seen = new Set<string>();
    const informer = new Informer(via, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      namespace: 'w',
      onEvent: (type, obj) => seen.add(`${type} ${obj.metadata.name}`),
      ...options,
    }).start();
    return { informer, seen };
  };

  it('the kube-apiserver restarts: the watch reconnects and sees what happened meanwhile and after', async () => {
    const { informer, seen } = watchConfigMaps(client, { backoff: { baseMs: 100, maxMs: 1000 } });
    try {
      await informer.synced;
      await client.apply(cm('before'), { fieldManager: 'test' });
      await eventually('before', () => seen.has('added before'), 20_000);
      await server.restartApiServer();
      await client.apply(cm('after'), { fieldManager: 'test' });
      await eventually('after (the watch is back)', () => seen.has('added after'), 20_000);
      const health = informer.health();
      const recoveries = Object.values(health.reconnects).reduce((a, b) => a + b, 0) + Object.values(health.relists).reduce((a, b) => a + b, 0);
      assert.ok(recoveries >= 1, `no reconnect or relist recorded: ${JSON.stringify(health)}`);
      console.log(`# watch after an apiserver restart: ${JSON.stringify({ reconnects: health.reconnects, relists: health.relists })}`);
    } finally {
      await informer.stop();
    }
  });

  it('restarted again and again: each outage starts the backoff over, so the watch is back within seconds every time', async () => {
    // A cap far above what the test waits: were the failures of earlier outages still counted, the
    // third outage would start at tens of seconds and the wait below would fail.
    const { informer, seen } = watchConfigMaps(client, { backoff: { baseMs: 200, maxMs: 120_000, healthyMs: 1000 } });
    try {
      await informer.synced;
      const backAfter: number[] = [];
      for (let i = 1; i <= 4; i++) {
        // Down for 3 s: the watch fails to reconnect several times in each outage.
        await server.restartApiServer('SIGKILL', 3000);
        const t0 = performance.now();
        await client.apply(cm(`restart-${i}`), { fieldManager: 'test' });
        await eventually(`restart-${i} seen`, () => seen.has(`added restart-${i}`), 15_000);
        backAfter.push(Math.round(performance.now() - t0));
        await new Promise((r) => setTimeout(r, 1500)); // the watch runs healthily between outages
      }
      console.log(`# watch back after each of 4 restarts, each down 3 s (ms from ready): ${backAfter.join(', ')}; ${JSON.stringify(informer.health().reconnects)}`);
    } finally {
      await informer.stop();
    }
  });

  it('a connection that goes silent is noticed by the watchdog and replaced; nothing is missed', async () => {
    const proxy = await silentProxy(server.port);
    const kubeconfig = join(tmpdir(), `kreg-proxy-${process.pid}.kubeconfig`);
    writeFileSync(kubeconfig, kubeconfigFor(`https://127.0.0.1:${proxy.port}`, server.adminToken, 'envtest-admin'));
    const proxied = await KubeClient.create({ kubeconfig });
    const { informer, seen } = watchConfigMaps(proxied, { inactivityMs: 1500, backoff: { baseMs: 100, maxMs: 500 } });
    try {
      await informer.synced;
      proxy.silence(true);
      await client.apply(cm('while-silent'), { fieldManager: 'test' });
      await new Promise((r) => setTimeout(r, 2500)); // past the watchdog
      proxy.silence(false);
      await eventually('while-silent (after the watchdog replaced the watch)', () => seen.has('added while-silent'), 20_000);
      assert.ok((informer.health().reconnects.inactive ?? 0) >= 1, JSON.stringify(informer.health()));
    } finally {
      await informer.stop();
      proxied.close();
      await proxy.close();
    }
  });

  it('the controller keeps reconciling across an apiserver restart: a later spec change is applied', async () => {
    await installCrd(client, () => {});
    const controller = new RegistrationServiceController(client, { namespace: 'w' });
    await eventually('the controller to start', async () => {
      try {
        await controller.start();
        return true;
      } catch {
        return false;
      }
    }, 20_000);
    try {
      const apply = (image: string) =>
        client.apply({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'svc', namespace: 'w' }, spec: { image } }, { fieldManager: 'user' });
      const image = async () => (await client.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'w', name: 'svc' }).catch(() => undefined))?.spec.template.spec.containers[0].image;
      await apply('kreg/registration:1');
      await eventually('the first Deployment', async () => (await image()) === 'kreg/registration:1', 20_000);
      await server.restartApiServer();
      await apply('kreg/registration:2');
      await eventually('the change after the restart', async () => (await image()) === 'kreg/registration:2', 30_000);
    } finally {
      await controller.stop();
    }
  });
});
