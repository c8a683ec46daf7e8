import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CRASH_LOOP_CRASHES, noteRunEnded, NO_CRASHES, type CrashLoopState, type RunEnded } from '../../../src/worker/supervisor/crash-loop.js';
import { HEALTHY_RUN_RESET_MS } from '../../../src/worker/supervisor/health.js';

const crash = (version: string, overrides: Partial<RunEnded> = {}): RunEnded => ({ version, ranMs: 1500, crashed: true, proven: true, ...overrides });

/** Feed the runs in order; returns after which runs (1-based) a report was due, and the end state. */
function replay(runs: RunEnded[], start: CrashLoopState = NO_CRASHES): { reportsAfter: number[]; state: CrashLoopState } {
  let state = start;
  const reportsAfter: number[] = [];
  runs.forEach((run, index) => {
    const noted = noteRunEnded(state, run);
    state = noted.state;
    if (noted.report) reportsAfter.push(index + 1);
  });
  return { reportsAfter, state };
}

describe('crash loop after the watch', () => {
  const rows: Array<{ name: string; runs: RunEnded[]; reportsAfter: number[] }> = [
    { name: 'three short crashes of a proven version: reported at the third', runs: [crash('1.1.0'), crash('1.1.0'), crash('1.1.0')], reportsAfter: [3] },
    { name: 'two are not a loop', runs: [crash('1.1.0'), crash('1.1.0')], reportsAfter: [] },
    { name: 'reported once per version: the fourth, fifth and sixth crash are not reported again', runs: Array.from({ length: 6 }, () => crash('1.1.0')), reportsAfter: [3] },
    {
      name: 'a run as long as the healthy-run reset ends the streak',
      runs: [crash('1.1.0'), crash('1.1.0'), crash('1.1.0', { ranMs: HEALTHY_RUN_RESET_MS }), crash('1.1.0'), crash('1.1.0')],
      reportsAfter: [],
    },
    { name: 'just under the reset still counts', runs: [crash('1.1.0'), crash('1.1.0'), crash('1.1.0', { ranMs: HEALTHY_RUN_RESET_MS - 1 })], reportsAfter: [3] },
    { name: 'a version not proven (under watch, or not what the launcher names) never counts', runs: Array.from({ length: 4 }, () => crash('1.2.0', { proven: false })), reportsAfter: [] },
    { name: 'a clean exit in between ends the streak', runs: [crash('1.1.0'), crash('1.1.0'), crash('1.1.0', { crashed: false }), crash('1.1.0'), crash('1.1.0')], reportsAfter: [] },
    {
      name: 'a restart into a staged version in between ends the streak',
      runs: [crash('1.1.0'), crash('1.1.0'), { version: '1.1.0', ranMs: 10, crashed: false, proven: false }, crash('1.1.0')],
      reportsAfter: [],
    },
    { name: 'crashes of another version start a new streak', runs: [crash('1.1.0'), crash('1.1.0'), crash('1.0.0'), crash('1.1.0'), crash('1.1.0')], reportsAfter: [] },
    {
      name: 'two versions, each looping, are each reported once',
      runs: [crash('1.1.0'), crash('1.1.0'), crash('1.1.0'), crash('1.2.0'), crash('1.2.0'), crash('1.2.0'), crash('1.1.0'), crash('1.1.0'), crash('1.1.0')],
      reportsAfter: [3, 6],
    },
  ];
  for (const row of rows) {
    test(row.name, () => {
      assert.deepEqual(replay(row.runs).reportsAfter, row.reportsAfter);
    });
  }

  test('the streak length is kept for the log line, and the threshold is three', () => {
    assert.equal(CRASH_LOOP_CRASHES, 3);
    const { state } = replay([crash('1.1.0'), crash('1.1.0'), crash('1.1.0')]);
    assert.deepEqual(state, { version: '1.1.0', shortCrashes: 3, reported: ['1.1.0'] });
  });
});
