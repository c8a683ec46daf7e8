/**
 * Staged rollouts end to end with real parts only: the real server process evaluating rollouts
 * every second, real packaged workers under their supervisors in three pools, the real release
 * tool. A good release walks every wave; a release that passes its watch and then crash-loops is
 * halted at the canary wave by the server on its own, the stable pools never run it, and
 * `bytebiota-release rollback` brings the canary back at once.
 */
import assert from 'node:assert/strict';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ManagedProcess } from '../../scripts/lib/processes.js';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import { until as pollUntil } from '../helpers/wait.js';

const EVENT_TIMEOUT_MS = 90_000;
const CHANNEL = 'stable';

interface Worker {
  name: string;
  pool: string;
  root: string;
  process: ManagedProcess;
}

let lab: UpdateLab;
let admin: string;
const workers: Worker[] = [];

async function currentVersion(root: string): Promise<string> {
  return (await readlink(join(root, 'current'))).split('/').pop()!;
}

async function rollout(): Promise<Record<string, unknown> & { state: string; version: string; current_wave: number; serial: number }> {
  const { status, json } = await lab.api('GET', `/api/admin/rollouts?channel=${CHANNEL}`, admin);
  assert.equal(status, 200);
  return (json as { rollouts: Array<Record<string, unknown> & { state: string; version: string; current_wave: number; serial: number }> }).rollouts[0]!;
}

/** Every wait here polls the admin API or the install roots: every 250 ms, for up to EVENT_TIMEOUT_MS. */
function until<T>(what: string, probe: () => Promise<T | null>): Promise<T> {
  return pollUntil(what, probe, EVENT_TIMEOUT_MS, 250);
}

async function setPlan(waves: Array<{ pools: string[]; percent: number; soak_s: number; min_healthy: number }>): Promise<void> {
  const { status, json } = await lab.api('PUT', `/api/admin/channels/${CHANNEL}/plan`, admin, { immediate: false, waves });
  assert.equal(status, 200, JSON.stringify(json));
}

before(async () => {
  lab = await UpdateLab.create({ cacheTtlSeconds: 1, defaultRolloutPlan: 'staged' });
  await lab.startServer(['--rollout-eval-interval', '1', '--heartbeat-interval', '2']);
  admin = await lab.admin();
  const v100 = await lab.buildWorker('1.0.0');
  await lab.publish('1.0.0', v100, { channel: CHANNEL });
  const layout: Array<[string, string]> = [
    ['canary-a', 'canary'],
    ['stable-a', 'stable'],
    ['stable-b', 'stable'],
    ['edge-a', 'edge'],
  ];
  const tokens: Record<string, string> = {};
  for (const pool of ['canary', 'stable', 'edge']) {
    tokens[pool] = await lab.createToken('worker', pool);
    await lab.setPoolPolicy(pool, true);
  }
  for (const [name, pool] of layout) {
    const root = join(lab.dir, name);
    await lab.installWorker(v100, root);
    const process = lab.startSupervisor(name, { installRoot: root, token: tokens[pool]!, channel: CHANNEL, checkIntervalSeconds: 1, healthWindowSeconds: 20 });
    workers.push({ name, pool, root, process });
  }
  for (const worker of workers) await worker.process.waitForEvent((line) => line.event === 'worker_ready', EVENT_TIMEOUT_MS);
});

after(async () => {
  await lab?.close();
});

describe('staged rollout with real packaged workers in three pools', () => {
  test('a good release walks canary 100 % → stable 50 % → stable and edge 100 %', async () => {
    await setPlan([
      { pools: ['canary'], percent: 100, soak_s: 2, min_healthy: 1 },
      { pools: ['stable'], percent: 50, soak_s: 2, min_healthy: 1 },
      { pools: ['stable', 'edge'], percent: 100, soak_s: 2, min_healthy: 1 },
    ]);
    await lab.publish('1.1.0', await lab.buildWorker('1.1.0'), { channel: CHANNEL });
    const order: string[] = [];
    await until('every worker on 1.1.0', async () => {
      for (const worker of workers) {
        if (!order.includes(worker.name) && (await currentVersion(worker.root)) === '1.1.0') order.push(worker.name);
      }
      return order.length === workers.length ? order : null;
    });
    assert.equal(order[0], 'canary-a', `the canary goes first: ${order.join(', ')}`);
    assert.notEqual(order[1], 'edge-a', 'edge waits for the last wave');
    const done = await until('the rollout to complete', async () => ((await rollout()).state === 'completed' ? rollout() : null));
    assert.equal(done.version, '1.1.0');
    assert.equal(done.current_wave, 3);
  });

  test('a release that crash-loops after its watch halts at the canary; stable never runs it; a rollback release brings the canary back at once', async () => {
    // A long canary soak: the halt must come from the crash reports, not from the clock.
    await setPlan([
      { pools: ['canary'], percent: 100, soak_s: 600, min_healthy: 1 },
      { pools: ['stable', 'edge'], percent: 100, soak_s: 2, min_healthy: 1 },
    ]);
    const canary = workers.find((w) => w.name === 'canary-a')!;
    const mark = canary.process.events.length;
    await lab.publish('1.2.0', await lab.lateCrashWorker('1.2.0'), { channel: CHANNEL });
    await canary.process.waitForEvent((line) => line.event === 'worker_update_success' && line['to_version'] === '1.2.0', EVENT_TIMEOUT_MS, mark);
    const loop = await canary.process.waitForEvent((line) => line.event === 'worker_crash_loop', EVENT_TIMEOUT_MS, mark);
    const reportedAt = Date.now();
    const halted = await until('the automatic halt', async () => {
      const now = await rollout();
      return now.state === 'halted' ? now : null;
    });
    console.log(`crash loop of ${String(loop['child_version'])} seen by the supervisor after ${String(loop['crashes'])} crashes; rollout halted ${Date.now() - reportedAt} ms later`);
    assert.equal(loop['child_version'], '1.2.0');
    assert.equal(halted.version, '1.2.0');
    assert.equal(halted['state_changed_by'], 'automatic');
    assert.equal(halted.current_wave, 1, 'the stable wave never started');

    // The server writes its log through a buffer: wait for the line, do not expect it already there.
    const serverHalt = await lab.server!.waitForEvent((line) => line.event === 'rollout_halted', EVENT_TIMEOUT_MS);
    assert.equal(serverHalt['trigger'], 'automatic');
    assert.equal(serverHalt['failed_workers'], 1);

    // The operator rolls the fleet back: a signed release of 1.1.0 with a new serial.
    const rolledBackMark = canary.process.events.length;
    const out = await lab.release(['rollback', '--store', lab.storeDir, '--channel', CHANNEL, '--to', '1.1.0', '--key', lab.releaseKeyPath]);
    assert.match(out, /1\.1\.0/);
    await canary.process.waitForEvent((line) => line.event === 'worker_update_success' && line['to_version'] === '1.1.0', EVENT_TIMEOUT_MS, rolledBackMark);
    assert.equal(await currentVersion(canary.root), '1.1.0');
    const urgent = await until('the rollback rollout', async () => {
      const now = await rollout();
      return now.version === '1.1.0' ? now : null;
    });
    assert.equal(urgent['urgent'], true);

    for (const worker of workers.filter((w) => w.pool !== 'canary')) {
      assert.equal(await currentVersion(worker.root), '1.1.0', worker.name);
      assert.ok(
        !worker.process.events.some((line) => line['to_version'] === '1.2.0'),
        `${worker.name} never attempted 1.2.0`,
      );
    }
  });
});
