import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { REASON_CODES } from '../../../src/protocol/reason-codes.js';
import { readPointer } from '../../../src/worker/install/pointer.js';
import { loadState, updateState } from '../../../src/worker/install/state.js';
import { makeFixtureRoot, spawnWorkerCli, type FixtureRoot, type SpawnedProgram } from '../../helpers/worker-fixtures.js';
import { eventIs } from '../../helpers/log-lines.js';
import { until } from '../../helpers/wait.js';
import { json, scriptedServer } from '../../helpers/worker-http.js';

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

/** A server that takes update reports (202) and keeps them. */
async function reportServer() {
  const server = await scriptedServer((req, res) => json(res, req.url === '/api/worker-updates/report' ? 202 : 404, req.url === '/api/worker-updates/report' ? undefined : { error: { code: 'not_found', message: 'x' } }));
  const reports = () => server.requests.filter((r) => r.url === '/api/worker-updates/report').map((r) => JSON.parse(r.body) as Record<string, unknown>);
  return { ...server, url: new URL(server.url).toString(), reports };
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

      // The same version staged again (a worker that ignored rolled_back) is refused, and the
      // channel's remembered ETag is forgotten: the release was not installed, so the next check
      // must not be answered 304.
      await root.stage('2.0.0', '1.0.0');
      await updateState(root.layout, (s) => {
        s.manifest_etags = { stable: '"staged-release"' };
      });
      await root.requestRestart();
      const refused = await program.waitForLine(eventIs('worker_update_switch_refused'));
      assert.equal(refused['to_version'], '2.0.0');
      const failure = await program.waitForLine((line) => line['event'] === 'worker_update_failure' && line['to_version'] === '2.0.0');
      assert.equal(failure['reason'], 'install_failed');
      await program.waitForLine((line) => line['event'] === 'worker_child_started' && program.lines.indexOf(line) > program.lines.indexOf(refused));
      assert.equal(await readPointer(root.layout, 'current'), '1.0.0');
      assert.equal((await loadState(root.layout, () => 'unused')).manifest_etags?.['stable'], undefined);
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

  test('a watch recorded before the switch happened is carried out when restarted, not dropped', async () => {
    const root = await fixtureRoot();
    await root.install('1.0.0', 'ready');
    await root.install('2.0.0', 'ready');
    await root.makeCurrent('1.0.0');
    await loadState(root.layout, () => 'w-1');
    await updateState(root.layout, (state) => {
      state.pending_watch = { to_version: '2.0.0', from_version: '1.0.0', correlation_id: 'c-1', channel: 'stable', started_at: new Date().toISOString() };
      // Remembered when 2.0.0 was staged: dropping the switch would leave every later check a 304.
      state.manifest_etags = { stable: '"release-2.0.0"' };
    });
    const program = supervise(root);
    await program.waitForLine(eventIs('worker_update_switch_not_done'));
    await program.waitForLine((line) => line['event'] === 'worker_child_started' && line['child_version'] === '2.0.0' && line['watched'] === true);
    const success = await program.waitForLine(eventIs('worker_update_success'));
    assert.equal(success['to_version'], '2.0.0');
    assert.equal(success['correlation_id'], 'c-1');
    assert.equal(await readPointer(root.layout, 'current'), '2.0.0');
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
    const [run] = await until('the child to record its run', async () => {
      const runs = await root.runs();
      return runs.length > 0 ? runs : undefined;
    });
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

  for (const serverKind of ['rollout-aware', 'older'] as const) {
    test(`a version that passed its watch and then crashes 3 times in a row is reported once as crash_loop (${serverKind} server) and kept running`, async () => {
      const server = await reportServer();
      try {
        const root = await fixtureRoot();
        await root.install('1.0.0', 'ready');
        await root.install('2.0.0', 'ready-then-crash');
        await root.makeCurrent('1.0.0');
        await loadState(root.layout, () => 'crash-loop-1');
        if (serverKind === 'rollout-aware') {
          // What `run` remembers from a rollout-aware server's handshake; the supervisor reads it.
          await updateState(root.layout, (state) => {
            state.server_accepts = { server_url: server.url, report_fields: ['serial'], reasons: [...REASON_CODES] };
          });
        }
        const program = supervise(root, ['--server', server.url, '--metrics-port', '0'], { BYTEBIOTA_WORKER_TOKEN: 'tok' });
        const listening = await program.waitForLine(eventIs('worker_metrics_listening'));
        await program.waitForLine(eventIs('worker_child_started'));
        const correlationId = await root.stage('2.0.0', '1.0.0');
        await updateState(root.layout, (state) => {
          state.pending_switch = { ...state.pending_switch!, serial: 7 };
        });
        await root.requestRestart();

        const success = await program.waitForLine(eventIs('worker_update_success'));
        assert.equal(success['correlation_id'], correlationId);
        assert.equal(success['serial'], 7);
        const loop = await program.waitForLine(eventIs('worker_crash_loop'), 30_000);
        assert.equal(loop['child_version'], '2.0.0');
        assert.equal(loop['from_version'], '1.0.0');
        assert.equal(loop['crashes'], 3);
        assert.equal(loop['serial'], 7, 'the serial of the watch it passed, remembered in state.json');
        const exitsBefore = program.lines.filter((line) => line['event'] === 'worker_child_exited' && program.lines.indexOf(line) < program.lines.indexOf(loop));
        assert.equal(exitsBefore.length, 3, 'reported right after the third crash');
        const failure = await program.waitForLine((line) => line['event'] === 'worker_update_failure' && line['reason'] === 'crash_loop');
        assert.equal(failure['to_version'], '2.0.0');

        // What reached the server: the success, and the crash loop only where it is understood.
        if (serverKind === 'rollout-aware') {
          const report = await until('the crash_loop report', () => server.reports().find((r) => r['reason'] === 'crash_loop'));
          assert.deepEqual(
            { event: report['event'], from: report['from_version'], to: report['to_version'], serial: report['serial'], channel: report['channel'] },
            { event: 'failure', from: '1.0.0', to: '2.0.0', serial: 7, channel: 'stable' },
          );
          assert.notEqual(report['correlation_id'], correlationId, 'a new event, not the update attempt');
        } else {
          const withheld = await program.waitForLine(eventIs('worker_report_withheld'), 30_000);
          assert.equal(withheld['reason'], 'crash_loop');
        }
        const successReport = await until('the success report', () => server.reports().find((r) => r['event'] === 'success'));
        assert.equal(successReport['serial'], serverKind === 'rollout-aware' ? 7 : undefined, 'serial only to a server that takes it');

        // Counted like any other failure.
        const metrics = await (await request(String(listening['url']))).body.text();
        assert.match(metrics, /worker_update_failure_total\{reason="crash_loop"\} 1/);

        // Once per version: the fourth crash is restarted as before and not reported again. No
        // rollback: the version passed its watch; the server halts the rollout instead.
        await program.waitForLine((line) => line['event'] === 'worker_child_exited' && program.lines.indexOf(line) > program.lines.indexOf(loop), 30_000);
        assert.equal(program.lines.filter((line) => line['event'] === 'worker_crash_loop').length, 1);
        assert.equal(server.reports().filter((r) => r['reason'] === 'crash_loop').length, serverKind === 'rollout-aware' ? 1 : 0);
        assert.equal(await readPointer(root.layout, 'current'), '2.0.0');
        assert.deepEqual((await loadState(root.layout, () => 'unused')).proven, { version: '2.0.0', serial: 7 });
        assert.equal(await stopGracefully(program), 0);
      } finally {
        await server.close();
      }
    });
  }
});
