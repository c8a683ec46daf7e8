import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RolloutPlan } from '../../../src/protocol/rollouts.js';
import { bearer, startTestServer, type TestServer } from '../../helpers/server-app.js';
import { publishRelease, releaseFor } from '../../helpers/server-fixtures.js';

const CHANNEL = 'prod';
const PLAN: RolloutPlan = {
  immediate: false,
  waves: [
    { pools: ['canary'], percent: 100, soak_s: 0, min_healthy: 0 },
    { pools: ['stable'], percent: 100, soak_s: 0, min_healthy: 0 },
  ],
};

describe('maintenance windows, rollback releases, older workers’ reports, worker explain', () => {
  let server: TestServer;
  const tokens: Record<string, string> = {};
  const admin = () => bearer(server.tokens.admin);

  async function latest(workerId: string, pool: string, version: string): Promise<number | null> {
    const query = new URLSearchParams({ channel: CHANNEL, platform: 'linux-x64', worker_id: workerId, current_version: version });
    const res = await server.app.inject({ url: `/api/worker-updates/latest?${query}`, headers: bearer(tokens[pool]!) });
    if (res.statusCode === 404) {
      assert.equal(res.json().error.code, 'no_release');
      return null;
    }
    assert.equal(res.statusCode, 200);
    return JSON.parse(res.body).signed.serial as number;
  }

  async function register(workerId: string, pool: string, version: string): Promise<void> {
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/workers/register',
      headers: bearer(tokens[pool]!),
      payload: { worker_id: workerId, current_version: version, platform: 'linux-x64', channel: CHANNEL },
    });
    assert.equal(res.statusCode, 200);
  }

  before(async () => {
    server = await startTestServer({ cacheTtlSeconds: 0, rollouts: { defaultPlan: 'staged', evaluateOnTimer: false } });
    // Monday 2026-11-23, 07:30 UTC = 08:30 in Berlin (CET, UTC+1).
    server.clock.set('2026-11-23T07:30:00Z');
    for (const pool of ['canary', 'stable']) tokens[pool] = (await server.addToken('worker', pool)).token;
    await publishRelease(server.storeDir, releaseFor({ channel: CHANNEL, serial: 1, version: '1.4.0' }), [server.key]);
    for (const [id, pool] of [['c-1', 'canary'], ['c-2', 'canary'], ['s-1', 'stable']] as const) await register(id, pool, '1.4.0');
    assert.equal((await server.app.inject({ method: 'PUT', url: `/api/admin/channels/${CHANNEL}/plan`, headers: admin(), payload: PLAN })).statusCode, 200);
  });
  after(async () => server.close());

  test('an invalid window is refused with its code; a valid one is kept and listed', async () => {
    const bad = await server.app.inject({ method: 'PUT', url: '/api/admin/pools/canary/policy', headers: admin(), payload: { auto_update: true, maintenance_windows: ['Mon-Fri 09:00-17:00 Mars/Olympus'] } });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'invalid_maintenance_window');
    const good = await server.app.inject({ method: 'PUT', url: '/api/admin/pools/canary/policy', headers: admin(), payload: { auto_update: true, maintenance_windows: ['mon-fri  09:00-17:00 europe/berlin'] } });
    assert.equal(good.statusCode, 200);
    // Kept in canonical form, whatever was typed.
    assert.deepEqual(good.json().maintenance_windows, ['Mon-Fri 09:00-17:00 Europe/Berlin']);
    const pools = (await server.app.inject({ url: '/api/admin/pools', headers: admin() })).json().pools;
    const canary = pools.find((p: { pool: string }) => p.pool === 'canary');
    assert.equal(canary.window_open, false);
    assert.equal(canary.window_changes_at, '2026-11-23T08:00:00.000Z', 'opens at 09:00 Berlin time');
  });

  test('a pool outside its window is offered nothing new; at the opening it is', async () => {
    await publishRelease(server.storeDir, releaseFor({ channel: CHANNEL, serial: 2, version: '1.5.0' }), [server.key]);
    assert.equal(await latest('c-1', 'canary', '1.4.0'), 1, 'outside the window: the release it runs');
    const explained = (await server.app.inject({ url: '/api/admin/workers/c-1/explain', headers: admin() })).json();
    assert.equal(explained.offer.serial, 1);
    assert.ok(explained.steps.some((s: { check: string; ok: boolean }) => s.check === 'window' && !s.ok));
    server.clock.set('2026-11-23T08:00:00Z');
    assert.equal(await latest('c-1', 'canary', '1.4.0'), 2, 'at 09:00 Berlin the window opens');
    // Admitted, then the window closes: nothing new (never the older serial 1) until it opens again.
    server.clock.set('2026-11-23T16:00:00Z');
    assert.equal(await latest('c-1', 'canary', '1.4.0'), null);
    assert.equal(await latest('c-1', 'canary', '1.5.0'), 2, 'a worker already on it is told so (nothing new)');
    server.clock.set('2026-11-24T08:30:00Z');
    assert.equal(await latest('c-2', 'canary', '1.4.0'), 2);
    assert.equal(await latest('s-1', 'stable', '1.4.0'), 1, 'the stable wave has not started');
  });

  test('a report without a serial (an older worker) is counted against the rollout of its version', async () => {
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/worker-updates/report',
      headers: bearer(tokens['canary']!),
      payload: { worker_id: 'c-1', event: 'rollback', from_version: '1.4.0', to_version: '1.5.0', channel: CHANNEL, platform: 'linux-x64', reason: 'crashed_on_start' },
    });
    assert.equal(res.statusCode, 202);
    const reports = await server.fleet.rolloutReports(CHANNEL, 2, new Date(0));
    assert.deepEqual(reports.map((r) => [r.worker_id, r.event, r.reason]), [['c-1', 'rollback', 'crashed_on_start']]);
    await server.app.rollouts.evaluate();
    const status = (await server.app.inject({ url: `/api/admin/rollouts?channel=${CHANNEL}`, headers: admin() })).json().rollouts[0];
    assert.equal(status.state, 'halted', '1 of the 2 live canaries failed');
    const explained = (await server.app.inject({ url: '/api/admin/workers/c-1/explain', headers: admin() })).json();
    assert.ok(explained.steps.some((s: { check: string }) => s.check === 'local_rollback'));
    assert.ok(explained.steps.some((s: { check: string; detail: string }) => s.check === 'state' && /halted/.test(s.detail)));
  });

  test('a rollback release is urgent: offered at once to every worker, inside or outside its window', async () => {
    server.clock.set('2026-11-24T20:00:00Z'); // every window closed
    await publishRelease(server.storeDir, releaseFor({ channel: CHANNEL, serial: 3, version: '1.4.0', allow_downgrade: true }), [server.key]);
    assert.equal(await latest('c-2', 'canary', '1.5.0'), 3, 'the worker on the bad version is brought back at once');
    assert.equal(await latest('s-1', 'stable', '1.4.0'), 3);
    const status = (await server.app.inject({ url: `/api/admin/rollouts?channel=${CHANNEL}`, headers: admin() })).json().rollouts[0];
    assert.equal(status.urgent, true);
    assert.equal(status.version, '1.4.0');
    const older = (await server.app.inject({ url: `/api/admin/rollouts?channel=${CHANNEL}&serial=2`, headers: admin() })).json().rollouts[0];
    assert.equal(older.state, 'halted', 'an older rollout, by its serial: a halt is kept when a newer release supersedes it');
    assert.deepEqual(older.pools_not_in_plan, [], 'both pools with live workers are named by the plan');
    const started = server.logs().find((line) => line['event'] === 'rollout_started' && line['serial'] === 3);
    assert.equal(started?.['urgent'], true);
  });

  test('an unknown worker cannot be explained', async () => {
    const res = await server.app.inject({ url: '/api/admin/workers/nobody/explain', headers: admin() });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().error.code, 'unknown_worker');
  });
});
