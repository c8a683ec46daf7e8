import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { eventIs, spawnWorkerCli, type SpawnedProgram } from '../helpers/worker-fixtures.js';
import { json, scriptedServer } from '../helpers/worker-http.js';
import { makeKey } from '../helpers/trust-fixtures.js';

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
      await new Promise((r) => setTimeout(r, 700));
      program.kill('SIGTERM');
      assert.equal((await program.exited).code, 0);
      const units = (await readFile(join(root, 'work', 'units.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { unit: number });
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
        const deadline = Date.now() + 20_000;
        while (heartbeats.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
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
});
