/**
 * The worker's win32 path for real, under Wine: win32-x64 executables built here (1.0.0, 1.1.0,
 * and a 1.2.0 that crashes as it starts to work), 1.0.0 installed into an install root the
 * Windows processes see as Z:\..., `supervise` started from the `launcher` pointer file as a
 * service would, and the real server running on Linux. The worker updates itself to 1.1.0,
 * then rolls back from 1.2.0 on its own. After each step: the pointer files, versions\, and
 * what the server was told. `npm run test:windows`; needs Wine and (for the first build) the
 * npm registry.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import { buildWorker, WINDOWS_CROSS_PLATFORM } from '../../src/release/build/index.js';
import { installLayout, type InstallLayout } from '../../src/worker/install/install-layout.js';
import { until } from '../helpers/wait.js';
import { createWinePrefix, removeWinePrefix, runWindowsProgram, startWindowsProgram, wineMissingReason, windowsLogLines, windowsPath, type RunningWindowsProgram, type WinePrefix } from '../helpers/wine.js';
import type { LogLine } from '../helpers/log-lines.js';

const skip = wineMissingReason();
/** Three builds (about 20 s each on 2 cores), a Wine boot, and two updates of a 70 MB executable. */
const FILE_TIMEOUT_MS = 600_000;
const EVENT_TIMEOUT_MS = 120_000;
const CRASH_ON_RUN_ENTRY = new URL('./fixtures/crash-on-run-worker.ts', import.meta.url).pathname;

interface FleetView {
  workers: Array<{ worker_id: string; version: string }>;
  recent_failures: Array<{ to_version: string; reason: string; event: string }>;
}

let lab: UpdateLab | undefined;
let prefix: WinePrefix | undefined;
const executables: Record<string, string> = {};

before(async () => {
  if (skip) return;
  const startedMs = performance.now();
  lab = await UpdateLab.create({ cacheTtlSeconds: 1 });
  const buildDir = join(lab.dir, 'build');
  // One at a time: each build is CPU-bound, and the first fills the shared node.exe cache the
  // others read (the default build cache, so later runs of this file fetch nothing).
  for (const [version, entry] of [['1.0.0', undefined], ['1.1.0', undefined], ['1.2.0', CRASH_ON_RUN_ENTRY]] as const) {
    const built = await buildWorker({ version, outDir: join(buildDir, version), commit: 'unknown', platform: WINDOWS_CROSS_PLATFORM, ...(entry ? { entry } : {}) });
    executables[version] = built.path;
  }
  const builtMs = performance.now();
  [prefix] = await Promise.all([createWinePrefix(), lab.startServer()]);
  console.log(`3 win32-x64 builds took ${Math.round(builtMs - startedMs)} ms; Wine prefix booted in ${Math.round(prefix.bootMs)} ms`);
}, { timeout: FILE_TIMEOUT_MS });

after(async () => {
  if (prefix) await removeWinePrefix(prefix);
  await lab?.close();
});

async function publish(version: string): Promise<void> {
  await lab!.release([
    'publish', '--store', lab!.storeDir, '--channel', 'stable', '--version', version,
    '--artifact', `${WINDOWS_CROSS_PLATFORM}=${executables[version]}`, '--key', lab!.releaseKeyPath,
  ]);
}

interface Seen {
  line: LogLine;
  /** Its position in the output, to wait for what comes after it. */
  index: number;
}

function waitForEvent(program: RunningWindowsProgram, event: string, match: (line: LogLine) => boolean = () => true, from = 0): Promise<Seen> {
  let stderr = '';
  let lastEvents: unknown[] = [];
  return until(
    () => `${event} in the supervisor's output; its last events: ${lastEvents.join(', ')}; its stderr ends: ${stderr.slice(-2_000)}`,
    async () => {
      stderr = (await program.output()).stderr;
      const lines = await windowsLogLines(program);
      lastEvents = lines.slice(-10).map((line) => line['event']);
      const index = lines.findIndex((line, i) => i >= from && line['event'] === event && match(line));
      return index === -1 ? undefined : { line: lines[index]!, index };
    },
    EVENT_TIMEOUT_MS,
    250,
  );
}

/** The pointer files as the worker wrote them: one version and a newline each. */
async function pointerFiles(layout: InstallLayout): Promise<Record<string, string>> {
  const read = (path: string) => readFile(path, 'utf8');
  return { current: await read(layout.currentPointer), previous: await read(layout.previousPointer), launcher: await read(layout.launcherPointer) };
}

test('under Wine, a supervised Windows worker updates itself from the real server, then rolls back from a release that crashes at start', { skip, timeout: FILE_TIMEOUT_MS }, async () => {
  const wine = prefix!;
  const root = join(lab!.dir, 'install');
  const layout = installLayout(root, WINDOWS_CROSS_PLATFORM);
  const startedMs = performance.now();

  await publish('1.0.0');
  const install = await runWindowsProgram(wine, executables['1.0.0']!, ['install', '--install-root', windowsPath(root)], { timeoutMs: 120_000 });
  assert.equal(install.code, 0, install.stderr);
  assert.deepEqual(await readdir(layout.versionsDir), ['1.0.0']);
  assert.equal(await readFile(layout.currentPointer, 'utf8'), '1.0.0\n');

  const token = await lab!.createToken('worker', 'canary');
  await lab!.setPoolPolicy('canary', true);
  // As a service would: the executable the launcher pointer file names.
  const launcher = (await readFile(layout.launcherPointer, 'utf8')).trim();
  const outputDir = join(lab!.dir, 'supervisor-output');
  await mkdir(outputDir);
  const supervisor = await startWindowsProgram(
    wine,
    layout.executablePath(launcher),
    ['supervise', '--install-root', windowsPath(root), '--server', lab!.serverUrl, '--channel', 'stable', '--trusted-key', lab!.releasePublicKey, '--check-interval', '2', '--health-window', '120'],
    outputDir,
    { env: { BYTEBIOTA_WORKER_TOKEN: token, LOG_LEVEL: 'info' } },
  );
  await waitForEvent(supervisor, 'worker_ready');
  console.log(`1.0.0 ready under Wine after ${Math.round(performance.now() - startedMs)} ms`);

  await publish('1.1.0');
  const { line: success } = await waitForEvent(supervisor, 'worker_update_success', (line) => line['to_version'] === '1.1.0');
  assert.equal(success['from_version'], '1.0.0');
  assert.deepEqual(await pointerFiles(layout), { current: '1.1.0\n', previous: '1.0.0\n', launcher: '1.1.0\n' });
  assert.deepEqual((await readdir(layout.versionsDir)).sort(), ['1.0.0', '1.1.0']);
  const workerId = String(success['worker_id']);
  await until(
    `the server's fleet view to show ${workerId} on 1.1.0`,
    async () => ((await lab!.fleet()) as unknown as FleetView).workers.some((w) => w.worker_id === workerId && w.version === '1.1.0'),
    60_000,
    250,
  );
  console.log(`updated to 1.1.0 under Wine after ${Math.round(performance.now() - startedMs)} ms`);

  await publish('1.2.0');
  const { line: rollback, index: rollbackIndex } = await waitForEvent(supervisor, 'worker_update_rollback', (line) => line['to_version'] === '1.2.0');
  assert.equal(rollback['reason'], 'crashed_on_start');
  assert.equal(rollback['from_version'], '1.1.0');
  await waitForEvent(supervisor, 'worker_ready', () => true, rollbackIndex);
  // current back on 1.1.0; previous stays 1.1.0 (the switch to 1.2.0 set it); the launcher never left 1.1.0.
  assert.deepEqual(await pointerFiles(layout), { current: '1.1.0\n', previous: '1.1.0\n', launcher: '1.1.0\n' });
  assert.deepEqual((await readdir(layout.versionsDir)).sort(), ['1.0.0', '1.1.0', '1.2.0'], 'the rolled-back version stays until the next prune');
  const fleet = await until(
    "the server's record of the 1.2.0 rollback",
    async () => {
      const view = (await lab!.fleet()) as unknown as FleetView;
      return view.recent_failures.some((f) => f.to_version === '1.2.0') ? view : null;
    },
    60_000,
    250,
  );
  assert.ok(fleet.recent_failures.some((f) => f.to_version === '1.2.0' && f.event === 'rollback' && f.reason === 'crashed_on_start'), JSON.stringify(fleet.recent_failures));
  assert.ok(fleet.workers.some((w) => w.worker_id === workerId && w.version === '1.1.0'));
  console.log(`rolled back from 1.2.0 under Wine after ${Math.round(performance.now() - startedMs)} ms`);

  // A stop for the supervisor alone (Ctrl+C to its process, not the console): the worker hears
  // of it only through the supervisor's IPC stop message, finishes its unit, and both exit 0.
  const beforeStop = (await windowsLogLines(supervisor)).length;
  process.kill(supervisor.pid!, 'SIGINT');
  const { line: stopping } = await waitForEvent(supervisor, 'worker_supervisor_stopping', () => true, beforeStop);
  assert.equal(stopping['signal'], 'SIGINT');
  const { line: workerStopping } = await waitForEvent(supervisor, 'worker_stopping', () => true, beforeStop);
  assert.equal(workerStopping['via'], 'stop_message');
  const { line: stopped } = await waitForEvent(supervisor, 'worker_supervisor_stopped', () => true, beforeStop);
  assert.equal(stopped['exit_code'], 0);
  assert.equal((await supervisor.exited).code, 0);
});
