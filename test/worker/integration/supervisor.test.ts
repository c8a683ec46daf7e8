import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readPointer } from '../../../src/worker/pointer.js';
import { loadState } from '../../../src/worker/state.js';
import { eventIs, makeFixtureRoot, spawnWorkerCli, type FixtureRoot, type SpawnedProgram } from '../../helpers/worker-fixtures.js';

const roots: FixtureRoot[] = [];
const programs: SpawnedProgram[] = [];
after(async () => {
  for (const program of programs) program.kill('SIGKILL');
  await Promise.all(programs.map((program) => program.exited));
  await Promise.all(roots.map((root) => root.remove()));
});

async function fixtureRoot(): Promise<FixtureRoot> {
  const root = await makeFixtureRoot();
  roots.push(root);
  return root;
}

function supervise(root: FixtureRoot, extra: string[] = [], env: NodeJS.ProcessEnv = {}): SpawnedProgram {
  const program = spawnWorkerCli(['supervise', '--install-root', root.root, '--health-window', '5', '--stop-timeout', '2', ...extra], env);
  programs.push(program);
  return program;
}

async function stopGracefully(program: SpawnedProgram): Promise<number | null> {
  program.kill('SIGTERM');
  return (await program.exited).code;
}

async function versionsStarted(root: FixtureRoot): Promise<string[]> {
  return (await root.runs()).map((run) => run.version);
}

describe('supervisor with fixture executables', { timeout: 300_000 }, () => {
  test('switches into a staged version that becomes ready, and reports success', async () => {
    const root = await fixtureRoot();
    await root.install('1.0.0', 'ready');
    await root.install('2.0.0', 'ready');
    await root.makeCurrent('1.0.0');
    const program = supervise(root);
    await program.waitForLine(eventIs('worker_child_started'));
    const correlationId = await root.stage('2.0.0', '1.0.0');
    await root.requestRestart();
    const success = await program.waitForLine(eventIs('worker_update_success'));
    assert.equal(success['correlation_id'], correlationId);
    assert.equal(success['from_version'], '1.0.0');
    assert.equal(success['to_version'], '2.0.0');
    assert.equal(await readPointer(root.layout, 'current'), '2.0.0');
    assert.equal(await readPointer(root.layout, 'previous'), '1.0.0');
    const state = await loadState(root.layout, () => 'unused');
    assert.equal(state.pending_watch, undefined);
    assert.equal(state.pending_switch, undefined);
    assert.deepEqual(await readdir(root.layout.logsDir), [], 'a successful attempt leaves no log behind');
    assert.equal(await stopGracefully(program), 0);
    assert.deepEqual(await versionsStarted(root), ['1.0.0', '2.0.0']);
  });

  for (const [behaviour, reason] of [
    ['exit-at-start', 'crashed_on_start'],
    ['never-ready', 'health_check_failed'],
  ] as const) {
    test(`rolls back a version that is ${behaviour} with ${reason}, keeps its log, and does not retry it`, async () => {
      const root = await fixtureRoot();
      await root.install('1.0.0', 'ready');
      await root.install('2.0.0', behaviour);
      await root.makeCurrent('1.0.0');
      const program = supervise(root);
      await program.waitForLine(eventIs('worker_child_started'));
      const correlationId = await root.stage('2.0.0', '1.0.0');
      await root.requestRestart();
      const rollback = await program.waitForLine(eventIs('worker_update_rollback'));
      assert.equal(rollback['reason'], reason);
      assert.equal(rollback['correlation_id'], correlationId);
      assert.equal(rollback['to_version'], '2.0.0');
      await program.waitForLine((line) => line['event'] === 'worker_child_started' && line['child_version'] === '1.0.0' && line['watched'] === false && program.lines.indexOf(line) > program.lines.indexOf(rollback));

      assert.equal(await readPointer(root.layout, 'current'), '1.0.0');
      const state = await loadState(root.layout, () => 'unused');
      assert.equal(state.rolled_back['2.0.0']?.reason, reason);
      assert.equal(state.pending_watch, undefined);

      const logs = await readdir(root.layout.logsDir);
      assert.equal(logs.length, 1);
      assert.match(logs[0] ?? '', /^2\.0\.0-.*\.log$/);
      assert.match(await readFile(join(root.layout.logsDir, logs[0] ?? ''), 'utf8'), /fixture_started/);

      // The same version staged again (a worker that ignored rolled_back) is refused.
      await root.stage('2.0.0', '1.0.0');
      await root.requestRestart();
      const refused = await program.waitForLine(eventIs('worker_update_switch_refused'));
      assert.equal(refused['to_version'], '2.0.0');
      const failure = await program.waitForLine((line) => line['event'] === 'worker_update_failure' && line['to_version'] === '2.0.0');
      assert.equal(failure['reason'], 'install_failed');
      await program.waitForLine((line) => line['event'] === 'worker_child_started' && program.lines.indexOf(line) > program.lines.indexOf(refused));
      assert.equal(await readPointer(root.layout, 'current'), '1.0.0');
      assert.equal(await stopGracefully(program), 0);
      assert.equal((await versionsStarted(root)).filter((v) => v === '2.0.0').length, 1, '2.0.0 ran once only');
    });
  }

  test('a supervisor killed with SIGKILL mid-watch resumes the watch when restarted', async () => {
    const root = await fixtureRoot();
    await root.install('1.0.0', 'ready');
    await root.install('2.0.0', 'never-ready');
    await root.makeCurrent('1.0.0');
    const first = spawnWorkerCli(['supervise', '--install-root', root.root, '--health-window', '30']);
    programs.push(first);
    await first.waitForLine(eventIs('worker_child_started'));
    await root.stage('2.0.0', '1.0.0');
    await root.requestRestart();
    await first.waitForLine(eventIs('worker_update_watch'));
    await first.waitForLine((line) => line['event'] === 'worker_child_started' && line['child_version'] === '2.0.0');
    first.kill('SIGKILL');
    await first.exited;
    const mid = await loadState(root.layout, () => 'unused');
    assert.equal(mid.pending_watch?.to_version, '2.0.0', 'the watch is recorded in state.json');
    assert.equal(await readPointer(root.layout, 'current'), '2.0.0');

    const second = supervise(root);
    const watch = await second.waitForLine(eventIs('worker_update_watch'));
    assert.equal(watch['to_version'], '2.0.0');
    const rollback = await second.waitForLine(eventIs('worker_update_rollback'));
    assert.equal(rollback['reason'], 'health_check_failed');
    assert.equal(await readPointer(root.layout, 'current'), '1.0.0');
    assert.equal(await stopGracefully(second), 0);
  });

  test('a switch recorded but not carried out before the supervisor stopped is carried out at start', async () => {
    const root = await fixtureRoot();
    await root.install('1.0.0', 'ready');
    await root.install('2.0.0', 'ready');
    await root.makeCurrent('1.0.0');
    await root.stage('2.0.0', '1.0.0');
    const program = supervise(root);
    await program.waitForLine(eventIs('worker_update_success'));
    assert.equal(await readPointer(root.layout, 'current'), '2.0.0');
    assert.equal(await stopGracefully(program), 0);
    assert.deepEqual(await versionsStarted(root), ['2.0.0']);
  });

  test('a watch recorded before the switch happened is cleared, and current runs', async () => {
    const root = await fixtureRoot();
    await root.install('1.0.0', 'ready');
    await root.install('2.0.0', 'ready');
    await root.makeCurrent('1.0.0');
    const { updateState } = await import('../../../src/worker/state.js');
    await loadState(root.layout, () => 'w-1');
    await updateState(root.layout, (state) => {
      state.pending_watch = { to_version: '2.0.0', from_version: '1.0.0', correlation_id: 'c-1', channel: 'stable', started_at: new Date().toISOString() };
    });
    const program = supervise(root);
    await program.waitForLine(eventIs('worker_update_switch_not_done'));
    await program.waitForLine((line) => line['event'] === 'worker_child_started' && line['child_version'] === '1.0.0');
    assert.equal((await loadState(root.layout, () => 'unused')).pending_watch, undefined);
    assert.equal(await stopGracefully(program), 0);
  });

  test('restarts a crashing current version with growing delays, and SIGTERM stops it all with 0', async () => {
    const root = await fixtureRoot();
    await root.install('1.0.0', 'exit-at-start');
    await root.makeCurrent('1.0.0');
    const program = supervise(root);
    const first = await program.waitForLine(eventIs('worker_child_exited'));
    const second = await program.waitForLine((line) => line['event'] === 'worker_child_exited' && line !== first, 10_000);
    assert.equal(first['restart_in_ms'], 1000);
    assert.equal(second['restart_in_ms'], 2000);
    assert.equal(await stopGracefully(program), 0);
  });

  test('the token reaches the child by environment, never on its command line', async () => {
    const root = await fixtureRoot();
    await root.install('1.0.0', 'ready');
    await root.makeCurrent('1.0.0');
    const program = supervise(root, ['--server', 'http://127.0.0.1:9'], { BYTEBIOTA_WORKER_TOKEN: 'secret-token-123' });
    await program.waitForLine(eventIs('worker_child_started'));
    for (let i = 0; i < 50 && (await root.runs()).length === 0; i += 1) await new Promise((r) => setTimeout(r, 50));
    const [run] = await root.runs();
    assert.equal(run?.token, 'secret-token-123');
    assert.ok(!run?.args.includes('secret-token-123'));
    assert.ok(!program.lines.some((line) => JSON.stringify(line).includes('secret-token-123')), 'never logged');
    assert.equal(await stopGracefully(program), 0);
  });

  test('refuses to start without an installed version (exit 2)', async () => {
    const root = await fixtureRoot();
    const program = supervise(root);
    await program.waitForLine(eventIs('worker_not_installed'));
    assert.equal((await program.exited).code, 2);
  });
});
