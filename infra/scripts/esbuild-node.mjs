// What the esbuild bundles of kreg (build-cli.mjs, build-service.mjs) share for Node.
import { builtinModules } from 'node:module';

// An ESM import of a Node built-in (`import … from 'node:http'`) makes Node build that module's ESM
// namespace, which reads every export, lazy getters included: for node:http that loads Node's
// bundled undici (its WebSocket, MessageEvent and CloseEvent), 60 ms against 7 ms for require;
// node:util and node:crypto cost 5–7 ms more than require too. So in the bundles built-ins are
// taken through require.
const BUILTIN = new RegExp(`^(node:)?(${builtinModules.map((m) => m.replace(/[/]/g, '\\/')).join('|')})$`);
export const builtinsThroughRequire = {
  name: 'builtins-through-require',
  setup(b) {
    b.onResolve({ filter: BUILTIN }, (args) =>
      args.kind === 'import-statement' ? { path: args.path.replace(/^(node:)?/, 'node:'), namespace: 'builtins-through-require' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtins-through-require' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};

// Bundled CommonJS packages call require() for Node built-ins; ESM output has no require.
export const requireBanner = { js: "import { createRequire as __kregRequire } from 'node:module'; const require = __kregRequire(import.meta.url);" };
