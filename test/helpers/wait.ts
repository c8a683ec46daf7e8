import { setTimeout as sleep } from 'node:timers/promises';

export const DEFAULT_WAIT_TIMEOUT_MS = 30_000;
const DEFAULT_POLL_INTERVAL_MS = 50;

type NotYet = undefined | null | false;

/**
 * Poll `probe` until it gives a value (anything but undefined, null or false) and return that
 * value; fail naming `what` after timeoutMs. A wait on the condition itself, instead of a fixed
 * sleep that hopes the condition holds by then.
 */
export async function until<T>(
  what: string | (() => string),
  probe: () => T | NotYet | Promise<T | NotYet>,
  timeoutMs = DEFAULT_WAIT_TIMEOUT_MS,
  intervalMs = DEFAULT_POLL_INTERVAL_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(intervalMs);
  }
}
