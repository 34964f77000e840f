import { createServer } from 'node:net';

/**
 * A loopback port that was free a moment ago, for a server a test or benchmark starts as another
 * process (which must be told its port). The envtest API server, the contract test, the benches.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
