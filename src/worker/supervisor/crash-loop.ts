import { HEALTHY_RUN_RESET_MS } from './health.js';

/**
 * Crash-loop detection after the watch (docs/worker-updates.md, "Crash loop after the watch").
 * A version that passed its health watch is not rolled back by the supervisor any more; when it
 * then keeps crashing, the supervisor reports `crash_loop` once, the server halts the rollout, and
 * the operator's signed rollback release brings the worker back. This is the supervisor's
 * decision, kept apart from its processes so that it can be table-tested.
 */

/** Short crashes in a row of a proven version that make a crash loop. */
export const CRASH_LOOP_CRASHES = 3;

export interface CrashLoopState {
  /** The version of the current streak of short crashes, and how long the streak is. */
  version: string | null;
  shortCrashes: number;
  /** Versions this supervisor has reported already: once each per supervisor lifetime. */
  reported: readonly string[];
}

export const NO_CRASHES: CrashLoopState = { version: null, shortCrashes: 0, reported: [] };

/** How one run of the child ended, as the supervisor saw it. */
export interface RunEnded {
  version: string;
  ranMs: number;
  /**
   * It crashed: a non-zero exit or a signal. A clean exit, a restart into a staged version, or a
   * process that could not even be spawned (this machine's trouble, not the release's) is not.
   */
  crashed: boolean;
  /** The version had passed its health watch: the launcher names it and no watch is pending. */
  proven: boolean;
}

/**
 * The streak after one run ended, and whether to report `crash_loop` now: when a proven version
 * crashed CRASH_LOOP_CRASHES times in a row, each run shorter than HEALTHY_RUN_RESET_MS, and this
 * supervisor has not reported that version yet. Anything else ends the streak.
 */
export function noteRunEnded(state: CrashLoopState, run: RunEnded): { state: CrashLoopState; report: boolean } {
  if (!run.crashed || !run.proven || run.ranMs >= HEALTHY_RUN_RESET_MS) {
    return { state: { ...state, version: run.version, shortCrashes: 0 }, report: false };
  }
  const shortCrashes = (state.version === run.version ? state.shortCrashes : 0) + 1;
  const report = shortCrashes >= CRASH_LOOP_CRASHES && !state.reported.includes(run.version);
  return {
    state: { version: run.version, shortCrashes, reported: report ? [...state.reported, run.version] : state.reported },
    report,
  };
}
