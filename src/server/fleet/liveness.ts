import type { UpdateState } from '../../protocol/messages.js';

/**
 * What counts as "not seen" and "stalled" for the console and the server's gauges
 * (docs/observability.md): one definition for both, so the page and the alerts agree.
 */
/** A worker is unseen when its last heartbeat is older than this many heartbeat intervals... */
export const UNSEEN_AFTER_INTERVALS = 3;
/** ...but newer than this: a worker gone for a day has left, and no longer counts as missing. */
export const UNSEEN_HORIZON_MS = 24 * 3600_000;
/** The update states a worker passes through on its way to a result. */
export const MID_UPDATE_STATES: readonly UpdateState[] = ['downloading', 'verifying', 'staging', 'switching', 'restarting', 'watching'];
/** An update that has stayed in one of those states for longer than this is stalled. */
export const STALLED_AFTER_MS = 3600_000;

/** The window [since, before) of last-seen times that counts as unseen at `now`. */
export function unseenWindow(now: Date, heartbeatIntervalSeconds: number): { since: Date; before: Date } {
  return {
    since: new Date(now.getTime() - UNSEEN_HORIZON_MS),
    before: new Date(now.getTime() - UNSEEN_AFTER_INTERVALS * heartbeatIntervalSeconds * 1000),
  };
}
