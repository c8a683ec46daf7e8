import type { ReasonCode } from '../../protocol/reason-codes.js';
import { compareVersions } from '../../protocol/version.js';
import { fullJitterBackoff, type Backoff } from './backoff.js';
import { isBelowMinimum, nextCheckDelayMs } from './policy.js';

/**
 * When `run` checks for an update (docs/protocol.md, section 4), as a clock-driven object with
 * no I/O, so that every rule is a row in a table test:
 *
 * - only between units of work: the work loop asks `nextStep` after each unit, never during one;
 * - the first periodic check comes right after the first unit, unless the worker just checked
 *   at start (below its minimum, or --force-update); then every check interval, ±20 %;
 * - a heartbeat that announces a release other than the one running (newer: an update; older:
 *   a signed rollback release) brings the check forward to within 30 s, once per announcement;
 * - a heartbeat that puts the worker newly below the server's minimum makes the check due now;
 * - a check that failed for want of an answer (`TRANSIENT_FAILURES`) is retried with backoff,
 *   5 min doubling, full jitter, never later than the regular check: a CDN hiccup does not cost
 *   an hour, and a fleet facing a server outage comes back a few times an hour, not every minute.
 *   A failure that is a verdict on the release (a bad signature, a wrong hash) or on this machine
 *   waits for the regular check: trying again sooner would download the same refused bytes;
 * - a check that found another process holding update.lock (the supervisor pruning old versions
 *   right after a watch) is tried again within a minute rather than an interval later.
 */
export interface UpdateScheduleOptions {
  checkIntervalS: number;
  currentVersion: string;
  /** Uniform in [0, 1); seeded in tests. */
  random: () => number;
  nowMs: number;
  /** The worker checked before its first unit, so the first periodic check waits an interval. */
  checkedAtStart: boolean;
  /** The latest version the handshake announced: no nudge for what the worker already knows. */
  announcedLatest: string | null;
  /** The minimum version the handshake announced. */
  minimumVersion: string | null;
}

/** What the heartbeat said that the schedule cares about. */
export interface AnnouncedPolicy {
  latestVersion: string | null;
  minimumVersion: string | null;
}

/** What a policy change did to the schedule; `run` logs the `below_minimum` case. */
export type PolicyEffect = 'none' | 'nudged' | 'below_minimum';

/** The outcome of a check, as the schedule sees it. */
export type CheckOutcome = { kind: 'done' } | { kind: 'busy' } | { kind: 'failed'; reason: ReasonCode };

/** Failures that say nothing about the release: the server or the network did not answer. */
export const TRANSIENT_FAILURES: ReadonlySet<ReasonCode> = new Set<ReasonCode>(['manifest_fetch_failed', 'download_failed']);

export const NUDGE_SPREAD_MS = 30_000;
export const FAILED_CHECK_BASE_DELAY_MS = 300_000;
/** A check that found update.lock held is tried again after 30-60 s. */
export const BUSY_RETRY_MS = 60_000;

export class UpdateSchedule {
  readonly #options: UpdateScheduleOptions;
  readonly #backoff: Backoff;
  #nextCheckAtMs: number;
  #lastAnnouncedLatest: string | null;
  #minimumVersion: string | null;
  #transientFailures = 0;

  constructor(options: UpdateScheduleOptions) {
    this.#options = options;
    const regularMs = options.checkIntervalS * 1000;
    this.#backoff = fullJitterBackoff({
      baseDelayMs: Math.min(FAILED_CHECK_BASE_DELAY_MS, regularMs),
      maxDelayMs: regularMs,
      random: options.random,
    });
    this.#nextCheckAtMs = options.nowMs + (options.checkedAtStart ? this.#regularDelayMs() : 0);
    this.#lastAnnouncedLatest = options.announcedLatest;
    this.#minimumVersion = options.minimumVersion;
  }

  get nextCheckAtMs(): number {
    return this.#nextCheckAtMs;
  }

  /** Between two units: stop, carry on working, or check now. */
  nextStep(nowMs: number, input: { stopRequested: boolean; checksAllowed: boolean }): 'stop' | 'continue' | 'check' {
    if (input.stopRequested) return 'stop';
    if (!input.checksAllowed || nowMs < this.#nextCheckAtMs) return 'continue';
    return 'check';
  }

  /** A check begins: the next one is a regular interval away unless its outcome says otherwise. */
  checkStarted(nowMs: number): void {
    this.#nextCheckAtMs = nowMs + this.#regularDelayMs();
  }

  checkFinished(nowMs: number, outcome: CheckOutcome): void {
    if (outcome.kind === 'busy') {
      const retryAtMs = nowMs + Math.round(BUSY_RETRY_MS * (0.5 + 0.5 * this.#options.random()));
      this.#nextCheckAtMs = Math.min(this.#nextCheckAtMs, retryAtMs);
      return;
    }
    if (outcome.kind === 'failed' && TRANSIENT_FAILURES.has(outcome.reason)) {
      const retryAtMs = nowMs + this.#backoff.delayMs(this.#transientFailures);
      this.#transientFailures += 1;
      this.#nextCheckAtMs = Math.min(this.#nextCheckAtMs, retryAtMs);
      return;
    }
    this.#transientFailures = 0;
  }

  /**
   * A register or heartbeat answer. The minimum is tracked whatever the policy; nothing is
   * brought forward while checks are not allowed.
   */
  onPolicy(nowMs: number, next: AnnouncedPolicy, checksAllowed: boolean): PolicyEffect {
    const wasBelow = isBelowMinimum(this.#options.currentVersion, this.#minimumVersion);
    this.#minimumVersion = next.minimumVersion;
    if (!checksAllowed) return 'none';
    let effect: PolicyEffect = 'none';
    const latest = next.latestVersion;
    if (latest !== null && latest !== this.#lastAnnouncedLatest && compareVersions(latest, this.#options.currentVersion) !== 0) {
      this.#lastAnnouncedLatest = latest;
      // Spread over 30 s: a wave admits many workers at once, and they all hear it together.
      this.#nextCheckAtMs = Math.min(this.#nextCheckAtMs, nowMs + Math.round(this.#options.random() * NUDGE_SPREAD_MS));
      effect = 'nudged';
    }
    if (isBelowMinimum(this.#options.currentVersion, next.minimumVersion) && !wasBelow) {
      this.#nextCheckAtMs = nowMs;
      effect = 'below_minimum';
    }
    return effect;
  }

  #regularDelayMs(): number {
    return nextCheckDelayMs(this.#options.checkIntervalS, this.#options.random);
  }
}
