import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import { FleetSim } from '../helpers/fleet-sim.js';
import { until } from '../helpers/wait.js';

/**
 * A fleet outlives a crash of its update server. 200 workers (the worker's own connection and
 * backoff code, see fleet-sim.ts) heartbeat against the real server process, which is killed
 * with SIGKILL and restarted on the same port a few seconds later. Measured at the clients:
 * the request rate in steady state, while the server is down, and in the first 10 s after it is
 * back. The fleet must not come back in a synchronized spike (at most 3 times the steady rate
 * in any one second), and every worker must be heartbeating again.
 */

const WORKER_COUNT = 200;
const HEARTBEAT_INTERVAL_S = 2;
const STEADY_WINDOW_S = 6;
const DOWNTIME_MS = 3_000;
const AFTER_RESTART_WINDOW_S = 10;
const SPIKE_FACTOR_LIMIT = 3;
const SEED = Number(process.env['FLEET_SIM_SEED'] ?? Date.now() % 1_000_000);

let lab: UpdateLab | undefined;
let fleet: FleetSim | undefined;

after(async () => {
  await fleet?.stop();
  await lab?.close();
});

test(`${WORKER_COUNT} workers ride out a SIGKILL and restart of the server without a synchronized spike`, async () => {
  console.log(`fleet-restart seed ${SEED} (set FLEET_SIM_SEED to repeat)`);
  lab = await UpdateLab.create();
  const serverArgs = ['--heartbeat-interval', String(HEARTBEAT_INTERVAL_S)];
  await lab.startServer(serverArgs);
  const tokens = [await lab.createToken('worker', 'fleet-a'), await lab.createToken('worker', 'fleet-b')];

  // Steady state: every worker registered, then a window of plain heartbeats.
  fleet = new FleetSim({ serverUrl: lab.serverUrl, tokens, workerCount: WORKER_COUNT, seed: SEED, startSpreadMs: HEARTBEAT_INTERVAL_S * 1000 });
  const startedAtMs = Date.now();
  fleet.start();
  const sim = fleet;
  await until(() => `every worker to register; ${sim.workersHeardFromSince(startedAtMs)} did`, () => sim.workersHeardFromSince(startedAtMs) === WORKER_COUNT, 30_000, 100);
  // One full interval after the last handshake, every worker is on its heartbeat schedule.
  await delay(HEARTBEAT_INTERVAL_S * 1000);
  const steadyFromMs = Date.now();
  await delay(STEADY_WINDOW_S * 1000);
  const steadyToMs = Date.now();

  // The crash: no graceful shutdown, connections reset, then a few seconds with nothing listening.
  await lab.killServer();
  const killedAtMs = Date.now();
  await delay(DOWNTIME_MS);
  await lab.startServer(serverArgs);
  const restartedAtMs = Date.now();
  await delay(AFTER_RESTART_WINDOW_S * 1000);

  // Every worker heartbeats again (the server kept them in its database across the crash).
  await until(
    () => `every worker to heartbeat again; ${sim.workersHeardFromSince(restartedAtMs)} of ${WORKER_COUNT} heard from since the restart`,
    () => sim.workersHeardFromSince(restartedAtMs) === WORKER_COUNT,
    30_000,
    100,
  );

  const steadyRate = fleet.ratePerSecond(steadyFromMs, steadyToMs);
  const steadyBuckets = fleet.bucketsPerSecond(steadyFromMs, STEADY_WINDOW_S);
  const downRate = fleet.ratePerSecond(killedAtMs, restartedAtMs);
  const afterBuckets = fleet.bucketsPerSecond(restartedAtMs, AFTER_RESTART_WINDOW_S);
  const afterRate = fleet.ratePerSecond(restartedAtMs, restartedAtMs + AFTER_RESTART_WINDOW_S * 1000);
  const peakAfter = Math.max(...afterBuckets);
  const registerAttempts = fleet.workers.reduce((sum, worker) => sum + worker.registerAttempts, 0);
  console.log(
    [
      `steady state: ${steadyRate.toFixed(1)} req/s (per second: ${steadyBuckets.join(' ')})`,
      `server down ${restartedAtMs - killedAtMs} ms: ${downRate.toFixed(1)} req/s`,
      `first ${AFTER_RESTART_WINDOW_S} s after the restart: ${afterRate.toFixed(1)} req/s (per second: ${afterBuckets.join(' ')})`,
      `peak second after the restart: ${peakAfter} = ${(peakAfter / steadyRate).toFixed(2)} x steady (limit ${SPIKE_FACTOR_LIMIT} x)`,
      `register calls in all: ${registerAttempts} for ${WORKER_COUNT} workers`,
    ].join('\n'),
  );

  // The expected steady rate is one heartbeat per worker per interval.
  const expectedSteadyRate = WORKER_COUNT / HEARTBEAT_INTERVAL_S;
  assert.ok(steadyRate > expectedSteadyRate * 0.5 && steadyRate < expectedSteadyRate * 1.5, `steady rate ${steadyRate} req/s, expected about ${expectedSteadyRate}`);
  assert.ok(peakAfter <= SPIKE_FACTOR_LIMIT * steadyRate, `a synchronized spike: ${peakAfter} requests in one second after the restart, steady ${steadyRate.toFixed(1)}/s`);
  assert.ok(downRate <= SPIKE_FACTOR_LIMIT * steadyRate, `retry storm while the server was down: ${downRate.toFixed(1)} req/s`);

  // The server's own view agrees: all of them, seen since the restart.
  const view = (await lab.fleet()) as { total_workers: number; workers: Array<{ worker_id: string; last_seen_at: string }> };
  assert.equal(view.total_workers, WORKER_COUNT);
  const seenSinceRestart = view.workers.filter((worker) => Date.parse(worker.last_seen_at) >= restartedAtMs - 1000);
  assert.equal(seenSinceRestart.length, WORKER_COUNT);
});
