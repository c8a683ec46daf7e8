import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { postWebhook } from '../../../src/server/rollout/webhook.js';
import { createLogger } from '../../../src/shared/logger.js';
import { bearer, startTestServer, type TestServer } from '../../helpers/server-app.js';
import { publishRelease, releaseFor } from '../../helpers/server-fixtures.js';

/** Every refusal of the rollout routes, by its code, and a webhook that never answers well. */
describe('rollout route refusals', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
    await publishRelease(server.storeDir, releaseFor({ serial: 1, version: '1.4.0' }), [server.key]);
    // The first request on the channel starts its (completed) rollout.
    await server.app.inject({ url: '/api/worker-updates/latest?channel=stable', headers: bearer(server.tokens.canary) });
  });
  after(async () => server.close());

  const wave = { pools: ['canary'], percent: 10, soak_s: 0, min_healthy: 0 };
  const cases: Array<{ name: string; method: 'GET' | 'POST' | 'PUT'; url: string; payload?: object; status: number; code: string }> = [
    { name: 'control on a channel without a rollout', method: 'POST', url: '/api/admin/rollouts/beta/halt', payload: {}, status: 404, code: 'no_rollout' },
    { name: 'control of an unknown serial', method: 'POST', url: '/api/admin/rollouts/stable/pause', payload: { serial: 99 }, status: 404, code: 'no_rollout' },
    { name: 'resume of a completed rollout', method: 'POST', url: '/api/admin/rollouts/stable/resume', payload: {}, status: 409, code: 'rollout_state_conflict' },
    { name: 'an unknown action', method: 'POST', url: '/api/admin/rollouts/stable/restart', payload: {}, status: 400, code: 'invalid_request' },
    { name: 'a status by serial without a channel', method: 'GET', url: '/api/admin/rollouts?serial=1', status: 400, code: 'invalid_request' },
    { name: 'a status of an unknown serial', method: 'GET', url: '/api/admin/rollouts?channel=stable&serial=7', status: 404, code: 'no_rollout' },
    { name: 'a plan naming a pool twice in a wave', method: 'PUT', url: '/api/admin/channels/stable/plan', payload: { immediate: false, waves: [{ ...wave, pools: ['canary', 'canary'] }] }, status: 400, code: 'invalid_plan' },
    { name: 'a plan with * beside a pool', method: 'PUT', url: '/api/admin/channels/stable/plan', payload: { immediate: false, waves: [{ ...wave, pools: ['*', 'canary'] }] }, status: 400, code: 'invalid_plan' },
    { name: 'a plan with no waves', method: 'PUT', url: '/api/admin/channels/stable/plan', payload: { immediate: false, waves: [] }, status: 400, code: 'invalid_request' },
    { name: 'a worker token on a rollout route', method: 'GET', url: '/api/admin/rollouts', status: 403, code: 'forbidden' },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.status} ${c.code}`, async () => {
      const token = c.code === 'forbidden' ? server.tokens.canary : server.tokens.admin;
      const res = await server.app.inject({ method: c.method, url: c.url, headers: bearer(token), ...(c.payload ? { payload: c.payload } : {}) });
      assert.equal(res.statusCode, c.status, res.body);
      assert.equal(res.json().error.code, c.code);
    });
  }

  test('a refused control changes nothing', async () => {
    const res = await server.app.inject({ url: '/api/admin/rollouts?channel=stable', headers: bearer(server.tokens.admin) });
    assert.equal(res.json().rollouts[0].state, 'completed');
  });
});

test('a webhook that always fails is tried, logged and given up on; postWebhook never throws', async () => {
  let calls = 0;
  const hook = createServer((_req, res) => {
    calls += 1;
    res.writeHead(500).end();
  });
  hook.listen(0, '127.0.0.1');
  await once(hook, 'listening');
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    name: 'test',
    destination: new Writable({
      write: (chunk, _enc, done) => {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        done();
      },
    }),
  });
  try {
    const url = `http://127.0.0.1:${(hook.address() as { port: number }).port}/secret-path-token`;
    assert.equal(await postWebhook({ url, logger, retryDelaysMs: [1, 1] }, { event: 'rollout_halted' }), false);
  } finally {
    hook.close();
  }
  assert.equal(calls, 3);
  assert.equal(lines.filter((l) => l['event'] === 'rollout_webhook_failed').length, 3);
  const gaveUp = lines.find((l) => l['event'] === 'rollout_webhook_gave_up');
  assert.equal(gaveUp?.['attempts'], 3);
  assert.ok(!JSON.stringify(lines).includes('secret-path-token'), 'only the origin is logged, never the path');
});
