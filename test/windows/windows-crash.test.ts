/**
 * Crash consistency under Wine (the guarantee of docs/protocol.md, section 4, on the win32
 * path): a supervised Windows worker updating from 1.0.0 to 1.1.0 is killed with every process
 * of its Wine prefix (`wineserver -k`, the nearest thing to pulling the plug) at a random moment
 * of a random phase of the update, then started again as a service would. Each time: versions\
 * holds only complete, verified versions, the `current` pointer file names one of them, no
 * finished unit of work is lost or counted twice, and the restart converges on 1.1.0.
 *
 *   npm run test:windows                      10 trials
 *   WINE_CHAOS_TRIALS=30 WINE_CHAOS_SEED=1234 replay or lengthen a run (the seed is printed first)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import { buildWorker, WINDOWS_CROSS_PLATFORM } from '../../src/release/build/index.js';
import { installLayout, type InstallLayout } from '../../src/worker/install/install-layout.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { until } from '../helpers/wait.js';
import {
  createWinePrefix,
  killWineProcesses,
  removeWinePrefix,
  runWindowsProgram,
  startWindowsProgram,
  wineMissingReason,
  windowsLogLines,
  windowsPath,
  type RunningWindowsProgram,
  type WinePrefix,
} from '../helpers/wine.js';
import type { LogLine } from '../helpers/log-lines.js';

const skip = wineMissingReason();
const TRIALS = Number(process.env['WINE_CHAOS_TRIALS'] ?? 10);
const SEED = Number(process.env['WINE_CHAOS_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const PHASE_TIMEOUT_MS = 60_000;
const CONVERGE_TIMEOUT_MS = 120_000;
/** Two builds, a Wine boot, and each trial's two supervisor starts under Wine. */
const FILE_TIMEOUT_MS = 900_000;
const CHANNEL = 'stable';

/** The phases to strike in, each named by the log event that opens it (as test/integration/crash-consistency.test.ts). */
const PHASES = [
  { name: 'start', event: null },
  { name: 'download', event: 'worker_update_attempt' },
  { name: 'staging', event: 'worker_update_downloaded' },
  { name: 'switch', event: 'worker_update_staged' },
  { name: 'restart', event: 'worker_update_switched' },
  { name: 'health watch', event: 'worker_child_started' },
] as const;


let lab: UpdateLab | undefined;
let prefix: WinePrefix | undefined;
let token = '';
let template = '';

before(async () => {
  if (skip) return;
  console.log(`windows-crash: seed ${SEED}, ${TRIALS} trials (replay with WINE_CHAOS_SEED=${SEED})`);
  lab = await UpdateLab.create({ cacheTtlSeconds: 1 });
  const built: Record<string, string> = {};
  for (const version of ['1.0.0', '1.1.0']) {
    built[version] = (await buildWorker({ version, outDir: join(lab.dir, 'build', version), commit: 'unknown', platform: WINDOWS_CROSS_PLATFORM })).path;
  }
  [prefix] = await Promise.all([createWinePrefix(), lab.startServer()]);
  for (const version of ['1.0.0', '1.1.0']) {
    await lab.release(['publish', '--store', lab.storeDir, '--channel', CHANNEL, '--version', version, '--artifact', `${WINDOWS_CROSS_PLATFORM}=${built[version]}`, '--key', lab.releaseKeyPath]);
  }
  token = await lab.createToken('worker', 'canary');
  await lab.setPoolPolicy('canary', true);
  // Installed once under Wine; each trial starts from a copy (an install root is only files).
  template = join(lab.dir, 'template');
  const install = await runWindowsProgram(prefix, built['1.0.0']!, ['install', '--install-root', windowsPath(template)], { timeoutMs: 120_000 });
  assert.equal(install.code, 0, install.stderr);
}, { timeout: FILE_TIMEOUT_MS });

after(async () => {
  if (prefix) await removeWinePrefix(prefix);
  await lab?.close();
});

function waitForLine(program: RunningWindowsProgram, what: string, match: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
  let lastEvents: unknown[] = [];
  return until(
    () => `${what}; the last events: ${lastEvents.join(', ')}`,
    async () => {
      const lines = await windowsLogLines(program);
      lastEvents = lines.slice(-10).map((line) => line['event']);
      return lines.find(match);
    },
    timeoutMs,
    100,
  );
}

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function currentPointer(layout: InstallLayout): Promise<string> {
  return (await readFile(layout.currentPointer, 'utf8')).trim();
}

/** Every entry of versions\ is complete: its mark names it, and its executable matches the mark; current names one of them. */
async function assertOnlyCompleteVersions(layout: InstallLayout, context: string): Promise<string[]> {
  const versions = await readdir(layout.versionsDir);
  for (const version of versions) {
    const mark = JSON.parse(await readFile(join(layout.versionDir(version), '.complete'), 'utf8').catch(() => 'null')) as { version: string; sha256: string } | null;
    assert.ok(mark, `${context}: versions\\${version} has no completion mark`);
    assert.equal(mark.version, version, `${context}: versions\\${version}'s mark names ${mark.version}`);
    assert.equal(await sha256Of(layout.executablePath(version)), mark.sha256, `${context}: versions\\${version} executable does not match its mark`);
  }
  const current = await currentPointer(layout);
  assert.ok(versions.includes(current), `${context}: current names ${current}, not a complete version`);
  return versions;
}

/** units.log: one line per finished unit, numbered 1, 2, 3... with no gap, repeat or torn line. */
async function assertUnitsIntact(layout: InstallLayout, context: string): Promise<number> {
  const text = await readFile(join(layout.root, 'work', 'units.log'), 'utf8').catch(() => '');
  const lines = text.split('\n').filter(Boolean);
  lines.forEach((line, index) => {
    assert.equal((JSON.parse(line) as { unit: number }).unit, index + 1, `${context}: units.log line ${index}`);
  });
  assert.ok(text === '' || text.endsWith('\n'), `${context}: units.log ends in a torn line`);
  return lines.length;
}

async function startSupervisor(layout: InstallLayout, trial: number, run: string): Promise<RunningWindowsProgram> {
  const outputDir = join(lab!.dir, `output-${trial}-${run}`);
  await mkdir(outputDir);
  // As a service would: the version the launcher pointer file names.
  const launcher = (await readFile(layout.launcherPointer, 'utf8')).trim();
  return startWindowsProgram(
    prefix!,
    layout.executablePath(launcher),
    ['supervise', '--install-root', windowsPath(layout.root), '--worker-id', `wine-crash-${trial}`, '--server', lab!.serverUrl, '--channel', CHANNEL, '--trusted-key', lab!.releasePublicKey, '--check-interval', '1', '--health-window', '60'],
    outputDir,
    { env: { BYTEBIOTA_WORKER_TOKEN: token, LOG_LEVEL: 'debug' } },
  );
}

/** The phase a trial struck in, or `missed` when its opening event never came before the kill. */
async function runTrial(trial: number, random: () => number): Promise<string> {
  const root = join(lab!.dir, `trial-${trial}`);
  await cp(template, root, { recursive: true });
  const layout = installLayout(root, WINDOWS_CROSS_PLATFORM);
  const phase = PHASES[trial % PHASES.length]!;
  const delayMs = Math.floor(random() * 400);
  const context = `trial ${trial} (kill ${delayMs} ms into ${phase.name})`;

  const first = await startSupervisor(layout, trial, 'first');
  let struck: string = phase.name;
  try {
    if (phase.event) {
      await waitForLine(first, `${phase.event} (${context})`, (line) => line['event'] === phase.event && (phase.name !== 'health watch' || line['watched'] === true), PHASE_TIMEOUT_MS);
    }
  } catch {
    // The phase's opening event never came: strike now anyway, and say so.
    struck = 'missed';
  }
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  const unitsBefore = await assertUnitsIntact(layout, context);
  await killWineProcesses(prefix!);
  await first.exited;
  await assertOnlyCompleteVersions(layout, `${context}, right after the kill`);
  assert.ok((await assertUnitsIntact(layout, context)) >= unitsBefore, `${context}: finished units were lost`);

  const second = await startSupervisor(layout, trial, 'restart');
  try {
    await waitForLine(second, `worker_ready on 1.1.0 after the restart (${context})`, (line) => line['event'] === 'worker_ready' && line['version'] === '1.1.0', CONVERGE_TIMEOUT_MS);
    const versions = await assertOnlyCompleteVersions(layout, `${context}, after restart`);
    assert.equal(await currentPointer(layout), '1.1.0', `${context}: did not converge on 1.1.0`);
    assert.ok(versions.includes('1.1.0'));
    await assertUnitsIntact(layout, context);
  } finally {
    await killWineProcesses(prefix!);
    await second.exited;
  }
  await rm(root, { recursive: true, force: true });
  return struck;
}

test(`under Wine, ${TRIALS} kills of the whole prefix at random points of an update each converge on the new version with nothing partial and no unit lost`, { skip, timeout: FILE_TIMEOUT_MS }, async () => {
  const random = seededRandom(SEED);
  // Every trial's choices drawn up front, so the seed alone decides them whatever the timing.
  const trials = Array.from({ length: TRIALS }, (_, trial) => ({ trial, random: seededRandom(Math.floor(random() * 2 ** 31)) }));
  const phasesHit = new Map<string, number>();
  const startedMs = performance.now();
  // One at a time: `wineserver -k` kills every process of the shared prefix.
  for (const { trial, random: trialRandom } of trials) {
    const trialStartedMs = performance.now();
    const phase = await runTrial(trial, trialRandom);
    phasesHit.set(phase, (phasesHit.get(phase) ?? 0) + 1);
    // One line per trial, so a run that stalls shows where.
    console.log(`windows-crash: trial ${trial} struck in ${phase}, converged in ${Math.round(performance.now() - trialStartedMs)} ms`);
  }
  console.log(`windows-crash: ${TRIALS} trials in ${Math.round(performance.now() - startedMs)} ms; phases struck ${JSON.stringify(Object.fromEntries(phasesHit))}`);
  if (TRIALS >= PHASES.length) {
    for (const phase of PHASES) assert.ok((phasesHit.get(phase.name) ?? 0) > 0, `no trial struck in phase ${phase.name}: ${JSON.stringify(Object.fromEntries(phasesHit))}`);
  }
});
