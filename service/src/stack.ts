/**
 * Stacks that name the TypeScript, for the bundled service (infra/scripts/build-service.mjs).
 *
 * Node's own source-map support (--enable-source-maps) parses every map when its module loads: for
 * the bundle's 1.4 MB map that added a fifth of a second to every start, measured here, to serve
 * the few stacks a healthy process ever logs. This maps a logged stack on demand instead, reading a
 * bundle's map the first time one of its frames is logged. From source (tsx) stacks already point
 * at the TypeScript and pass through unchanged.
 */
import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';

const maps = new Map<string, SourceMap | undefined>();

function mapOf(file: string): SourceMap | undefined {
  if (!maps.has(file)) {
    let map: SourceMap | undefined;
    try {
      // The bundle writes its map beside it (sourcemap: 'linked'); node_modules and Node's internals have none.
      map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8')));
    } catch {
      map = undefined; // no map, or not one: the frame stays as it is
    }
    maps.set(file, map);
  }
  return maps.get(file);
}

// "    at fn (file:///app/build/service/src/server.js:123:45)" or "    at /app/…/server.js:123:45"
const FRAME = /((?:file:\/\/)?\/[^\s()]+\.m?js):(\d+):(\d+)(\)?)$/;

/** `stack` with each frame of a source-mapped file rewritten to the original file, line and column. */
export function sourceMappedStack(stack: string): string {
  return stack
    .split('\n')
    .map((line) => {
      const m = FRAME.exec(line);
      if (!m) return line;
      const [whole, location, lineNo, column, close] = m as unknown as [string, string, string, string, string];
      const file = location.startsWith('file://') ? fileURLToPath(location) : location;
      const entry = mapOf(file)?.findEntry(Number(lineNo) - 1, Number(column) - 1);
      if (!entry || !('originalSource' in entry) || !entry.originalSource) return line;
      // Sources are relative to the map (../../../service/src/app.ts): name them from the repository root.
      const original = entry.originalSource.replace(/^(?:file:\/\/)?(?:\.\.\/)+/, '').replace(/^.*?\/(service|node_modules)\//, '$1/');
      return line.slice(0, line.length - whole.length) + `${original}:${entry.originalLine + 1}:${entry.originalColumn + 1}${close}`;
    })
    .join('\n');
}
