import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestApp, databaseModes, GOOD_PASSWORD, json, type TestApp } from './helpers.js';

interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  requestId?: string;
  errors?: Array<{ pointer: string; code: string; detail: string }>;
}

async function expectProblem(res: Response, status: number): Promise<ProblemBody> {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${await res.clone().text()}`);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const body = (await res.json()) as ProblemBody;
  assert.equal(body.status, status);
  assert.ok(body.title.length > 0, 'title');
  assert.ok(body.detail.length > 0, 'detail');
  assert.ok(body.type.length > 0, 'type');
  assert.ok(!/\bat .+:\d+:\d+/.test(JSON.stringify(body)), 'no stack trace in a problem');
  return body;
}

for (const mode of databaseModes()) describe(`registration API (app.request, ${mode.name})`, { skip: mode.skip }, () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp(await mode.start());
  });
  after(async () => {
    t.close();
    await mode.stop();
  });

  const register = (body: unknown, headers?: Record<string, string>) => t.app.request('/register', json(body, headers));
  const login = (body: unknown) => t.app.request('/login', json(body));

  test('201 with id, username, createdAt and Location', async () => {
    const res = await register({ username: 'Alice', password: GOOD_PASSWORD });
    assert.equal(res.status, 201);
    const body = (await res.json()) as { id: string; username: string; createdAt: string };
    assert.match(body.id, /^[0-9a-f-]{36}$/);
    assert.equal(body.username, 'Alice');
    assert.ok(Math.abs(Date.parse(body.createdAt) - Date.now()) < 60_000);
    assert.equal(res.headers.get('location'), `/users/${body.id}`);
    const read = await t.app.request(res.headers.get('location')!);
    assert.equal(read.status, 200);
    assert.deepEqual(await read.json(), body);
  });

  test('409 for the same name in another case or width', async () => {
    for (const username of ['alice', 'ALICE', 'Ａｌｉｃｅ', 'ａｌｉｃｅ']) {
      const problem = await expectProblem(await register({ username, password: GOOD_PASSWORD }), 409);
      assert.equal(problem.type, 'urn:kreg:problem:username-taken');
      assert.deepEqual(problem.errors?.map((e) => e.pointer), ['#/username']);
    }
  });

  test('400 with field errors for each invalid username', async () => {
    const cases: Array<[string, string]> = [
      ['ab', 'length'],
      ['a'.repeat(33), 'length'],
      ['ali\u200Bce', 'invisible_characters'],
      ['abc\u202Edef', 'invisible_characters'],
      ['bob\u2066x', 'invisible_characters'],
      ['al ice', 'characters'],
      ['  alice  ', 'characters'],
      ['ab¼', 'characters'],
      ['al@ice', 'characters'],
      ['.alice', 'characters'],
      ['bob\u0007x', 'control_characters'],
    ];
    for (const [username, code] of cases) {
      const problem = await expectProblem(await register({ username, password: GOOD_PASSWORD }), 400);
      assert.equal(problem.type, 'urn:kreg:problem:validation-failed');
      assert.deepEqual(
        problem.errors?.map((e) => [e.pointer, e.code]),
        [['#/username', code]],
        `username ${JSON.stringify(username)}`,
      );
    }
  });

  test('accepts letters of any script, digits and . _ -', async () => {
    for (const username of ['josé.garcía', 'Ωmega_1', '東京-user', 'x1_-.z']) {
      const res = await register({ username, password: GOOD_PASSWORD });
      assert.equal(res.status, 201, `${username}: ${await res.clone().text()}`);
    }
  });

  test('400 for short, long, common and same-as-username passwords; 8 and 128 code points pass', async () => {
    const cases: Array<[string, string, string]> = [
      ['pw-short', 'seven77', 'length'],
      ['pw-long', 'x'.repeat(129), 'length'],
      ['pw-common', 'password1', 'too_common'],
      ['pw-common2', 'Qwertyuiop', 'too_common'],
      ['pw-same-x', 'PW-SAME-X', 'same_as_username'],
      ['Ｐw-same2', 'pw-same2', 'same_as_username'],
    ];
    for (const [username, password, code] of cases) {
      const problem = await expectProblem(await register({ username, password }), 400);
      assert.deepEqual(problem.errors?.map((e) => [e.pointer, e.code]), [['#/password', code]], password);
      assert.ok(!JSON.stringify(problem).includes(password), 'the password is not echoed back');
    }
    assert.equal((await register({ username: 'pw-eight', password: 'zq8!vTm#' })).status, 201);
    // 128 code points of a 4-byte character: length counts characters, not UTF-16 units or bytes.
    assert.equal((await register({ username: 'pw-emoji', password: '🦦'.repeat(128) })).status, 201);
    await expectProblem(await register({ username: 'pw-emoji2', password: '🦦'.repeat(129) }), 400);
  });

  test('400 for unknown fields, missing fields and wrong types, naming each field', async () => {
    let problem = await expectProblem(await register({ username: 'carol', password: GOOD_PASSWORD, admin: true }), 400);
    assert.deepEqual(problem.errors?.map((e) => [e.pointer, e.code]), [['#/admin', 'unknown_field']]);
    problem = await expectProblem(await register({ username: 'carol' }), 400);
    assert.deepEqual(problem.errors?.map((e) => e.pointer), ['#/password']);
    problem = await expectProblem(await register({ username: 42, password: GOOD_PASSWORD }), 400);
    assert.deepEqual(problem.errors?.map((e) => e.pointer), ['#/username']);
    problem = await expectProblem(await register([1, 2]), 400);
    assert.ok(problem.detail.includes('object'), problem.detail);
  });

  test('400 for malformed JSON, 415 for another content type', async () => {
    const bad = await expectProblem(await register('{"username": "x",'), 400);
    assert.match(bad.detail, /not valid JSON/);
    const res = await t.app.request('/register', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'username=x',
    });
    await expectProblem(res, 415);
    const form = await t.app.request('/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'username=x&password=y',
    });
    await expectProblem(form, 415);
  });

  test('413 for a body over the limit, with or without Content-Length', async () => {
    const big = JSON.stringify({ username: 'dave', password: 'x'.repeat(20_000) });
    await expectProblem(await register(big), 413);
    const chunked = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(big));
        controller.close();
      },
    });
    const res = await t.app.request('/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chunked,
      duplex: 'half',
    } as RequestInit);
    await expectProblem(res, 413);
  });

  test('404 for unknown routes and unknown users, 405 with Allow for wrong methods', async () => {
    await expectProblem(await t.app.request('/nope'), 404);
    await expectProblem(await t.app.request('/users/00000000-0000-4000-8000-000000000000'), 404);
    await expectProblem(await t.app.request('/users/not-a-uuid'), 400);
    const get = await expectProblem(await t.app.request('/register'), 405);
    assert.match(get.detail, /POST/);
    const res = await t.app.request('/readyz', { method: 'DELETE' });
    assert.equal(res.headers.get('allow'), 'GET, HEAD');
    await expectProblem(res, 405);
  });

  test('login: 200 for the right password in any case of the name, 401 otherwise, same body either way', async () => {
    const ok = await login({ username: 'ALICE', password: GOOD_PASSWORD });
    assert.equal(ok.status, 200);
    assert.deepEqual(Object.keys((await ok.json()) as object).sort(), ['id', 'session', 'username']);

    const wrong = await expectProblem(await login({ username: 'alice', password: 'not-the-password' }), 401);
    const unknown = await expectProblem(await login({ username: 'nobody-here', password: 'not-the-password' }), 401);
    const strip = ({ requestId: _r, ...rest }: ProblemBody) => rest;
    assert.deepEqual(strip(wrong), strip(unknown), 'unknown user and wrong password look the same');
    await expectProblem(await login({ username: 'alice' }), 400);
    await expectProblem(await login({ username: 'alice', password: GOOD_PASSWORD, remember: true }), 400);
  });

  test('request id: generated, or taken from a well-formed incoming header only', async () => {
    const generated = await t.app.request('/livez');
    assert.match(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    const kept = await t.app.request('/livez', { headers: { 'x-request-id': 'trace-abc-123456' } });
    assert.equal(kept.headers.get('x-request-id'), 'trace-abc-123456');
    const replaced = await t.app.request('/livez', { headers: { 'x-request-id': 'bad id\twith "quotes"' } });
    assert.match(replaced.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  });

  test('every kind of answer carries the request id and the security headers', async () => {
    const json = { 'content-type': 'application/json' };
    const answers: Array<[string, Response, number]> = [
      ['livez', await t.app.request('/livez'), 200],
      ['a validation problem', await t.app.request('/login', { method: 'POST', headers: json, body: '{"username":"x"}' }), 400],
      ['malformed JSON (thrown, answered by onError)', await t.app.request('/login', { method: 'POST', headers: json, body: '{' }), 400],
      ['wrong credentials', await t.app.request('/login', { method: 'POST', headers: json, body: JSON.stringify({ username: 'nobody-here', password: 'not-the-password' }) }), 401],
      ['not found', await t.app.request('/nowhere'), 404],
      ['method not allowed', await t.app.request('/register'), 405],
      ['metrics', await t.app.request('/metrics'), 200],
    ];
    for (const [what, res, status] of answers) {
      assert.equal(res.status, status, what);
      const id = res.headers.get('x-request-id') ?? '';
      assert.match(id, /^[0-9a-f-]{36}$/, `${what}: X-Request-Id`);
      if (res.headers.get('content-type')?.startsWith('application/problem+json')) {
        assert.equal(((await res.json()) as ProblemBody).requestId, id, `${what}: the body names the same request id`);
      }
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', what);
      assert.equal(res.headers.get('x-frame-options'), 'SAMEORIGIN', what);
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer', what);
      assert.equal(res.headers.get('strict-transport-security'), 'max-age=15552000; includeSubDomains', what);
      assert.equal(res.headers.get('content-security-policy'), "default-src 'none'; frame-ancestors 'none'", what);
      assert.equal(res.headers.get('connection'), null, `${what}: not draining, so no Connection: close`);
    }
  });

  test('livez/readyz follow the lifecycle', async () => {
    assert.equal((await t.app.request('/livez')).status, 200);
    assert.equal((await t.app.request('/readyz')).status, 200);
    t.lifecycle.markDraining();
    try {
      const problem = await expectProblem(await t.app.request('/readyz'), 503);
      assert.match(problem.detail, /shutting down/);
      assert.equal((await t.app.request('/livez')).status, 200, 'a draining process is still alive');
    } finally {
      t.lifecycle.phase = 'ready';
    }
  });

  test('openapi.json is generated from the validating schemas; /docs serves a page', async () => {
    const res = await t.app.request('/openapi.json');
    assert.equal(res.status, 200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, { properties?: Record<string, unknown>; additionalProperties?: unknown }> };
    };
    assert.equal(doc.openapi, '3.1.0');
    assert.deepEqual(Object.keys(doc.paths['/register']!.post!.responses).sort(), ['201', '400', '409', '413', '415', '429', '503']);
    assert.ok(doc.paths['/login']!.post!.responses['401']);
    const registerSchema = doc.components.schemas.RegisterRequest!;
    assert.deepEqual(Object.keys(registerSchema.properties ?? {}).sort(), ['password', 'username']);
    assert.equal(registerSchema.additionalProperties, false, 'unknown fields are documented as rejected');
    // The constraints a client or a fuzzer can check are in the document (test:contract fuzzes them).
    const username = registerSchema.properties!.username as { minLength: number; maxLength: number; pattern: string };
    assert.deepEqual([username.minLength, username.maxLength], [3, 32]);
    assert.ok(new RegExp(username.pattern, 'u').test('Ａｌｉｃｅ') && !new RegExp(username.pattern, 'u').test(' alice'));
    const password = registerSchema.properties!.password as { minLength: number; maxLength: number };
    assert.deepEqual([password.minLength, password.maxLength], [8, 128]);
    const invalid = doc.components.schemas.RegisterInvalidProblem as unknown as {
      properties: { errors: { items: { properties: { code: { enum: string[] } } } } };
    };
    assert.ok(invalid.properties.errors.items.properties.code.enum.includes('too_common'));
    const docs = await t.app.request('/docs');
    assert.equal(docs.status, 200);
    assert.match(await docs.text(), /<script src="\/docs\/assets\/init\.js">/);
    assert.match(await (await t.app.request('/docs/assets/init.js')).text(), /url: '\/openapi\.json'/);
  });

  test('metrics count requests by route pattern and registrations by outcome', async () => {
    await t.app.request('/users/00000000-0000-4000-8000-000000000001');
    await t.app.request('/some/random/path/123');
    const text = await (await t.app.request('/metrics')).text();
    assert.match(text, /http_requests_total\{method="POST",route="\/register",status="201"\} [1-9]/);
    assert.match(text, /http_requests_total\{method="GET",route="\/users\/:id",status="404"\} [1-9]/);
    assert.match(text, /route="unmatched"/);
    assert.ok(!text.includes('/some/random/path'), 'raw paths never become labels');
    assert.match(text, /registrations_total\{outcome="created"\} [1-9]/);
    assert.match(text, /registrations_total\{outcome="duplicate"\} [1-9]/);
    assert.match(text, /registrations_total\{outcome="invalid"\} [1-9]/);
    assert.match(text, /logins_total\{outcome="failure"\} [1-9]/);
    assert.match(text, /http_request_duration_seconds_bucket/);
  });

  test('no password appears in any log line', () => {
    const logs = t.logs.text;
    assert.ok(t.logs.lines.length > 10, 'requests were logged');
    for (const secret of [GOOD_PASSWORD, 'not-the-password', 'password1', 'zq8!vTm#']) {
      assert.ok(!logs.includes(secret), `log contains ${secret}`);
    }
    assert.ok(!logs.includes('$argon2id$'), 'no hash in logs either');
  });
});

describe('rate limiting', () => {
  test('429 with Retry-After once a client exceeds its budget; other clients unaffected', async () => {
    const t = await createTestApp({ RATE_LIMIT_REGISTER: '3', RATE_LIMIT_LOGIN: '2', RATE_LIMIT_WINDOW_SECONDS: '60', TRUST_PROXY_HOPS: '1' });
    try {
      const from = (ip: string, i: number) =>
        t.app.request('/register', json({ username: `rl-${ip.replaceAll('.', '')}-${i}`, password: GOOD_PASSWORD }, { 'x-forwarded-for': ip }));
      for (let i = 0; i < 3; i++) assert.equal((await from('10.0.0.1', i)).status, 201);
      const limited = await from('10.0.0.1', 99);
      await expectProblem(limited, 429);
      const retryAfter = Number(limited.headers.get('retry-after'));
      assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
      assert.equal((await from('10.0.0.2', 0)).status, 201, 'another client has its own budget');

      const badLogin = () => t.app.request('/login', json({ username: 'x', password: 'y' }, { 'x-forwarded-for': '10.0.0.3' }));
      assert.equal((await badLogin()).status, 401);
      assert.equal((await badLogin()).status, 401);
      await expectProblem(await badLogin(), 429);
      const metrics = await (await t.app.request('/metrics')).text();
      assert.match(metrics, /registrations_total\{outcome="rate_limited"\} 1/);
      assert.match(metrics, /logins_total\{outcome="rate_limited"\} 1/);
    } finally {
      t.close();
    }
  });
});

describe('load shedding', () => {
  test('503 with Retry-After when the hashing queue is full, instead of queueing without bound', async () => {
    const t = await createTestApp({ HASH_CONCURRENCY: '1', HASH_QUEUE_LIMIT: '2' });
    try {
      const responses = await Promise.all(
        Array.from({ length: 12 }, (_, i) => t.app.request('/register', json({ username: `shed-${i}`, password: GOOD_PASSWORD }))),
      );
      const statuses = responses.map((r) => r.status);
      const created = statuses.filter((s) => s === 201).length;
      const shed = responses.filter((r) => r.status === 503);
      assert.equal(created, 3, `1 hashing + 2 queued succeed: ${statuses}`);
      assert.equal(shed.length, 9, `${statuses}`);
      for (const r of shed) {
        const body = await expectProblem(r, 503);
        assert.equal(body.type, 'urn:kreg:problem:overloaded');
        assert.ok(Number(r.headers.get('retry-after')) >= 1);
      }
      assert.deepEqual(t.hasher.stats(), { inFlight: 0, queued: 0, rejected: 9 });
    } finally {
      t.close();
    }
  });
});
