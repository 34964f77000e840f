/**
 * KubeClient against a real HTTP server that misbehaves as a dying API server does: how each kind
 * of breakage is classified decides whether a controller retries or gives up.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KubeApiError, KubeClient, KubeConnectionError } from '../../infra/engine/client.js';
import { toEngineError } from '../../infra/engine/errors.js';

describe('KubeClient: a server that fails mid-answer', () => {
  let server: Server;
  let client: KubeClient;
  let dir: string;

  before(async () => {
    server = createServer((req, res) => {
      if (req.url?.startsWith('/cut-off')) {
        // Headers and half the promised body, then the connection dies: a server killed mid-reply.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '200' });
        res.write('{"kind":"ConfigMap","metadata":{"na');
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      if (req.url?.startsWith('/forbidden')) {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Forbidden', message: 'configmaps is forbidden', code: 403 }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind":"ConfigMap","metadata":{"name":"whole"}}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    dir = mkdtempSync(join(tmpdir(), 'kreg-client-'));
    const kubeconfig = join(dir, 'config');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        // client-node accepts a plain-HTTP server only with TLS verification switched off.
        'clusters: [{name: c, cluster: {server: "http://127.0.0.1:' + port + '", insecure-skip-tls-verify: true}}]',
        'users: [{name: u, user: {token: t}}]',
        'contexts: [{name: x, context: {cluster: c, user: u}}]',
        'current-context: x',
      ].join('\n'),
    );
    client = await KubeClient.create({ kubeconfig, requestTimeoutMs: 5000 });
  });

  after(() => {
    client.close();
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a whole answer is parsed', async () => {
    assert.equal((await client.request('GET', '/whole')).metadata.name, 'whole');
  });

  it('a body cut off after the headers is a connection failure (retryable), not a parse error or an answer', async () => {
    const err = await client.request('GET', '/cut-off').then(
      () => assert.fail('a cut-off body was taken as an answer'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof KubeConnectionError, `got ${String(err)}`);
    const failure = toEngineError(err).toFailure();
    assert.deepEqual([failure.kind, failure.retryable], ['unreachable', true]);
  });

  it('a refusal is the API error the server sent, with its reason', async () => {
    const err = await client.request('GET', '/forbidden').catch((e: unknown) => e);
    assert.ok(err instanceof KubeApiError);
    assert.deepEqual([err.status, err.reason], [403, 'Forbidden']);
  });
});
