#!/usr/bin/env node
// Bundles the kreg CLI (infra/cli.ts and everything it imports, dependencies included) into
// build/cli/ as ES modules split at each dynamic import. `kreg --help` then parses one small file,
// and a command loads one chunk instead of resolving a thousand files of @kubernetes/client-node,
// cdk8s and zod through the module loader (2.1 s → well under 0.2 s for --help here).
//
// build/cli/inputs.json lists the repository files that went in, so bin/kreg.mjs can tell a stale
// bundle from a fresh one in a checkout. `npm run build:cli` runs this; `prepare` runs it on npm ci.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { builtinsThroughRequire, requireBanner } from './esbuild-node.mjs';

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
  plugins: [builtinsThroughRequire],
  banner: requireBanner,
  chunkNames: 'chunks/[name]-[hash]',
  metafile: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning',
});
const inputs = Object.keys(result.metafile.inputs)
  .filter((f) => !f.includes('node_modules/') && !f.startsWith('<') && !f.startsWith(`${builtinsThroughRequire.name}:`))
  .sort();
writeFileSync(join(outdir, 'inputs.json'), `${JSON.stringify(inputs)}\n`);
// A hash of everything the bundle runs: the CLI keeps its synth output per build id, so any change
// to the charts, the environments or kreg itself makes a new one.
const buildId = createHash('sha256');
for (const file of Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js')).sort()) {
  buildId.update(file).update(readFileSync(join(root, file)));
}
writeFileSync(join(outdir, 'build-id'), `${buildId.digest('hex').slice(0, 32)}\n`);
const bytes = Object.entries(result.metafile.outputs)
  .filter(([f]) => f.endsWith('.js'))
  .reduce((n, [, o]) => n + o.bytes, 0);
if (!process.argv.includes('--quiet')) {
  console.error(`build/cli: ${inputs.length} source files + dependencies → ${(bytes / 1e6).toFixed(1)} MB of JavaScript in ${Math.round(performance.now() - t0)} ms`);
}
