import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Version } from '../../src/protocol/manifest.js';
import { bearer, startTestServer, type TestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor } from '../helpers/server-fixtures.js';

/**
 * A newer server serves workers deployed before staged rollouts: their response schemas (copied
 * here as they shipped) still accept every answer, their reports (no serial, first-protocol
 * reason codes) are taken and counted, and the manifest they read is the published bytes.
 */
const FirstRegisterResponse = Type.Object({
  minimum_version: Type.Union([Version, Type.Null()]),
  recommended_version: Type.Union([Version, Type.Null()]),
  latest_version: Type.Union([Version, Type.Null()]),
  auto_update: Type.Boolean(),
  heartbeat_interval_s: Type.Integer({ minimum: 1 }),
  server_time: Type.String(),
});
const FirstHeartbeatResponse = Type.Object({
  auto_update: Type.Boolean(),
  minimum_version: Type.Union([Version, Type.Null()]),
  latest_version: Type.Union([Version, Type.Null()]),
  heartbeat_interval_s: Type.Integer({ minimum: 1 }),
});

describe('a rollout-aware server and workers from before it', () => {
  let server: TestServer;
  let published: Buffer;
  before(async () => {
    server = await startTestServer();
    published = await publishRelease(server.storeDir, releaseFor({ serial: 4, version: '1.4.0' }), [server.key]);
  });
  after(async () => server.close());

  test('the first protocol’s response schemas accept the handshake and heartbeat answers', async () => {
    const register = await server.app.inject({
      method: 'POST',
      url: '/api/workers/register',
      headers: bearer(server.tokens.canary),
      payload: { worker_id: 'old-1', current_version: '1.3.0', platform: 'linux-x64', channel: 'stable' },
    });
    assert.equal(register.statusCode, 200);
    assert.ok(TypeCompiler.Compile(FirstRegisterResponse).Check(register.json()));
    const heartbeat = await server.app.inject({
      method: 'POST',
      url: '/api/workers/heartbeat',
      headers: bearer(server.tokens.canary),
      payload: { worker_id: 'old-1', current_version: '1.3.0', state: 'working' },
    });
    assert.equal(heartbeat.statusCode, 200);
    assert.ok(TypeCompiler.Compile(FirstHeartbeatResponse).Check(heartbeat.json()));
  });

  test('the manifest an older worker reads is the published bytes, unchanged', async () => {
    const res = await server.app.inject({
      url: '/api/worker-updates/latest?channel=stable&platform=linux-x64&worker_id=old-1&current_version=1.3.0',
      headers: bearer(server.tokens.canary),
    });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.rawPayload, published);
  });

  test('a report without a serial is accepted and attributed to the rollout of its version', async () => {
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/worker-updates/report',
      headers: bearer(server.tokens.canary),
      payload: { worker_id: 'old-1', event: 'failure', from_version: '1.3.0', to_version: '1.4.0', channel: 'stable', platform: 'linux-x64', reason: 'install_failed' },
    });
    assert.equal(res.statusCode, 202);
    const reports = await server.fleet.rolloutReports('stable', 4, new Date(0));
    assert.deepEqual(reports.map((r) => [r.worker_id, r.reason]), [['old-1', 'install_failed']]);
  });
});
