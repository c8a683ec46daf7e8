import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decideAfterExit,
  decideAfterWatch,
  decideRound,
  decideSwitch,
  type PendingWatch,
  type RoundInput,
  type SwitchInput,
} from '../../../src/worker/supervisor/decisions.js';
import { HEALTHY_RUN_RESET_MS } from '../../../src/worker/supervisor/health.js';

const PENDING = { correlation_id: 'c-1', from_version: '1.0.0', to_version: '1.1.0', channel: 'stable', serial: 4 };
const WATCH: PendingWatch = { ...PENDING, started_at: '2026-11-30T12:00:00.000Z' };

test('decideRound: what the supervisor does at the top of its loop', () => {
  const base: RoundInput = { firstRound: false, current: '1.0.0', launcher: '1.0.0', pendingSwitch: null, pendingWatch: null };
  const rows: { name: string; input: Partial<RoundInput>; expected: ReturnType<typeof decideRound> }[] = [
    { name: 'nothing pending: run current', input: {}, expected: { kind: 'run', version: '1.0.0', watch: null, adoptLauncher: false } },
    { name: 'never installed', input: { current: null, launcher: null }, expected: { kind: 'not_installed' } },
    { name: 'a switch recorded before a stop is carried out at start', input: { firstRound: true, pendingSwitch: PENDING }, expected: { kind: 'carry_out_switch' } },
    {
      name: 'a pending switch after the first round waits for exit 75',
      input: { pendingSwitch: PENDING },
      expected: { kind: 'run', version: '1.0.0', watch: null, adoptLauncher: false },
    },
    {
      name: 'a switch and a watch both recorded: the watch decides (it is the later step)',
      input: { firstRound: true, pendingSwitch: PENDING, pendingWatch: WATCH, current: '1.1.0' },
      expected: { kind: 'run', version: '1.1.0', watch: WATCH, adoptLauncher: false },
    },
    { name: 'switched, under watch', input: { current: '1.1.0', pendingWatch: WATCH }, expected: { kind: 'run', version: '1.1.0', watch: WATCH, adoptLauncher: false } },
    { name: 'watch recorded, current never moved: redo the switch', input: { pendingWatch: WATCH }, expected: { kind: 'redo_switch', watch: WATCH } },
    { name: 'an install root from before the launcher pointer', input: { launcher: null }, expected: { kind: 'run', version: '1.0.0', watch: null, adoptLauncher: true } },
    {
      name: 'no launcher, but under watch: the watched version is not proven yet',
      input: { launcher: null, current: '1.1.0', pendingWatch: WATCH },
      expected: { kind: 'run', version: '1.1.0', watch: WATCH, adoptLauncher: false },
    },
    { name: 'a switch pending at start with no current at all', input: { firstRound: true, current: null, pendingSwitch: PENDING }, expected: { kind: 'carry_out_switch' } },
  ];
  for (const row of rows) assert.deepEqual(decideRound({ ...base, ...row.input }), row.expected, row.name);
});

test('decideSwitch: exit 75 and what is staged', () => {
  const base: SwitchInput = { pendingSwitch: PENDING, rolledBack: false, requestedWithForce: false, stagedProblem: null };
  const rows: { name: string; input: Partial<SwitchInput>; expected: string; reason?: string }[] = [
    { name: 'staged and complete', input: {}, expected: 'switch' },
    { name: 'nothing staged', input: { pendingSwitch: null }, expected: 'nothing_staged' },
    { name: 'rolled back here before', input: { rolledBack: true }, expected: 'refuse', reason: 'install_failed' },
    { name: 'rolled back here before, but forced', input: { rolledBack: true, requestedWithForce: true }, expected: 'switch' },
    { name: 'staged version incomplete (or its mark unreadable)', input: { stagedProblem: '1.1.0 has no completion mark' }, expected: 'refuse', reason: 'install_failed' },
    { name: 'forced does not make an incomplete version complete', input: { stagedProblem: '1.1.0 has no completion mark', requestedWithForce: true }, expected: 'refuse', reason: 'install_failed' },
  ];
  for (const row of rows) {
    const decision = decideSwitch({ ...base, ...row.input });
    assert.equal(decision.kind, row.expected, row.name);
    if (decision.kind === 'refuse') assert.equal(decision.reason, row.reason, row.name);
    if (decision.kind === 'switch') assert.deepEqual(decision.pending, PENDING, row.name);
  }
});

test('decideAfterWatch: proven, stopped, or rolled back with its reason', () => {
  const rows: { name: string; outcome: Parameters<typeof decideAfterWatch>[0]; stopping: boolean; expected: ReturnType<typeof decideAfterWatch> }[] = [
    { name: 'ready in time', outcome: { kind: 'ready' }, stopping: false, expected: { kind: 'proven' } },
    { name: 'ready in time, even as a stop comes in', outcome: { kind: 'ready' }, stopping: true, expected: { kind: 'proven' } },
    { name: 'silent for the whole window', outcome: { kind: 'timeout' }, stopping: false, expected: { kind: 'roll_back', reason: 'health_check_failed', stopChildFirst: true } },
    { name: 'exited before ready', outcome: { kind: 'exited', code: 1, signal: null }, stopping: false, expected: { kind: 'roll_back', reason: 'crashed_on_start', stopChildFirst: false } },
    { name: 'killed by a signal before ready', outcome: { kind: 'exited', code: null, signal: 'SIGSEGV' }, stopping: false, expected: { kind: 'roll_back', reason: 'crashed_on_start', stopChildFirst: false } },
    { name: 'the operator stopped it mid-watch: not its fault', outcome: { kind: 'exited', code: 0, signal: null }, stopping: true, expected: { kind: 'stopped_mid_watch' } },
    { name: 'a stop during a silent watch', outcome: { kind: 'timeout' }, stopping: true, expected: { kind: 'stopped_mid_watch' } },
  ];
  for (const row of rows) assert.deepEqual(decideAfterWatch(row.outcome, row.stopping), row.expected, row.name);
});

test('decideAfterExit: switch, stop, or restart with backoff', () => {
  const rows: { name: string; input: Parameters<typeof decideAfterExit>[0]; expected: ReturnType<typeof decideAfterExit> }[] = [
    { name: 'exit 75: switch into the staged version', input: { exit: { code: 75, signal: null }, ranMs: 5_000, crashes: 3 }, expected: { kind: 'switch_to_staged' } },
    { name: 'exit 2: the configuration is wrong', input: { exit: { code: 2, signal: null }, ranMs: 100, crashes: 0 }, expected: { kind: 'stop', exitCode: 2 } },
    { name: 'exit 3: below the minimum', input: { exit: { code: 3, signal: null }, ranMs: 100, crashes: 0 }, expected: { kind: 'stop', exitCode: 3 } },
    { name: 'first crash: 1 s', input: { exit: { code: 1, signal: null }, ranMs: 100, crashes: 0 }, expected: { kind: 'restart', delayMs: 1_000, crashes: 1, crashed: true } },
    { name: 'fourth crash in a row: 8 s', input: { exit: { code: 1, signal: null }, ranMs: 100, crashes: 3 }, expected: { kind: 'restart', delayMs: 8_000, crashes: 4, crashed: true } },
    { name: 'the backoff stops at 5 min', input: { exit: { code: null, signal: 'SIGKILL' }, ranMs: 100, crashes: 20 }, expected: { kind: 'restart', delayMs: 300_000, crashes: 21, crashed: true } },
    {
      name: 'a long healthy run starts the backoff over',
      input: { exit: { code: 1, signal: null }, ranMs: HEALTHY_RUN_RESET_MS, crashes: 9 },
      expected: { kind: 'restart', delayMs: 1_000, crashes: 1, crashed: true },
    },
    { name: 'a clean exit is restarted, not counted as a crash', input: { exit: { code: 0, signal: null }, ranMs: 100, crashes: 0 }, expected: { kind: 'restart', delayMs: 1_000, crashes: 1, crashed: false } },
    {
      name: 'could not be spawned: the machine, not the release',
      input: { exit: { code: null, signal: null, error: Object.assign(new Error('spawn EACCES'), { code: 'EACCES' }) }, ranMs: 0, crashes: 0 },
      expected: { kind: 'restart', delayMs: 1_000, crashes: 1, crashed: false },
    },
  ];
  for (const row of rows) assert.deepEqual(decideAfterExit(row.input), row.expected, row.name);
});
