/**
 * Crash consistency (the guarantee of docs/protocol.md, section 4): SIGKILL the supervisor and the worker
 * together, at a random moment of a random phase of an update (download, staging, the switch,
 * the restart, the health watch), then start the supervisor again, as a service manager would.
 * Each time: the install root holds only complete, verified versions, `current` names one of
 * them, no finished unit of work is lost or counted twice, and the worker converges on the new
 * version.
 *
 *   npm test                                  30 trials
 *   npm run test:chaos -- --trials 200        a long run
 *   CHAOS_SEED=1234 npm run test:chaos        replay one run (the seed is printed first)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import type { LogLine } from '../../scripts/lib/processes.js';
import { seededRandom } from '../helpers/seeded-random.js';

const TRIALS = Number(process.env['CHAOS_TRIALS'] ?? 30);
const PARALLEL_TRIALS = Number(process.env['CHAOS_PARALLEL'] ?? 2);
const SEED = Number(process.env['CHAOS_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const CONVERGE_TIMEOUT_MS = 90_000;

/** The phases to strike in, each named by the log event that opens it. */
const PHASES = [
  { name: 'start', event: null },
  { name: 'download', event: 'worker_update_attempt' },
  { name: 'staging', event: 'worker_update_downloaded' },
  { name: 'switch', event: 'worker_update_staged' },
  { name: 'restart', event: 'worker_update_switched' },
  { name: 'health watch', event: 'worker_child_started' },
] as const;


let lab: UpdateLab;
let token: string;
const channel = 'chaos';

before(async () => {
  console.log(`crash-consistency: seed ${SEED}, ${TRIALS} trials (replay with CHAOS_SEED=${SEED})`);
  lab = await UpdateLab.create({ cacheTtlSeconds: 1 });
  const [v100, v110] = [await lab.buildWorker('1.0.0'), await lab.buildWorker('1.1.0')];
  await lab.startServer();
  await lab.publish('1.0.0', v100, { channel });
  token = await lab.createToken('worker', 'chaos');
  await lab.setPoolPolicy('chaos', true);
  // Published before any worker starts: every trial's worker begins updating at once.
  await lab.publish('1.1.0', v110, { channel });
  await lab.installWorker(v100, join(lab.dir, 'template'));
});

after(async () => {
  await lab?.close();
});

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** Every entry of versions/ is complete: its mark names it, and its executable matches the mark. */
async function assertOnlyCompleteVersions(root: string, context: string): Promise<string[]> {
  const versions = await readdir(join(root, 'versions'));
  for (const version of versions) {
    const dir = join(root, 'versions', version);
    const mark = JSON.parse(await readFile(join(dir, '.complete'), 'utf8').catch(() => 'null')) as { version: string; sha256: string; size: number } | null;
    assert.ok(mark, `${context}: versions/${version} has no completion mark`);
    assert.equal(mark.version, version, `${context}: versions/${version}'s mark names ${mark.version}`);
    assert.equal(await sha256Of(join(dir, 'bytebiota-worker')), mark.sha256, `${context}: versions/${version} executable does not match its mark`);
  }
  const current = (await readlink(join(root, 'current'))).split('/').pop()!;
  assert.ok(versions.includes(current), `${context}: current points at ${current}, not a complete version`);
  return versions;
}

/** units.log: one line per finished unit, numbered 1, 2, 3... with no gap, repeat or torn line. */
async function assertUnitsIntact(root: string, context: string): Promise<number> {
  const text = await readFile(join(root, 'work', 'units.log'), 'utf8').catch(() => '');
  const lines = text.split('\n').filter(Boolean);
  lines.forEach((line, index) => {
    const unit = (JSON.parse(line) as { unit: number }).unit;
    assert.equal(unit, index + 1, `${context}: units.log line ${index} records unit ${unit}`);
  });
  assert.ok(text === '' || text.endsWith('\n'), `${context}: units.log ends in a torn line`);
  return lines.length;
}

/** The phase a trial struck in, or `missed` when its opening event never came before the kill. */
async function runTrial(trial: number, random: () => number): Promise<string> {
  const root = join(lab.dir, `trial-${trial}`);
  await lab.installWorker(join(lab.dir, 'template', 'versions', '1.0.0', 'bytebiota-worker'), root);
  // Phases in turn, so every phase gets its share of trials; the moment within it is random.
  const phase = PHASES[trial % PHASES.length]!;
  const delayMs = Math.floor(random() * 400);
  const context = `trial ${trial} (kill ${delayMs} ms into ${phase.name})`;
  const options = { installRoot: root, token, channel, checkIntervalSeconds: 1, healthWindowSeconds: 20, ownProcessGroup: true };

  const first = lab.startSupervisor(`chaos-${trial}`, options);
  let struck: string = phase.name;
  try {
    if (phase.event) {
      await first.waitForEvent((line: LogLine) => line.event === phase.event && (phase.name !== 'health watch' || line['watched'] === true), CONVERGE_TIMEOUT_MS);
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  } catch {
    // The phase's opening event never came: strike now anyway, and say so.
    struck = 'missed';
  }
  const unitsBefore = await assertUnitsIntact(root, context);
  await first.killGroup();
  await assertOnlyCompleteVersions(root, `${context}, right after the kill`);
  assert.ok((await assertUnitsIntact(root, context)) >= unitsBefore, `${context}: finished units were lost`);

  const second = lab.startSupervisor(`chaos-${trial}-restart`, options);
  try {
    await second.waitForEvent((line: LogLine) => line.event === 'worker_ready' && line['version'] === '1.1.0', CONVERGE_TIMEOUT_MS);
    const versions = await assertOnlyCompleteVersions(root, `${context}, after restart`);
    assert.equal((await readlink(join(root, 'current'))).split('/').pop(), '1.1.0', `${context}: did not converge on 1.1.0`);
    assert.ok(versions.includes('1.1.0'));
    await assertUnitsIntact(root, context);
  } finally {
    await second.killGroup();
  }
  await rm(root, { recursive: true, force: true });
  return struck;
}

describe('crash consistency under SIGKILL', () => {
  test(`${TRIALS} trials converge on the new version with nothing partial and no unit lost`, async () => {
    const random = seededRandom(SEED);
    // Draw every trial's choices up front, so the seed alone decides them whatever the timing.
    const trials = Array.from({ length: TRIALS }, (_, trial) => ({ trial, random: seededRandom(Math.floor(random() * 2 ** 31)) }));
    const phasesHit = new Map<string, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: PARALLEL_TRIALS }, async () => {
        while (next < trials.length) {
          const { trial, random: trialRandom } = trials[next++]!;
          const phase = await runTrial(trial, trialRandom);
          phasesHit.set(phase, (phasesHit.get(phase) ?? 0) + 1);
        }
      }),
    );
    console.log(`crash-consistency: phases struck ${JSON.stringify(Object.fromEntries(phasesHit))}`);
    // A test that never reaches a phase proves nothing about it: each phase must have been struck.
    if (TRIALS >= PHASES.length) {
      for (const phase of PHASES) assert.ok((phasesHit.get(phase.name) ?? 0) > 0, `no trial struck in phase ${phase.name}: ${JSON.stringify(Object.fromEntries(phasesHit))}`);
    }
  });
});
