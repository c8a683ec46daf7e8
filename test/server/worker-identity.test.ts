import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { bearer, heartbeatAs as heartbeat, registerAs as register, startTestServer, type TestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor } from '../helpers/server-fixtures.js';

/**
 * Worker identity (docs/protocol.md, section 3): enrollment tokens, enrollment, the one claim of
 * a pool-token worker, credentials bound to one worker id, per-worker revocation, and pool
 * tokens kept working but counted (and refused on request). Real app, real SQLite file.
 */

function errorCode(res: { body: string }): string {
  return (JSON.parse(res.body) as { error: { code: string } }).error.code;
}

const CREDENTIAL_PATTERN = /^bbw_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/;

/** Every secret a test was given, to be searched for in the server's logs at the end. */
const secretsSeen: string[] = [];

async function enroll(server: TestServer, enrollmentToken: string, workerId: string, extra: Record<string, unknown> = {}) {
  return server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload: { enrollment_token: enrollmentToken, worker_id: workerId, ...extra } });
}

async function enrolled(server: TestServer, enrollmentToken: string, workerId: string): Promise<string> {
  const res = await enroll(server, enrollmentToken, workerId);
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json<{ worker_id: string; pool: string; credential: string }>();
  secretsSeen.push(body.credential);
  return body.credential;
}



function report(workerId: string, auth: string): InjectOptions {
  return {
    method: 'POST',
    url: '/api/worker-updates/report',
    headers: bearer(auth),
    payload: { worker_id: workerId, event: 'failure', from_version: '1.3.0', to_version: '1.4.0', channel: 'stable', platform: 'linux-x64', reason: 'download_failed' },
  };
}

function latest(workerId: string, auth: string): InjectOptions {
  return { url: `/api/worker-updates/latest?channel=stable&worker_id=${workerId}&current_version=1.3.0`, headers: bearer(auth) };
}

function claim(workerId: string, auth: string, remoteAddress = '127.0.0.1', claimKey?: string): InjectOptions {
  const payload = { worker_id: workerId, ...(claimKey !== undefined ? { claim_key: claimKey } : {}) };
  return { method: 'POST', url: '/api/workers/claim', headers: bearer(auth), payload, remoteAddress };
}

async function metricValue(server: TestServer, line: RegExp): Promise<number> {
  const text = (await server.app.inject({ url: '/metrics' })).body;
  const found = text.split('\n').find((l) => line.test(l));
  return found === undefined ? 0 : Number(found.split(' ').at(-1));
}

describe('worker identity: enrollment, credentials, revocation', () => {
  let server: TestServer;
  let enrollment: { id: string; token: string };

  before(async () => {
    server = await startTestServer({ enrollRateLimit: { max: 1000, windowSeconds: 60 } });
    await publishRelease(server.storeDir, releaseFor({ serial: 3, version: '1.4.0' }), [server.key]);
    enrollment = await server.addEnrollmentToken('canary');
    secretsSeen.push(enrollment.token, server.tokens.canary, server.tokens.admin);
  });
  after(async () => server.close());

  test('enroll: a credential for the worker id it sent, in the token pool; it works on every worker route', async () => {
    const res = await enroll(server, enrollment.token, 'w-enrolled', { platform: 'linux-x64', channel: 'stable' });
    assert.equal(res.statusCode, 200);
    const body = res.json<{ worker_id: string; pool: string; credential: string }>();
    secretsSeen.push(body.credential);
    assert.deepEqual({ worker_id: body.worker_id, pool: body.pool }, { worker_id: 'w-enrolled', pool: 'canary' });
    assert.match(body.credential, CREDENTIAL_PATTERN);

    assert.equal((await server.app.inject(register('w-enrolled', body.credential))).statusCode, 200);
    assert.equal((await server.app.inject(heartbeat('w-enrolled', body.credential))).statusCode, 200);
    assert.equal((await server.app.inject(report('w-enrolled', body.credential))).statusCode, 202);
    assert.equal((await server.app.inject(latest('w-enrolled', body.credential))).statusCode, 200);
    assert.equal((await server.fleet.getWorker('w-enrolled'))?.pool, 'canary');

    const line = server.logs().find((l) => l['event'] === 'worker_enrolled');
    assert.equal(line?.['worker_id'], 'w-enrolled');
    assert.equal(line?.['client_address'], '127.0.0.1');
    assert.equal(line?.['enrollment_token_id'], enrollment.id);
  });

  test("worker A's credential cannot act as worker B: 403 worker_id_mismatch on every route, logged and counted", async () => {
    const a = await enrolled(server, enrollment.token, 'w-a');
    const b = await enrolled(server, enrollment.token, 'w-b');
    assert.equal((await server.app.inject(register('w-b', b))).statusCode, 200);
    const before = await metricValue(server, /^bytebiota_worker_id_mismatch_total\{route="\/api\/workers\/heartbeat"\}/);
    for (const request of [register('w-b', a), heartbeat('w-b', a), report('w-b', a), latest('w-b', a)]) {
      const res = await server.app.inject(request);
      assert.equal(res.statusCode, 403, String(request.url));
      assert.equal(errorCode(res), 'worker_id_mismatch');
    }
    assert.equal(await metricValue(server, /^bytebiota_worker_id_mismatch_total\{route="\/api\/workers\/heartbeat"\}/), before + 1);
    assert.equal(await metricValue(server, /^bytebiota_worker_id_mismatch_total\{route="\/api\/worker-updates\/report"\}/), 1);
    // Nothing was recorded in B's name.
    assert.equal((await server.fleet.workerEvents('w-b', 10)).length, 0);
    const line = server.logs().find((l) => l['event'] === 'worker_id_mismatch');
    assert.equal(line?.['worker_id'], 'w-b');
    assert.equal(line?.['credential_worker_id'], 'w-a');
    assert.match(String(line?.['credential_id']), /^[0-9a-f]{16}$/);
    assert.equal(line?.['level'], 'warn');
  });

  test('a revoked worker is refused at its next request; another worker of its pool carries on', async () => {
    const doomed = await enrolled(server, enrollment.token, 'w-doomed');
    const fine = await enrolled(server, enrollment.token, 'w-fine');
    for (const [id, credential] of [['w-doomed', doomed], ['w-fine', fine]] as const) {
      assert.equal((await server.app.inject(register(id, credential))).statusCode, 200);
    }
    const revoke = await server.app.inject({ method: 'POST', url: '/api/admin/workers/w-doomed/revoke', headers: bearer(server.tokens.admin) });
    assert.equal(revoke.statusCode, 200);
    assert.equal(revoke.json<{ worker_id: string }>().worker_id, 'w-doomed');

    const refused = await server.app.inject(heartbeat('w-doomed', doomed));
    assert.equal(refused.statusCode, 401);
    assert.equal(errorCode(refused), 'invalid_token');
    assert.equal((await server.app.inject(heartbeat('w-fine', fine))).statusCode, 200);
    assert.equal((await server.app.inject(heartbeat('w-canary-pool', server.tokens.canary))).statusCode, 404, 'the pool token is untouched (unknown worker)');

    const again = await server.app.inject({ method: 'POST', url: '/api/admin/workers/w-doomed/revoke', headers: bearer(server.tokens.admin) });
    assert.equal(again.statusCode, 404);
    assert.equal(errorCode(again), 'no_credential');
    const audit = server.logs().find((l) => l['event'] === 'worker_credential_revoked');
    assert.equal(audit?.['worker_id'], 'w-doomed');
    assert.match(String(audit?.['token_id']), /^[0-9a-f]{16}$/);

    // Revoked, the worker may enroll again with an enrollment token (an admin's decision).
    const fresh = await enrolled(server, enrollment.token, 'w-doomed');
    assert.equal((await server.app.inject(heartbeat('w-doomed', fresh))).statusCode, 200);
  });

  test('the fleet view shows each worker credential age, null for a pool-token worker', async () => {
    assert.equal((await server.app.inject(register('w-legacy', server.tokens.canary))).statusCode, 200);
    const fleet = await server.app.inject({ url: '/api/admin/fleet', headers: bearer(server.tokens.admin) });
    const workers = fleet.json<{ workers: Array<{ worker_id: string; credential_created_at: string | null }> }>().workers;
    assert.equal(workers.find((w) => w.worker_id === 'w-legacy')?.credential_created_at, null);
    assert.equal(workers.find((w) => w.worker_id === 'w-enrolled')?.credential_created_at, server.clock.now().toISOString());
  });

  test('enrollment refusals, each with its own code', async () => {
    const expired = await server.addEnrollmentToken('canary', { expiresAt: new Date(server.clock.now().getTime() - 1000) });
    const usedUp = await server.addEnrollmentToken('canary', { maxUses: 1 });
    await enrolled(server, usedUp.token, 'w-first');
    const revoked = await server.addEnrollmentToken('canary');
    assert.equal((await server.app.inject({ method: 'POST', url: `/api/admin/enrollment-tokens/${revoked.id}/revoke`, headers: bearer(server.tokens.admin) })).statusCode, 200);
    secretsSeen.push(expired.token, usedUp.token, revoked.token);

    const cases = [
      { name: 'malformed', token: 'not-a-token', status: 401, code: 'invalid_enrollment_token' },
      { name: 'unknown', token: `bbe_0123456789abcdef_${'A'.repeat(43)}`, status: 401, code: 'invalid_enrollment_token' },
      { name: 'right id, wrong secret', token: `bbe_${enrollment.id}_${'A'.repeat(43)}`, status: 401, code: 'invalid_enrollment_token' },
      { name: 'a pool token', token: server.tokens.canary, status: 401, code: 'invalid_enrollment_token' },
      { name: 'expired', token: expired.token, status: 401, code: 'enrollment_token_expired' },
      { name: 'used up', token: usedUp.token, status: 401, code: 'enrollment_token_used_up' },
      { name: 'revoked', token: revoked.token, status: 401, code: 'enrollment_token_revoked' },
      { name: 'worker id with a live credential', token: enrollment.token, worker: 'w-enrolled', status: 409, code: 'worker_already_enrolled' },
    ];
    for (const c of cases) {
      const res = await enroll(server, c.token, c.worker ?? 'w-refused');
      assert.equal(res.statusCode, c.status, c.name);
      assert.equal(errorCode(res), c.code, c.name);
    }
    assert.equal(await server.fleet.getWorker('w-refused'), null);
    const alert = server.logs().find((l) => l['event'] === 'worker_already_enrolled');
    assert.equal(alert?.['level'], 'warn');
    assert.equal(alert?.['worker_id'], 'w-enrolled');
    assert.equal(alert?.['client_address'], '127.0.0.1');
  });

  test('two concurrent enrollments on a one-use token: exactly one succeeds', async () => {
    const once = await server.addEnrollmentToken('canary', { maxUses: 1 });
    secretsSeen.push(once.token);
    const results = await Promise.all([enroll(server, once.token, 'w-race-1'), enroll(server, once.token, 'w-race-2')]);
    const statuses = results.map((res) => res.statusCode).sort();
    assert.deepEqual(statuses, [200, 401]);
    assert.equal(errorCode(results.find((res) => res.statusCode === 401)!), 'enrollment_token_used_up');
    for (const res of results) if (res.statusCode === 200) secretsSeen.push(res.json<{ credential: string }>().credential);
    assert.equal((await server.fleet.findEnrollmentToken(once.id))?.uses, 1);
  });

  test('claim: a pool-token worker gets its credential once; a second claim is 409 and logged with both addresses', async () => {
    assert.equal((await server.app.inject(register('w-claimer', server.tokens.canary))).statusCode, 200);
    const first = await server.app.inject(claim('w-claimer', server.tokens.canary, '10.0.0.1'));
    assert.equal(first.statusCode, 200);
    const credential = first.json<{ worker_id: string; pool: string; credential: string }>();
    secretsSeen.push(credential.credential);
    assert.equal(credential.pool, 'canary');
    assert.equal((await server.app.inject(heartbeat('w-claimer', credential.credential))).statusCode, 200);

    const second = await server.app.inject(claim('w-claimer', server.tokens.canary, '10.0.0.2'));
    assert.equal(second.statusCode, 409);
    assert.equal(errorCode(second), 'worker_already_enrolled');
    const alert = server.logs().find((l) => l['event'] === 'worker_claim_refused');
    assert.equal(alert?.['level'], 'warn');
    assert.equal(alert?.['client_address'], '10.0.0.2');
    assert.equal(alert?.['first_claimed_from'], '10.0.0.1');
    assert.ok(server.logs().some((l) => l['event'] === 'worker_claimed' && l['worker_id'] === 'w-claimer'));

    // An enrolled worker cannot be claimed, an unregistered one neither, nor one of another pool.
    const refusals = [
      { name: 'enrolled worker', request: claim('w-enrolled', server.tokens.canary), status: 409, code: 'worker_already_enrolled' },
      { name: 'unregistered', request: claim('w-nobody', server.tokens.canary), status: 404, code: 'unknown_worker' },
      { name: 'another pool', request: claim('w-claimer', server.tokens.stable), status: 403, code: 'forbidden' },
      { name: 'with a credential', request: claim('w-claimer', credential.credential), status: 403, code: 'forbidden' },
      { name: 'admin token', request: claim('w-claimer', server.tokens.admin), status: 403, code: 'forbidden' },
    ];
    for (const r of refusals) {
      const res = await server.app.inject(r.request);
      assert.equal(res.statusCode, r.status, r.name);
      assert.equal(errorCode(res), r.code, r.name);
    }
  });

  test('claim repeated with its key (the answer was lost): the same credential with a new secret; any other key, none, or a revoked credential is 409', async () => {
    const key = randomBytes(32).toString('base64url');
    assert.equal((await server.app.inject(register('w-lost-answer', server.tokens.canary))).statusCode, 200);
    const first = await server.app.inject(claim('w-lost-answer', server.tokens.canary, '10.0.0.1', key));
    assert.equal(first.statusCode, 200);
    const lost = first.json<{ credential: string }>().credential;
    secretsSeen.push(lost);

    const again = await server.app.inject(claim('w-lost-answer', server.tokens.canary, '10.0.0.1', key));
    assert.equal(again.statusCode, 200, again.body);
    const kept = again.json<{ worker_id: string; pool: string; credential: string }>();
    secretsSeen.push(kept.credential);
    assert.match(kept.credential, CREDENTIAL_PATTERN);
    assert.equal(kept.credential.split('_')[1], lost.split('_')[1], 'the same credential id');
    assert.notEqual(kept.credential, lost);
    assert.equal((await server.app.inject(heartbeat('w-lost-answer', lost))).statusCode, 401, 'the lost secret is dead');
    assert.equal((await server.app.inject(heartbeat('w-lost-answer', kept.credential))).statusCode, 200);
    assert.ok(server.logs().some((l) => l['event'] === 'worker_claim_repeated' && l['worker_id'] === 'w-lost-answer' && l['level'] === 'info'));
    assert.equal(await metricValue(server, /^bytebiota_worker_enrollments_total\{route="claim",result="reissued"\} (\d+)/m), 1);

    const otherKey = randomBytes(32).toString('base64url');
    for (const [name, request] of [
      ['another key', claim('w-lost-answer', server.tokens.canary, '10.0.0.2', otherKey)],
      ['no key', claim('w-lost-answer', server.tokens.canary, '10.0.0.2')],
      ['the key, on an enrolled worker', claim('w-enrolled', server.tokens.canary, '10.0.0.2', key)],
    ] as const) {
      const res = await server.app.inject(request);
      assert.equal(res.statusCode, 409, name);
      assert.equal(errorCode(res), 'worker_already_enrolled', name);
    }
    assert.equal((await server.app.inject(heartbeat('w-lost-answer', kept.credential))).statusCode, 200, 'a refused claim changes nothing');

    // Revoked: the key does not bring it back.
    const revoked = await server.app.inject({ method: 'POST', url: '/api/admin/workers/w-lost-answer/revoke', headers: bearer(server.tokens.admin) });
    assert.equal(revoked.statusCode, 200);
    const afterRevoke = await server.app.inject(claim('w-lost-answer', server.tokens.canary, '10.0.0.1', key));
    assert.equal(afterRevoke.statusCode, 409);
    assert.equal((await server.app.inject(heartbeat('w-lost-answer', kept.credential))).statusCode, 401);

    const malformed = await server.app.inject(claim('w-lost-answer', server.tokens.canary, '10.0.0.1', 'short'));
    assert.equal(malformed.statusCode, 400);
  });

  test('admin API: create (token shown once), list (never the token), revoke enrollment tokens', async () => {
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/admin/enrollment-tokens',
      headers: bearer(server.tokens.admin),
      payload: { pool: 'stable', expires_in_s: 3600, max_uses: 2, label: 'rack 7' },
    });
    assert.equal(created.statusCode, 201);
    const made = created.json<{ id: string; token: string; pool: string; expires_at: string; max_uses: number }>();
    secretsSeen.push(made.token);
    assert.match(made.token, /^bbe_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.equal(made.expires_at, new Date(server.clock.now().getTime() + 3_600_000).toISOString());
    assert.equal((await enrolled(server, made.token, 'w-stable-1')).length > 0, true);
    assert.equal((await server.fleet.getWorker('w-stable-1')), null, 'enrolling does not register');

    const list = await server.app.inject({ url: '/api/admin/enrollment-tokens', headers: bearer(server.tokens.admin) });
    assert.equal(list.statusCode, 200);
    assert.ok(!list.body.includes(made.token));
    const listed = list.json<{ enrollment_tokens: Array<{ id: string; uses: number; label: string | null }> }>().enrollment_tokens.find((t) => t.id === made.id);
    assert.deepEqual({ uses: listed?.uses, label: listed?.label }, { uses: 1, label: 'rack 7' });

    const bad = await server.app.inject({ method: 'POST', url: '/api/admin/enrollment-tokens', headers: bearer(server.tokens.admin), payload: { pool: 'stable', max_uses: 0 } });
    assert.equal(bad.statusCode, 400);
    const byWorker = await server.app.inject({ method: 'POST', url: '/api/admin/enrollment-tokens', headers: bearer(server.tokens.canary), payload: { pool: 'stable' } });
    assert.equal(byWorker.statusCode, 403);
    const missing = await server.app.inject({ method: 'POST', url: '/api/admin/enrollment-tokens/0123456789abcdef/revoke', headers: bearer(server.tokens.admin) });
    assert.equal(errorCode(missing), 'no_enrollment_token');
  });

  test('no secret appears in the logs; a credential request is logged by its credential id', async () => {
    // Run last: every credential and enrollment token the tests above were given, searched for whole.
    const lines = server.logs();
    const text = lines.map((line) => JSON.stringify(line)).join('\n');
    assert.ok(secretsSeen.length > 10);
    for (const secret of secretsSeen) assert.ok(!text.includes(secret), `a secret was logged: ${secret.slice(0, 20)}...`);
    const heartbeatLine = lines.find((l) => l['event'] === 'worker_heartbeat' && l['worker_id'] === 'w-fine');
    assert.match(String(heartbeatLine?.['credential_id']), /^[0-9a-f]{16}$/);
    assert.equal(heartbeatLine?.['token_id'], undefined);
  });
});

describe('pool tokens: still accepted and counted, or refused with refusePoolTokens', () => {
  test('each pool-token request is counted; the token is logged as deprecated once', async () => {
    const server = await startTestServer();
    try {
      for (let i = 0; i < 3; i += 1) assert.equal((await server.app.inject(register('w-old', server.tokens.canary))).statusCode, 200);
      assert.equal((await server.app.inject(heartbeat('w-old', server.tokens.canary))).statusCode, 200);
      assert.equal(await metricValue(server, /^bytebiota_pool_token_requests_total\{pool="canary"\}/), 4);
      const deprecated = server.logs().filter((l) => l['event'] === 'pool_token_deprecated');
      assert.equal(deprecated.length, 1);
      assert.equal(deprecated[0]?.['token_id'], server.tokens.canaryId);
      // A credential is not a pool token.
      const enrollment = await server.addEnrollmentToken('canary');
      const credential = (await enroll(server, enrollment.token, 'w-new')).json<{ credential: string }>().credential;
      assert.equal((await server.app.inject(register('w-new', credential))).statusCode, 200);
      assert.equal(await metricValue(server, /^bytebiota_pool_token_requests_total\{pool="canary"\}/), 4);
    } finally {
      await server.close();
    }
  });

  test('with refusePoolTokens: 401 pool_token_refused on worker routes (claim too); credentials and admin tokens work', async () => {
    const server = await startTestServer({ refusePoolTokens: true });
    try {
      for (const request of [register('w-old', server.tokens.canary), heartbeat('w-old', server.tokens.canary), claim('w-old', server.tokens.canary)]) {
        const res = await server.app.inject(request);
        assert.equal(res.statusCode, 401);
        assert.equal(errorCode(res), 'pool_token_refused');
      }
      const enrollment = await server.addEnrollmentToken('canary');
      const credential = (await enroll(server, enrollment.token, 'w-new')).json<{ credential: string }>().credential;
      assert.equal((await server.app.inject(register('w-new', credential))).statusCode, 200);
      assert.equal((await server.app.inject({ url: '/api/admin/fleet', headers: bearer(server.tokens.admin) })).statusCode, 200);
    } finally {
      await server.close();
    }
  });
});

describe('rate limits for identity', () => {
  test('enrollment is rate limited per client address (429), another address is not', async () => {
    const server = await startTestServer({ enrollRateLimit: { max: 3, windowSeconds: 60 } });
    try {
      const payload = { enrollment_token: `bbe_0123456789abcdef_${'A'.repeat(43)}`, worker_id: 'w-guess' };
      for (let i = 0; i < 3; i += 1) {
        const res = await server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload, remoteAddress: '10.1.1.1' });
        assert.equal(res.statusCode, 401);
      }
      const limited = await server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload, remoteAddress: '10.1.1.1' });
      assert.equal(limited.statusCode, 429);
      assert.equal(errorCode(limited), 'rate_limited');
      const other = await server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload, remoteAddress: '10.1.1.2' });
      assert.equal(other.statusCode, 401);
    } finally {
      await server.close();
    }
  });

  test('behind a trusted proxy the limit and the logged address are the X-Forwarded-For client; from anyone else the header is ignored', async () => {
    const server = await startTestServer({ enrollRateLimit: { max: 2, windowSeconds: 60 }, trustedProxies: ['10.9.0.0/16'] });
    try {
      const payload = { enrollment_token: `bbe_0123456789abcdef_${'A'.repeat(43)}`, worker_id: 'w-guess' };
      const attempt = (remoteAddress: string, forwardedFor: string) =>
        server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload, remoteAddress, headers: { 'x-forwarded-for': forwardedFor } });
      // Through the proxy: each client has its own budget.
      for (let i = 0; i < 2; i += 1) assert.equal((await attempt('10.9.0.1', '203.0.113.7')).statusCode, 401);
      assert.equal((await attempt('10.9.0.1', '203.0.113.7')).statusCode, 429);
      assert.equal((await attempt('10.9.0.1', '203.0.113.8')).statusCode, 401, 'another client behind the same proxy');
      const logged = server.logs().filter((l) => l['route'] === '/api/workers/enroll').map((l) => l['client_address']);
      assert.ok(logged.includes('203.0.113.7') && !logged.includes('10.9.0.1'), JSON.stringify(logged));
      // Not a trusted proxy: its X-Forwarded-For is a lie it could vary to escape the limit.
      for (let i = 0; i < 2; i += 1) assert.equal((await attempt('198.51.100.5', `192.0.2.${i}`)).statusCode, 401);
      assert.equal((await attempt('198.51.100.5', '192.0.2.99')).statusCode, 429);
    } finally {
      await server.close();
    }
  });

  test('the per-token rate limit keys on the credential: one worker throttled, another of its pool not', async () => {
    const server = await startTestServer({ rateLimit: { max: 2, windowSeconds: 60 } });
    try {
      const enrollment = await server.addEnrollmentToken('canary');
      const a = (await enroll(server, enrollment.token, 'w-a')).json<{ credential: string }>().credential;
      const b = (await enroll(server, enrollment.token, 'w-b')).json<{ credential: string }>().credential;
      for (let i = 0; i < 2; i += 1) assert.equal((await server.app.inject(register('w-a', a))).statusCode, 200);
      assert.equal((await server.app.inject(register('w-a', a))).statusCode, 429);
      assert.equal((await server.app.inject(register('w-b', b))).statusCode, 200);
    } finally {
      await server.close();
    }
  });
});
