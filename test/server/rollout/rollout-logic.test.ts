import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compareRanked, rolloutRank, shareCutoff, withinCutoff } from '../../../src/server/rollout/bucket.js';
import { DEFAULT_HALT_SETTINGS, evaluateFailures, type RolloutReport } from '../../../src/server/rollout/failure-rate.js';
import { admittedPercent, admitsEveryone, DEFAULT_STAGED_PLAN, PlanError, validatePlan } from '../../../src/server/rollout/plan.js';
import { seededRandom } from '../../helpers/seeded-random.js';

const r = (worker_id: string, event: RolloutReport['event'], reason: string | null = null): RolloutReport => ({ worker_id, event, reason });

describe('evaluateFailures', () => {
  const cases: Array<{ name: string; reports: RolloutReport[]; live: number; halt: boolean; failed: number; sample: number; minSample: number }> = [
    { name: 'no reports', reports: [], live: 50, halt: false, failed: 0, sample: 0, minSample: 10 },
    {
      name: '2 of 10 crashed on start: 20 % > 10 %',
      reports: [...Array.from({ length: 8 }, (_, i) => r(`w${i}`, 'success')), r('w8', 'rollback', 'crashed_on_start'), r('w9', 'rollback', 'health_check_failed')],
      live: 100,
      halt: true,
      failed: 2,
      sample: 10,
      minSample: 10,
    },
    { name: '1 of 10 is not above 10 %', reports: [...Array.from({ length: 9 }, (_, i) => r(`w${i}`, 'success')), r('w9', 'failure', 'checksum_mismatch')], live: 100, halt: false, failed: 1, sample: 10, minSample: 10 },
    { name: 'below the minimum sample', reports: [r('w0', 'rollback', 'crashed_on_start'), r('w1', 'attempt')], live: 100, halt: false, failed: 1, sample: 2, minSample: 10 },
    { name: 'a small wave lowers the sample to its live admitted workers', reports: [r('w0', 'rollback', 'crashed_on_start'), r('w1', 'attempt')], live: 2, halt: true, failed: 1, sample: 2, minSample: 2 },
    { name: 'one worker reporting many times counts once', reports: Array.from({ length: 30 }, () => r('w0', 'failure', 'crash_loop')), live: 100, halt: false, failed: 1, sample: 1, minSample: 10 },
    {
      name: 'local faults are no evidence',
      reports: Array.from({ length: 20 }, (_, i) => r(`w${i}`, 'failure', ['download_failed', 'disk_full', 'manifest_fetch_failed', 'install_failed'][i % 4]!)),
      live: 20,
      halt: false,
      failed: 0,
      sample: 0,
      minSample: 10,
    },
    { name: 'a local fault then a success is a success', reports: [r('w0', 'failure', 'download_failed'), r('w0', 'success')], live: 1, halt: false, failed: 0, sample: 1, minSample: 1 },
    { name: 'self_test_failed is the release’s fault', reports: [r('w0', 'failure', 'self_test_failed')], live: 1, halt: true, failed: 1, sample: 1, minSample: 1 },
    { name: 'size_mismatch is the release’s fault', reports: [r('w0', 'failure', 'size_mismatch')], live: 1, halt: true, failed: 1, sample: 1, minSample: 1 },
    { name: 'no live admitted workers: a sample of one still needs a failure rate above the threshold', reports: [r('w0', 'success')], live: 0, halt: false, failed: 0, sample: 1, minSample: 1 },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const stats = evaluateFailures(c.reports, c.live, DEFAULT_HALT_SETTINGS);
      assert.equal(stats.halt, c.halt);
      assert.equal(stats.failedWorkers, c.failed);
      assert.equal(stats.sampleWorkers, c.sample);
      assert.equal(stats.minSample, c.minSample);
    });
  }
});

describe('share cutoffs by rank', () => {
  test('the cutoff admits exactly ceil(percent × n / 100) of the live workers, for any fleet', () => {
    const seed = 424242;
    console.log(`share cutoff seed: ${seed}`);
    const random = seededRandom(seed);
    for (let trial = 0; trial < 50; trial += 1) {
      const n = 1 + Math.floor(random() * 500);
      const workers = Array.from({ length: n }, (_, i) => ({ id: `w-${trial}-${i}`, rank: rolloutRank('stable', trial + 1, `w-${trial}-${i}`) }));
      for (const percent of [1, 5, 25, 50, 99]) {
        const cutoff = shareCutoff(workers, percent);
        const admitted = workers.filter((w) => withinCutoff(w, cutoff)).length;
        assert.equal(admitted, Math.ceil((percent * n) / 100), `n=${n} percent=${percent}`);
      }
    }
  });

  test('ranks rotate with the serial and the channel, and ties break by id', () => {
    assert.notEqual(rolloutRank('stable', 1, 'w-1'), rolloutRank('stable', 2, 'w-1'));
    assert.notEqual(rolloutRank('stable', 1, 'w-1'), rolloutRank('canary', 1, 'w-1'));
    assert.equal(rolloutRank('stable', 1, 'w-1'), rolloutRank('stable', 1, 'w-1'));
    assert.ok(compareRanked({ id: 'a', rank: 5 }, { id: 'b', rank: 5 }) < 0);
    assert.equal(shareCutoff([], 50), null);
  });
});

describe('plans', () => {
  test('the default plan is staged: a small first share, then larger ones, each with a soak', () => {
    const shares = DEFAULT_STAGED_PLAN.waves.map((w) => w.percent);
    assert.deepEqual(shares, [5, 25, 100]);
    assert.ok(DEFAULT_STAGED_PLAN.waves.every((w) => w.soak_s > 0));
    assert.equal(validatePlan(DEFAULT_STAGED_PLAN), DEFAULT_STAGED_PLAN);
  });

  test('invalid plans are refused with invalid_plan', () => {
    const bad: unknown[] = [
      { immediate: false, waves: [] },
      { immediate: false, waves: [{ pools: ['a', 'a'], percent: 10, soak_s: 0, min_healthy: 0 }] },
      { immediate: false, waves: [{ pools: ['*', 'a'], percent: 10, soak_s: 0, min_healthy: 0 }] },
      { immediate: false, waves: [{ pools: ['a'], percent: 0, soak_s: 0, min_healthy: 0 }] },
      { immediate: false, waves: [{ pools: ['a'], percent: 10, soak_s: 0, min_healthy: 0, extra: 1 }] },
      { immediate: false, waves: [{ pools: ['Bad Pool'], percent: 10, soak_s: 0, min_healthy: 0 }] },
    ];
    for (const plan of bad) assert.throws(() => validatePlan(plan), (err: unknown) => err instanceof PlanError && err.code === 'invalid_plan', JSON.stringify(plan));
  });

  test('a pool gets the largest share of the waves started so far that name it', () => {
    const plan = validatePlan({
      immediate: false,
      waves: [
        { pools: ['canary'], percent: 100, soak_s: 0, min_healthy: 0 },
        { pools: ['stable'], percent: 10, soak_s: 0, min_healthy: 0 },
        { pools: ['stable', 'edge'], percent: 100, soak_s: 0, min_healthy: 0 },
      ],
    });
    assert.equal(admittedPercent(plan, 0, 'stable'), 0);
    assert.equal(admittedPercent(plan, 1, 'stable'), 10);
    assert.equal(admittedPercent(plan, 2, 'stable'), 100);
    assert.equal(admittedPercent(plan, 2, 'other'), 0);
    assert.equal(admitsEveryone({ state: 'active', urgent: false, plan, wavesStarted: [1, 2, 3] }), false);
    assert.equal(admitsEveryone({ state: 'active', urgent: true, plan, wavesStarted: [1] }), true);
    assert.equal(admitsEveryone({ state: 'completed', urgent: false, plan, wavesStarted: [1] }), true);
    assert.equal(admitsEveryone({ state: 'halted', urgent: true, plan, wavesStarted: [1] }), false);
  });
});
