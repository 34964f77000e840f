#!/usr/bin/env node
// Bundles the kreg CLI (infra/cli.ts and everything it imports, dependencies included) into
// build/cli/ as ES modules split at each dynamic import. `kreg --help` then parses one small file,
// and a command loads one chunk instead of resolving a thousand files of @kubernetes/client-node,
// cdk8s and zod through the module loader (2.1 s → well under 0.2 s for --help here).
//
// build/cli/inputs.json lists the repository files that went in, so bin/kreg.mjs can tell a stale
// bundle from a fresh one in a checkout. `npm run build:cli` runs this; `prepare` runs it on npm ci.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const outdir = join(root, 'build/cli');
const t0 = performance.now();
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: { cli: 'infra/cli.ts' },
  outdir: 'build/cli',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  packages: 'bundle',
  // client-node imports undici for code paths kreg never calls; see the stub for why.
  alias: { undici: './infra/scripts/undici-unused.mjs' },
  // Some bundled CommonJS packages call require() for Node built-ins; ESM output has no require.
  banner: { js: "import { createRequire as __kregRequire } from 'node:module'; const require = __kregRequire(import.meta.url);" },
  chunkNames: 'chunks/[name]-[hash]',
  metafile: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning',
});
const inputs = Object.keys(result.metafile.inputs)
  .filter((f) => !f.includes('node_modules/') && !f.startsWith('<'))
  .sort();
writeFileSync(join(outdir, 'inputs.json'), `${JSON.stringify(inputs)}\n`);
const bytes = Object.entries(result.metafile.outputs)
  .filter(([f]) => f.endsWith('.js'))
  .reduce((n, [, o]) => n + o.bytes, 0);
if (!process.argv.includes('--quiet')) {
  console.error(`build/cli: ${inputs.length} source files + dependencies → ${(bytes / 1e6).toFixed(1)} MB of JavaScript in ${Math.round(performance.now() - t0)} ms`);
}
