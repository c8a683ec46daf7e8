import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BUSY_RETRY_MS, FAILED_CHECK_BASE_DELAY_MS, NUDGE_SPREAD_MS, UpdateSchedule, type UpdateScheduleOptions } from '../../../src/worker/runtime/update-schedule.js';

const HOUR_MS = 3_600_000;
const T0 = 1_000_000;

function schedule(overrides: Partial<UpdateScheduleOptions> = {}): UpdateSchedule {
  return new UpdateSchedule({
    checkIntervalS: 3600,
    currentVersion: '1.2.0',
    // The middle of every range: the interval's jitter gives exactly the interval.
    random: () => 0.5,
    nowMs: T0,
    checkedAtStart: false,
    announcedLatest: null,
    minimumVersion: null,
    ...overrides,
  });
}

const ALLOWED = { stopRequested: false, checksAllowed: true };

test('nextStep: only between units, and only when allowed and due', () => {
  const rows: { name: string; at: number; input: { stopRequested: boolean; checksAllowed: boolean }; expected: string }[] = [
    { name: 'due right after the first unit', at: T0, input: ALLOWED, expected: 'check' },
    { name: 'a stop request wins over a due check', at: T0, input: { stopRequested: true, checksAllowed: true }, expected: 'stop' },
    { name: 'stop even while checks are not allowed', at: T0, input: { stopRequested: true, checksAllowed: false }, expected: 'stop' },
    { name: 'checks not allowed (pool or worker switch off, no trust)', at: T0, input: { stopRequested: false, checksAllowed: false }, expected: 'continue' },
  ];
  for (const row of rows) assert.equal(schedule().nextStep(row.at, row.input), row.expected, row.name);
});

test('the first periodic check waits an interval when the worker checked at start', () => {
  const s = schedule({ checkedAtStart: true });
  assert.equal(s.nextCheckAtMs, T0 + HOUR_MS);
  assert.equal(s.nextStep(T0 + HOUR_MS - 1, ALLOWED), 'continue');
  assert.equal(s.nextStep(T0 + HOUR_MS, ALLOWED), 'check');
});

test('the regular interval is jittered by ±20 %', () => {
  for (const [random, expectedMs] of [
    [0, 0.8 * HOUR_MS],
    [0.5, HOUR_MS],
    [0.999999, 1.2 * HOUR_MS],
  ] as const) {
    const s = schedule({ random: () => random });
    s.checkStarted(T0);
    assert.ok(Math.abs(s.nextCheckAtMs - (T0 + expectedMs)) <= 5, `random ${random}: ${s.nextCheckAtMs - T0} ms`);
  }
});

test('checkFinished: transient failures back off from 5 min, a held lock is retried within a minute, verdicts wait for the regular check', () => {
  const rows: { name: string; reasons: Parameters<UpdateSchedule['checkFinished']>[1][]; expectedDelayMs: number }[] = [
    { name: 'done', reasons: [{ kind: 'done' }], expectedDelayMs: HOUR_MS },
    // random 0.5 with full jitter: half of the ceiling, which doubles per consecutive failure.
    { name: 'server unreachable once', reasons: [{ kind: 'failed', reason: 'manifest_fetch_failed' }], expectedDelayMs: FAILED_CHECK_BASE_DELAY_MS / 2 },
    {
      name: 'three transient failures in a row',
      reasons: [
        { kind: 'failed', reason: 'manifest_fetch_failed' },
        { kind: 'failed', reason: 'download_failed' },
        { kind: 'failed', reason: 'download_failed' },
      ],
      expectedDelayMs: (4 * FAILED_CHECK_BASE_DELAY_MS) / 2,
    },
    { name: 'update.lock held by the supervisor (pruning): within a minute', reasons: [{ kind: 'busy' }], expectedDelayMs: 0.75 * BUSY_RETRY_MS },
    { name: 'a bad signature is a verdict', reasons: [{ kind: 'failed', reason: 'signature_invalid' }], expectedDelayMs: HOUR_MS },
    { name: 'a wrong hash is a verdict', reasons: [{ kind: 'failed', reason: 'checksum_mismatch' }], expectedDelayMs: HOUR_MS },
    { name: 'a full disk waits for the regular check', reasons: [{ kind: 'failed', reason: 'disk_full' }], expectedDelayMs: HOUR_MS },
    {
      name: 'a success in between starts the backoff over',
      reasons: [{ kind: 'failed', reason: 'download_failed' }, { kind: 'failed', reason: 'download_failed' }, { kind: 'done' }, { kind: 'failed', reason: 'download_failed' }],
      expectedDelayMs: FAILED_CHECK_BASE_DELAY_MS / 2,
    },
  ];
  for (const row of rows) {
    const s = schedule();
    let now = T0;
    for (const outcome of row.reasons) {
      now = Math.max(now, s.nextCheckAtMs);
      assert.equal(s.nextStep(now, ALLOWED), 'check', row.name);
      s.checkStarted(now);
      s.checkFinished(now, outcome);
    }
    assert.equal(s.nextCheckAtMs - now, row.expectedDelayMs, row.name);
  }
});

test('the backoff never goes past the regular check, however many failures', () => {
  const s = schedule({ checkIntervalS: 120 });
  let now = T0;
  for (let i = 0; i < 40; i += 1) {
    now = s.nextCheckAtMs;
    s.checkStarted(now);
    s.checkFinished(now, { kind: 'failed', reason: 'manifest_fetch_failed' });
    assert.ok(s.nextCheckAtMs - now <= 120_000, `failure ${i}: ${s.nextCheckAtMs - now} ms`);
  }
});

test('onPolicy: the heartbeat nudge and a new minimum', () => {
  const rows: {
    name: string;
    options?: Partial<UpdateScheduleOptions>;
    policies: { latestVersion: string | null; minimumVersion: string | null }[];
    allowed?: boolean;
    effects: string[];
    expectedNextMs: number;
  }[] = [
    { name: 'a newer release is announced', policies: [{ latestVersion: '1.3.0', minimumVersion: null }], effects: ['nudged'], expectedNextMs: T0 + NUDGE_SPREAD_MS / 2 },
    { name: 'an older release (a signed rollback) is news too', policies: [{ latestVersion: '1.1.0', minimumVersion: null }], effects: ['nudged'], expectedNextMs: T0 + NUDGE_SPREAD_MS / 2 },
    { name: 'the running version is not news', policies: [{ latestVersion: '1.2.0', minimumVersion: null }], effects: ['none'], expectedNextMs: T0 + HOUR_MS },
    {
      name: 'the handshake already announced it',
      options: { announcedLatest: '1.3.0' },
      policies: [{ latestVersion: '1.3.0', minimumVersion: null }],
      effects: ['none'],
      expectedNextMs: T0 + HOUR_MS,
    },
    {
      name: 'one nudge per announcement',
      policies: [
        { latestVersion: '1.3.0', minimumVersion: null },
        { latestVersion: '1.3.0', minimumVersion: null },
      ],
      effects: ['nudged', 'none'],
      expectedNextMs: T0 + NUDGE_SPREAD_MS / 2,
    },
    { name: 'newly below the minimum: due now', policies: [{ latestVersion: '2.0.0', minimumVersion: '2.0.0' }], effects: ['below_minimum'], expectedNextMs: T0 },
    {
      name: 'already below the minimum at the handshake: no second alarm',
      options: { minimumVersion: '2.0.0', announcedLatest: '2.0.0' },
      policies: [{ latestVersion: '2.0.0', minimumVersion: '2.0.0' }],
      effects: ['none'],
      expectedNextMs: T0 + HOUR_MS,
    },
    { name: 'checks not allowed: nothing moves', allowed: false, policies: [{ latestVersion: '1.3.0', minimumVersion: '2.0.0' }], effects: ['none'], expectedNextMs: T0 + HOUR_MS },
    {
      name: 'the minimum is tracked while checks are off, so turning them on raises no stale alarm',
      policies: [{ latestVersion: null, minimumVersion: '2.0.0' }],
      allowed: false,
      effects: ['none'],
      expectedNextMs: T0 + HOUR_MS,
    },
  ];
  for (const row of rows) {
    const s = schedule(row.options);
    s.checkStarted(T0);
    const effects = row.policies.map((policy) => s.onPolicy(T0, policy, row.allowed ?? true));
    assert.deepEqual(effects, row.effects, row.name);
    assert.equal(s.nextCheckAtMs, row.expectedNextMs, row.name);
  }
  // And after the minimum was seen with checks off, it does not fire when they come on.
  const s = schedule();
  s.checkStarted(T0);
  s.onPolicy(T0, { latestVersion: null, minimumVersion: '2.0.0' }, false);
  assert.equal(s.onPolicy(T0, { latestVersion: null, minimumVersion: '2.0.0' }, true), 'none');
});

test('a nudge never pushes a check that is already due sooner', () => {
  const s = schedule();
  // Due at T0 (right after the first unit): a nudge to T0 + 15 s must not delay it.
  assert.equal(s.onPolicy(T0, { latestVersion: '1.3.0', minimumVersion: null }, true), 'nudged');
  assert.equal(s.nextCheckAtMs, T0);
});
