// Bundled in place of undici (infra/scripts/build-cli.mjs). kreg talks to the API server with
// node:http(s) (infra/engine/client.ts) and uses @kubernetes/client-node only to read kubeconfigs;
// the client-node paths that need undici (its generated API client, Watch, Log, Metrics) are never
// called. Leaving undici out makes every cluster command start faster. Any use fails loudly.
function unused(name) {
  return class {
    constructor() {
      throw new Error(`${name} is not bundled with kreg (infra/scripts/undici-unused.mjs)`);
    }
  };
}
export const Agent = unused('undici.Agent');
export const ProxyAgent = unused('undici.ProxyAgent');
export function fetch() {
  throw new Error('undici.fetch is not bundled with kreg (infra/scripts/undici-unused.mjs)');
}
