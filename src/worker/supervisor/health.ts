import type { ChildProcess } from 'node:child_process';

/**
 * The health watch (restart protocol step 2): a newly switched-to version must say `ready` over
 * IPC within the window. Exiting first is a crash on start; silence is a failed health check.
 */
export type HealthOutcome =
  | { kind: 'ready' }
  | { kind: 'exited'; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'timeout' };

export function isReadyMessage(message: unknown): boolean {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'ready';
}

/** How a child ended: from 'exit', or from 'error' when it could not even be spawned. */
export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/** Resolves once, when the child has ended, whichever way. */
export function childExited(child: ChildProcess): Promise<ChildExit> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // A spawn failure (ENOENT, EACCES) emits 'error' and no 'exit'.
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  });
}

export function watchHealth(child: ChildProcess, exited: Promise<ChildExit>, windowMs: number): Promise<HealthOutcome> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown): void => {
      if (isReadyMessage(message)) finish({ kind: 'ready' });
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), windowMs);
    let done = false;
    function finish(outcome: HealthOutcome): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(outcome);
    }
    child.on('message', onMessage);
    void exited.then((exit) => finish({ kind: 'exited', code: exit.code, signal: exit.signal }));
  });
}

export const CRASH_BACKOFF_INITIAL_MS = 1000;
export const CRASH_BACKOFF_MAX_MS = 5 * 60_000;
/** A child that ran this long before exiting was healthy: the crash backoff starts over. */
export const HEALTHY_RUN_RESET_MS = 60_000;

/** Restart delay after `consecutiveCrashes` crashes in a row: 1 s doubling to 5 min. */
export function crashBackoffMs(consecutiveCrashes: number): number {
  return Math.min(CRASH_BACKOFF_MAX_MS, CRASH_BACKOFF_INITIAL_MS * 2 ** Math.max(0, consecutiveCrashes));
}
