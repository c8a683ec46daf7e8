import { setTimeout as delay } from 'node:timers/promises';
import { isErrnoCode } from './errors.js';

/**
 * Windows refuses to rename over, or delete, a file that another process has open (EPERM,
 * EACCES or EBUSY; an antivirus scanner or a reader of a pointer file is enough), and the
 * refusal lasts only as long as that handle. So on Windows an fs operation that fails so is
 * tried again for a short while, as graceful-fs does, instead of failing an update at once
 * (pointer files, and every file written by writeFileAtomic on Windows).
 */

/** The errno codes Windows answers with while another process holds the file open. */
const LOCKED_CODES = ['EPERM', 'EACCES', 'EBUSY'] as const;

/** How long to keep trying in all: a reader holds a pointer file for microseconds, a scanner for a moment. */
export const LOCKED_RETRY_BUDGET_MS = 2_000;
const FIRST_DELAY_MS = 10;
const MAX_DELAY_MS = 250;

export interface LockedRetryOptions {
  /** Injected by tests; a timer otherwise. */
  sleep?: (ms: number) => Promise<void>;
  budgetMs?: number;
}

export function isLockedError(err: unknown): boolean {
  return LOCKED_CODES.some((code) => isErrnoCode(err, code));
}

/**
 * Run `operation`; while it fails as a file held open fails, wait (doubling from 10 ms up to
 * 250 ms) and run it again, until `budgetMs` of waiting is spent. Then the last error is thrown,
 * as is any other error at once. The operation must be safe to repeat (a rename that failed
 * changed nothing).
 */
export async function retryWhileLocked<T>(operation: () => Promise<T>, options: LockedRetryOptions = {}): Promise<T> {
  const sleep = options.sleep ?? ((ms: number) => delay(ms));
  const budgetMs = options.budgetMs ?? LOCKED_RETRY_BUDGET_MS;
  let waitedMs = 0;
  for (let nextDelayMs = FIRST_DELAY_MS; ; nextDelayMs = Math.min(nextDelayMs * 2, MAX_DELAY_MS)) {
    try {
      return await operation();
    } catch (err) {
      if (!isLockedError(err) || waitedMs >= budgetMs) throw err;
      const waitMs = Math.min(nextDelayMs, budgetMs - waitedMs);
      await sleep(waitMs);
      waitedMs += waitMs;
    }
  }
}
