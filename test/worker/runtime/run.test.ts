import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { currentPlatform } from '../../../src/protocol/platform.js';
import { REASON_CODES } from '../../../src/protocol/reason-codes.js';
import { installLayout } from '../../../src/worker/install/install-layout.js';
import { isCompleteVersion } from '../../../src/worker/install/installer.js';
import { UNITS_LOG_PATH } from '../../../src/worker/runtime/run.js';
import { loadState } from '../../../src/worker/install/state.js';
import { artifactEntryFor, fakeWorkerExecutable, releaseFor } from '../../helpers/engine-fixtures.js';
import { spawnWorkerCli, type SpawnedProgram } from '../../helpers/worker-fixtures.js';
import { eventIs } from '../../helpers/log-lines.js';
import { until } from '../../helpers/wait.js';
import { json, scriptedServer, type RecordedRequest } from '../../helpers/worker-http.js';
import { makeKey, signedManifestBytes } from '../../helpers/trust-fixtures.js';

const dirs: string[] = [];
const programs: SpawnedProgram[] = [];
after(async () => {
  for (const program of programs) program.kill('SIGKILL');
  await Promise.all(programs.map((p) => p.exited));
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});
async function installRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-run-'));
  dirs.push(dir);
  return dir;
}
function worker(args: string[], env: NodeJS.ProcessEnv = {}): SpawnedProgram {
  const program = spawnWorkerCli(args, env);
  programs.push(program);
  return program;
}
const key = makeKey();

function handshakeServer(minimumVersion: string | null, autoUpdate: boolean) {
  return scriptedServer((req, res) => {
    if (req.url === '/api/workers/register') {
      return json(res, 200, { minimum_version: minimumVersion, recommended_version: null, latest_version: null, auto_update: autoUpdate, heartbeat_interval_s: 30, server_time: new Date().toISOString() });
    }
    if (req.url?.startsWith('/api/worker-updates/latest')) return json(res, 404, { error: { code: 'no_release', message: 'none' } });
    return json(res, 202, undefined);
  });
}

const STAGED_VERSION = '0.2.0';
const STAGED_SERIAL = 5;
const MANIFEST_ETAG = '"m5"';

/**
 * An update server for `run`, scripted per test: the handshake and heartbeats (with `accepts`
 * from a rollout-aware server, without from an older one), a signed manifest for 0.2.0 on the
 * first `latest` request, and on the next ones (the check before the switch) what `recheck` says.
 */
async function updateServer(options: {
  accepts: boolean;
  /** The identity routes `accepts` lists; none (a server from before worker identity) when omitted. */
  identity?: string[];
  artifact?: Buffer;
  recheck?: 'offered' | 'no_release' | 'unavailable';
  /** Runs before the first manifest is answered. */
  beforeManifest?: () => Promise<void>;
}) {
  const artifact = options.artifact ?? fakeWorkerExecutable(STAGED_VERSION);
  const artifactPath = `/api/worker-updates/artifacts/${STAGED_VERSION}/w`;
  const now = Date.now();
  const manifest = signedManifestBytes(
    releaseFor({
      version: STAGED_VERSION,
      serial: STAGED_SERIAL,
      released_at: new Date(now - 3600_000).toISOString(),
      expires: new Date(now + 30 * 86400_000).toISOString(),
      artifacts: { [currentPlatform()]: artifactEntryFor(artifact, `artifacts/${STAGED_VERSION}/w`) },
    }),
    [key],
  );
  const identity = options.identity !== undefined ? { identity: options.identity } : {};
  const accepts = options.accepts ? { accepts: { report_fields: ['serial'], reasons: [...REASON_CODES], ...identity } } : {};
  const sendManifest = (req: RecordedRequest, res: ServerResponse): void => {
    if (req.headers['if-none-match'] === MANIFEST_ETAG) res.writeHead(304, { etag: MANIFEST_ETAG }).end();
    else res.writeHead(200, { 'content-type': 'application/json', etag: MANIFEST_ETAG }).end(manifest);
  };
  let latestRequests = 0;
  const server = await scriptedServer((req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/api/workers/register') {
      return json(res, 200, { minimum_version: null, recommended_version: null, latest_version: null, auto_update: true, heartbeat_interval_s: 1, server_time: new Date().toISOString(), ...accepts });
    }
    if (path === '/api/workers/heartbeat') return json(res, 200, { auto_update: true, minimum_version: null, latest_version: null, heartbeat_interval_s: 1, ...accepts });
    if (path === '/api/worker-updates/latest') {
      latestRequests += 1;
      if (latestRequests === 1 && options.beforeManifest) {
        void options.beforeManifest().then(() => sendManifest(req, res));
        return;
      }
      if (latestRequests === 1 || options.recheck === 'offered') return sendManifest(req, res);
      if (options.recheck === 'no_release') return json(res, 404, { error: { code: 'no_release', message: 'the rollout was halted' } });
      return json(res, 503, { error: { code: 'unavailable', message: 'down' } });
    }
    if (path === artifactPath) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(artifact.length) }).end(artifact);
      return;
    }
    if (path === '/api/worker-updates/report') return json(res, 202, undefined);
    return json(res, 404, { error: { code: 'not_found', message: path ?? '' } });
  });
  const bodies = (path: string) => server.requests.filter((r) => r.url === path).map((r) => JSON.parse(r.body) as Record<string, unknown>);
  return {
    ...server,
    latest: () => server.requests.filter((r) => r.url.startsWith('/api/worker-updates/latest')),
    reports: () => bodies('/api/worker-updates/report'),
    heartbeats: () => bodies('/api/workers/heartbeat') as Array<{ update?: Record<string, unknown> }>,
  };
}

/**
 * The attempt report of a worker that has exited: sent to the server, or, when the process exited
 * before its sender got to it, still queued under reports/ (in full: it is adapted when sent).
 */
async function attemptReport(root: string, server: { reports(): Array<Record<string, unknown>> }): Promise<{ sent: boolean; report: Record<string, unknown> }> {
  const sent = server.reports().find((r) => r['event'] === 'attempt');
  if (sent) return { sent: true, report: sent };
  const dir = installLayout(root).reportsDir;
  for (const name of await readdir(dir)) {
    const queued = JSON.parse(await readFile(join(dir, name), 'utf8')) as { report: Record<string, unknown> };
    if (queued.report['event'] === 'attempt') return { sent: false, report: queued.report };
  }
  throw new Error('no attempt report, sent or queued');
}

function updatingWorker(root: string, serverUrl: string, extra: string[] = []): SpawnedProgram {
  return worker(['run', '--install-root', root, '--server', serverUrl, '--trusted-key', key.publicKeyBase64, ...extra], { BYTEBIOTA_WORKER_TOKEN: 'tok' });
}

describe('bytebiota-worker run', { timeout: 300_000 }, () => {
  test('--version and --version --json', async () => {
    const text = worker(['--version']);
    let out = '';
    text.child.stdout?.on('data', (c: Buffer) => (out += String(c)));
    assert.equal((await text.exited).code, 0);
    assert.match(out, /^bytebiota-worker 0\.1\.0\ncommit: source\nbuilt: .*\nplatform: /);
    const asJson = worker(['--version', '--json']);
    const line = await asJson.waitForLine((l) => typeof l['version'] === 'string');
    assert.deepEqual(Object.keys(line).sort(), ['built_at', 'commit', 'platform', 'version']);
  });

  test('usage and config errors exit 2 with a clear message', async () => {
    for (const args of [['run'], ['run', '--install-root', '/x', '--check-interval', 'often'], ['run', '--bogus'], ['nonsense']]) {
      const program = worker(args);
      assert.equal((await program.exited).code, 2, args.join(' '));
    }
    const program = worker(['run', '--install-root', '/x', '--channel', 'Bad!']);
    assert.equal((await program.exited).code, 2);
    assert.match(program.stderr(), /--channel: expected a channel name/);
  });

  test('below the minimum with the pool policy off: worker_start_refused, exit 3', async () => {
    const server = await handshakeServer('9.0.0', false);
    try {
      const root = await installRoot();
      const program = worker(['run', '--install-root', root, '--server', server.url, '--trusted-key', key.publicKeyBase64], { BYTEBIOTA_WORKER_TOKEN: 'tok' });
      const refused = await program.waitForLine(eventIs('worker_start_refused'));
      assert.equal(refused['minimum_version'], '9.0.0');
      assert.equal((await program.exited).code, 3);
    } finally {
      await server.close();
    }
  });

  test('below the minimum with --force-start: worker_start_forced, works, SIGTERM exits 0 with whole units', async () => {
    const server = await handshakeServer('9.0.0', false);
    try {
      const root = await installRoot();
      const program = worker(['run', '--install-root', root, '--server', server.url, '--force-start'], { BYTEBIOTA_WORKER_TOKEN: 'tok' });
      await program.waitForLine(eventIs('worker_start_forced'));
      await program.waitForLine(eventIs('worker_ready'));
      const unitsLog = join(root, 'work', 'units.log');
      await until('a unit of work done', async () => (await readFile(unitsLog, 'utf8').catch(() => '')).includes('\n'));
      program.kill('SIGTERM');
      assert.equal((await program.exited).code, 0);
      const units = (await readFile(unitsLog, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { unit: number });
      assert.ok(units.length >= 1);
      assert.deepEqual(units.map((u) => u.unit), units.map((_u, i) => i + 1), 'contiguous, none cut or lost');
      assert.ok(!JSON.stringify(program.lines).includes('"tok"'));
      assert.ok(program.lines.some((l) => l['event'] === 'worker_updates_disabled'), 'no trusted key: says it never updates');
    } finally {
      await server.close();
    }
  });

  test("heartbeats carry the supervisor's part of an update: a passed watch is completed, a rollback names its version and reason", async () => {
    const heartbeats: Array<{ update?: unknown }> = [];
    const server = await scriptedServer((req, res) => {
      if (req.url === '/api/workers/register') {
        return json(res, 200, { minimum_version: null, recommended_version: null, latest_version: null, auto_update: false, heartbeat_interval_s: 1, server_time: new Date().toISOString() });
      }
      if (req.url === '/api/workers/heartbeat') heartbeats.push(JSON.parse(req.body) as { update?: unknown });
      return json(res, 202, undefined);
    });
    try {
      const cases = [
        {
          state: { pending_watch: { to_version: '0.1.0', from_version: '0.0.9', correlation_id: 'c-1', channel: 'stable', started_at: new Date().toISOString() }, rolled_back: {} },
          expected: { to_version: '0.1.0', state: 'completed' },
        },
        {
          state: { rolled_back: { '0.2.0': { reason: 'crashed_on_start', at: new Date().toISOString() } } },
          expected: { to_version: '0.2.0', state: 'rolled_back', reason: 'crashed_on_start' },
        },
      ];
      for (const { state, expected } of cases) {
        const root = await installRoot();
        await writeFile(join(root, 'state.json'), JSON.stringify({ worker_id: 'status-1', highest_serial: {}, ...state }));
        heartbeats.length = 0;
        const running = worker(['run', '--install-root', root, '--server', server.url], { BYTEBIOTA_WORKER_TOKEN: 'tok' });
        await running.waitForLine(eventIs('worker_ready'));
        await until('a heartbeat', () => heartbeats.length > 0, 20_000);
        running.kill('SIGTERM');
        assert.equal((await running.exited).code, 0);
        assert.deepEqual(heartbeats[0]?.update, expected);
      }
    } finally {
      await server.close();
    }
  });

  test('sends ready over IPC when the server is unreachable, and serves /metrics when run alone', async () => {
    const root = await installRoot();
    const child = fork('src/worker/main.ts', ['run', '--install-root', root, '--server', 'http://127.0.0.1:9/'], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, BYTEBIOTA_WORKER_TOKEN: 'tok' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const ready = await Promise.race([
      new Promise<unknown>((resolve) => child.once('message', resolve)),
      exited.then((code) => Promise.reject(new Error(`exited ${code} before ready: ${stderr}`))),
    ]);
    assert.deepEqual(ready, { type: 'ready', version: '0.1.0' });
    child.disconnect();
    assert.equal(await exited, 0, `the worker stops when its supervisor goes away: ${stderr}`);

    const alone = worker(['run', '--install-root', await installRoot(), '--metrics-port', '0']);
    const listening = await alone.waitForLine(eventIs('worker_metrics_listening'));
    const response = await request(String(listening['url']));
    const text = await response.body.text();
    assert.match(text, /worker_version_current\{version="0\.1\.0"\} 1/);
    assert.match(text, /worker_update_attempt_total 0/);
    alone.kill('SIGTERM');
    assert.equal((await alone.exited).code, 0);
  });

  for (const [recheck, expected] of [
    ['offered', { exitCode: 75, event: 'worker_update_recheck' }],
    ['unavailable', { exitCode: 75, event: 'worker_update_recheck_failed' }],
  ] as const) {
    test(`a rollout-aware server is asked again before the switch: ${recheck} → exit 75 into the staged version`, async () => {
      const server = await updateServer({ accepts: true, recheck });
      try {
        const root = await installRoot();
        const program = updatingWorker(root, server.url);
        const line = await program.waitForLine(eventIs(expected.event), 60_000);
        assert.equal(line['serial'], STAGED_SERIAL);
        assert.equal((await program.exited).code, expected.exitCode);
        assert.equal(server.latest().length, 2, 'checked, then asked once more');
        if (recheck === 'offered') {
          assert.equal(server.latest()[1]?.headers['if-none-match'], MANIFEST_ETAG, 'with the ETag remembered for the channel');
          assert.equal(line['result'], 'not_modified');
        } else {
          assert.equal(line['reason'], 'manifest_fetch_failed');
        }
        const state = await loadState(installLayout(root), () => 'unused');
        assert.deepEqual(
          { to: state.pending_switch?.to_version, serial: state.pending_switch?.serial },
          { to: STAGED_VERSION, serial: STAGED_SERIAL },
          'handed to the supervisor with its serial',
        );
        const attempt = await attemptReport(root, server);
        assert.equal(attempt.report['serial'], STAGED_SERIAL);
        assert.ok(!program.lines.some((l) => l['event'] === 'worker_update_forced'));
        assert.equal(server.latest()[0]?.headers['x-bytebiota-force-update'], undefined);
      } finally {
        await server.close();
      }
    });
  }

  test('a release no longer offered when it is staged is cancelled: no switch, pending_switch removed, version kept, heartbeats cleared, work goes on', async () => {
    const server = await updateServer({ accepts: true, recheck: 'no_release' });
    try {
      const root = await installRoot();
      const program = updatingWorker(root, server.url);
      const cancelled = await program.waitForLine(eventIs('worker_update_cancelled'), 60_000);
      assert.equal(cancelled['cause'], 'no_longer_offered');
      assert.equal(cancelled['to_version'], STAGED_VERSION);
      assert.equal(cancelled['serial'], STAGED_SERIAL);
      const layout = installLayout(root);
      const state = await loadState(layout, () => 'unused');
      assert.equal(state.pending_switch, undefined);
      assert.equal(await isCompleteVersion(layout, STAGED_VERSION), true, 'kept complete, for when it is offered again');
      // Heartbeats sent from now on say nothing of the cancelled update.
      const seen = server.heartbeats().length;
      const later = await until('two more heartbeats', () => (server.heartbeats().length >= seen + 2 ? server.heartbeats().at(-1) : undefined));
      assert.equal(later.update, undefined);
      assert.equal(program.child.exitCode, null, 'still working');
      program.kill('SIGTERM');
      assert.equal((await program.exited).code, 0);
    } finally {
      await server.close();
    }
  });

  const servers = [
    { name: 'a first-protocol server (no accepts)', accepts: false },
    { name: 'a server from before worker identity (accepts without identity)', accepts: true },
    { name: 'a server that lists claim', accepts: true, identity: ['claim'] },
  ];
  for (const kind of servers) {
    test(`a worker with only the pool token claims a credential only from a server that lists claim: ${kind.name}`, async () => {
      const server = await updateServer(kind);
      try {
        const root = await installRoot();
        const program = worker(['run', '--install-root', root, '--server', server.url], { BYTEBIOTA_WORKER_TOKEN: 'tok' });
        if (kind.identity !== undefined) {
          // This test server has no claim route: a 404, which is not retried.
          const failed = await program.waitForLine(eventIs('worker_claim_failed'));
          assert.equal(failed['code'], 'request_rejected');
        }
        const beats = server.heartbeats().length;
        await until('two more heartbeats', () => server.heartbeats().length >= beats + 2);
        const identityCalls = server.requests.filter((r) => r.url.startsWith('/api/workers/claim') || r.url.startsWith('/api/workers/credential') || r.url.startsWith('/api/workers/enroll'));
        if (kind.identity === undefined) {
          assert.deepEqual(identityCalls, [], 'no identity route on a server that does not list it');
        } else {
          assert.equal(identityCalls.length, 1, 'claimed once, not again at each heartbeat');
          assert.match(String((JSON.parse(identityCalls[0]!.body) as Record<string, unknown>)['claim_key']), /^[A-Za-z0-9_-]{43}$/);
        }
        assert.ok(server.requests.every((r) => r.headers['authorization'] === 'Bearer tok'), 'the pool token throughout');
        await assert.rejects(readFile(join(root, 'credential.json')), { code: 'ENOENT' });
        program.kill('SIGTERM');
        assert.equal((await program.exited).code, 0);
      } finally {
        await server.close();
      }
    });
  }

  test('an older server (no accepts) is not asked again, and gets first-protocol reports', async () => {
    const server = await updateServer({ accepts: false, recheck: 'no_release' });
    try {
      const root = await installRoot();
      const program = updatingWorker(root, server.url);
      assert.equal((await program.exited).code, 75);
      assert.equal(server.latest().length, 1);
      const attempt = await attemptReport(root, server);
      assert.equal(attempt.report['to_version'], STAGED_VERSION);
      // Queued as recorded; an older server, which refuses unknown fields, is sent it without.
      assert.equal('serial' in attempt.report, !attempt.sent);
      // Still recorded in full for the supervisor, which reads what the server accepts from state.json.
      const state = await loadState(installLayout(root), () => 'unused');
      assert.equal(state.pending_switch?.serial, STAGED_SERIAL);
      assert.equal(state.server_accepts, undefined);
    } finally {
      await server.close();
    }
  });

  for (const accepts of [true, false]) {
    test(`a release that fails its self-test is reported as ${accepts ? 'self_test_failed with its serial' : 'install_failed to an older server'}, in reports and heartbeats`, async () => {
      const server = await updateServer({ accepts, artifact: fakeWorkerExecutable(STAGED_VERSION, { reportVersion: '6.6.6' }) });
      try {
        const root = await installRoot();
        const program = updatingWorker(root, server.url);
        const failure = await program.waitForLine((l) => l['event'] === 'worker_update_failure' && l['to_version'] === STAGED_VERSION, 60_000);
        assert.equal(failure['reason'], 'self_test_failed', 'the log says what happened, whatever the server takes');
        assert.equal(failure['serial'], STAGED_SERIAL);
        const report = await until('the failure report', () => server.reports().find((r) => r['event'] === 'failure'));
        assert.equal(report['reason'], accepts ? 'self_test_failed' : 'install_failed');
        assert.equal(report['serial'], accepts ? STAGED_SERIAL : undefined);
        const heartbeat = await until('a heartbeat with the failure', () => server.heartbeats().find((h) => h.update?.['state'] === 'failed'));
        assert.equal(heartbeat.update?.['reason'], accepts ? 'self_test_failed' : 'install_failed');
        const state = await loadState(installLayout(root), () => 'unused');
        assert.equal(state.server_accepts?.server_url, accepts ? new URL(server.url).toString() : undefined, 'remembered for the supervisor');
        program.kill('SIGTERM');
        assert.equal((await program.exited).code, 0);
      } finally {
        await server.close();
      }
    });
  }

  test('state.json that breaks during a check: the attempt fails with state_corrupt in the log, the report and the heartbeat, and work goes on', async () => {
    let root = '';
    const server = await updateServer({
      accepts: true,
      // The worker has read state.json for this check; it writes it next (the accepted serial).
      beforeManifest: () => writeFile(installLayout(root).statePath, '{"worker_id": "torn'),
    });
    try {
      root = await installRoot();
      const program = updatingWorker(root, server.url);
      // It fails writing the new serial of the release that verified: the failure names that release.
      const failure = await program.waitForLine((l) => l['event'] === 'worker_update_failure', 60_000);
      assert.equal(failure['reason'], 'state_corrupt');
      assert.equal(failure['to_version'], STAGED_VERSION);
      assert.equal(failure['serial'], STAGED_SERIAL);
      const detail = await program.waitForLine((l) => l['event'] === 'worker_update_error');
      assert.equal(detail['reason'], 'state_corrupt');
      assert.match(String(detail['error']), /state\.json/, 'the cause is logged');
      const report = await until('the failure report', () => server.reports().find((r) => r['event'] === 'failure'));
      assert.equal(report['reason'], 'state_corrupt');
      const heartbeat = await until('a heartbeat with the failure', () => server.heartbeats().find((h) => h.update?.['state'] === 'failed'));
      assert.equal(heartbeat.update?.['reason'], 'state_corrupt');
      // Nothing was staged, nothing reset: the broken file is still there for the operator.
      assert.equal(await readFile(installLayout(root).statePath, 'utf8'), '{"worker_id": "torn');
      const unitsDone = (): number => readFileSync(join(root, UNITS_LOG_PATH), 'utf8').split('\n').length;
      const unitsBefore = unitsDone();
      await until('another unit of work', () => (unitsDone() > unitsBefore ? true : undefined));
      program.kill('SIGTERM');
      assert.equal((await program.exited).code, 0);
    } finally {
      await server.close();
    }
  });

  test('--force-update asks the server to bypass its rollout, on the check and on the second look, and logs worker_update_forced', async () => {
    const server = await updateServer({ accepts: true, recheck: 'offered' });
    try {
      const root = await installRoot();
      const program = updatingWorker(root, server.url, ['--force-update']);
      const forced = await program.waitForLine(eventIs('worker_update_forced'), 60_000);
      assert.equal((await program.exited).code, 75);
      assert.deepEqual(
        server.latest().map((r) => r.headers['x-bytebiota-force-update']),
        ['1', '1'],
      );
      const staged = program.lines.find((l) => l['event'] === 'worker_update_staged');
      assert.equal(forced['correlation_id'], staged?.['correlation_id']);
    } finally {
      await server.close();
    }
  });
});
