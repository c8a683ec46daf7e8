import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { currentPlatform } from '../../../src/protocol/platform.js';
import { buildWorker, type BuiltWorker } from '../../../src/release/build/index.js';
import { installLayout } from '../../../src/worker/install/install-layout.js';
import { readPointer } from '../../../src/worker/install/pointer.js';
import { loadState } from '../../../src/worker/install/state.js';
import { eventIs, watchLogLines } from '../../helpers/log-lines.js';
import { until } from '../../helpers/wait.js';

/**
 * The real thing: packaged v1 and v2 executables (the SEA builder), v2 published with a signed
 * manifest into a folder store, the real server, a worker token and the pool policy on; then
 * `supervise` on an install root with v1 installed updates itself to v2 and reports success.
 */
const execFileAsync = promisify(execFile);
const TIMEOUT_MS = 300_000;
const cli = (program: 'server' | 'release', args: string[]) =>
  execFileAsync(process.execPath, ['--import', 'tsx', `src/${program}/main.ts`, ...args], { maxBuffer: 16 * 1024 * 1024 });

let dir = '';
let v1: BuiltWorker;
let serverUrl = '';
const children: ReturnType<typeof spawn>[] = [];

after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  if (dir) await rm(dir, { recursive: true, force: true });
});

let adminToken = '';
let workerToken = '';
let publicKey = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bytebiota-e2e-'));
  await cli('release', ['keygen', '--out', join(dir, 'keys')]);
  publicKey = (await readFile(join(dir, 'keys', 'release.pub'), 'utf8')).trim();
  v1 = await buildWorker({ version: '1.0.0', outDir: join(dir, 'build'), commit: 'unknown' });
  const v2 = await buildWorker({ version: '2.0.0', outDir: join(dir, 'build'), commit: 'unknown' });
  const store = join(dir, 'store');
  await cli('release', ['publish', '--store', store, '--channel', 'stable', '--version', '2.0.0', '--artifact', `${currentPlatform()}=${v2.path}`, '--key', join(dir, 'keys', 'release.key')]);
  const db = join(dir, 'server.db');
  workerToken = (await cli('server', ['token', 'create', '--db', db, '--role', 'worker', '--pool', 'canary'])).stdout.trim().split('\n').at(-1) ?? '';
  adminToken = (await cli('server', ['token', 'create', '--db', db, '--role', 'admin'])).stdout.trim().split('\n').at(-1) ?? '';
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server/main.ts', 'serve', '--port', '0', '--store', store, '--db', db, '--release-key', publicKey, '--heartbeat-interval', '1', '--default-rollout-plan', 'immediate'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(server);
  const listening = await watchLogLines(server).waitForLine(eventIs('server_listening'), 30_000);
  serverUrl = String(listening['url']);
  const policy = await request(new URL('/api/admin/pools/canary/policy', serverUrl), {
    method: 'PUT',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ auto_update: true }),
  });
  assert.equal(policy.statusCode, 200, await policy.body.text());
}, { timeout: TIMEOUT_MS });

test('supervise updates a packaged v1 to v2 from the real server and reports success', { timeout: TIMEOUT_MS }, async () => {
  const root = join(dir, 'install');
  await execFileAsync(v1.path, ['install', '--install-root', root]);
  const layout = installLayout(root);
  assert.equal(await readPointer(layout, 'current'), '1.0.0');

  const supervisor = spawn(layout.executablePath('1.0.0'), ['supervise', '--install-root', root, '--server', serverUrl, '--trusted-key', publicKey, '--health-window', '60'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BYTEBIOTA_WORKER_TOKEN: workerToken },
  });
  children.push(supervisor);
  const output = watchLogLines(supervisor);
  const success = await output.waitForLine(eventIs('worker_update_success'), 120_000);
  assert.equal(success['from_version'], '1.0.0');
  assert.equal(success['to_version'], '2.0.0');
  assert.equal(await readPointer(layout, 'current'), '2.0.0');
  assert.equal(await readPointer(layout, 'previous'), '1.0.0');
  const state = await loadState(layout, () => 'unused');
  assert.equal(state.pending_watch, undefined);
  assert.ok(output.lines.some((l) => l['event'] === 'worker_update_attempt' && l['correlation_id'] === success['correlation_id']));

  // The server's fleet view shows the worker on 2.0.0 once its reports and heartbeats arrive.
  let fleet = '';
  await until(
    () => `the fleet view to show ${state.worker_id} on 2.0.0; it shows ${fleet}`,
    async () => {
      const response = await request(new URL('/api/admin/fleet', serverUrl), { headers: { authorization: `Bearer ${adminToken}` } });
      fleet = await response.body.text();
      return fleet.includes(state.worker_id) && fleet.includes('"2.0.0"');
    },
    20_000,
    200,
  );

  supervisor.kill('SIGTERM');
  const code = await new Promise((resolve) => supervisor.once('exit', resolve));
  assert.equal(code, 0);
});
