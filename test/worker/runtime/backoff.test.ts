import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fullJitterBackoff, parseRetryAfter, sleep } from '../../../src/worker/runtime/backoff.js';

describe('fullJitterBackoff', () => {
  test('each delay lies between the floor and min(cap, base * 2^attempt)', () => {
    for (const random of [() => 0, () => 0.5, () => 0.999999]) {
      const backoff = fullJitterBackoff({ baseDelayMs: 1000, maxDelayMs: 60_000, random });
      for (let attempt = 0; attempt < 40; attempt += 1) {
        const delayMs = backoff.delayMs(attempt);
        const ceilingMs = Math.min(60_000, 1000 * 2 ** attempt);
        assert.ok(delayMs >= 500, `attempt ${attempt}: ${delayMs} >= floor 500`);
        assert.ok(delayMs <= ceilingMs, `attempt ${attempt}: ${delayMs} <= ${ceilingMs}`);
      }
    }
  });

  test('random 0 still waits the floor: never a tight loop', () => {
    const backoff = fullJitterBackoff({ baseDelayMs: 200, maxDelayMs: 1000, random: () => 0 });
    assert.equal(backoff.delayMs(0), 100);
    assert.equal(backoff.delayMs(10), 100);
  });

  test('the jitter spreads delays uniformly over [0, ceiling)', () => {
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const backoff = fullJitterBackoff({ baseDelayMs: 1000, maxDelayMs: 8000, random, minDelayMs: 0 });
    const buckets = [0, 0, 0, 0];
    const samples = 20_000;
    for (let i = 0; i < samples; i += 1) buckets[Math.min(3, Math.floor(backoff.delayMs(3) / 2000))]! += 1;
    for (const count of buckets) assert.ok(Math.abs(count / samples - 0.25) < 0.02, `bucket share ${count / samples}`);
  });

  test('Retry-After raises the delay, but never past the cap', () => {
    const backoff = fullJitterBackoff({ baseDelayMs: 1000, maxDelayMs: 30_000, random: () => 0 });
    assert.equal(backoff.delayMs(0, 10_000), 10_000);
    assert.equal(backoff.delayMs(0, 3_600_000), 30_000);
    assert.equal(backoff.delayMs(0, null), 500);
  });

  test('workers told the same Retry-After spread over the next base delay instead of returning together', () => {
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const backoff = fullJitterBackoff({ baseDelayMs: 1000, maxDelayMs: 60_000, random });
    const delays = Array.from({ length: 2000 }, () => backoff.delayMs(0, 10_000));
    assert.ok(delays.every((d) => d >= 10_000 && d <= 11_000), 'never sooner than asked, at most one base delay later');
    const sameMillisecond = new Map<number, number>();
    for (const d of delays) sameMillisecond.set(d, (sameMillisecond.get(d) ?? 0) + 1);
    assert.ok(Math.max(...sameMillisecond.values()) < 20, 'no instant gets a burst of retries');
  });

  test('bad options are refused', () => {
    assert.throws(() => fullJitterBackoff({ baseDelayMs: 0, maxDelayMs: 10 }), RangeError);
    assert.throws(() => fullJitterBackoff({ baseDelayMs: 100, maxDelayMs: 10 }), RangeError);
  });
});

describe('parseRetryAfter', () => {
  const now = new Date('2026-11-20T12:00:00Z');
  const cases: [string | undefined, number | null][] = [
    ['120', 120_000],
    ['0', 0],
    [' 7 ', 7000],
    ['Fri, 20 Nov 2026 12:00:30 GMT', 30_000],
    ['Fri, 20 Nov 2026 11:00:00 GMT', 0],
    ['-5', null],
    ['1.5', null],
    ['soon', null],
    ['', null],
    [undefined, null],
  ];
  for (const [value, expected] of cases) {
    test(`${JSON.stringify(value)} -> ${expected}`, () => assert.equal(parseRetryAfter(value, now), expected));
  }
  test('takes the first of repeated headers', () => assert.equal(parseRetryAfter(['3', '9'], now), 3000));
});

test('sleep ends early, without rejecting, when its signal aborts', async () => {
  const controller = new AbortController();
  const started = performance.now();
  setTimeout(() => controller.abort(), 20);
  await sleep(10_000, controller.signal);
  assert.ok(performance.now() - started < 1000);
});
