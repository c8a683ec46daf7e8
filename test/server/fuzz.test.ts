import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { startTestServer, type TestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor, writeArtifact } from '../helpers/server-fixtures.js';

/**
 * Bad input never gives a 5xx: for each route, 1,000 random and malformed bodies, headers and
 * query strings must each get a 4xx with a snake_case error code (or a success), and the server
 * must still answer /healthz afterwards. The seed is printed so a failure can be replayed with
 * FUZZ_SEED=<seed>.
 */
const seed = Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 31);
const NUM_RUNS = 1000;

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 80 });
const headerValue = fc.oneof(printable, fc.constantFrom('', '*', '"x"', 'W/"x"', 'bytes=0-1', 'bytes=-5', 'bytes=9999999999-', 'bytes=1-0,3-4'));

const validReport = {
  worker_id: 'w-fuzz',
  event: 'failure',
  from_version: '1.0.0',
  to_version: '1.1.0',
  channel: 'stable',
  platform: 'linux-x64',
  reason: 'download_failed',
};
/** A valid body with one field replaced by something random, removed, or an extra field added. */
function mutated(valid: Record<string, unknown>) {
  return fc.oneof(
    fc.record({ key: fc.constantFrom(...Object.keys(valid)), value: fc.jsonValue() }).map(({ key, value }) => ({ ...valid, [key]: value })),
    fc.constantFrom(...Object.keys(valid)).map((key) => {
      const copy = { ...valid };
      delete copy[key];
      return copy;
    }),
    fc.record({ key: printable, value: fc.jsonValue() }).map(({ key, value }) => ({ ...valid, [key]: value })),
  );
}

function bodyArbitrary(valid: Record<string, unknown>) {
  return fc.oneof(
    mutated(valid).map((value) => JSON.stringify(value)),
    fc.jsonValue().map((value) => JSON.stringify(value)),
    fc.string({ maxLength: 200 }),
    fc.constantFrom('', '{', 'null', '[]', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}', '\u0000'),
    fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  );
}

const contentType = fc.oneof(
  fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data'),
  printable,
);

function queryArbitrary(valid: Record<string, string>) {
  if (Object.keys(valid).length === 0) return fc.dictionary(printable, printable, { maxKeys: 5 });
  return fc.oneof(
    fc.dictionary(printable, printable, { maxKeys: 5 }),
    fc.record({ key: fc.constantFrom(...Object.keys(valid)), value: printable }).map(({ key, value }) => ({ ...valid, [key]: value })),
  );
}

describe(`fuzzing every route (fast-check seed ${seed}, ${NUM_RUNS} runs each)`, () => {
  let server: TestServer;
  let enrollmentToken: string;
  /** Worker `w`'s own credential (pool canary): worker routes are fuzzed with it as well as with the pool token. */
  let credential: string;
  before(async () => {
    console.log(`fuzz seed: ${seed} (replay with FUZZ_SEED=${seed})`);
    server = await startTestServer({ rateLimit: { max: 1_000_000, windowSeconds: 60 }, enrollRateLimit: { max: 1_000_000, windowSeconds: 60 } });
    enrollmentToken = (await server.addEnrollmentToken('canary')).token;
    const enrolled = await server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload: { enrollment_token: enrollmentToken, worker_id: 'w' } });
    credential = enrolled.json<{ credential: string }>().credential;
    await publishRelease(server.storeDir, releaseFor({ serial: 1 }), [server.key]);
    await writeArtifact(server.storeDir, '1.4.0', 'bytebiota-worker-1.4.0-linux-x64', Buffer.alloc(2048, 7));
  });
  after(async () => server.close());

  function authHeader(role: 'worker' | 'admin') {
    const good = role === 'worker' ? server.tokens.canary : server.tokens.admin;
    return fc.oneof(
      { weight: 6, arbitrary: fc.constant(`Bearer ${good}`) },
      { weight: role === 'worker' ? 3 : 1, arbitrary: fc.constant(`Bearer ${credential}`) },
      { weight: 1, arbitrary: printable },
      { weight: 1, arbitrary: printable.map((text) => `Bearer ${text}`) },
      { weight: 1, arbitrary: fc.constant(`Bearer ${role === 'worker' ? server.tokens.admin : server.tokens.canary}`) },
    );
  }

  async function assertNever5xx(request: InjectOptions): Promise<void> {
    const res = await server.app.inject(request);
    if (res.statusCode >= 500) {
      assert.fail(`${request.method ?? 'GET'} ${String(request.url)} gave ${res.statusCode}: ${res.body}`);
    }
    if (res.statusCode >= 400) {
      const body = JSON.parse(res.body) as { error?: { code?: unknown; message?: unknown } };
      assert.match(String(body.error?.code), /^[a-z][a-z0-9_]*$/);
      assert.equal(typeof body.error?.message, 'string');
    }
  }

  function headers(role: 'worker' | 'admin') {
    return fc.record(
      {
        authorization: authHeader(role),
        'content-type': contentType,
        'if-none-match': headerValue,
        range: headerValue,
        'if-range': headerValue,
        'x-request-id': headerValue,
      },
      { requiredKeys: ['authorization'] },
    );
  }

  function fuzzGet(name: string, path: string, role: 'worker' | 'admin', validQuery: Record<string, string>) {
    test(`GET ${name}`, async () => {
      await fc.assert(
        fc.asyncProperty(headers(role), queryArbitrary(validQuery), async (h, query) => {
          await assertNever5xx({ method: 'GET', url: path, query, headers: h });
        }),
        { numRuns: NUM_RUNS, seed },
      );
    });
  }

  function fuzzBody(method: 'POST' | 'PUT', path: fc.Arbitrary<string>, role: 'worker' | 'admin', valid: Record<string, unknown>) {
    test(`${method} ${valid === validReport ? 'report' : JSON.stringify(Object.keys(valid))}`, async () => {
      await fc.assert(
        fc.asyncProperty(headers(role), path, bodyArbitrary(valid), async (h, url, payload) => {
          await assertNever5xx({ method, url, payload, headers: h });
        }),
        { numRuns: NUM_RUNS, seed },
      );
    });
  }

  fuzzGet('latest', '/api/worker-updates/latest', 'worker', { channel: 'stable', platform: 'linux-x64', worker_id: 'w', current_version: '1.0.0' });
  fuzzGet('fleet', '/api/admin/fleet', 'admin', { limit: '10', failures: '5' });
  fuzzGet('healthz', '/healthz', 'worker', {});
  fuzzGet('metrics', '/metrics', 'worker', {});

  test('GET artifacts with random paths and range headers', async () => {
    const segment = fc.oneof(printable.map((s) => encodeURIComponent(s)), fc.constantFrom('1.4.0', 'bytebiota-worker-1.4.0-linux-x64', '..', '%2e%2e', '%00', '%E0%A4%A'));
    await fc.assert(
      fc.asyncProperty(headers('worker'), segment, segment, async (h, version, file) => {
        await assertNever5xx({ method: 'GET', url: `/api/worker-updates/artifacts/${version}/${file}`, headers: h });
      }),
      { numRuns: NUM_RUNS, seed },
    );
  });

  fuzzBody('POST', fc.constant('/api/worker-updates/report'), 'worker', validReport);
  fuzzBody('POST', fc.constant('/api/workers/register'), 'worker', { worker_id: 'w', current_version: '1.0.0', platform: 'linux-x64', channel: 'stable' });
  fuzzBody('POST', fc.constant('/api/workers/heartbeat'), 'worker', {
    worker_id: 'w',
    current_version: '1.0.0',
    state: 'working',
    update: { to_version: '1.1.0', state: 'downloading', download_percent: 10 },
  });
  fuzzBody(
    'PUT',
    fc.oneof(fc.constant('/api/admin/pools/canary/policy'), printable.map((pool) => `/api/admin/pools/${encodeURIComponent(pool)}/policy`)),
    'admin',
    { auto_update: true },
  );

  // Worker identity: enrollment (no bearer), the claim, and the admin routes for enrollment tokens and revocation.
  test('POST enroll', async () => {
    const valid = { enrollment_token: enrollmentToken, worker_id: 'w-enroll', platform: 'linux-x64', channel: 'stable' };
    await fc.assert(
      fc.asyncProperty(headers('worker'), bodyArbitrary(valid), async (h, payload) => {
        await assertNever5xx({ method: 'POST', url: '/api/workers/enroll', payload, headers: h });
      }),
      { numRuns: NUM_RUNS, seed },
    );
  });
  fuzzBody('POST', fc.constant('/api/workers/claim'), 'worker', { worker_id: 'w' });
  fuzzBody('POST', fc.constant('/api/admin/enrollment-tokens'), 'admin', { pool: 'canary', expires_in_s: 3600, max_uses: 5, label: 'fuzz' });
  fuzzGet('enrollment tokens', '/api/admin/enrollment-tokens', 'admin', {});
  // Rotation: step 1 with the worker's credential (or anything else), step 3 with a bearer that is
  // a pending credential, a live one, or junk.
  for (const step of ['rotate', 'confirm'] as const) {
    test(`POST credential/${step}`, async () => {
      await fc.assert(
        fc.asyncProperty(headers('worker'), bodyArbitrary({ worker_id: 'w' }), async (h, payload) => {
          await assertNever5xx({ method: 'POST', url: `/api/workers/credential/${step}`, payload, headers: h });
        }),
        { numRuns: NUM_RUNS, seed },
      );
    });
  }
  test('POST revoke and rotate routes with random ids', async () => {
    const segment = fc.oneof(printable.map((text) => encodeURIComponent(text)), fc.constantFrom('w', 'w-enroll', '0123456789abcdef', '..', '%00'));
    const route = fc.constantFrom('/api/admin/workers/{}/revoke', '/api/admin/workers/{}/rotate', '/api/admin/enrollment-tokens/{}/revoke');
    await fc.assert(
      fc.asyncProperty(headers('admin'), route, segment, async (h, template, id) => {
        await assertNever5xx({ method: 'POST', url: template.replace('{}', id), headers: h });
      }),
      { numRuns: NUM_RUNS, seed },
    );
  });

  test('the server is still up after all of it', async () => {
    const res = await server.app.inject({ url: '/healthz' });
    assert.equal(res.statusCode, 200);
  });
});
