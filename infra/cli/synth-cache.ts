/**
 * The in-process synth's output, kept on disk per build of the CLI bundle and per environment and
 * image. The charts and the environments' specs are code inside the bundle, so one bundle given
 * the same options synthesizes the same objects every time: a hit skips loading cdk8s and zod and
 * running the charts, about a third of a no-op `kreg deploy`. Everything after the synth (the
 * server-side dry run, the diff against the live objects, readiness, prune) runs as always.
 *
 * Only the bundle has a build id (a hash of its files, written by infra/scripts/build-cli.mjs);
 * running from source never reads or writes the cache, so an edited chart is always synthesized.
 * A cache that cannot be read or written is no cache: nothing fails because of it.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { KubeObject } from '../engine/index.js';

/** Entries kept; older ones (by last write) are removed when a new one is written. */
const KEEP = 32;

export interface SynthCache {
  read(): KubeObject[] | undefined;
  write(objects: KubeObject[]): void;
}

/** `$KREG_CACHE_DIR`, else `$XDG_CACHE_HOME/kreg`, else `~/.cache/kreg`. */
export function cacheDir(environ: NodeJS.ProcessEnv): string {
  if (environ.KREG_CACHE_DIR) return environ.KREG_CACHE_DIR;
  return join(environ.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kreg');
}

export function synthCache(buildId: string | undefined, options: { env: string; image?: string }, environ: NodeJS.ProcessEnv): SynthCache | undefined {
  if (!buildId || environ.KREG_SYNTH_CACHE === '0') return undefined;
  const dir = join(cacheDir(environ), 'synth');
  const key = createHash('sha256')
    .update(JSON.stringify({ buildId, env: options.env, image: options.image ?? null }))
    .digest('hex')
    .slice(0, 32);
  const file = join(dir, `${key}.json`);
  return {
    read() {
      try {
        const objects = JSON.parse(readFileSync(file, 'utf8')) as unknown;
        return Array.isArray(objects) ? (objects as KubeObject[]) : undefined;
      } catch {
        return undefined;
      }
    },
    write(objects) {
      try {
        mkdirSync(dir, { recursive: true });
        // Written whole under another name, then renamed: a concurrent reader sees all of it or nothing.
        const partial = `${file}.${process.pid}.partial`;
        writeFileSync(partial, JSON.stringify(objects));
        renameSync(partial, file);
        const entries = readdirSync(dir)
          .filter((f) => f.endsWith('.json'))
          .map((f) => ({ f, at: statSync(join(dir, f)).mtimeMs }))
          .sort((a, b) => b.at - a.at);
        for (const { f } of entries.slice(KEEP)) rmSync(join(dir, f), { force: true });
      } catch {
        // a read-only home or a full disk: the next run synthesizes again
      }
    },
  };
}
