import { isNewerVersion } from '../../protocol/version.js';

/**
 * The start-up and update policy (docs/protocol.md, section 4), as pure functions so that every
 * combination is a row in a table test.
 */
export interface PolicyInput {
  currentVersion: string;
  /** From the handshake; null when the server did not say or could not be reached. */
  minimumVersion: string | null;
  /** The worker's own switch: `auto_update_enabled`, `--no-auto-update`, `AUTO_UPDATE=0`. */
  autoUpdateEnabled: boolean;
  /** The pool's policy on the server (default off); false while the server is unreachable. */
  poolAutoUpdate: boolean;
  forceUpdate: boolean;
  forceStart: boolean;
  /** At least one trusted key and a server: no trust, no updates (fail closed). */
  updatesConfigured: boolean;
}

export interface StartDecision {
  /** Check for, download and stage an update before doing any work. */
  updateFirst: boolean;
  /**
   * What to do when no update was staged first (none was tried, none exists, or it failed):
   * `start` normally, `refuse` (log worker_start_refused, exit 3), or `start_forced`
   * (log worker_start_forced and start below the minimum).
   */
  otherwise: 'start' | 'refuse' | 'start_forced';
}

/** Self-update is opt-in twice over: the worker's own switch AND its pool's policy. */
export function autoUpdateAllowed(input: Pick<PolicyInput, 'autoUpdateEnabled' | 'poolAutoUpdate' | 'updatesConfigured'>): boolean {
  return input.updatesConfigured && input.autoUpdateEnabled && input.poolAutoUpdate;
}

export function isBelowMinimum(currentVersion: string, minimumVersion: string | null): boolean {
  return minimumVersion !== null && isNewerVersion(minimumVersion, currentVersion);
}

export function decideStart(input: PolicyInput): StartDecision {
  const belowMinimum = isBelowMinimum(input.currentVersion, input.minimumVersion);
  // --force-update checks and installs now, once, whatever the policy; below the minimum the
  // worker updates first when it may.
  const updateFirst = input.updatesConfigured && (input.forceUpdate || (belowMinimum && autoUpdateAllowed(input)));
  const otherwise = !belowMinimum ? 'start' : input.forceStart ? 'start_forced' : 'refuse';
  return { updateFirst, otherwise };
}

/** The delay to the next periodic check: the interval ±20%, so a fleet does not check in lockstep. */
export function nextCheckDelayMs(checkIntervalS: number, random: () => number = Math.random): number {
  return Math.round(checkIntervalS * 1000 * (0.8 + 0.4 * random()));
}

/** Exit codes of `bytebiota-worker` (docs/protocol.md, section 4). */
export const EXIT_CODES = {
  ok: 0,
  usage: 2,
  refusedToStart: 3,
  /** `run` asks its supervisor to restart it into the staged version (EX_TEMPFAIL in sysexits.h). */
  restartIntoStaged: 75,
  /**
   * The same code one level up: `supervise` on Windows asks its service to start it again, now
   * from the proven version's executable (supervisor/windows-service.ts). The service restarts
   * on every code but 0, 2 and 3.
   */
  restartIntoLauncher: 75,
} as const;
