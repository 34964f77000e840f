import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { cacheDir, synthCache } from '../../infra/cli/synth-cache.js';
import { desiredObjects } from '../../infra/cli/synth.js';

describe('synth cache: one bundle, one environment and image, one synth', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kreg-synth-cache-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const environ = { KREG_CACHE_DIR: dir };

  test('what was written is read back whole, for the same build, environment and image only', () => {
    const objects = desiredObjects({ env: 'dev' });
    const cache = synthCache('build-a', { env: 'dev' }, environ)!;
    assert.equal(cache.read(), undefined, 'empty at first');
    cache.write(objects);
    assert.deepEqual(synthCache('build-a', { env: 'dev' }, environ)!.read(), objects);
    assert.equal(synthCache('build-b', { env: 'dev' }, environ)!.read(), undefined, 'another build synthesizes again');
    assert.equal(synthCache('build-a', { env: 'prod' }, environ)!.read(), undefined, 'another environment');
    assert.equal(synthCache('build-a', { env: 'dev', image: 'kreg/registration:next' }, environ)!.read(), undefined, 'another image');
  });

  test('no build id (running from source) or KREG_SYNTH_CACHE=0: no cache', () => {
    assert.equal(synthCache(undefined, { env: 'dev' }, environ), undefined);
    assert.equal(synthCache('build-a', { env: 'dev' }, { ...environ, KREG_SYNTH_CACHE: '0' }), undefined);
  });

  test('keeps the 32 newest entries', () => {
    const own = mkdtempSync(join(dir, 'keep-'));
    const list = () => readdirSync(join(own, 'synth'));
    for (let i = 0; i < 40; i++) {
      const before = new Set(i === 0 ? [] : list());
      synthCache(`build-${i}`, { env: 'dev' }, { KREG_CACHE_DIR: own })!.write([]);
      // Each new entry dated one second after the last (from 1970 on, so older than any real write),
      // so which ones are oldest does not depend on the clock's resolution.
      for (const f of list()) if (!before.has(f)) utimesSync(join(own, 'synth', f), i + 1, i + 1);
    }
    assert.equal(list().length, 32);
    for (let i = 0; i < 40; i++) {
      assert.equal(Boolean(synthCache(`build-${i}`, { env: 'dev' }, { KREG_CACHE_DIR: own })!.read()), i >= 8, `build-${i}`);
    }
  });

  test('a cache that cannot be written or read is no cache, and no error', () => {
    const blocked = join(dir, 'a-file');
    writeFileSync(blocked, 'not a directory');
    const cache = synthCache('build-a', { env: 'dev' }, { KREG_CACHE_DIR: blocked })!;
    cache.write([{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }]);
    assert.equal(cache.read(), undefined);
    const corrupt = synthCache('build-c', { env: 'dev' }, environ)!;
    corrupt.write([]);
    for (const f of readdirSync(join(dir, 'synth'))) writeFileSync(join(dir, 'synth', f), '{ half');
    assert.equal(corrupt.read(), undefined);
  });

  test('where it lives: KREG_CACHE_DIR, else XDG_CACHE_HOME/kreg, else ~/.cache/kreg', () => {
    assert.equal(cacheDir({ KREG_CACHE_DIR: '/x' }), '/x');
    assert.equal(cacheDir({ XDG_CACHE_HOME: '/y' }), '/y/kreg');
    assert.match(cacheDir({}), /\.cache\/kreg$/);
  });
});
