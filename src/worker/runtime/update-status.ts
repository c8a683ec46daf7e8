import type { UpdateProgress } from '../../protocol/messages.js';
import { compareVersions } from '../../protocol/version.js';
import type { WorkerStateFile } from '../install/state.js';

/**
 * What this process's heartbeats say about the last update when it starts (docs/protocol.md, section 3:
 * the heartbeat's `update`, so that the fleet view shows where each worker is). The supervisor
 * records its part in state.json, and the version it starts reads it back:
 * - the version being watched after a switch (`pending_watch` names it): `watching`, which
 *   becomes `completed` once it has told the supervisor it is ready (completedOnReady);
 * - the version restarted after a newer one was rolled back: `rolled_back`, with the reason,
 *   until an update attempt of its own replaces it.
 * Null when neither applies: nothing to say until an update starts.
 */
export function updateStatusAtStart(state: WorkerStateFile, runningVersion: string): UpdateProgress | null {
  if (state.pending_watch?.to_version === runningVersion) return { to_version: runningVersion, state: 'watching' };
  let newest: { version: string; reason: UpdateProgress['reason']; at: string } | null = null;
  for (const [version, rollback] of Object.entries(state.rolled_back)) {
    if (compareVersions(version, runningVersion) <= 0) continue;
    if (newest === null || rollback.at > newest.at) newest = { version, reason: rollback.reason, at: rollback.at };
  }
  return newest === null ? null : { to_version: newest.version, state: 'rolled_back', reason: newest.reason };
}

/** The status once this process has told its supervisor it is ready: a watched version has passed. */
export function completedOnReady(status: UpdateProgress | null): UpdateProgress | null {
  return status?.state === 'watching' ? { to_version: status.to_version, state: 'completed' } : status;
}
