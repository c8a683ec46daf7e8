/** The release tool's `--expires-in`: one parser for the whole codebase (src/shared/duration.ts). */
export { parseDurationMs } from '../shared/duration.js';

/** RFC 3339 UTC to the second, as manifests carry their times. */
export function manifestTimestamp(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A manifest's `released_at` (now) and `expires` (now plus its validity), as every signing command sets them. */
export function releaseTimes(now: Date, expiresInMs: number): { released_at: string; expires: string } {
  return { released_at: manifestTimestamp(now), expires: manifestTimestamp(new Date(now.getTime() + expiresInMs)) };
}
