import type { ReasonCode } from '../../protocol/reason-codes.js';
import type { WorkerStateFile } from '../install/state.js';
import { EXIT_CODES } from '../runtime/policy.js';
import { crashBackoffMs, HEALTHY_RUN_RESET_MS, type ChildExit, type HealthOutcome } from './health.js';

/**
 * The supervisor's decisions (docs/protocol.md, section 4: the restart protocol), apart from
 * its processes and files: each takes what the supervisor has read (state.json, the pointers,
 * how the child ended, the clock) and says what to do. supervisor.ts carries the decisions out;
 * test/worker/supervisor/decisions.test.ts has a row for every case.
 */

type PendingSwitch = NonNullable<WorkerStateFile['pending_switch']>;
export type PendingWatch = NonNullable<WorkerStateFile['pending_watch']>;

/** What the supervisor found at the top of its loop. */
export interface RoundInput {
  /** The first round since the supervisor started. */
  firstRound: boolean;
  current: string | null;
  launcher: string | null;
  pendingSwitch: PendingSwitch | null;
  pendingWatch: PendingWatch | null;
}

export type RoundDecision =
  /** No current version: the install root was never installed into (exit 2). */
  | { kind: 'not_installed' }
  /** A switch recorded by `run` but not carried out before the supervisor stopped: do it now. */
  | { kind: 'carry_out_switch' }
  /**
   * The watch was recorded but `current` never changed (stopped between the two writes). The
   * staged version is still wanted: record the switch again and carry it out, or the worker would
   * stay on the old version for good (its remembered ETag says the release was handled).
   */
  | { kind: 'redo_switch'; watch: PendingWatch }
  /**
   * Run `current`, under a health watch when one is pending. `adoptLauncher`: an install root
   * from before the launcher pointer, where `current`, not under watch, is the proven version.
   */
  | { kind: 'run'; version: string; watch: PendingWatch | null; adoptLauncher: boolean };

export function decideRound(input: RoundInput): RoundDecision {
  if (input.firstRound && input.pendingSwitch !== null && input.pendingWatch === null) return { kind: 'carry_out_switch' };
  if (input.current === null) return { kind: 'not_installed' };
  const watch = input.pendingWatch;
  if (watch !== null && watch.to_version !== input.current) return { kind: 'redo_switch', watch };
  return { kind: 'run', version: input.current, watch, adoptLauncher: watch === null && input.launcher === null };
}

/** Exit 75: may the supervisor switch into the staged version? */
export interface SwitchInput {
  pendingSwitch: PendingSwitch | null;
  /** The reason this worker once rolled the staged version back, if it did. */
  rolledBack: boolean;
  /** The run that asked for the switch was started with --force-update. */
  requestedWithForce: boolean;
  /** Why versions/<to_version> is not complete (no mark, an unreadable one, ...); null when it is. */
  stagedProblem: string | null;
}

export type SwitchDecision =
  | { kind: 'nothing_staged' }
  /** Refused: pending_switch is dropped, the channel's ETag forgotten, and a failure reported. */
  | { kind: 'refuse'; reason: ReasonCode; message: string }
  /** Record the watch, then move `current` (a crash in between resumes as a watch). */
  | { kind: 'switch'; pending: PendingSwitch };

export function decideSwitch(input: SwitchInput): SwitchDecision {
  const pending = input.pendingSwitch;
  if (pending === null) return { kind: 'nothing_staged' };
  // Defence in depth: a version rolled back here is not tried again unless forced.
  if (input.rolledBack && !input.requestedWithForce) {
    return {
      kind: 'refuse',
      reason: 'install_failed',
      message: `version ${pending.to_version} was rolled back on this worker; not switching to it without --force-update`,
    };
  }
  if (input.stagedProblem !== null) {
    return { kind: 'refuse', reason: 'install_failed', message: `staged version ${input.stagedProblem}; not switching` };
  }
  return { kind: 'switch', pending };
}

export type WatchDecision =
  /** Ready in time: the launcher names it from now on, and success is reported. */
  | { kind: 'proven' }
  /**
   * Stopped by the operator mid-watch: not the version's fault. The watch stays recorded and
   * resumes, with a fresh window, when the supervisor starts again.
   */
  | { kind: 'stopped_mid_watch' }
  /** current := previous, the version is remembered as rolled back, and the rollback reported. */
  | { kind: 'roll_back'; reason: ReasonCode; stopChildFirst: boolean };

export function decideAfterWatch(outcome: HealthOutcome, stopping: boolean): WatchDecision {
  if (outcome.kind === 'ready') return { kind: 'proven' };
  if (stopping) return { kind: 'stopped_mid_watch' };
  if (outcome.kind === 'timeout') return { kind: 'roll_back', reason: 'health_check_failed', stopChildFirst: true };
  return { kind: 'roll_back', reason: 'crashed_on_start', stopChildFirst: false };
}

/** How an unwatched run of the child ended, and the crash streak before it. */
export interface ExitInput {
  exit: ChildExit;
  ranMs: number;
  /** Consecutive crashes before this one (the restart backoff's exponent). */
  crashes: number;
}

export type ExitDecision =
  /** Exit 75: the child staged a version and asks to be restarted into it. */
  | { kind: 'switch_to_staged' }
  /** Restarting cannot help: the configuration is wrong, or the minimum version needs an operator. */
  | { kind: 'stop'; exitCode: number }
  /**
   * Restart after `delayMs` (1 s doubling to 5 min; a run of HEALTHY_RUN_RESET_MS starts over).
   * `crashed`: a non-zero exit or a signal; a process that could not be spawned is this
   * machine's trouble, not the release's, and does not count toward a crash loop.
   */
  | { kind: 'restart'; delayMs: number; crashes: number; crashed: boolean };

export function decideAfterExit(input: ExitInput): ExitDecision {
  const { exit } = input;
  if (exit.code === EXIT_CODES.restartIntoStaged) return { kind: 'switch_to_staged' };
  if (exit.code === EXIT_CODES.usage || exit.code === EXIT_CODES.refusedToStart) return { kind: 'stop', exitCode: exit.code };
  const crashesBefore = input.ranMs >= HEALTHY_RUN_RESET_MS ? 0 : input.crashes;
  return {
    kind: 'restart',
    delayMs: crashBackoffMs(crashesBefore),
    crashes: crashesBefore + 1,
    crashed: exit.error === undefined && exit.code !== 0,
  };
}
