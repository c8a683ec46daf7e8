import { RELEASE_FAULT_REASONS, isReasonCode } from '../../protocol/reason-codes.js';
import type { AdmissionRecord, RolloutRecord } from '../fleet/fleet-store.js';
import { evaluateFailures, type FailureStats, type HaltSettings, type RolloutReport } from './failure-rate.js';
import { ALL_POOLS, type Wave, type WaveProgress } from '../../protocol/rollouts.js';

/** Everything a rollout's progress is computed from, read once per evaluation. */
export interface ProgressInput {
  record: RolloutRecord;
  now: Date;
  admissions: readonly AdmissionRecord[];
  /** Reports on the release since the rollout started, oldest first. */
  reports: ReadonlyArray<RolloutReport & { received_at: string }>;
  /** Of the admitted workers, those that are live (seen within the stale window). */
  liveAdmitted: ReadonlySet<string>;
  /** The pools with live workers on the channel. */
  livePools: readonly string[];
  halt: HaltSettings;
  /** Whether a pool is inside its maintenance windows now; and whether its policy is on. */
  poolOpen(pool: string): boolean;
  poolAutoUpdate(pool: string): boolean;
}

export interface RolloutProgress {
  waves: WaveProgress[];
  failure: FailureStats;
  /** The newest started wave has soaked: the next may start (or the rollout complete). */
  currentWaveDone: boolean;
  /** The next wave's pools: at least one is inside its windows (or it has no pools with windows). */
  nextWaveMayStart: boolean;
  /** Pools with live workers on the channel that no wave names: they never get this release. */
  notInPlan: string[];
  /** Workers offered the release outside any wave: they already ran it, or forced an update. */
  outsideWaves: { already_running: number; forced: number };
}

function minutes(seconds: number): string {
  return seconds >= 120 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds)} s`;
}

/** Pools a wave names, or, for `*`, the pools with live workers on the channel. */
export function wavePools(wave: Wave, livePools: readonly string[]): string[] {
  if (!wave.pools.includes(ALL_POOLS)) return wave.pools;
  return [...new Set(livePools)].sort();
}

/**
 * A rollout's waves with their counts, its failure rate against the halt threshold, and what
 * each step waits on. Pure: the evaluation and `rollout status` both read the same numbers.
 */
export function rolloutProgress(input: ProgressInput): RolloutProgress {
  const { record, now } = input;
  const liveIds = input.liveAdmitted;
  // Only workers the rollout offered its release to count: a report naming any other worker id
  // (one never offered it, or made up) cannot move the halt or a wave.
  const admittedIds = new Set(input.admissions.map((a) => a.workerId));
  const succeeded = new Set<string>();
  const failed = new Set<string>();
  for (const report of input.reports) {
    if (report.event === 'success') succeeded.add(report.worker_id);
    if (!admittedIds.has(report.worker_id)) continue;
    if ((report.event === 'failure' || report.event === 'rollback') && isReasonCode(report.reason) && RELEASE_FAULT_REASONS.has(report.reason)) {
      failed.add(report.worker_id);
    }
  }
  // The window never reaches back past the last resume: the operator has seen the failures that
  // halted it, and a later pause or completion does not bring them back.
  const windowStartMs = Math.max(now.getTime() - input.halt.windowSeconds * 1000, record.failuresCountedFrom.getTime());
  const windowReports = input.reports.filter((r) => Date.parse(r.received_at) >= windowStartMs && admittedIds.has(r.worker_id));
  const liveAdmitted = input.admissions.filter((a) => liveIds.has(a.workerId) && a.wave >= 0).length;
  const failure = evaluateFailures(windowReports, liveAdmitted, input.halt);

  const lastStarted = record.wavesStarted.length - 1;
  const waves: WaveProgress[] = record.plan.waves.map((wave, index) => {
    const ofWave = input.admissions.filter((a) => a.wave === index && !a.forced);
    const liveOfWave = ofWave.filter((a) => liveIds.has(a.workerId));
    const updated = ofWave.filter((a) => succeeded.has(a.workerId)).length;
    const failedCount = ofWave.filter((a) => failed.has(a.workerId)).length;
    // Workers whose pool has self-update off will not update: a wave never waits for them.
    const liveNotFailed = liveOfWave.filter((a) => !failed.has(a.workerId) && input.poolAutoUpdate(a.pool)).length;
    const startedAt = record.wavesStarted[index] ?? null;
    const healthyNeeded = Math.min(wave.min_healthy, liveNotFailed);
    const waiting: string[] = [];
    if (startedAt !== null && index === lastStarted) {
      const soakedS = (now.getTime() - startedAt.getTime()) / 1000;
      if (soakedS < wave.soak_s) waiting.push(`soak: ${minutes(soakedS)} of ${minutes(wave.soak_s)}`);
      if (updated < healthyNeeded) waiting.push(`healthy updates: ${updated} of ${healthyNeeded} (${liveOfWave.length} live admitted)`);
      for (const pool of record.urgent ? [] : wavePools(wave, input.livePools)) {
        if (!input.poolAutoUpdate(pool)) waiting.push(`pool ${pool}: auto_update is off, its workers take nothing`);
        else if (!input.poolOpen(pool)) waiting.push(`pool ${pool}: outside its maintenance windows`);
      }
    } else if (startedAt === null && index === lastStarted + 1) {
      waiting.push(`wave ${index} to finish`);
      const pools = wavePools(wave, input.livePools);
      if (pools.length > 0 && !pools.some((pool) => input.poolOpen(pool))) waiting.push(`a maintenance window of ${pools.join(', ')}`);
    }
    return {
      index,
      pools: wave.pools,
      percent: wave.percent,
      soak_s: wave.soak_s,
      min_healthy: wave.min_healthy,
      started_at: startedAt?.toISOString() ?? null,
      admitted: ofWave.length,
      live_admitted: liveOfWave.length,
      updated,
      failed: failedCount,
      healthy_needed: healthyNeeded,
      waiting_on: waiting,
    };
  });
  const current = waves[lastStarted];
  const currentWave = record.plan.waves[lastStarted];
  const currentWaveDone =
    current !== undefined &&
    currentWave !== undefined &&
    now.getTime() - (record.wavesStarted[lastStarted]?.getTime() ?? now.getTime()) >= currentWave.soak_s * 1000 &&
    current.updated >= current.healthy_needed;
  const nextWave = record.plan.waves[lastStarted + 1];
  const nextPools = nextWave ? wavePools(nextWave, input.livePools) : [];
  const nextWaveMayStart = nextWave !== undefined && (nextPools.length === 0 || nextPools.some((pool) => input.poolOpen(pool)));
  const named = new Set(record.plan.waves.flatMap((w) => w.pools));
  const notInPlan = named.has(ALL_POOLS) || record.urgent ? [] : [...new Set(input.livePools)].filter((pool) => !named.has(pool)).sort();
  const outsideWaves = {
    already_running: input.admissions.filter((a) => a.wave < 0 && !a.forced).length,
    forced: input.admissions.filter((a) => a.forced).length,
  };
  return { waves, failure, currentWaveDone, nextWaveMayStart, notInPlan, outsideWaves };
}
