/**
 * The whole update cycle (plan B4.1) with real parts only: the real server process, real packaged
 * worker executables as separate processes, real HTTP, the real release tool writing a real store.
 * One lab (server, store, keys) serves every scenario; each scenario has its own channel, pool and
 * install root so that they cannot disturb each other.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import type { LogLine, ManagedProcess } from '../../scripts/lib/processes.js';
import { runCommand } from '../../scripts/lib/processes.js';
import { until } from '../helpers/wait.js';
import { artifactFileName } from '../../src/protocol/platform.js';

const EVENT_TIMEOUT_MS = 60_000;

let lab: UpdateLab;
let v100: string;
let v110: string;

before(async () => {
  lab = await UpdateLab.create({ cacheTtlSeconds: 1 });
  [v100, v110] = [await lab.buildWorker('1.0.0'), await lab.buildWorker('1.1.0')];
  await lab.startServer();
});

after(async () => {
  await lab?.close();
});

async function currentVersion(installRoot: string): Promise<string> {
  return (await readlink(join(installRoot, 'current'))).split('/').pop()!;
}

/** The executable `current` points at still runs and names the version. */
async function assertRuns(installRoot: string, version: string): Promise<void> {
  const result = await runCommand(join(installRoot, 'current', 'bytebiota-worker'), ['--version', '--json']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal((JSON.parse(result.stdout) as { version: string }).version, version);
}

function event(worker: ManagedProcess, name: string, match: (line: LogLine) => boolean = () => true, from = 0) {
  return worker.waitForEvent((line) => line.event === name && match(line), EVENT_TIMEOUT_MS, from);
}

async function installFresh(name: string, executable = v100): Promise<string> {
  const root = join(lab.dir, name);
  await lab.installWorker(executable, root);
  return root;
}

/** Prometheus text: the value of one sample, 0 when absent. */
function sample(metrics: string, name: string, labels: Record<string, string>): number {
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) return Number(line.split(' ').pop());
  }
  return 0;
}

describe('worker update flow', { concurrency: 3 }, () => {
  test('v1 updates itself to v2 and reports success; a v3 that crashes at start is rolled back and not retried', async () => {
    await lab.publish('1.0.0', v100, { channel: 'stable' });
    const token = await lab.createToken('worker', 'canary');
    await lab.setPoolPolicy('canary', true);
    const root = await installFresh('cycle');
    const worker = lab.startSupervisor('cycle', { installRoot: root, token, checkIntervalSeconds: 1, healthWindowSeconds: 20 });
    await event(worker, 'worker_ready');

    await lab.publish('1.1.0', v110, { channel: 'stable' });
    const success = await event(worker, 'worker_update_success', (line) => line['to_version'] === '1.1.0');
    assert.equal(success['from_version'], '1.0.0');
    // Published with its chunk index, 1.1.0 came as the chunks 1.0.0 lacks (docs/protocol.md, section 8).
    const artifactSize = (await stat(v110)).size;
    assert.equal(success['delta'], true, `success: ${JSON.stringify(success)}`);
    assert.ok(Number(success['bytes_fetched']) > 0 && Number(success['bytes_fetched']) < artifactSize * 0.15, `fetched ${String(success['bytes_fetched'])} of ${artifactSize}`);
    assert.equal(await currentVersion(root), '1.1.0');
    assert.equal((await readlink(join(root, 'previous'))).split('/').pop(), '1.0.0');
    assert.equal((await readlink(join(root, 'launcher'))).split('/').pop(), '1.1.0', 'the launcher moves once the version proved itself');
    await assertRuns(root, '1.1.0');

    const broken = await lab.brokenWorker('1.2.0');
    const mark = worker.events.length;
    await lab.publish('1.2.0', broken, { channel: 'stable' });
    const rollback = await event(worker, 'worker_update_rollback', (line) => line['to_version'] === '1.2.0', mark);
    assert.equal(rollback['reason'], 'crashed_on_start');
    await event(worker, 'worker_ready', () => true, worker.events.indexOf(rollback));
    assert.equal(await currentVersion(root), '1.1.0');
    await assertRuns(root, '1.1.0');

    // Several more checks pass: 1.2.0 is skipped (or unchanged since the last check: 304), never
    // attempted again. Once the server's next evaluation has halted the 1.2.0 rollout on this
    // rollback (1 of 1 workers failed), the answer is "nothing new" (no_release) instead.
    const afterRollback = worker.events.length;
    const skippedOrUnchanged = (line: LogLine) =>
      line['skipped_version'] === '1.2.0' || line['result'] === 'not_modified' || line['result'] === 'no_release';
    await event(worker, 'worker_update_check', skippedOrUnchanged, afterRollback);
    await event(worker, 'worker_update_check', skippedOrUnchanged, worker.events.length);
    const retried = worker.events.slice(afterRollback).filter((line) => line.event === 'worker_update_attempt');
    assert.deepEqual(retried, [], 'a rolled-back version must not be tried again');

    // The fleet view and the server's metrics show both outcomes.
    type FleetView = { workers: Array<{ pool: string; version: string }>; recent_failures: Array<{ to_version: string; reason: string; event: string }> };
    const fleet = await until(
      'the fleet view to show the 1.2.0 failure',
      async () => {
        const view = (await lab.fleet()) as FleetView;
        return view.recent_failures.some((f) => f.to_version === '1.2.0') ? view : null;
      },
      EVENT_TIMEOUT_MS,
      250,
    );
    assert.ok(fleet.recent_failures.some((f) => f.to_version === '1.2.0' && f.event === 'rollback' && f.reason === 'crashed_on_start'));
    assert.ok(fleet.workers.some((w) => w.pool === 'canary' && w.version === '1.1.0'));
    const metrics = await lab.metricsText();
    assert.ok(sample(metrics, 'worker_update_success_total', { channel: 'stable', to_version: '1.1.0' }) >= 1);
    assert.ok(sample(metrics, 'worker_update_bytes_total', { mode: 'delta' }) >= Number(success['bytes_fetched']), 'the success report carried the bytes');
    await worker.stop();
  });

  test('a power cut while a broken version is watched: the service restarts the proven launcher, which rolls back', async () => {
    const channel = 'power-cut';
    await lab.publish('1.0.0', v100, { channel });
    const token = await lab.createToken('worker', 'power-cut');
    await lab.setPoolPolicy('power-cut', true);
    const root = await installFresh('power-cut');
    const options = { installRoot: root, token, channel, checkIntervalSeconds: 1, healthWindowSeconds: 6, ownProcessGroup: true };
    const first = lab.startSupervisor('power-cut', options);
    await event(first, 'worker_ready');

    await lab.publish('1.3.0', await lab.brokenWorker('1.3.0', 'hang'), { channel });
    await event(first, 'worker_update_switched', (line) => line['to_version'] === '1.3.0');
    await first.killGroup();
    // The cut came mid-watch: current names the broken version; launcher still names the proven one.
    assert.equal(await currentVersion(root), '1.3.0');
    assert.equal((await readlink(join(root, 'launcher'))).split('/').pop(), '1.0.0');

    const second = lab.startSupervisor('power-cut-restart', options);
    const rollback = await event(second, 'worker_update_rollback', (line) => line['to_version'] === '1.3.0');
    assert.equal(rollback['reason'], 'health_check_failed');
    await event(second, 'worker_ready', () => true, second.events.indexOf(rollback));
    assert.equal(await currentVersion(root), '1.0.0');
    await assertRuns(root, '1.0.0');
    await second.killGroup();
  });

  test('a checksum mismatch leaves the worker on its version, and the reason reaches the report and /metrics', async () => {
    const channel = 'tampered';
    await lab.publish('1.5.0', await lab.brokenWorker('1.5.0'), { channel });
    // After signing, an attacker with write access to the store swaps the artifact's bytes.
    const artifact = join(lab.storeDir, 'artifacts', '1.5.0', artifactFileName('1.5.0', lab.platform));
    const bytes = await readFile(artifact);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0xff;
    await writeFile(artifact, bytes);

    const token = await lab.createToken('worker', 'tamper-pool');
    const root = await installFresh('tampered');
    const worker = lab.startRun('tampered', { installRoot: root, token, channel, extraArgs: ['--force-update'] });
    const failure = await event(worker, 'worker_update_failure', (line) => line['reason'] === 'checksum_mismatch');
    assert.equal(failure['to_version'], '1.5.0');
    await event(worker, 'worker_unit_done', () => true, worker.events.indexOf(failure));
    assert.ok(worker.running, 'the worker keeps running its version');
    assert.equal(await currentVersion(root), '1.0.0');
    await assertRuns(root, '1.0.0');

    // The server counts the reported checksum_mismatch.
    await until(
      'worker_update_failure_total{reason="checksum_mismatch"} on the server',
      async () => sample(await lab.metricsText(), 'worker_update_failure_total', { reason: 'checksum_mismatch', channel }) >= 1,
      EVENT_TIMEOUT_MS,
      250,
    );
    await worker.stop();
  });

  test('below the minimum version with updates off, the worker refuses to start (exit 3) unless --force-start', async () => {
    const channel = 'minimum';
    await lab.publish('1.1.0', v110, { channel, minimumVersion: '1.1.0' });
    const token = await lab.createToken('worker', 'frozen-minimum');
    const root = await installFresh('minimum');

    const refused = lab.startRun('minimum-refused', { installRoot: root, token, channel });
    const exit = await refused.waitForExit(EVENT_TIMEOUT_MS);
    assert.equal(exit.code, 3);
    const line = refused.events.find((l) => l.event === 'worker_start_refused');
    assert.ok(line, 'worker_start_refused is logged');
    assert.equal(line['minimum_version'], '1.1.0');

    const forced = lab.startRun('minimum-forced', { installRoot: root, token, channel, extraArgs: ['--force-start'] });
    await event(forced, 'worker_start_forced');
    await event(forced, 'worker_unit_done');
    assert.equal(await currentVersion(root), '1.0.0');
    await forced.stop();
  });

  /** Runs a worker for several check intervals and asserts it never asked for, or attempted, an update. */
  async function assertNeverUpdates(name: string, options: { pool: string; policy: boolean; extraArgs?: string[]; env?: NodeJS.ProcessEnv }) {
    const channel = `never-${name}`;
    await lab.publish('1.1.0', v110, { channel });
    const token = await lab.createToken('worker', options.pool);
    await lab.setPoolPolicy(options.pool, options.policy);
    const root = await installFresh(name);
    const worker = lab.startRun(name, {
      installRoot: root,
      token,
      channel,
      checkIntervalSeconds: 1,
      ...(options.extraArgs ? { extraArgs: options.extraArgs } : {}),
      ...(options.env ? { env: options.env } : {}),
    });
    const registered = await event(worker, 'worker_registered');
    assert.equal(registered['auto_update'], options.policy);
    // Three check intervals' worth of work, then look at what happened.
    const started = Date.now();
    while (Date.now() - started < 3_500) await event(worker, 'worker_unit_done', () => true, worker.events.length);
    const updateEvents = worker.events.filter((l) => /^worker_update_(attempt|check|staged|failure)$/.test(String(l.event)));
    assert.deepEqual(updateEvents, [], `${name}: no update activity expected`);
    assert.equal(await currentVersion(root), '1.0.0');
    await worker.stop();
  }

  test('--no-auto-update: no update even though the pool allows it', () =>
    assertNeverUpdates('flag-off', { pool: 'open-a', policy: true, extraArgs: ['--no-auto-update'] }));

  test('AUTO_UPDATE=0: no update even though the pool allows it', () =>
    assertNeverUpdates('env-off', { pool: 'open-b', policy: true, env: { AUTO_UPDATE: '0' } }));

  test('a pool with updates off: no update although the worker allows it', () =>
    assertNeverUpdates('pool-off', { pool: 'closed', policy: false }));

  test('three workers in two pools update only where the pool policy allows', async () => {
    const channel = 'two-pools';
    await lab.publish('1.0.0', v100, { channel });
    const onToken = await lab.createToken('worker', 'rollout-on');
    const offToken = await lab.createToken('worker', 'rollout-off');
    await lab.setPoolPolicy('rollout-on', true);
    await lab.setPoolPolicy('rollout-off', false);
    const workers = await Promise.all(
      [
        ['pool-on-1', onToken],
        ['pool-on-2', onToken],
        ['pool-off-1', offToken],
      ].map(async ([name, token]) => {
        const root = await installFresh(name!);
        const worker = lab.startSupervisor(name!, { installRoot: root, token: token!, channel, checkIntervalSeconds: 1, healthWindowSeconds: 20 });
        await event(worker, 'worker_ready');
        return { name: name!, root, worker };
      }),
    );
    await lab.publish('1.1.0', v110, { channel });
    for (const { root, worker } of workers.slice(0, 2)) {
      await event(worker, 'worker_update_success', (line) => line['to_version'] === '1.1.0');
      assert.equal(await currentVersion(root), '1.1.0');
    }
    const off = workers[2]!;
    const mark = off.worker.events.length;
    const started = Date.now();
    while (Date.now() - started < 3_000) await event(off.worker, 'worker_unit_done', () => true, off.worker.events.length);
    assert.deepEqual(off.worker.events.slice(mark).filter((l) => l.event === 'worker_update_attempt'), []);
    assert.equal(await currentVersion(off.root), '1.0.0');
    await Promise.all(workers.map(({ worker }) => worker.stop()));
  });
});
