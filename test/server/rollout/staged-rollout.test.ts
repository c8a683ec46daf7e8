import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RolloutPlan } from '../../../src/protocol/rollouts.js';
import { bearer, startTestServer, type TestServer } from '../../helpers/server-app.js';
import { publishRelease, releaseFor } from '../../helpers/server-fixtures.js';
import { LightFleet, type LightWorker } from '../../helpers/rollout-fleet.js';
import { seededRandom } from '../../helpers/seeded-random.js';

/**
 * Staged rollouts against a simulated fleet of 1,000 workers: the real server over real HTTP,
 * each worker verifying what it is served against its own serial floor as a deployed worker does.
 */
const CHANNEL = 'prod';
const POOLS = { canary: 50, stable: 800, edge: 150 } as const;

function wave(pools: string[], percent: number): RolloutPlan['waves'][number] {
  return { pools, percent, soak_s: 0, min_healthy: 0 };
}

const PLAN: RolloutPlan = {
  immediate: false,
  waves: [wave(['canary'], 100), wave(['stable'], 5), wave(['stable'], 25), wave(['stable'], 50), wave(['stable', 'edge'], 100)],
};

interface Lab {
  server: TestServer;
  fleet: LightFleet;
  admin: Record<string, string>;
  close(): Promise<void>;
}

async function startLab(seed: number): Promise<Lab> {
  const server = await startTestServer({ cacheTtlSeconds: 0, rollouts: { defaultPlan: 'staged', evaluateOnTimer: false } });
  const base = await server.app.listen({ host: '127.0.0.1', port: 0 });
  const fleet = new LightFleet(base, CHANNEL, [server.key.public], () => server.clock.now());
  const random = seededRandom(seed);
  for (const [pool, count] of Object.entries(POOLS)) {
    const { token } = await server.addToken('worker', pool);
    for (let i = 0; i < count; i += 1) {
      fleet.add(`w-${Math.floor(random() * 2 ** 48).toString(16)}-${i}`, pool, token, '1.4.0');
    }
  }
  return {
    server,
    fleet,
    admin: bearer(server.tokens.admin),
    close: async () => {
      await fleet.close();
      await server.close();
    },
  };
}

async function publish(lab: Lab, serial: number, version: string, extra: Record<string, unknown> = {}): Promise<void> {
  await publishRelease(lab.server.storeDir, releaseFor({ channel: CHANNEL, serial, version, ...extra }), [lab.server.key]);
}

async function adminCall(lab: Lab, method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown) {
  const res = await lab.server.app.inject({ method, url, headers: lab.admin, ...(payload === undefined ? {} : { payload: payload as object }) });
  assert.ok(res.statusCode < 300, `${method} ${url}: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** Workers of `pool` that were served `serial` in their last poll. */
function servedIn(results: Map<string, { serial: number | null }>, workers: readonly LightWorker[], serial: number): LightWorker[] {
  return workers.filter((w) => results.get(w.id)?.serial === serial);
}

for (const seed of [101, 202, 303]) {
  describe(`staged rollout shares over 1,000 workers (seed ${seed})`, () => {
    let lab: Lab;
    before(async () => {
      console.log(`rollout share seed: ${seed}`);
      lab = await startLab(seed);
      await publish(lab, 1, '1.4.0');
      await lab.fleet.each(lab.fleet.workers, (w) => lab.fleet.register(w));
      await adminCall(lab, 'PUT', `/api/admin/channels/${CHANNEL}/plan`, PLAN);
    });
    after(async () => lab.close());

    test('each wave admits its share of the live pool exactly (within 2 points at 5, 25 and 50 %), and no one else', async () => {
      await publish(lab, 2, '1.5.0', { minimum_version: '1.5.0' });
      const stable = lab.fleet.inPool('stable');
      let results = await lab.fleet.pollAll();
      assert.equal(servedIn(results, lab.fleet.inPool('canary'), 2).length, POOLS.canary, 'wave 1: the whole canary pool');
      assert.equal(servedIn(results, stable, 2).length, 0, 'wave 1 does not reach stable');
      // Outside the wave: the release they run (serial 1), nothing new, never an error.
      assert.equal(servedIn(results, stable, 1).length, POOLS.stable);
      assert.equal(servedIn(results, lab.fleet.inPool('edge'), 1).length, POOLS.edge);

      for (const percent of [5, 25, 50]) {
        await lab.server.app.rollouts.evaluate();
        results = await lab.fleet.pollAll();
        const admitted = servedIn(results, stable, 2).length;
        const share = (admitted / POOLS.stable) * 100;
        console.log(`seed ${seed}: stable at ${percent} %: ${admitted} of ${POOLS.stable} admitted (${share.toFixed(2)} %)`);
        assert.ok(Math.abs(share - percent) <= 2, `share ${share} % for a ${percent} % wave`);
        assert.equal(admitted, Math.ceil((percent * POOLS.stable) / 100), 'exact by rank');
        assert.equal(servedIn(results, lab.fleet.inPool('edge'), 2).length, 0, 'edge waits for the last wave');
      }
      const status = (await adminCall(lab, 'GET', `/api/admin/rollouts?channel=${CHANNEL}`)).rollouts[0];
      assert.equal(status.serial, 2);
      assert.equal(status.current_wave, 4);
      assert.deepEqual(
        status.waves.slice(0, 4).map((w: { admitted: number }) => w.admitted),
        [50, 40, 160, 200],
        'admissions counted in the wave that made them',
      );
    });

    test('a worker not admitted is never told a minimum above its own version by a release it was not offered; one admitted learns it at its next heartbeat', async () => {
      const beats = await lab.fleet.each(lab.fleet.workers, async (w) => ({ worker: w, beat: await lab.fleet.heartbeat(w) }));
      for (const { worker, beat } of beats) {
        if (worker.floor >= 2) {
          assert.equal(beat.latest_version, '1.5.0');
          assert.equal(beat.minimum_version, '1.5.0');
        } else {
          assert.equal(beat.latest_version, '1.4.0', worker.id);
          assert.equal(beat.minimum_version, '1.2.0', `${worker.id} must not see the minimum of a release it was not offered`);
        }
      }
      // The next wave starts: the newly admitted hear of it in their next heartbeat, before any poll.
      await lab.server.app.rollouts.evaluate();
      const next = await lab.fleet.each(lab.fleet.inPool('edge'), (w) => lab.fleet.heartbeat(w));
      assert.ok(next.every((beat) => beat.latest_version === '1.5.0'), 'the last wave admits all of edge');
    });

    test("the early set rotates: release 3's first stable wave overlaps release 2's no more than chance allows", async () => {
      const firstSetOf2 = new Set(
        (await lab.server.fleet.rolloutAdmissions(CHANNEL, 2)).filter((a) => a.pool === 'stable' && a.wave === 1).map((a) => a.workerId),
      );
      await publish(lab, 3, '1.6.0');
      await lab.fleet.pollAll(); // starts rollout 3, wave 1 (canary)
      await lab.server.app.rollouts.evaluate(); // wave 2: 5 % of stable
      const results = await lab.fleet.pollAll();
      const firstSetOf3 = new Set(servedIn(results, lab.fleet.inPool('stable'), 3).map((w) => w.id));
      assert.equal(firstSetOf2.size, 40);
      assert.equal(firstSetOf3.size, 40);
      const overlap = [...firstSetOf3].filter((id) => firstSetOf2.has(id)).length;
      // Independent draws of 40 of 800 share 2 on average; 10 or more has a probability below 1e-4.
      console.log(`seed ${seed}: early-set overlap between releases 2 and 3: ${overlap} of 40 (chance: 2)`);
      assert.ok(overlap < 10, `overlap ${overlap}`);
      // Workers admitted to 2 and not yet to 3 keep release 2: never the older 1.
      for (const worker of lab.fleet.workers) {
        const last = results.get(worker.id)!;
        if (firstSetOf2.has(worker.id) && !firstSetOf3.has(worker.id)) assert.equal(last.serial, 2);
      }
    });
  });
}

describe('operator controls take effect at each worker’s next poll, and no worker ever sees a lower serial', () => {
  let lab: Lab;
  before(async () => {
    lab = await startLab(7);
    await publish(lab, 1, '1.4.0');
    await lab.fleet.each(lab.fleet.workers, (w) => lab.fleet.register(w));
    await adminCall(lab, 'PUT', `/api/admin/channels/${CHANNEL}/plan`, PLAN);
    await publish(lab, 2, '1.5.0');
    await lab.fleet.pollAll();
    await lab.server.app.rollouts.evaluate(); // wave 2: 5 % of stable
    await lab.fleet.pollAll();
  });
  after(async () => lab.close());

  const control = (action: string, reason?: string) =>
    adminCall(lab, 'POST', `/api/admin/rollouts/${CHANNEL}/${action}`, reason === undefined ? {} : { reason });

  test('pause holds the rollout: no wave starts and no new worker is admitted; resume goes on', async () => {
    const paused = await control('pause', 'looking at a dashboard');
    assert.equal(paused.state, 'paused');
    await lab.server.app.rollouts.evaluate();
    const status = (await adminCall(lab, 'GET', `/api/admin/rollouts?channel=${CHANNEL}`)).rollouts[0];
    assert.equal(status.current_wave, 2, 'no wave starts while paused');
    const before = (await lab.server.fleet.rolloutAdmissions(CHANNEL, 2)).length;
    const { token } = await lab.server.addToken('worker', 'canary');
    const late = Array.from({ length: 20 }, (_, i) => lab.fleet.add(`late-canary-${i}`, 'canary', token, '1.4.0'));
    await lab.fleet.each(late, (w) => lab.fleet.register(w));
    const results = await lab.fleet.pollAll();
    assert.equal(servedIn(results, late, 2).length, 0, 'canary is at 100 %, but nobody new is admitted while paused');
    assert.equal((await lab.server.fleet.rolloutAdmissions(CHANNEL, 2)).length, before);
    assert.equal(servedIn(results, lab.fleet.inPool('canary').slice(0, POOLS.canary), 2).length, POOLS.canary, 'workers admitted before the pause keep it');

    assert.equal((await control('resume')).state, 'active');
    const resumed = await lab.fleet.pollAll();
    assert.equal(servedIn(resumed, late, 2).length, late.length, 'admitted at their next poll after resume');
  });

  test('halt stops offering the release to everyone at their next poll, admitted or not; nothing lower is offered instead', async () => {
    const halted = await control('halt', 'on-call saw crashes');
    assert.equal(halted.state, 'halted');
    assert.equal(halted.state_reason, 'on-call saw crashes');
    const results = await lab.fleet.pollAll();
    for (const worker of lab.fleet.workers) {
      const result = results.get(worker.id)!;
      assert.notEqual(result.serial, 2, `${worker.id} still offered the halted release`);
      // A worker that accepted serial 2 gets "nothing new", never serial 1 (LightFleet.poll verifies the floor).
      if (worker.floor >= 2) assert.equal(result.status, 404);
    }
    const halts = lab.server.logs().filter((line) => line['event'] === 'rollout_halted');
    assert.equal(halts.length, 1);
    assert.equal(halts[0]!['trigger'], 'operator');
    const audit = lab.server.logs().filter((line) => line['event'] === 'rollout_state_changed' && line['action'] === 'halt');
    assert.equal(audit.length, 1);
    assert.equal(typeof audit[0]!['token_id'], 'string', 'who did it is logged');
  });

  test('resume after a halt offers it again; abort ends it for good', async () => {
    assert.equal((await control('resume')).state, 'active');
    let results = await lab.fleet.pollAll();
    assert.ok(servedIn(results, lab.fleet.workers, 2).length >= POOLS.canary);
    assert.equal((await control('abort', 'replaced by a fix')).state, 'aborted');
    results = await lab.fleet.pollAll();
    assert.equal(servedIn(results, lab.fleet.workers, 2).length, 0);
    const refused = await lab.server.app.inject({ method: 'POST', url: `/api/admin/rollouts/${CHANNEL}/resume`, headers: lab.admin, payload: {} });
    assert.equal(refused.statusCode, 409);
    assert.equal(refused.json().error.code, 'rollout_state_conflict');
  });

  test('a newer release supersedes; its rollout starts once; every worker’s served serials only ever rise', async () => {
    await publish(lab, 3, '1.6.0');
    await lab.fleet.pollAll();
    await lab.fleet.pollAll();
    const rollouts = await lab.server.fleet.listRollouts(CHANNEL, 10);
    assert.deepEqual(rollouts.map((r) => [r.serial, r.state]), [[3, 'active'], [2, 'aborted'], [1, 'completed']]);
    assert.equal(lab.server.logs().filter((line) => line['event'] === 'rollout_started' && line['serial'] === 3).length, 1);
    for (const worker of lab.fleet.workers) {
      for (let i = 1; i < worker.served.length; i += 1) assert.ok(worker.served[i]! >= worker.served[i - 1]!, `${worker.id}: ${worker.served.join(',')}`);
    }
  });

  test('--force-update bypasses the rollout, logged on the server', async () => {
    const worker = lab.fleet.inPool('edge')[0]!;
    const query = new URLSearchParams({ channel: CHANNEL, platform: 'linux-x64', worker_id: worker.id, current_version: worker.version });
    const res = await lab.server.app.inject({ url: `/api/worker-updates/latest?${query}`, headers: { ...bearer(worker.token), 'x-bytebiota-force-update': '1' } });
    assert.equal(res.statusCode, 200);
    assert.equal(JSON.parse(res.body).signed.serial, 3);
    const bypass = lab.server.logs().filter((line) => line['event'] === 'rollout_bypassed');
    assert.equal(bypass.at(-1)?.['worker_id'], worker.id);
  });
});
