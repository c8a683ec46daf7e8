/**
 * The console's data routes against the real app and a real SQLite fleet: the overview agrees
 * with the admin API and is revalidated by ETag, the worker table pages by key through every
 * filter, a worker's page carries the same explanation as the admin API, failures group by
 * reason and version, and the version history has one sample per slot however many replicas
 * sample it. The fleet gauges behind the alert rules are checked here too.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../src/server/app.js';
import { CONSOLE_COOKIE } from '../../../src/server/console/sessions.js';
import { SqliteFleetStore } from '../../../src/server/fleet/sqlite-fleet-store.js';
import { FolderStore } from '../../../src/store/folder-store.js';
import { createLogger } from '../../../src/shared/logger.js';
import { bearer, startTestServer, type TestServer } from '../../helpers/server-app.js';
import { publishRelease, releaseFor } from '../../helpers/server-fixtures.js';
import { until } from '../../helpers/wait.js';

const ORIGIN = 'http://localhost:80';
const CHANNEL = 'stable';

let server: TestServer;
let cookies: Record<string, string>;
let csrf: string;

async function consoleGet(url: string, headers: Record<string, string> = {}) {
  return server.app.inject({ method: 'GET', url, cookies, headers });
}

/** Workers w-00..w-39: pools, versions and update states spread so that every filter narrows. */
async function seedFleet(): Promise<void> {
  const now = server.clock.now();
  const tokens = { canary: server.tokens.canary, stable: server.tokens.stable };
  for (let i = 0; i < 40; i += 1) {
    const id = `w-${String(i).padStart(2, '0')}`;
    const pool = i % 4 === 0 ? 'canary' : 'stable';
    const version = i % 3 === 0 ? '1.4.0' : '1.3.0';
    const register = await server.app.inject({
      method: 'POST',
      url: '/api/workers/register',
      headers: bearer(tokens[pool]),
      payload: { worker_id: id, current_version: version, platform: 'linux-x64', channel: CHANNEL },
    });
    assert.equal(register.statusCode, 200, register.body);
    const update = i % 5 === 0 ? { to_version: '1.4.0', state: 'failed', reason: 'crashed_on_start' } : i % 7 === 0 ? { to_version: '1.4.0', state: 'downloading', download_percent: 40 } : undefined;
    const heartbeat = await server.app.inject({
      method: 'POST',
      url: '/api/workers/heartbeat',
      headers: bearer(tokens[pool]),
      payload: { worker_id: id, current_version: version, state: i % 2 === 0 ? 'working' : 'idle', ...(update ? { update } : {}) },
    });
    assert.equal(heartbeat.statusCode, 200, heartbeat.body);
  }
  // w-38 and w-39 went quiet 2 minutes ago: unseen (past 3 intervals of 30 s), still live (within 10).
  const quietAt = new Date(now.getTime() - 120_000);
  await server.fleet.recordHeartbeat({ workerId: 'w-38', pool: 'stable', version: '1.3.0', state: 'working', update: null, at: quietAt });
  await server.fleet.recordHeartbeat({ workerId: 'w-39', pool: 'stable', version: '1.4.0', state: 'idle', update: null, at: quietAt });
  // w-14 has been downloading for two hours: a stalled update.
  await server.fleet.recordHeartbeat({ workerId: 'w-14', pool: 'stable', version: '1.3.0', state: 'working', update: { to_version: '1.4.0', state: 'downloading', download_percent: 10 }, at: new Date(now.getTime() - 7200_000) });
  await server.fleet.recordHeartbeat({ workerId: 'w-14', pool: 'stable', version: '1.3.0', state: 'working', update: { to_version: '1.4.0', state: 'downloading', download_percent: 10 }, at: now });
  for (const [worker, event, reason] of [
    ['w-00', 'failure', 'crashed_on_start'],
    ['w-05', 'failure', 'crashed_on_start'],
    ['w-05', 'rollback', 'crashed_on_start'],
    ['w-10', 'failure', 'checksum_mismatch'],
  ] as const) {
    const pool = Number(worker.slice(2)) % 4 === 0 ? 'canary' : 'stable';
    const response = await server.app.inject({
      method: 'POST',
      url: '/api/worker-updates/report',
      headers: bearer(tokens[pool]),
      payload: { worker_id: worker, event, reason, from_version: '1.3.0', to_version: '1.4.0', channel: CHANNEL, platform: 'linux-x64' },
    });
    assert.equal(response.statusCode, 202, response.body);
  }
}

before(async () => {
  server = await startTestServer({ console: { sampleOnTimer: false } });
  await publishRelease(server.storeDir, releaseFor({ channel: CHANNEL, serial: 1, version: '1.4.0' }), [server.key]);
  await seedFleet();
  const signIn = await server.app.inject({ method: 'POST', url: '/console/api/session', headers: { origin: ORIGIN }, payload: { token: server.tokens.admin } });
  assert.equal(signIn.statusCode, 200, signIn.body);
  cookies = { [CONSOLE_COOKIE]: signIn.cookies.find((c) => c.name === CONSOLE_COOKIE)!.value };
  csrf = signIn.json().csrf_token;
});
after(async () => server.close());

describe('console data', () => {
  test("the overview's counts equal the admin API's, and a poll with its ETag gets 304", async () => {
    // A latest poll starts the channel's rollout (immediate plan in these tests).
    await server.app.inject({ url: `/api/worker-updates/latest?channel=${CHANNEL}&platform=linux-x64`, headers: bearer(server.tokens.stable) });
    const response = await consoleGet('/console/api/overview');
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-cache');
    const overview = response.json();
    const fleet = (await server.app.inject({ url: '/api/admin/fleet', headers: bearer(server.tokens.admin) })).json();
    const rollouts = (await server.app.inject({ url: '/api/admin/rollouts', headers: bearer(server.tokens.admin) })).json();
    assert.equal(overview.fleet.live, fleet.total_workers, 'every seeded worker is live (seen within 10 intervals)');
    assert.equal(overview.fleet.unseen, 2);
    const channel = overview.channels.find((c: { channel: string }) => c.channel === CHANNEL);
    const byVersion = new Map<string, number>();
    for (const group of fleet.groups) byVersion.set(group.version, (byVersion.get(group.version) ?? 0) + group.count);
    assert.deepEqual(Object.fromEntries(channel.workers.by_version.map((v: { version: string; count: number }) => [v.version, v.count])), Object.fromEntries(byVersion));
    assert.deepEqual(channel.rollout, rollouts.rollouts.find((r: { channel: string }) => r.channel === CHANNEL));
    assert.equal(overview.failures.total, 4);
    const updateStates = Object.fromEntries(channel.workers.by_update_state.map((u: { update_state: string; count: number }) => [u.update_state, u.count]));
    assert.equal(updateStates['failed'], 8, 'w-00, w-05, ... w-35');

    const etag = String(response.headers.etag);
    const again = await consoleGet('/console/api/overview', { 'if-none-match': etag });
    assert.equal(again.statusCode, 304);
    assert.equal(again.body, '');
    // A change shows once the shared snapshot is past its 5 s: the first poll after that still
    // gets the last snapshot at once and starts the rebuild, and a later poll gets the new one.
    await server.fleet.recordHeartbeat({ workerId: 'w-01', pool: 'stable', version: '1.3.0', state: 'working', update: null, at: server.clock.now() });
    const staleAnswer = await consoleGet('/console/api/overview', { 'if-none-match': etag });
    assert.equal(staleAnswer.statusCode, 304, 'within 5 s, the shared snapshot');
    server.clock.set(new Date(server.clock.now().getTime() + 5000));
    const changed = await until('the rebuilt overview', async () => {
      const poll = await consoleGet('/console/api/overview', { 'if-none-match': etag });
      return poll.statusCode === 200 ? poll : null;
    });
    assert.notEqual(changed.headers.etag, etag);
  });

  test('the worker table pages by key through every worker exactly once, under filters too', async () => {
    const pageThrough = async (query: string) => {
      const seen: string[] = [];
      let cursor: string | null = null;
      let total = -1;
      do {
        const response = await consoleGet(`/console/api/workers?limit=7${query}${cursor ? `&after=${cursor}` : ''}`);
        assert.equal(response.statusCode, 200, response.body);
        const page = response.json();
        total = page.total;
        seen.push(...page.workers.map((w: { worker_id: string }) => w.worker_id));
        cursor = page.next_cursor;
      } while (cursor !== null);
      assert.equal(seen.length, total, `${query}: the pages hold exactly the total`);
      assert.deepEqual(seen, [...new Set(seen)].sort(), `${query}: in id order, no repeats`);
      return seen;
    };
    assert.equal((await pageThrough('')).length, 40);
    assert.deepEqual(await pageThrough('&pool=canary'), Array.from({ length: 10 }, (_, i) => `w-${String(i * 4).padStart(2, '0')}`));
    assert.equal((await pageThrough('&version=1.4.0')).length, 14);
    assert.deepEqual(await pageThrough('&q=w-1'), Array.from({ length: 10 }, (_, i) => `w-1${i}`));
    assert.deepEqual(await pageThrough('&update_state=failed&pool=canary'), ['w-00', 'w-20']);
    assert.deepEqual(await pageThrough('&seen=unseen'), ['w-38', 'w-39']);
    assert.equal((await pageThrough('&update_state=none')).length, 40 - 8 - 4, 'failed: 8; downloading: w-07, w-14, w-21, w-28 (w-35 is failed)');
    assert.deepEqual(await pageThrough('&state=idle&q=w-3'), ['w-31', 'w-33', 'w-35', 'w-37', 'w-39']);
    for (const url of ['/console/api/workers?limit=500', `/console/api/history?channel=${CHANNEL}&days=31`, '/console/api/failures?hours=721', '/console/api/workers?state=asleep']) {
      const bad = await consoleGet(url);
      assert.equal(bad.statusCode, 400, url);
      assert.equal(bad.json().error.code, 'invalid_request', url);
    }
    const facets = (await consoleGet('/console/api/workers/facets')).json();
    assert.deepEqual(facets, { pools: ['canary', 'stable'], versions: ['1.3.0', '1.4.0'], channels: [CHANNEL] });
  });

  test("a worker's page carries the admin API's explanation and its events", async () => {
    const page = await consoleGet('/console/api/workers/w-05');
    assert.equal(page.statusCode, 200, page.body);
    const explain = await server.app.inject({ url: '/api/admin/workers/w-05/explain', headers: bearer(server.tokens.admin) });
    assert.deepEqual(page.json().explanation, explain.json());
    assert.deepEqual(page.json().events.map((e: { event: string }) => e.event), ['rollback', 'failure']);
    assert.equal((await consoleGet('/console/api/workers/nobody')).statusCode, 404);
  });

  test('failures group by event, reason and version, with the workers that sent them', async () => {
    const failures = (await consoleGet('/console/api/failures')).json();
    const groups = failures.groups.map((g: Record<string, unknown>) => [g['event'], g['reason'], g['to_version'], g['reports'], g['workers'], g['worker_ids']]);
    assert.deepEqual(groups[0], ['failure', 'crashed_on_start', '1.4.0', 2, 2, ['w-05', 'w-00']]);
    assert.deepEqual(groups.slice(1).sort(), [
      ['failure', 'checksum_mismatch', '1.4.0', 1, 1, ['w-10']],
      ['rollback', 'crashed_on_start', '1.4.0', 1, 1, ['w-05']],
    ]);
  });

  test('a halt from the console is logged with who did it', async () => {
    const response = await server.app.inject({
      method: 'POST',
      url: `/console/api/rollouts/${CHANNEL}/halt`,
      cookies,
      headers: { origin: ORIGIN, 'x-csrf-token': csrf },
      payload: { reason: 'crash loop on canary' },
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().state, 'halted');
    const adminView = (await server.app.inject({ url: `/api/admin/rollouts?channel=${CHANNEL}`, headers: bearer(server.tokens.admin) })).json();
    assert.equal(adminView.rollouts[0].state, 'halted');
    const line = server.logs().find((l) => l['event'] === 'rollout_state_changed' && l['action'] === 'halt');
    assert.ok(line, 'the halt is logged');
    assert.equal(line['token_id'], adminView.rollouts[0].state_changed_by);
    const resume = await server.app.inject({ method: 'POST', url: `/console/api/rollouts/${CHANNEL}/resume`, cookies, headers: { origin: ORIGIN, 'x-csrf-token': csrf }, payload: {} });
    assert.equal(resume.json().state, 'active');
    // The same refusals as the admin API: an action that does not apply, a channel without a rollout.
    const again = await server.app.inject({ method: 'POST', url: `/console/api/rollouts/${CHANNEL}/resume`, cookies, headers: { origin: ORIGIN, 'x-csrf-token': csrf }, payload: {} });
    assert.equal(again.statusCode, 409, again.body);
    const adminAgain = await server.app.inject({ method: 'POST', url: `/api/admin/rollouts/${CHANNEL}/resume`, headers: bearer(server.tokens.admin), payload: {} });
    assert.equal(again.json().error.code, adminAgain.json().error.code);
    const none = await server.app.inject({ method: 'POST', url: '/console/api/rollouts/nothing-here/halt', cookies, headers: { origin: ORIGIN, 'x-csrf-token': csrf }, payload: { reason: 'x' } });
    assert.equal(none.statusCode, 404);
    assert.equal(none.json().error.code, 'no_rollout');
  });

  test('the fleet gauges count update states, unseen workers and stalled updates', async () => {
    const metrics = (await server.app.inject({ url: '/metrics' })).body;
    assert.match(metrics, /bytebiota_fleet_workers_by_update_state\{channel="stable",update_state="failed"\} 8/);
    assert.match(metrics, /bytebiota_fleet_workers_unseen\{channel="stable",pool="stable"\} 2/);
    assert.match(metrics, /bytebiota_fleet_workers_update_stalled\{channel="stable",update_state="downloading"\} 1/);
  });
});

/** A second server process's app on the same database, store and clock. */
function buildReplica(): Promise<FastifyInstance> {
  return buildApp({
    store: new FolderStore(server.storeDir),
    fleet: new SqliteFleetStore(server.dbPath),
    releaseKeys: [server.key.public],
    releaseKeyThreshold: 1,
    cacheTtlSeconds: 300,
    heartbeatIntervalSeconds: 30,
    clock: server.clock,
    logger: createLogger({ name: 'replica-2', level: 'silent' }),
    rateLimit: { max: 100_000, windowSeconds: 60 },
    rollouts: { defaultPlan: 'immediate', evaluateOnTimer: false },
    console: { sampleOnTimer: false },
  });
}

async function closeReplica(replica: FastifyInstance): Promise<void> {
  await replica.close();
  await replica.fleet.close();
}

describe('two replicas on one database', () => {
  test('a session opened on one works on the other, and both give the overview the same ETag', async () => {
    const other = await buildReplica();
    try {
      // Past the time this process answers its last snapshot (60 s), so both build theirs now.
      server.clock.set(new Date(server.clock.now().getTime() + 60_000));
      const here = await consoleGet('/console/api/overview');
      const there = await other.inject({ method: 'GET', url: '/console/api/overview', cookies });
      assert.equal(there.statusCode, 200, there.body);
      assert.equal(there.headers.etag, here.headers.etag);
      const revalidated = await other.inject({ method: 'GET', url: '/console/api/overview', cookies, headers: { 'if-none-match': String(here.headers.etag) } });
      assert.equal(revalidated.statusCode, 304, 'a page bounced to the other replica still gets 304');
    } finally {
      await closeReplica(other);
    }
  });

  test('the version history has one sample per slot, and samples past 30 days are deleted', async () => {
    const other = await buildReplica();
    try {
      const start = server.clock.now();
      const old = new Date(start.getTime() - 31 * 86_400_000);
      server.clock.set(old);
      assert.equal(await server.app.consoleSampler.sample(), true);
      server.clock.set(start);
      const [first, second] = await Promise.all([server.app.consoleSampler.sample(), other.consoleSampler.sample()]);
      assert.equal(Number(first) + Number(second), 1, 'exactly one replica wrote the slot');
      assert.equal(await other.consoleSampler.sample(), false, 'the slot stays taken');
      const history = (await consoleGet(`/console/api/history?channel=${CHANNEL}&days=30`)).json();
      assert.equal(history.resolution_seconds, 300);
      assert.equal(history.samples.length, 1, 'the 31-day-old sample was deleted');
      assert.deepEqual(history.samples[0].versions, { '1.3.0': 26, '1.4.0': 14 });
      assert.equal(history.samples[0].at, other.consoleSampler.slotOf(start).toISOString());
    } finally {
      await closeReplica(other);
    }
  });
});

describe('console page', () => {
  test('a server without a built console answers 503 console_not_built, not a broken page', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'bytebiota-console-'));
    const bare = await startTestServer({ console: { sampleOnTimer: false, assetsDir: empty } });
    try {
      const response = await bare.app.inject({ url: '/console/' });
      assert.equal(response.statusCode, 503);
      assert.equal(response.json().error.code, 'console_not_built');
      assert.equal((await bare.app.inject({ url: '/console' })).headers.location, '/console/');
    } finally {
      await bare.close();
      await rm(empty, { recursive: true, force: true });
    }
  });
});
