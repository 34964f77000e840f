#!/usr/bin/env node
// Bundles the registration service for images and for `node build/…` users: build/service/ holds
//   src/server.js, src/migrate.js   the entry points (esbuild), the chunks they share or load
//                                   on demand (each database driver), linked source maps
//   drizzle/, drizzle-pg/           the migrations, read at run time
//   node_modules/                   only what cannot be bundled: the native packages (argon2's and
//                                   libsql's prebuilt addons and their loaders) and Swagger UI's two
//                                   static files for /docs
//   package.json                    {"type":"module"}, so the directory runs on its own
// Why: the service from source or from tsc output resolves and parses a thousand files at start-up
// (drizzle-orm's ESM entry points alone took 0.5–0.9 s); one file per entry point starts in a blink,
// and a source change is one small layer of the image. `npm start` keeps running the TypeScript.
// `npm run build` runs this; `--code-only` writes src/ alone, `--quiet` says nothing.
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { builtinsThroughRequire, requireBanner } from './esbuild-node.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const outdir = resolve(root, process.env.KREG_SERVICE_OUT ?? 'build/service');
const quiet = process.argv.includes('--quiet');
// Only src/ (kreg dev's fast path puts it on an image that has the rest: infra/images/dev/Dockerfile).
const codeOnly = process.argv.includes('--code-only');
const t0 = performance.now();

// Packages that load a platform-specific .node file through a computed require(); esbuild cannot
// follow that, so they stay as files with everything they require.
const NATIVE = ['@node-rs/argon2', 'libsql'];
// Optional peers of bundled packages that are absent on purpose (ws tries them and falls back).
const ABSENT_OPTIONAL = ['bufferutil', 'utf-8-validate'];

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });


// One build split at what the two entry points share (config, database, logger), so the migrator
// adds little beside the server. Each entry point checks `import.meta.url === argv[1]` to know it is
// the program being run; that holds because only its own entry file holds its top-level code. The
// shared chunks sit beside the entry files, as code that locates files from import.meta.url
// (migrations, Swagger UI's assets) expects.
const result = await build({
  absWorkingDir: root,
  entryPoints: { server: 'service/src/server.ts', migrate: 'service/src/migrate.ts' },
  outdir: join(outdir, 'src'),
  bundle: true,
  splitting: true,
  chunkNames: 'shared-[hash]',
  format: 'esm',
  platform: 'node',
  target: 'node22',
  external: [...NATIVE, ...ABSENT_OPTIONAL],
  // The bundle sits one folder above where service/src/db/client.ts does in the tree; the
  // migrations' location is computed from it (client.ts).
  define: { KREG_SERVICE_BUNDLE: 'true' },
  plugins: [builtinsThroughRequire],
  banner: requireBanner,
  metafile: true,
  sourcemap: 'linked',
  // Source paths in the map relative to the repository, so a logged stack (service/src/stack.ts)
  // names service/src/… and node_modules/… as in the tree.
  sourceRoot: '',
  // File and line are what a stack needs; the sources themselves would triple the layer a change ships.
  sourcesContent: false,
  legalComments: 'linked',
  logLevel: 'warning',
});
const outputs = Object.fromEntries(Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith('.js')).map(([f, o]) => [f, o.bytes]));

if (codeOnly) {
  if (!quiet) console.error(`build-service: ${Object.keys(outputs).length} modules in ${Math.round(performance.now() - t0)} ms`);
  process.exit(0);
}
for (const dir of ['drizzle', 'drizzle-pg']) cpSync(join(root, 'service', dir), join(outdir, dir), { recursive: true });
writeFileSync(join(outdir, 'package.json'), `${JSON.stringify({ type: 'module', private: true })}\n`);

// The native packages and their dependency closure, copied from the installed tree. Platform
// packages are optional dependencies; only those installed for this platform and libc are taken
// (npm installs the musl ones on glibc too, where they cannot load).
const glibc = typeof process.report?.getReport === 'function' && Boolean(process.report.getReport().header.glibcVersionRuntime);
const copied = new Set();
function manifestOf(name) {
  const file = join(root, 'node_modules', name, 'package.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined;
}
function fitsPlatform(pkg) {
  if (pkg.os && !pkg.os.includes(process.platform)) return false;
  if (pkg.cpu && !pkg.cpu.includes(process.arch)) return false;
  const libc = pkg.libc?.[0] ?? pkg.neon?.abi ?? (/-musl/.test(pkg.name) ? 'musl' : /-gnu/.test(pkg.name) ? 'gnu' : undefined);
  if (libc && (libc === 'musl') === glibc) return false;
  return true;
}
function copyPackage(name) {
  if (copied.has(name)) return;
  const pkg = manifestOf(name);
  if (!pkg) throw new Error(`build-service: ${name} is needed by the bundle's native packages but is not installed (run npm ci)`);
  copied.add(name);
  cpSync(join(root, 'node_modules', name), join(outdir, 'node_modules', name), { recursive: true, dereference: true });
  for (const dep of Object.keys(pkg.dependencies ?? {})) copyPackage(dep);
  for (const dep of Object.keys(pkg.optionalDependencies ?? {})) {
    const optional = manifestOf(dep);
    if (optional && fitsPlatform(optional)) copyPackage(dep);
  }
}
for (const name of NATIVE) copyPackage(name);

// /docs serves Swagger UI's bundle and stylesheet from the installed package (http/docs.ts resolves
// swagger-ui-dist/package.json): those two files, not its 12 MB.
const swagger = join(outdir, 'node_modules/swagger-ui-dist');
mkdirSync(swagger, { recursive: true });
for (const file of ['package.json', 'LICENSE', 'swagger-ui-bundle.js', 'swagger-ui.css']) {
  copyFileSync(join(root, 'node_modules/swagger-ui-dist', file), join(swagger, file));
}

if (!quiet) {
  const bytes = Object.values(outputs).reduce((a, b) => a + b, 0);
  console.error(`build/service: ${Object.keys(outputs).length} modules, ${(bytes / 1e6).toFixed(1)} MB of JavaScript; native packages ${[...copied].join(', ')}; in ${Math.round(performance.now() - t0)} ms`);
}
