import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { bearer, heartbeatAs as heartbeat, registerAs as register, startTestServer, type TestServer } from '../helpers/server-app.js';
import { SERVER_FIXTURE_NOW } from '../helpers/server-fixtures.js';

/**
 * Credential rotation (docs/protocol.md, section 3): rotate with the current credential (the new
 * one pending beside it), confirm with the new one (the old one stops working), idempotent
 * confirm, a pending one the server never committed, and the heartbeat's `rotate_credential`
 * (age, or an admin's request). Real app, real SQLite file.
 */

function errorCode(res: { body: string }): string {
  return (JSON.parse(res.body) as { error: { code: string } }).error.code;
}

const secretsSeen: string[] = [];

const rotate = (auth: string): InjectOptions => ({ method: 'POST', url: '/api/workers/credential/rotate', headers: bearer(auth) });
const confirm = (auth: string): InjectOptions => ({ method: 'POST', url: '/api/workers/credential/confirm', headers: bearer(auth) });

describe('credential rotation', () => {
  let server: TestServer;
  let enrollment: { id: string; token: string };

  async function enrolledAndRegistered(workerId: string): Promise<string> {
    const res = await server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload: { enrollment_token: enrollment.token, worker_id: workerId } });
    assert.equal(res.statusCode, 200, res.body);
    const credential = res.json<{ credential: string }>().credential;
    secretsSeen.push(credential);
    assert.equal((await server.app.inject(register(workerId, credential))).statusCode, 200);
    return credential;
  }

  async function rotated(auth: string): Promise<string> {
    const res = await server.app.inject(rotate(auth));
    assert.equal(res.statusCode, 200, res.body);
    const next = res.json<{ credential: string }>().credential;
    secretsSeen.push(next);
    return next;
  }

  before(async () => {
    server = await startTestServer({ enrollRateLimit: { max: 1000, windowSeconds: 60 }, credentialMaxAgeSeconds: 86_400 });
    enrollment = await server.addEnrollmentToken('canary');
    secretsSeen.push(enrollment.token, server.tokens.canary, server.tokens.admin);
  });
  after(async () => server.close());

  test('rotate then confirm: both work until the confirm, then only the new one; a repeated confirm is harmless', async () => {
    const old = await enrolledAndRegistered('w-rot');
    const next = await rotated(old);
    assert.notEqual(next, old);
    assert.equal((await server.app.inject(heartbeat('w-rot', old))).statusCode, 200, 'the old one works while the new one is pending');
    assert.equal((await server.app.inject(heartbeat('w-rot', next))).statusCode, 401, 'the pending one is not live yet');

    const confirmed = await server.app.inject(confirm(next));
    assert.equal(confirmed.statusCode, 200, confirmed.body);
    assert.equal(confirmed.json<{ status: string }>().status, 'confirmed');
    assert.equal((await server.app.inject(heartbeat('w-rot', next))).statusCode, 200);
    const refused = await server.app.inject(heartbeat('w-rot', old));
    assert.equal(refused.statusCode, 401);
    assert.equal(errorCode(refused), 'invalid_token');

    // The answer to a confirm was lost (a kill): the worker confirms again on restart.
    const again = await server.app.inject(confirm(next));
    assert.equal(again.statusCode, 200);
    assert.equal(again.json<{ status: string }>().status, 'already_confirmed');
    assert.ok(server.logs().some((l) => l['event'] === 'worker_credential_rotated' && l['worker_id'] === 'w-rot'));
  });

  test('a second rotate replaces the pending one; only the latest confirms', async () => {
    const old = await enrolledAndRegistered('w-twice');
    const first = await rotated(old);
    const second = await rotated(old);
    assert.equal((await server.app.inject(confirm(first))).statusCode, 401);
    assert.equal((await server.app.inject(confirm(second))).statusCode, 200);
    assert.equal((await server.app.inject(heartbeat('w-twice', old))).statusCode, 401);
  });

  test('refusals: a pool token cannot rotate; unknown, malformed or absent bearers cannot confirm; a revoked worker cannot confirm', async () => {
    const pool = await server.app.inject(rotate(server.tokens.canary));
    assert.equal(pool.statusCode, 403);
    assert.equal(errorCode(pool), 'forbidden');
    for (const auth of [`bbw_${'0'.repeat(16)}_${'A'.repeat(43)}`, 'nonsense']) {
      const res = await server.app.inject(confirm(auth));
      assert.equal(res.statusCode, 401, auth);
      assert.equal(errorCode(res), 'invalid_token');
    }
    assert.equal((await server.app.inject({ method: 'POST', url: '/api/workers/credential/confirm' })).statusCode, 401);

    const old = await enrolledAndRegistered('w-revoked');
    const next = await rotated(old);
    const revoked = await server.app.inject({ method: 'POST', url: '/api/admin/workers/w-revoked/revoke', headers: bearer(server.tokens.admin) });
    assert.equal(revoked.statusCode, 200);
    assert.equal((await server.app.inject(confirm(next))).statusCode, 401, 'a revocation also ends a pending rotation');
  });

  test('rotate_credential: only to a credential older than the max age or named by an admin; never to a pool token', async () => {
    const credential = await enrolledAndRegistered('w-age');
    const due = async (auth: string, workerId = 'w-age'): Promise<boolean | undefined> =>
      (await server.app.inject(heartbeat(workerId, auth))).json<{ rotate_credential?: boolean }>().rotate_credential;
    assert.equal(await due(credential), undefined);
    const hb = (await server.app.inject(heartbeat('w-age', credential))).json<{ accepts: { identity?: string[] } }>();
    assert.deepEqual(hb.accepts.identity, ['enroll', 'claim', 'rotate']);

    const asked = await server.app.inject({ method: 'POST', url: '/api/admin/workers/w-age/rotate', headers: bearer(server.tokens.admin) });
    assert.equal(asked.statusCode, 200, asked.body);
    assert.equal(await due(credential), true);
    const next = await rotated(credential);
    assert.equal((await server.app.inject(confirm(next))).statusCode, 200);
    assert.equal(await due(next), undefined, 'the request is cleared by the confirm');

    server.clock.set(new Date(SERVER_FIXTURE_NOW.getTime() + 2 * 86_400_000));
    try {
      assert.equal(await due(next), true, 'older than --credential-max-age');
      assert.equal((await server.app.inject(register('w-age', next))).json<{ rotate_credential?: boolean }>().rotate_credential, true);
      assert.equal((await server.app.inject(register('w-pool', server.tokens.canary))).json<{ rotate_credential?: boolean }>().rotate_credential, undefined);
    } finally {
      server.clock.set(SERVER_FIXTURE_NOW);
    }
    const none = await server.app.inject({ method: 'POST', url: '/api/admin/workers/w-nobody/rotate', headers: bearer(server.tokens.admin) });
    assert.equal(none.statusCode, 404);
    assert.equal(errorCode(none), 'no_credential');
  });

  test('no secret in the server log', () => {
    const text = server.logs().map((l) => JSON.stringify(l)).join('\n');
    for (const secret of secretsSeen) assert.ok(!text.includes(secret), 'a secret reached the log');
  });
});
