import { isReasonCode, RELEASE_FAULT_REASONS } from '../../protocol/reason-codes.js';

/** One update report about a rollout's release, as the evaluation reads it. */
export interface RolloutReport {
  worker_id: string;
  event: 'attempt' | 'success' | 'failure' | 'rollback';
  reason: string | null;
}

export interface HaltSettings {
  /** Halt when failed workers / sampled workers is above this (0-1). */
  failureRate: number;
  /** Workers the rate needs before it is trusted; lowered to the live admitted workers of a small rollout. */
  minSample: number;
  /** Only reports received within this window count. */
  windowSeconds: number;
}

/**
 * The defaults (docs/runbooks/rollout.md, "Automatic halt"). Only failures that are the
 * release's fault count, so a good release sees almost none: more than 10 % of the workers that
 * tried it in the last hour is a bad release, not bad luck. Ten workers is the smallest sample
 * where one unlucky machine (10 %) does not halt on its own; a canary wave of fewer live workers
 * lowers it to their number, so a small canary still halts. One hour covers a release that
 * passes its watch and crash-loops minutes later, and lets old noise age out of a long rollout.
 */
export const DEFAULT_HALT_SETTINGS: HaltSettings = { failureRate: 0.1, minSample: 10, windowSeconds: 3600 };

export interface FailureStats {
  /** Distinct workers whose reports in the window are evidence about the release. */
  sampleWorkers: number;
  /** Of those, workers with at least one failure or rollback that is the release's fault. */
  failedWorkers: number;
  /** failedWorkers / sampleWorkers; 0 for an empty sample. */
  rate: number;
  /** The sample the rate needs, after lowering it to the live admitted workers. */
  minSample: number;
  threshold: number;
  windowSeconds: number;
  halt: boolean;
}

function isReleaseFault(reason: string | null): boolean {
  return isReasonCode(reason) && RELEASE_FAULT_REASONS.has(reason);
}

/**
 * Whether a rollout must halt, from the reports on its release within the window. Each worker
 * counts once, however often it reports (a crash-looping machine is one failure). A worker
 * whose only failures are its own machine's (`download_failed`, `disk_full`, ...) with no
 * success is no evidence either way and is left out of the sample; a worker still updating
 * (an attempt, nothing yet) is in it.
 */
export function evaluateFailures(reports: readonly RolloutReport[], liveAdmittedWorkers: number, settings: HaltSettings): FailureStats {
  const byWorker = new Map<string, { failed: boolean; succeeded: boolean; localFault: boolean }>();
  for (const report of reports) {
    const seen = byWorker.get(report.worker_id) ?? { failed: false, succeeded: false, localFault: false };
    if (report.event === 'success') seen.succeeded = true;
    if (report.event === 'failure' || report.event === 'rollback') {
      if (isReleaseFault(report.reason)) seen.failed = true;
      else seen.localFault = true;
    }
    byWorker.set(report.worker_id, seen);
  }
  let sampleWorkers = 0;
  let failedWorkers = 0;
  for (const worker of byWorker.values()) {
    if (worker.localFault && !worker.failed && !worker.succeeded) continue;
    sampleWorkers += 1;
    if (worker.failed) failedWorkers += 1;
  }
  const minSample = Math.max(1, Math.min(settings.minSample, liveAdmittedWorkers));
  const rate = sampleWorkers === 0 ? 0 : failedWorkers / sampleWorkers;
  return {
    sampleWorkers,
    failedWorkers,
    rate,
    minSample,
    threshold: settings.failureRate,
    windowSeconds: settings.windowSeconds,
    halt: sampleWorkers >= minSample && rate > settings.failureRate,
  };
}
