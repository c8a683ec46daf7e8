import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { REASON_CODES } from '../../src/protocol/reason-codes.js';
import { bearer, startTestServer, type TestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor, writeArtifact } from '../helpers/server-fixtures.js';

const LATEST = '/api/worker-updates/latest?channel=stable&platform=linux-x64&worker_id=w-1&current_version=1.3.0';

function errorCode(body: string): string {
  return (JSON.parse(body) as { error: { code: string } }).error.code;
}

describe('update server routes (app.inject, real SQLite and folder store)', () => {
  let server: TestServer;
  let manifestBytes: Buffer;
  const artifact = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));

  before(async () => {
    server = await startTestServer();
    manifestBytes = await publishRelease(server.storeDir, releaseFor({ serial: 3, version: '1.4.0' }), [server.key]);
    await writeArtifact(server.storeDir, '1.4.0', 'bytebiota-worker-1.4.0-linux-x64', artifact);
  });
  after(async () => server.close());

  test('GET /healthz and /readyz answer 200', async () => {
    const health = await server.app.inject({ url: '/healthz' });
    assert.equal(health.statusCode, 200);
    assert.deepEqual(health.json(), { status: 'ok' });
    const ready = await server.app.inject({ url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    assert.equal(ready.json().status, 'ready');
  });

  test('latest serves the exact published bytes with a SHA-256 ETag, and 304 on If-None-Match', async () => {
    const res = await server.app.inject({ url: LATEST, headers: bearer(server.tokens.canary) });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.deepEqual(res.rawPayload, manifestBytes);
    const etag = `"${createHash('sha256').update(manifestBytes).digest('hex')}"`;
    assert.equal(res.headers.etag, etag);

    const again = await server.app.inject({ url: LATEST, headers: { ...bearer(server.tokens.canary), 'if-none-match': etag } });
    assert.equal(again.statusCode, 304);
    assert.equal(again.rawPayload.length, 0);
    assert.equal(again.headers.etag, etag);

    const stale = await server.app.inject({ url: LATEST, headers: { ...bearer(server.tokens.canary), 'if-none-match': '"0000"' } });
    assert.equal(stale.statusCode, 200);
  });

  test('latest: 404 no_release for a channel with no manifest and for a platform without an artifact', async () => {
    const none = await server.app.inject({ url: '/api/worker-updates/latest?channel=beta', headers: bearer(server.tokens.canary) });
    assert.equal(none.statusCode, 404);
    assert.equal(errorCode(none.body), 'no_release');
    const noPlatform = await server.app.inject({
      url: '/api/worker-updates/latest?channel=stable&platform=win32-arm64',
      headers: bearer(server.tokens.canary),
    });
    assert.equal(noPlatform.statusCode, 404);
    assert.equal(errorCode(noPlatform.body), 'no_release');
  });

  test('auth: 401 without a token, with a malformed, unknown or revoked token; 403 for the wrong role', async () => {
    const cases: Array<{ name: string; headers: Record<string, string>; status: number; code: string }> = [
      { name: 'no header', headers: {}, status: 401, code: 'unauthorized' },
      { name: 'not bearer', headers: { authorization: 'Basic dXNlcjpwYXNz' }, status: 401, code: 'unauthorized' },
      { name: 'malformed token', headers: bearer('not-a-token'), status: 401, code: 'invalid_token' },
      { name: 'unknown id', headers: bearer(`bbt_0123456789abcdef_${'A'.repeat(43)}`), status: 401, code: 'invalid_token' },
      {
        name: 'right id, wrong secret',
        headers: bearer(`bbt_${server.tokens.canaryId}_${'A'.repeat(43)}`),
        status: 401,
        code: 'invalid_token',
      },
      { name: 'admin token on a worker route', headers: bearer(server.tokens.admin), status: 403, code: 'forbidden' },
    ];
    for (const c of cases) {
      const res = await server.app.inject({ url: LATEST, headers: c.headers });
      assert.equal(res.statusCode, c.status, c.name);
      assert.equal(errorCode(res.body), c.code, c.name);
    }
    const workerOnAdmin = await server.app.inject({ url: '/api/admin/fleet', headers: bearer(server.tokens.canary) });
    assert.equal(workerOnAdmin.statusCode, 403);
    assert.equal(errorCode(workerOnAdmin.body), 'forbidden');

    const revocable = await server.addToken('worker', 'canary');
    const before = await server.app.inject({ url: LATEST, headers: bearer(revocable.token) });
    assert.equal(before.statusCode, 200);
    assert.equal(await server.fleet.revokeToken(revocable.id, new Date()), true);
    const afterRevoke = await server.app.inject({ url: LATEST, headers: bearer(revocable.token) });
    assert.equal(afterRevoke.statusCode, 401);
    assert.equal(errorCode(afterRevoke.body), 'invalid_token');
  });

  test('the token never reaches the logs', async () => {
    const tokens = [server.tokens.canary, server.tokens.stable, server.tokens.admin];
    for (const token of tokens) {
      await server.app.inject({ url: LATEST, headers: bearer(token) });
      await server.app.inject({ url: '/api/admin/fleet', headers: bearer(token) });
    }
    const text = server.logs().map((line) => JSON.stringify(line)).join('\n');
    for (const token of tokens) {
      // The secret is everything after `bbt_<16 hex id>_`; base64url itself may contain `_`,
      // so it is cut by position, never split on the separator.
      const secret = token.slice('bbt_'.length + 16 + 1);
      assert.equal(secret.length, 43, 'a whole 43-character secret is checked, never a fragment');
      assert.equal(text.includes(token), false);
      assert.equal(text.includes(secret), false);
    }
  });

  test('artifacts: whole, ranged (206), suffix range, 416, ETag and 304', async () => {
    const url = '/api/worker-updates/artifacts/1.4.0/bytebiota-worker-1.4.0-linux-x64';
    const whole = await server.app.inject({ url, headers: bearer(server.tokens.canary) });
    assert.equal(whole.statusCode, 200);
    assert.deepEqual(whole.rawPayload, artifact);
    assert.equal(whole.headers['accept-ranges'], 'bytes');
    assert.equal(whole.headers['content-length'], String(artifact.length));
    const etag = String(whole.headers.etag);
    assert.match(etag, /^".+"$/);

    const part = await server.app.inject({ url, headers: { ...bearer(server.tokens.canary), range: 'bytes=100-199' } });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers['content-range'], `bytes 100-199/${artifact.length}`);
    assert.deepEqual(part.rawPayload, artifact.subarray(100, 200));

    const suffix = await server.app.inject({ url, headers: { ...bearer(server.tokens.canary), range: 'bytes=-10' } });
    assert.equal(suffix.statusCode, 206);
    assert.deepEqual(suffix.rawPayload, artifact.subarray(artifact.length - 10));

    const outside = await server.app.inject({ url, headers: { ...bearer(server.tokens.canary), range: 'bytes=20000-' } });
    assert.equal(outside.statusCode, 416);
    assert.equal(outside.headers['content-range'], `bytes */${artifact.length}`);
    assert.equal(errorCode(outside.body), 'range_not_satisfiable');

    const notModified = await server.app.inject({ url, headers: { ...bearer(server.tokens.canary), 'if-none-match': etag } });
    assert.equal(notModified.statusCode, 304);

    const matchingIfRange = await server.app.inject({
      url,
      headers: { ...bearer(server.tokens.canary), range: 'bytes=5-9', 'if-range': etag },
    });
    assert.equal(matchingIfRange.statusCode, 206);
    assert.deepEqual(matchingIfRange.rawPayload, artifact.subarray(5, 10));

    const staleIfRange = await server.app.inject({
      url,
      headers: { ...bearer(server.tokens.canary), range: 'bytes=5-9', 'if-range': '"stale-validator"' },
    });
    assert.equal(staleIfRange.statusCode, 200);
    assert.deepEqual(staleIfRange.rawPayload, artifact);

    const missing = await server.app.inject({ url: '/api/worker-updates/artifacts/9.9.9/nothing', headers: bearer(server.tokens.canary) });
    assert.equal(missing.statusCode, 404);
    assert.equal(errorCode(missing.body), 'artifact_not_found');

    const traversal = await server.app.inject({ url: '/api/worker-updates/artifacts/1.4.0/..%2F..%2Fetc', headers: bearer(server.tokens.canary) });
    assert.equal(traversal.statusCode, 400);
  });

  test('the pool policy reaches register and heartbeat responses (default off)', async () => {
    const register = { worker_id: 'w-policy', current_version: '1.3.0', platform: 'linux-x64', channel: 'stable' };
    const first = await server.app.inject({ method: 'POST', url: '/api/workers/register', headers: bearer(server.tokens.canary), payload: register });
    assert.equal(first.statusCode, 200);
    const handshake = first.json();
    assert.equal(handshake.auto_update, false);
    assert.equal(handshake.minimum_version, '1.2.0');
    assert.equal(handshake.recommended_version, '1.4.0');
    assert.equal(handshake.latest_version, '1.4.0');
    assert.equal(handshake.heartbeat_interval_s, 30);
    assert.equal(handshake.server_time, server.clock.now().toISOString());
    // A rollout-aware server says what it takes beyond the first protocol; older workers ignore it.
    assert.deepEqual(handshake.accepts, { report_fields: ['serial', 'bytes_fetched', 'delta', 'delta_fallback'], reasons: [...REASON_CODES], identity: ['enroll', 'claim', 'rotate'] });

    const put = await server.app.inject({
      method: 'PUT',
      url: '/api/admin/pools/canary/policy',
      headers: bearer(server.tokens.admin),
      payload: { auto_update: true },
    });
    assert.equal(put.statusCode, 200);
    assert.equal(put.json().auto_update, true);

    const second = await server.app.inject({ method: 'POST', url: '/api/workers/register', headers: bearer(server.tokens.canary), payload: register });
    assert.equal(second.json().auto_update, true);
    const otherPool = await server.app.inject({
      method: 'POST',
      url: '/api/workers/register',
      headers: bearer(server.tokens.stable),
      payload: { ...register, worker_id: 'w-stable' },
    });
    assert.equal(otherPool.json().auto_update, false);

    const heartbeat = await server.app.inject({
      method: 'POST',
      url: '/api/workers/heartbeat',
      headers: bearer(server.tokens.canary),
      payload: { worker_id: 'w-policy', current_version: '1.3.0', state: 'working' },
    });
    assert.equal(heartbeat.statusCode, 200);
    assert.deepEqual(heartbeat.json(), {
      auto_update: true,
      minimum_version: '1.2.0',
      latest_version: '1.4.0',
      recommended_version: '1.4.0',
      heartbeat_interval_s: 30,
      accepts: { report_fields: ['serial', 'bytes_fetched', 'delta', 'delta_fallback'], reasons: [...REASON_CODES], identity: ['enroll', 'claim', 'rotate'] },
    });

    // The manifest fetch is logged with the pool and whether its policy is on.
    await server.app.inject({ url: LATEST, headers: bearer(server.tokens.canary) });
    const fetchLine = server.logs().filter((line) => line['event'] === 'manifest_fetch').at(-1);
    assert.equal(fetchLine?.['pool'], 'canary');
    assert.equal(fetchLine?.['auto_update'], true);
    assert.equal(fetchLine?.['result'], 'served');
    assert.equal(fetchLine?.['channel'], 'stable');
    assert.equal(typeof fetchLine?.['correlation_id'], 'string');
  });

  test('the fleet view shows heartbeat update progress and recent failures', async () => {
    const headers = bearer(server.tokens.canary);
    await server.app.inject({
      method: 'POST',
      url: '/api/workers/register',
      headers,
      payload: { worker_id: 'w-fleet', current_version: '1.3.0', platform: 'linux-x64', channel: 'stable' },
    });
    await server.app.inject({
      method: 'POST',
      url: '/api/workers/heartbeat',
      headers,
      payload: { worker_id: 'w-fleet', current_version: '1.3.0', state: 'idle', update: { to_version: '1.4.0', state: 'downloading', download_percent: 42 } },
    });
    const report = await server.app.inject({
      method: 'POST',
      url: '/api/worker-updates/report',
      headers,
      payload: {
        worker_id: 'w-fleet',
        event: 'failure',
        from_version: '1.3.0',
        to_version: '1.4.0',
        channel: 'stable',
        platform: 'linux-x64',
        reason: 'checksum_mismatch',
        correlation_id: 'upd-123',
      },
    });
    assert.equal(report.statusCode, 202);

    const fleet = await server.app.inject({ url: '/api/admin/fleet', headers: bearer(server.tokens.admin) });
    assert.equal(fleet.statusCode, 200);
    const view = fleet.json();
    const worker = view.workers.find((w: { worker_id: string }) => w.worker_id === 'w-fleet');
    assert.equal(worker.pool, 'canary');
    assert.equal(worker.channel, 'stable');
    assert.equal(worker.state, 'idle');
    assert.equal(worker.update.state, 'downloading');
    assert.equal(worker.update.download_percent, 42);
    assert.equal(worker.update.to_version, '1.4.0');
    const failure = view.recent_failures.find((f: { worker_id: string }) => f.worker_id === 'w-fleet');
    assert.equal(failure.reason, 'checksum_mismatch');
    assert.equal(failure.correlation_id, 'upd-123');
    assert.ok(view.groups.some((g: { channel: string; pool: string; version: string }) => g.channel === 'stable' && g.pool === 'canary' && g.version === '1.3.0'));
    assert.ok(view.pools.some((p: { pool: string }) => p.pool === 'canary'));

    const reportLine = server.logs().filter((line) => line['event'] === 'update_report').at(-1);
    assert.equal(reportLine?.['update_event'], 'failure');
    assert.equal(reportLine?.['reason'], 'checksum_mismatch');
    assert.equal(reportLine?.['report_correlation_id'], 'upd-123');
    assert.equal(reportLine?.['to_version'], '1.4.0');

    const badLimit = await server.app.inject({ url: '/api/admin/fleet?limit=0', headers: bearer(server.tokens.admin) });
    assert.equal(badLimit.statusCode, 400);
    assert.equal(errorCode(badLimit.body), 'invalid_request');
  });

  test('metrics counters move with reports, and the fleet gauge counts workers', async () => {
    const metric = async (pattern: RegExp): Promise<number> => {
      const text = (await server.app.inject({ url: '/metrics' })).body;
      const line = text.split('\n').find((l) => pattern.test(l));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const attempts = /^worker_update_attempt_total\{channel="stable",to_version="2\.0\.0"\}/;
    const successes = /^worker_update_success_total\{channel="stable",to_version="2\.0\.0"\}/;
    const failures = /^worker_update_failure_total\{channel="stable",to_version="2\.0\.0",reason="download_failed"\}/;
    const rollbacks = /^worker_update_rollback_total\{channel="stable",to_version="2\.0\.0",reason="crashed_on_start"\}/;
    const start = { attempts: await metric(attempts), successes: await metric(successes), failures: await metric(failures), rollbacks: await metric(rollbacks) };
    const base = { worker_id: 'w-m', from_version: '1.4.0', to_version: '2.0.0', channel: 'stable', platform: 'linux-x64' };
    const send = (payload: object) =>
      server.app.inject({ method: 'POST', url: '/api/worker-updates/report', headers: bearer(server.tokens.canary), payload });
    for (const payload of [
      { ...base, event: 'attempt' },
      { ...base, event: 'attempt' },
      { ...base, event: 'success', duration_ms: 1200 },
      { ...base, event: 'failure', reason: 'download_failed' },
      { ...base, event: 'rollback', reason: 'crashed_on_start' },
    ]) {
      assert.equal((await send(payload)).statusCode, 202);
    }
    assert.equal(await metric(attempts), start.attempts + 2);
    assert.equal(await metric(successes), start.successes + 1);
    assert.equal(await metric(failures), start.failures + 1);
    assert.equal(await metric(rollbacks), start.rollbacks + 1);
    assert.ok((await metric(/^bytebiota_fleet_workers\{channel="stable",pool="canary",version="1\.3\.0"\}/)) >= 1);
    assert.ok((await metric(/^http_request_duration_seconds_count\{method="POST",route="\/api\/worker-updates\/report",status_code="202"\}/)) >= 5);
  });

  test('success reports say how the bytes came: worker_update_bytes_total by mode, fallbacks by reason', async () => {
    const metric = async (pattern: RegExp): Promise<number> => {
      const text = (await server.app.inject({ url: '/metrics' })).body;
      const line = text.split('\n').find((l) => pattern.test(l));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const delta = /^worker_update_bytes_total\{mode="delta"\}/;
    const full = /^worker_update_bytes_total\{mode="full"\}/;
    const fallbacks = /^worker_update_delta_fallback_total\{reason="range_not_supported"\}/;
    const start = { delta: await metric(delta), full: await metric(full), fallbacks: await metric(fallbacks) };
    const base = { worker_id: 'w-bytes', from_version: '1.4.0', to_version: '2.0.0', channel: 'stable', platform: 'linux-x64', event: 'success' };
    const send = (payload: object) =>
      server.app.inject({ method: 'POST', url: '/api/worker-updates/report', headers: bearer(server.tokens.canary), payload });
    for (const payload of [
      { ...base, bytes_fetched: 2_000_000, delta: true },
      { ...base, bytes_fetched: 95_000_000, delta: false, delta_fallback: 'range_not_supported' },
      // A worker from before differential updates says nothing about its bytes: nothing is counted.
      { ...base },
    ]) {
      assert.equal((await send(payload)).statusCode, 202);
    }
    assert.equal(await metric(delta), start.delta + 2_000_000);
    assert.equal(await metric(full), start.full + 95_000_000);
    assert.equal(await metric(fallbacks), start.fallbacks + 1);
    // A reason added by a later worker is taken (its success report must not be lost) and counted as other.
    const other = /^worker_update_delta_fallback_total\{reason="other"\}/;
    const otherBefore = await metric(other);
    assert.equal((await send({ ...base, bytes_fetched: 1, delta: false, delta_fallback: 'some_later_reason' })).statusCode, 202);
    assert.equal(await metric(other), otherBefore + 1);
    const malformed = await send({ ...base, bytes_fetched: 1, delta: false, delta_fallback: 'Not a reason!' });
    assert.equal(malformed.statusCode, 400, 'the reason is still a bounded word');
  });

  test('every error has the {"error": {code, message}} shape, including Fastify\'s own', async () => {
    const headers = bearer(server.tokens.canary);
    const cases: Array<{ name: string; inject: InjectOptions; status: number; code: string }> = [
      { name: 'unknown route', inject: { url: '/nope' }, status: 404, code: 'not_found' },
      { name: 'missing channel', inject: { url: '/api/worker-updates/latest', headers }, status: 400, code: 'invalid_request' },
      { name: 'bad channel', inject: { url: '/api/worker-updates/latest?channel=UPPER', headers }, status: 400, code: 'invalid_request' },
      {
        name: 'invalid JSON',
        inject: { method: 'POST', url: '/api/worker-updates/report', headers: { ...headers, 'content-type': 'application/json' }, payload: '{"a":' },
        status: 400,
        code: 'invalid_json',
      },
      {
        name: 'empty JSON body',
        inject: { method: 'POST', url: '/api/worker-updates/report', headers: { ...headers, 'content-type': 'application/json' }, payload: '' },
        status: 400,
        code: 'empty_body',
      },
      {
        name: 'wrong content type',
        inject: { method: 'POST', url: '/api/worker-updates/report', headers: { ...headers, 'content-type': 'text/plain' }, payload: 'hello' },
        status: 415,
        code: 'unsupported_media_type',
      },
      {
        name: 'body too large',
        inject: {
          method: 'POST',
          url: '/api/worker-updates/report',
          headers: { ...headers, 'content-type': 'application/json' },
          payload: JSON.stringify({ pad: 'x'.repeat(100_000) }),
        },
        status: 413,
        code: 'body_too_large',
      },
      {
        name: 'unknown field in a report',
        inject: {
          method: 'POST',
          url: '/api/worker-updates/report',
          headers,
          payload: { worker_id: 'w', event: 'attempt', from_version: '1.0.0', to_version: '1.1.0', channel: 'stable', platform: 'linux-x64', extra: 1 },
        },
        status: 400,
        code: 'invalid_request',
      },
      {
        name: 'unknown reason code',
        inject: {
          method: 'POST',
          url: '/api/worker-updates/report',
          headers,
          payload: { worker_id: 'w', event: 'failure', from_version: '1.0.0', to_version: '1.1.0', channel: 'stable', platform: 'linux-x64', reason: 'gremlins' },
        },
        status: 400,
        code: 'invalid_request',
      },
      {
        name: 'bad pool name',
        inject: { method: 'PUT', url: '/api/admin/pools/Bad%20Pool/policy', headers: bearer(server.tokens.admin), payload: { auto_update: true } },
        status: 400,
        code: 'invalid_request',
      },
      {
        name: 'policy with a string',
        inject: { method: 'PUT', url: '/api/admin/pools/canary/policy', headers: bearer(server.tokens.admin), payload: { auto_update: 'yes' } },
        status: 400,
        code: 'invalid_request',
      },
      { name: 'malformed URL', inject: { url: '/api/worker-updates/artifacts/%E0%A4%A/x', headers }, status: 400, code: 'invalid_url' },
    ];
    for (const c of cases) {
      const res = await server.app.inject(c.inject);
      assert.equal(res.statusCode, c.status, `${c.name}: ${res.body}`);
      const body = JSON.parse(res.body) as { error: { code: string; message: string } };
      assert.equal(body.error.code, c.code, c.name);
      assert.equal(typeof body.error.message, 'string', c.name);
    }
  });

  test('X-Request-Id is echoed when safe, generated otherwise, and logged as correlation_id', async () => {
    const given = await server.app.inject({ url: '/healthz', headers: { 'x-request-id': 'req-abc.123' } });
    assert.equal(given.headers['x-request-id'], 'req-abc.123');
    const unsafe = await server.app.inject({ url: '/healthz', headers: { 'x-request-id': 'has space<script>' } });
    assert.match(String(unsafe.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    const failed = await server.app.inject({ url: LATEST, headers: { 'x-request-id': 'req-err-1' } });
    assert.equal(failed.statusCode, 401);
    assert.equal(failed.headers['x-request-id'], 'req-err-1');
    const line = server.logs().find((l) => l['correlation_id'] === 'req-err-1');
    assert.equal(line?.['error_code'], 'unauthorized');
    assert.equal(line?.['status'], 401);
  });

  test('the OpenAPI document lists the routes', async () => {
    const res = await server.app.inject({ url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json();
    assert.equal(doc.openapi, '3.0.3');
    for (const path of ['/api/worker-updates/latest', '/api/worker-updates/report', '/api/workers/register', '/api/admin/fleet']) {
      assert.ok(doc.paths[path], path);
    }
  });
});


describe('readiness, metrics token and rate limits', () => {
  test('/readyz is 503 store_unavailable when the store folder is gone', async () => {
    const server = await startTestServer();
    try {
      await rm(server.storeDir, { recursive: true });
      const res = await server.app.inject({ url: '/readyz' });
      assert.equal(res.statusCode, 503);
      assert.equal(errorCode(res.body), 'store_unavailable');
    } finally {
      await server.close();
    }
  });

  test('/readyz is 503 database_unavailable when the database is closed', async () => {
    const server = await startTestServer();
    try {
      await server.fleet.close();
      const res = await server.app.inject({ url: '/readyz' });
      assert.equal(res.statusCode, 503);
      assert.equal(errorCode(res.body), 'database_unavailable');
    } finally {
      await server.app.close();
      await rm(server.dir, { recursive: true, force: true });
    }
  });

  test('/metrics needs the metrics token when one is configured', async () => {
    const server = await startTestServer({ metricsToken: 'scrape-secret' });
    try {
      assert.equal((await server.app.inject({ url: '/metrics' })).statusCode, 401);
      const wrong = await server.app.inject({ url: '/metrics', headers: bearer('nope') });
      assert.equal(wrong.statusCode, 401);
      assert.equal(errorCode(wrong.body), 'invalid_token');
      const ok = await server.app.inject({ url: '/metrics', headers: bearer('scrape-secret') });
      assert.equal(ok.statusCode, 200);
      assert.match(ok.body, /http_request_duration_seconds/);
    } finally {
      await server.close();
    }
  });

  test('rate limit per token: 429 rate_limited with Retry-After; another token is not throttled', async () => {
    const server = await startTestServer({ rateLimit: { max: 3, windowSeconds: 60 } });
    try {
      const url = '/api/worker-updates/latest?channel=stable';
      for (let i = 0; i < 3; i += 1) {
        assert.equal((await server.app.inject({ url, headers: bearer(server.tokens.canary) })).statusCode, 404);
      }
      const limited = await server.app.inject({ url, headers: bearer(server.tokens.canary) });
      assert.equal(limited.statusCode, 429);
      assert.equal(errorCode(limited.body), 'rate_limited');
      assert.ok(Number(limited.headers['retry-after']) > 0);
      const other = await server.app.inject({ url, headers: bearer(server.tokens.stable) });
      assert.equal(other.statusCode, 404);
    } finally {
      await server.close();
    }
  });

  test('a manifest removed from the store: its rollout keeps serving the verified bytes until an operator aborts it', async () => {
    const server = await startTestServer();
    try {
      await publishRelease(server.storeDir, releaseFor(), [server.key]);
      const url = '/api/worker-updates/latest?channel=stable';
      assert.equal((await server.app.inject({ url, headers: bearer(server.tokens.canary) })).statusCode, 200);
      await rm(join(server.storeDir, 'channels'), { recursive: true });
      server.clock.set(new Date(server.clock.now().getTime() + 301_000));
      // A store emptied by mistake does not take the fleet's release away: the server keeps what it verified.
      assert.equal((await server.app.inject({ url, headers: bearer(server.tokens.canary) })).statusCode, 200);
      const abort = await server.app.inject({ method: 'POST', url: '/api/admin/rollouts/stable/abort', headers: bearer(server.tokens.admin), payload: { reason: 'withdrawn' } });
      assert.equal(abort.statusCode, 200);
      assert.equal(abort.json().state, 'aborted');
      const res = await server.app.inject({ url, headers: bearer(server.tokens.canary) });
      assert.equal(res.statusCode, 404);
      assert.equal(errorCode(res.body), 'no_release');
    } finally {
      await server.close();
    }
  });
});
