/**
 * Retry timing for talking to a server that may be down, slow or shedding load: exponential
 * backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter"), a floor so
 * a retry loop is never tight, a cap, and the server's Retry-After when it sends one.
 */
export interface BackoffOptions {
  /** Ceiling of the first retry's delay. */
  baseDelayMs: number;
  /** No delay ever exceeds this (Retry-After included). */
  maxDelayMs: number;
  /** Lower bound of every delay: full jitter alone could pick 0 ms. Default baseDelayMs / 2. */
  minDelayMs?: number;
  /** Uniform in [0, 1); injectable so tests can pin the jitter. */
  random?: () => number;
}

export interface Backoff {
  /** The delay before retry number `attempt` (0 for the first retry). */
  delayMs(attempt: number, retryAfterMs?: number | null): number;
}

export function fullJitterBackoff(options: BackoffOptions): Backoff {
  const random = options.random ?? Math.random;
  const minDelayMs = Math.min(options.minDelayMs ?? options.baseDelayMs / 2, options.maxDelayMs);
  if (!(options.baseDelayMs > 0) || !(options.maxDelayMs >= options.baseDelayMs)) {
    throw new RangeError('backoff needs 0 < baseDelayMs <= maxDelayMs');
  }
  return {
    delayMs(attempt, retryAfterMs) {
      // 2 ** attempt overflows to Infinity for huge attempts; Math.min keeps the ceiling finite.
      const ceilingMs = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.max(0, attempt));
      const jitteredMs = Math.max(minDelayMs, random() * ceilingMs);
      // The server knows its own load: never retry sooner than it asked, never later than the cap.
      // A fleet throttled at one instant gets one Retry-After; spreading each worker over the
      // next base delay keeps them from all coming back in the same instant.
      if (retryAfterMs === null || retryAfterMs === undefined) return Math.round(jitteredMs);
      const askedMs = retryAfterMs + random() * options.baseDelayMs;
      return Math.round(Math.min(options.maxDelayMs, Math.max(jitteredMs, askedMs)));
    },
  };
}

const DELTA_SECONDS = /^\d+$/;

/**
 * Parse an HTTP Retry-After value (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date.
 * Returns milliseconds from `now`, 0 for a date in the past, null when absent or unreadable.
 */
export function parseRetryAfter(value: string | string[] | undefined | null, now: Date): number | null {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return null;
  if (DELTA_SECONDS.test(text)) return Number(text) * 1000;
  // Only the IMF-fixdate and the two obsolete forms are HTTP-dates; all contain a letter.
  if (!/[A-Za-z]/.test(text)) return null;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - now.getTime());
}

/** Wait `ms`, or less when `signal` aborts (then resolves, never rejects: stopping is not an error). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export type Sleep = typeof sleep;
