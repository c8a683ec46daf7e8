import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { UpdateReport } from '../../../src/protocol/messages.js';
import type { AppDeps } from '../../../src/server/app.js';
import { buildApp } from '../../../src/server/app.js';
import { SqliteFleetStore } from '../../../src/server/fleet/sqlite-fleet-store.js';
import type { RolloutPlan } from '../../../src/protocol/rollouts.js';
import { FolderStore } from '../../../src/store/folder-store.js';
import { bearer, startTestServer, type TestServer } from '../../helpers/server-app.js';
import { publishRelease, releaseFor } from '../../helpers/server-fixtures.js';

/**
 * The automatic halt, with the server's clock in the test's hands: evaluations run when the
 * test says, as the 30 s timer would, and the reports go through the real report route.
 */
const CHANNEL = 'prod';
const EVAL_S = 30;
const PLAN: RolloutPlan = {
  immediate: false,
  waves: [
    { pools: ['canary'], percent: 100, soak_s: 600, min_healthy: 3 },
    { pools: ['stable'], percent: 100, soak_s: 600, min_healthy: 3 },
  ],
};

interface Fleet {
  server: TestServer;
  tokens: Record<string, string>;
  workers: Array<{ id: string; pool: string }>;
  close(): Promise<void>;
}

async function startFleet(options: { canary: number; stable: number; deps?: Partial<AppDeps> }): Promise<Fleet> {
  const server = await startTestServer({
    cacheTtlSeconds: 0,
    rollouts: { defaultPlan: 'staged', evaluateOnTimer: false, evalIntervalSeconds: EVAL_S },
    ...options.deps,
  });
  const tokens: Record<string, string> = {};
  const workers: Array<{ id: string; pool: string }> = [];
  for (const pool of ['canary', 'stable'] as const) {
    tokens[pool] = (await server.addToken('worker', pool)).token;
    await server.fleet.setPoolPolicy(pool, { auto_update: true }, { at: server.clock.now(), byTokenId: 'test' });
    for (let i = 0; i < options[pool]; i += 1) workers.push({ id: `${pool}-${i}`, pool });
  }
  await publishRelease(server.storeDir, releaseFor({ channel: CHANNEL, serial: 1, version: '1.4.0' }), [server.key]);
  for (const w of workers) {
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/workers/register',
      headers: bearer(tokens[w.pool]!),
      payload: { worker_id: w.id, current_version: '1.4.0', platform: 'linux-x64', channel: CHANNEL },
    });
    assert.equal(res.statusCode, 200);
  }
  const plan = await server.app.inject({ method: 'PUT', url: `/api/admin/channels/${CHANNEL}/plan`, headers: bearer(server.tokens.admin), payload: PLAN });
  assert.equal(plan.statusCode, 200);
  await publishRelease(server.storeDir, releaseFor({ channel: CHANNEL, serial: 2, version: '1.5.0' }), [server.key]);
  return { server, tokens, workers, close: () => server.close() };
}

function advance(server: TestServer, seconds: number): void {
  server.clock.set(new Date(server.clock.now().getTime() + seconds * 1000));
}

/** What `latest` serves the worker now: a serial, or null for nothing new. */
async function offered(fleet: Fleet, workerId: string): Promise<number | null> {
  const worker = fleet.workers.find((w) => w.id === workerId)!;
  const query = new URLSearchParams({ channel: CHANNEL, platform: 'linux-x64', worker_id: workerId, current_version: '1.4.0' });
  const res = await fleet.server.app.inject({ url: `/api/worker-updates/latest?${query}`, headers: bearer(fleet.tokens[worker.pool]!) });
  return res.statusCode === 200 ? (JSON.parse(res.body).signed.serial as number) : null;
}

async function pollAll(fleet: Fleet): Promise<void> {
  for (const w of fleet.workers) await offered(fleet, w.id);
}

async function report(fleet: Fleet, workerId: string, event: UpdateReport['event'], reason?: UpdateReport['reason'], serial = 2): Promise<number> {
  // A worker id the fleet does not know (a made-up one) reports with the canary pool's token.
  const pool = fleet.workers.find((w) => w.id === workerId)?.pool ?? 'canary';
  const res = await fleet.server.app.inject({
    method: 'POST',
    url: '/api/worker-updates/report',
    headers: bearer(fleet.tokens[pool]!),
    payload: { worker_id: workerId, event, from_version: '1.4.0', to_version: '1.5.0', channel: CHANNEL, platform: 'linux-x64', serial, ...(reason ? { reason } : {}) },
  });
  return res.statusCode;
}

async function status(fleet: Fleet) {
  const res = await fleet.server.app.inject({ url: `/api/admin/rollouts?channel=${CHANNEL}`, headers: bearer(fleet.server.tokens.admin) });
  return res.json().rollouts[0];
}

/** A second app on the same database and store: what a restarted server reads. */
async function restarted(fleet: Fleet) {
  const reopened = new SqliteFleetStore(fleet.server.dbPath);
  const app = await buildApp({
    store: new FolderStore(fleet.server.storeDir),
    fleet: reopened,
    releaseKeys: [fleet.server.key.public],
    releaseKeyThreshold: 1,
    cacheTtlSeconds: 0,
    heartbeatIntervalSeconds: 30,
    clock: fleet.server.clock,
    logger: fleet.server.app.log as never,
    rateLimit: { max: 100_000, windowSeconds: 60 },
    rollouts: { defaultPlan: 'staged', evaluateOnTimer: false },
  });
  return { app, fleet: reopened };
}

/** The 30 s timer, run by hand: one evaluation per interval for `intervals` intervals. */
async function tick(fleet: Fleet, intervals = 1): Promise<void> {
  for (let i = 0; i < intervals; i += 1) {
    advance(fleet.server, EVAL_S);
    await fleet.server.app.rollouts.evaluate();
  }
}

describe('automatic halt', () => {
  let hook: Server;
  let hookUrl: string;
  const delivered: Array<Record<string, unknown>> = [];
  let failNext = 1;
  before(async () => {
    hook = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        if (failNext > 0) {
          failNext -= 1;
          res.writeHead(500).end();
          return;
        }
        delivered.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(204).end();
      });
    });
    hook.listen(0, '127.0.0.1');
    await once(hook, 'listening');
    hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hooks/rollouts`;
  });
  after(async () => {
    hook.close();
    await once(hook, 'close');
  });

  test('a canary wave reporting rollbacks halts within one interval of the report that crosses the threshold, before the next wave; the webhook is retried', async () => {
    const fleet = await startFleet({ canary: 5, stable: 20, deps: { rollouts: { defaultPlan: 'staged', evaluateOnTimer: false, evalIntervalSeconds: EVAL_S, webhookUrl: hookUrl, webhookRetryDelaysMs: [10, 10] } } });
    try {
      await pollAll(fleet);
      for (const id of ['canary-0', 'canary-1', 'canary-2', 'canary-3', 'canary-4']) assert.equal(await report(fleet, id, 'attempt'), 202);
      await report(fleet, 'canary-0', 'success');
      await tick(fleet);
      assert.equal((await status(fleet)).state, 'active', 'no failure yet');
      // One rollback among five canaries: 20 % > 10 %, and the sample (5) is the whole live wave.
      assert.equal(await report(fleet, 'canary-1', 'rollback', 'crashed_on_start'), 202);
      await tick(fleet);
      const halted = await status(fleet);
      assert.equal(halted.state, 'halted');
      assert.equal(halted.state_changed_by, 'automatic');
      assert.match(halted.state_reason, /1 of 5 workers/);
      assert.equal(halted.current_wave, 1, 'the stable wave never started');
      const line = fleet.server.logs().find((l) => l['event'] === 'rollout_halted')!;
      assert.equal(line['failed_workers'], 1);
      assert.equal(line['sample_workers'], 5);
      assert.equal(line['threshold'], 0.1);
      // From the next poll on, nobody is offered it; later intervals never start wave 2.
      await tick(fleet, 30);
      assert.equal((await status(fleet)).current_wave, 1);
      for (const w of fleet.workers) assert.notEqual(await offered(fleet, w.id), 2, w.id);
      // The webhook failed once and was retried.
      const deadline = Date.now() + 10_000;
      while (delivered.length === 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      assert.equal(delivered[0]?.['event'], 'rollout_halted');
      assert.equal(delivered[0]?.['serial'], 2);
      const metrics = await fleet.server.app.inject({ url: '/metrics' });
      assert.match(metrics.body, /bytebiota_rollout_halts_total\{channel="prod",trigger="automatic"\} 1/);
      assert.match(metrics.body, /bytebiota_rollout_state\{channel="prod",version="1.5.0",state="halted"\} 1/);
    } finally {
      await fleet.close();
    }
  });

  test('a halt survives a restart of the server; only an operator resumes it', async () => {
    const fleet = await startFleet({ canary: 1, stable: 2 });
    try {
      await pollAll(fleet);
      await report(fleet, 'canary-0', 'failure', 'crash_loop');
      await tick(fleet);
      assert.equal((await status(fleet)).state, 'halted');
      // --force-update skips waves and pauses, never a halt.
      const query = new URLSearchParams({ channel: CHANNEL, worker_id: 'canary-0', current_version: '1.4.0' });
      const forced = await fleet.server.app.inject({ url: `/api/worker-updates/latest?${query}`, headers: { ...bearer(fleet.tokens['canary']!), 'x-bytebiota-force-update': '1' } });
      assert.equal(forced.statusCode, 404, 'nothing at or above its floor that is not halted');
      const { app: again, fleet: reopened } = await restarted(fleet);
      try {
        await again.rollouts.evaluate();
        const rollouts = await again.rollouts.statuses(CHANNEL);
        assert.equal(rollouts[0]!.state, 'halted');
        // Resumed, the count starts afresh, and stays so after a pause: the old failure never halts it again.
        const who = { tokenId: 'ops', label: 'on-call' };
        assert.equal((await again.rollouts.control(CHANNEL, 'resume', who, 'a bad disk, not the release')).state, 'active');
        await again.rollouts.evaluate();
        assert.equal((await again.rollouts.control(CHANNEL, 'pause', who, null)).state, 'paused');
        await again.rollouts.evaluate();
        const paused = await again.rollouts.status(CHANNEL);
        assert.equal(paused.state, 'paused');
        assert.equal(paused.failure.failed_workers, 0);
      } finally {
        await again.close();
        await reopened.close();
      }
    } finally {
      await fleet.close();
    }
  });
});

describe('not halted', () => {
  let fleet: Fleet;
  before(async () => {
    fleet = await startFleet({ canary: 20, stable: 20 });
    await pollAll(fleet);
  });
  after(async () => fleet.close());

  test('a 429 storm: requests and reports refused for the rate limit are not failures', async () => {
    const limited = await startFleet({ canary: 5, stable: 5, deps: { rateLimit: { max: 40, windowSeconds: 3600 } } });
    try {
      await pollAll(limited);
      // Every canary polls, heartbeats and reports its attempt over and over: most are refused.
      const statuses: number[] = [];
      for (let i = 0; i < 70; i += 1) {
        const id = `canary-${i % 5}`;
        statuses.push(await report(limited, id, 'attempt'));
        const beat = await limited.server.app.inject({
          method: 'POST',
          url: '/api/workers/heartbeat',
          headers: bearer(limited.tokens['canary']!),
          payload: { worker_id: id, current_version: '1.4.0', state: 'working', update: { to_version: '1.5.0', state: 'downloading' } },
        });
        statuses.push(beat.statusCode);
        const query = new URLSearchParams({ channel: CHANNEL, worker_id: id, current_version: '1.4.0' });
        statuses.push((await limited.server.app.inject({ url: `/api/worker-updates/latest?${query}`, headers: bearer(limited.tokens['canary']!) })).statusCode);
      }
      const refused = statuses.filter((code) => code === 429).length;
      assert.ok(refused > 150, `expected a storm of 429s, got ${refused}`);
      await tick(limited, 3);
      const now = await status(limited);
      assert.equal(now.failure.failed_workers, 0);
      assert.equal(now.state, 'active');
    } finally {
      await limited.close();
    }
  });

  test("a burst of local faults (download_failed, disk_full) is the machines', not the release's", async () => {
    for (let i = 0; i < 20; i += 1) {
      assert.equal(await report(fleet, `canary-${i % 10}`, 'attempt'), 202);
      assert.equal(await report(fleet, `canary-${i % 10}`, 'failure', i % 2 === 0 ? 'download_failed' : 'disk_full'), 202);
    }
    advance(fleet.server, 61);
    await tick(fleet);
    const now = await status(fleet);
    assert.equal(now.state, 'active');
    assert.equal(now.failure.failed_workers, 0);
    assert.equal(now.failure.sample_workers, 0, 'workers with only local faults are no evidence either way');
  });

  test('reports naming workers the rollout never offered its release to do not count', async () => {
    for (let i = 0; i < 30; i += 1) assert.equal(await report(fleet, `ghost-${i}`, 'rollback', 'crashed_on_start'), 202);
    await tick(fleet);
    const now = await status(fleet);
    assert.equal(now.state, 'active');
    assert.equal(now.failure.failed_workers, 0);
  });

  test('one worker reporting the same failure many times is one failed worker', async () => {
    for (let i = 0; i < 40; i += 1) assert.equal(await report(fleet, 'canary-19', 'failure', 'crashed_on_start'), 202);
    await tick(fleet);
    assert.equal((await status(fleet)).state, 'active', 'one worker is below the minimum sample, however often it reports');
    for (let i = 10; i < 19; i += 1) assert.equal(await report(fleet, `canary-${i}`, 'success'), 202);
    await tick(fleet);
    const now = await status(fleet);
    assert.equal(now.failure.failed_workers, 1);
    assert.equal(now.state, 'active', `1 of ${now.failure.sample_workers} is not above 10 %`);
  });

  test('workers that go stale neither fail the rollout nor hold its wave forever', async () => {
    // Only four canaries stay alive: the wave's 3 healthy updates are counted against them.
    advance(fleet.server, 400);
    for (let i = 10; i < 14; i += 1) {
      const res = await fleet.server.app.inject({
        method: 'POST',
        url: '/api/workers/heartbeat',
        headers: bearer(fleet.tokens['canary']!),
        payload: { worker_id: `canary-${i}`, current_version: '1.5.0', state: 'working' },
      });
      assert.equal(res.statusCode, 200);
    }
    await tick(fleet, 8); // past the stale limit (300 s) and the soak (600 s)
    const now = await status(fleet);
    assert.equal(now.state, 'active');
    assert.equal(now.current_wave, 2, `the stable wave started: ${JSON.stringify(now.waves[0].waiting_on)}`);
  });

  test('a server restart mid-rollout does not halt it or start it twice', async () => {
    const { app: again, fleet: reopened } = await restarted(fleet);
    try {
      await again.rollouts.evaluate();
      const rollouts = await reopened.listRollouts(CHANNEL, 10);
      assert.deepEqual(rollouts.map((r) => [r.serial, r.state]), [[2, 'active'], [1, 'completed']]);
    } finally {
      await again.close();
      await reopened.close();
    }
  });
});
