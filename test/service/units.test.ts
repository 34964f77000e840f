import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseOptions } from '@node-rs/argon2';
import { ConfigError, loadConfig } from '../../service/src/config.js';
import { createLogger, describeError } from '../../service/src/logger.js';
import { redactUrlPasswords } from '../../service/src/redact.js';
import { RateLimiter } from '../../service/src/http/rate-limit.js';
import { PasswordHasher } from '../../service/src/users/hasher.js';
import {
  canonicalUsername,
  checkPassword,
  checkUsername,
  commonPasswordCount,
  displayUsername,
  USERNAME_EXCLUDED,
  USERNAME_EXCLUDED_FIRST,
  USERNAME_PATTERN_SOURCE,
} from '../../service/src/users/credentials.js';

describe('config', () => {
  test('defaults', () => {
    const c = loadConfig({});
    assert.equal(c.port, 8080);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.database.url, 'file:./data/registrations.db');
    assert.equal(c.database.migrate, 'auto');
    assert.deepEqual(
      { m: c.hash.memoryKib, t: c.hash.iterations, p: c.hash.parallelism },
      { m: 19456, t: 2, p: 1 },
    );
    assert.ok(c.hash.concurrency >= 1 && c.hash.queueLimit >= c.hash.concurrency);
    assert.equal(c.bodyLimitBytes, 16384);
  });

  test('empty strings mean unset; values are parsed and validated', () => {
    const c = loadConfig({ PORT: '', RATE_LIMIT_REGISTER: '0', SHUTDOWN_DRAIN_SECONDS: '1.5', HASH_CONCURRENCY: '2' });
    assert.equal(c.port, 8080);
    assert.equal(c.rateLimit.register, 0);
    assert.equal(c.shutdown.drainSeconds, 1.5);
    assert.equal(c.hash.concurrency, 2);
  });

  test('each bad value names its variable', () => {
    const bad: Array<[Record<string, string>, string]> = [
      [{ PORT: '70000' }, 'PORT'],
      [{ DATABASE_TIMEOUT_MS: '50' }, 'DATABASE_TIMEOUT_MS'],
      [{ DATABASE_TIMEOUT_MS: 'soon' }, 'DATABASE_TIMEOUT_MS'],
      [{ DATABASE_STARTUP_WAIT_SECONDS: '601' }, 'DATABASE_STARTUP_WAIT_SECONDS'],
      [{ PORT: '-1' }, 'PORT'],
      [{ HASH_ITERATIONS: '1' }, 'HASH_ITERATIONS'],
      [{ HASH_CONCURRENCY: '64' }, 'HASH_CONCURRENCY'],
      [{ SHUTDOWN_DRAIN_SECONDS: '30', SHUTDOWN_GRACE_SECONDS: '10' }, 'SHUTDOWN_GRACE_SECONDS'],
      [{ DATABASE_MIGRATE: 'sometimes' }, 'DATABASE_MIGRATE'],
      [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
      [{ DATABASE_URL: 'postgres://kreg:pw@db:0/kreg' }, 'DATABASE_URL'],
      [{ DATABASE_URL: 'postgres:///kreg' }, 'DATABASE_URL'],
      [{ DATABASE_URL: 'postgresql://db/kreg?sslmode=maybe' }, 'DATABASE_URL'],
      [{ DATABASE_URL: 'http://db:65536' }, 'DATABASE_URL'],
      [{ DATABASE_POOL_SIZE: '0' }, 'DATABASE_POOL_SIZE'],
      [{ DATABASE_URL: 'libsql://kreg:token@db.example' }, 'DATABASE_URL'],
    ];
    for (const [env, variable] of bad) {
      assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && e.variable === variable, JSON.stringify(env));
    }
  });

  test('PostgreSQL URLs in libpq\'s URI form are accepted; the pool defaults to 4', () => {
    for (const url of ['postgres://kreg:pw@db:5432/kreg', 'postgresql://kreg@db/kreg?sslmode=require', 'postgres://db.example/kreg?sslmode=verify-full']) {
      assert.equal(loadConfig({ DATABASE_URL: url }).database.url, url);
    }
    assert.equal(loadConfig({}).database.poolSize, 4);
    assert.equal(loadConfig({ DATABASE_POOL_SIZE: '10' }).database.poolSize, 10);
  });

  test('a refused DATABASE_URL is echoed without its password', () => {
    assert.throws(
      () => loadConfig({ DATABASE_URL: 'postgres://kreg:p@ss:w0rd@db:99999/kreg' }),
      (e: unknown) => e instanceof ConfigError && !e.message.includes('w0rd') && e.message.includes('postgres://kreg:[redacted]@db:99999/kreg'),
    );
  });

  test('the auth token is never echoed in an error', () => {
    try {
      loadConfig({ DATABASE_AUTH_TOKEN: 'secret-token', PORT: 'x' });
    } catch (e) {
      assert.ok(!(e as Error).message.includes('secret-token'));
    }
  });
});

describe('credentials', () => {
  test('normalization: NFKC, case-folded; nothing trimmed', () => {
    assert.equal(displayUsername('Ａｌｉｃｅ'), 'Alice');
    assert.equal(displayUsername(' alice'), ' alice');
    assert.equal(canonicalUsername('ALICE'), canonicalUsername('ａｌｉｃｅ'));
    assert.equal(canonicalUsername('Ⅸ-roman'), 'ix-roman');
  });

  test('username rules hold for the name as sent', () => {
    assert.equal(checkUsername('abc'), undefined);
    assert.equal(checkUsername('a'.repeat(32)), undefined);
    assert.equal(checkUsername('a'.repeat(33))?.code, 'length');
    assert.equal(checkUsername('\u00ADabc')?.code, 'invisible_characters');
    assert.equal(checkUsername('ab\u200Dc')?.code, 'invisible_characters');
    assert.equal(checkUsername('abc\u061C')?.code, 'invisible_characters');
    assert.equal(checkUsername('abc\uFE0F')?.code, 'invisible_characters');
    assert.equal(checkUsername('\u3164abc')?.code, 'invisible_characters');
    assert.equal(checkUsername('-abc')?.code, 'characters');
    assert.equal(checkUsername(' alice')?.code, 'characters', 'surrounding spaces are refused, not trimmed');
    assert.equal(checkUsername('alice ')?.code, 'characters');
    assert.equal(checkUsername('ab😀')?.code, 'characters');
    // Letters whose NFKC form would break the shape: "¼" → "1⁄4", "ŀ" → "l·".
    assert.equal(checkUsername('ab¼')?.code, 'characters');
    assert.equal(checkUsername('aŀb')?.code, 'characters');
    // Thai SARA AM is fine inside a name, not first: its NFKC form starts with a combining mark.
    assert.equal(checkUsername('กำไร'), undefined);
    assert.equal(checkUsername('ำกไ')?.code, 'characters');
    // Counted in code points as sent: "e" + combining acute is two, though NFKC makes it one.
    assert.equal(checkUsername('be\u0301'), undefined);
    assert.equal(checkUsername('𝒜𝒷𝒸'), undefined, 'astral letters count once each');
    assert.equal(checkUsername('Ａｌｉｃｅ'), undefined);
  });

  test('the published pattern is the rule, and its exclusion lists match this Node\'s Unicode data', () => {
    const published = new RegExp(USERNAME_PATTERN_SOURCE, 'u');
    const shape = /^[\p{L}\p{M}\p{N}._-]*$/u;
    const invisible = /[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}]/u;
    const letterMarkDigit = /^[\p{L}\p{M}\p{N}]$/u;
    const starter = /^[\p{L}\p{N}]/u;
    const excluded: number[] = [];
    const excludedFirst: number[] = [];
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const c = String.fromCodePoint(cp);
      if (!letterMarkDigit.test(c)) continue;
      const nfkc = c.normalize('NFKC');
      if (invisible.test(c) || invisible.test(nfkc) || !shape.test(nfkc)) excluded.push(cp);
      else if (starter.test(c) && !starter.test(nfkc)) excludedFirst.push(cp);
    }
    const expand = (ranges: ReadonlyArray<readonly [number, number]>) =>
      ranges.flatMap(([from, to]) => Array.from({ length: to - from + 1 }, (_, i) => from + i));
    const hex = (cps: number[]) => cps.map((cp) => cp.toString(16));
    assert.deepEqual(hex(expand(USERNAME_EXCLUDED)), hex(excluded), `USERNAME_EXCLUDED is stale for Unicode ${process.versions.unicode}`);
    assert.deepEqual(hex(expand(USERNAME_EXCLUDED_FIRST)), hex(excludedFirst), 'USERNAME_EXCLUDED_FIRST is stale');
    // Every name the pattern admits keeps the shape once normalized, so the stored form obeys it too.
    for (const cp of [0x41, 0xe9, 0x4e2d, 0xff21, 0x2168, 0x1d49c, 0xe33, 0xff76]) {
      const name = `a${String.fromCodePoint(cp)}b`;
      assert.ok(published.test(name), name);
      assert.match(displayUsername(name), /^[\p{L}\p{N}][\p{L}\p{M}\p{N}._-]*$/u);
    }
    for (const [from] of USERNAME_EXCLUDED) assert.equal(published.test(`ab${String.fromCodePoint(from)}`), false);
  });

  test('password rules count code points and reject common passwords case-insensitively', () => {
    assert.ok(commonPasswordCount() > 10_000, `list has ${commonPasswordCount()} entries`);
    assert.equal(checkPassword('PASSWORD123', 'bob')?.code, 'too_common');
    assert.equal(checkPassword('iloveyou2', 'bob')?.code, 'too_common');
    assert.equal(checkPassword('😀😀😀😀😀😀😀', 'bob')?.code, 'length');
    assert.equal(checkPassword('😀😀😀😀😀😀😀😀', 'bob'), undefined);
    assert.equal(checkPassword('Bobby-Tables', 'bobby-tables')?.code, 'same_as_username');
  });
});

describe('rate limiter', () => {
  test('token bucket refills over the window and reports when to retry', () => {
    let now = 0;
    const limiter = new RateLimiter(2, 10, 1000, () => now);
    assert.equal(limiter.take('a').allowed, true);
    assert.equal(limiter.take('a').allowed, true);
    const denied = limiter.take('a');
    assert.equal(denied.allowed, false);
    assert.equal(denied.retryAfterSeconds, 5);
    now = 5_000;
    assert.equal(limiter.take('a').allowed, true);
    assert.equal(limiter.take('b').allowed, true, 'separate clients');
  });

  test('memory stays bounded under many distinct clients', () => {
    let now = 0;
    const limiter = new RateLimiter(5, 60, 100, () => now);
    for (let i = 0; i < 10_000; i++) {
      now += 1;
      limiter.take(`client-${i}`);
    }
    assert.ok(limiter.size <= 100, `size ${limiter.size}`);
  });

  test('limit 0 disables limiting', () => {
    const limiter = new RateLimiter(0, 60);
    for (let i = 0; i < 100; i++) assert.equal(limiter.take('x').allowed, true);
  });
});

describe('password hasher', () => {
  const config = { memoryKib: 19456, iterations: 2, parallelism: 1, concurrency: 2, queueLimit: 4 };

  test('produces self-describing argon2id hashes that verify', async () => {
    const hasher = new PasswordHasher(config);
    const encoded = await hasher.hash('a long enough password');
    const p = parseOptions(encoded);
    assert.deepEqual([p.memoryCost, p.timeCost, p.parallelism], [19456, 2, 1]);
    assert.equal(await hasher.verify(encoded, 'a long enough password'), true);
    assert.equal(await hasher.verify(encoded, 'a long enough passwordX'), false);
    assert.equal(await hasher.verify('not a hash', 'x'), false);
    assert.equal(hasher.needsRehash(encoded), false);
    assert.equal(new PasswordHasher({ ...config, iterations: 3 }).needsRehash(encoded), true);
    assert.equal(new PasswordHasher({ ...config, memoryKib: 65536 }).needsRehash(encoded), true);
  });

  test('never runs more than `concurrency` hashes at once', async () => {
    const hasher = new PasswordHasher({ ...config, queueLimit: 100 });
    let peak = 0;
    const watcher = setInterval(() => (peak = Math.max(peak, hasher.stats().inFlight)), 1);
    await Promise.all(Array.from({ length: 10 }, (_, i) => hasher.hash(`password-${i}`)));
    clearInterval(watcher);
    assert.ok(peak >= 1 && peak <= 2, `peak ${peak}`);
    assert.deepEqual(hasher.stats(), { inFlight: 0, queued: 0, rejected: 0 });
  });
});

describe('redaction', () => {
  test('a URL\'s password is replaced wherever the URL sits; nothing else changes', () => {
    assert.equal(redactUrlPasswords('connect postgres://kreg:s3cret@db:5432/kreg failed'), 'connect postgres://kreg:[redacted]@db:5432/kreg failed');
    assert.equal(redactUrlPasswords('{"url":"libsql://u:p%40ss@host"}'), '{"url":"libsql://u:[redacted]@host"}');
    assert.equal(redactUrlPasswords('two: postgres://a:x@h1/d and https://b:y@h2/'), 'two: postgres://a:[redacted]@h1/d and https://b:[redacted]@h2/');
    assert.equal(redactUrlPasswords('an unencoded @ in it: postgres://kreg:p@ss@db/kreg'), 'an unencoded @ in it: postgres://kreg:[redacted]@db/kreg');
    for (const plain of ['postgres://kreg@db/kreg', 'http://db:8080/x', 'mail me: a@b.c', 'no url']) assert.equal(redactUrlPasswords(plain), plain);
  });

  test('log lines and described errors carry no URL password', () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (l: string) => void lines.push(l) });
    logger.info({ url: 'postgres://kreg:hunter22@db/kreg' }, 'opening');
    logger.error(describeError(new Error('getaddrinfo failed for postgres://kreg:hunter22@db/kreg')), 'failed');
    assert.equal(lines.length, 2);
    for (const line of lines) {
      assert.ok(!line.includes('hunter22'), line);
      assert.match(line, /kreg:\[redacted\]@db/);
    }
  });
});
