#!/usr/bin/env node
// The `kreg` bin. It runs the bundle in build/cli/ (infra/scripts/build-cli.mjs), which starts in
// a fraction of the time TypeScript through a loader takes. In a checkout where a source file is
// newer than the bundle (or there is no bundle yet), it runs the TypeScript through tsx instead, so
// an edit is never hidden behind a stale build; `npm run build:cli` makes it fast again. An
// installed package has no sources beside it and always runs the bundle.
import { existsSync, readFileSync, statSync } from 'node:fs';
// A namespace import: Node 22.0 has no enableCompileCache, and a missing named export fails to link.
import * as nodeModule from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'build/cli/cli.js');

/** Why the bundle cannot be used, or undefined when it can. */
function staleReason() {
  let built;
  try {
    built = statSync(bundle).mtimeMs;
  } catch {
    return 'there is no build/cli yet';
  }
  let inputs;
  try {
    inputs = JSON.parse(readFileSync(join(root, 'build/cli/inputs.json'), 'utf8'));
  } catch {
    return 'build/cli/inputs.json is missing';
  }
  for (const file of inputs) {
    let changed;
    try {
      changed = statSync(join(root, file)).mtimeMs;
    } catch {
      continue; // an installed package ships no sources
    }
    if (changed > built) return `${file} changed after the build`;
  }
  return undefined;
}

// V8 keeps the compiled code of the bundle's chunks on disk (the OS temp dir, or
// NODE_COMPILE_CACHE), so a command after the first skips compiling client-node and cdk8s again.
// Where nothing is writable (a read-only root filesystem) it stays off without complaint.
nodeModule.enableCompileCache?.();

const stale = staleReason();
let run;
/** The bundle's build id lets diff and deploy reuse an earlier synth of the same code (infra/cli/synth-cache.ts). */
const build = {};
if (!stale) {
  ({ run } = await import(pathToFileURL(bundle).href));
  try {
    build.id = readFileSync(join(root, 'build/cli/build-id'), 'utf8').trim();
  } catch {
    // a bundle from before build ids: it synthesizes every time
  }
} else {
  if (!existsSync(join(root, 'infra/cli.ts'))) {
    process.stderr.write(`kreg: this installation is incomplete (${stale}); reinstall the package\n`);
    process.exit(2);
  }
  if (process.stderr.isTTY) process.stderr.write(`kreg: running from source (${stale}; npm run build:cli makes start-up fast)\n`);
  const { register } = await import('tsx/esm/api');
  register();
  ({ run } = await import(pathToFileURL(join(root, 'infra/cli.ts')).href));
}
process.exitCode = await run(process.argv.slice(2), undefined, undefined, build);
