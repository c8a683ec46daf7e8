import { UpdateError, type ReasonCode } from '../../protocol/reason-codes.js';
import { errorMessage } from '../../shared/errors.js';
import { loadState, updateState } from '../install/state.js';
import { fetchLatestFor, verifyForWorker, type UpdaterContext } from './updater.js';

/**
 * The last look before switching (docs/worker-updates.md, "Before the switch"). Staging takes
 * minutes; meanwhile a rollout-aware server may have halted, paused or aborted the release, or
 * closed the pool's window, or published a newer one. So after staging, `run` asks for `latest`
 * once more and switches only if the release is still offered.
 */

/** What the second `latest` request came back with. */
export type RecheckAnswer =
  | { kind: 'not_modified' }
  | { kind: 'no_release' }
  | { kind: 'verified'; version: string; serial: number }
  /** The request failed (unreachable, timeout, 5xx, other statuses) or its manifest did not verify. */
  | { kind: 'failed'; reason: ReasonCode; detail: string };

export type RecheckDecision =
  | { action: 'switch'; because: 'not_modified' | 'same_serial' | 'recheck_failed' }
  | { action: 'cancel'; cause: 'no_longer_offered' | 'superseded' };

/**
 * Switch or cancel, from the staged serial and the answer:
 * - 304, or a verified manifest with the staged serial: still offered, switch;
 * - 404 `no_release`: no longer offered to this worker (halted, paused, aborted, window closed): cancel;
 * - a verified manifest with another serial: superseded, cancel (the next check takes the new one);
 * - no usable answer: switch anyway. The release was offered minutes ago, and an outage of the
 *   server must not stall updates; a manifest that fails verification proves nothing either way.
 */
export function decideStagedSwitch(stagedSerial: number, answer: RecheckAnswer): RecheckDecision {
  switch (answer.kind) {
    case 'not_modified':
      return { action: 'switch', because: 'not_modified' };
    case 'no_release':
      return { action: 'cancel', cause: 'no_longer_offered' };
    case 'verified':
      return answer.serial === stagedSerial ? { action: 'switch', because: 'same_serial' } : { action: 'cancel', cause: 'superseded' };
    case 'failed':
      return { action: 'switch', because: 'recheck_failed' };
  }
}

/** Ask for `latest` again, with the ETag remembered for the channel, and verify what comes back as checkForUpdate does. */
async function askAgain(ctx: UpdaterContext): Promise<RecheckAnswer> {
  try {
    const state = await loadState(ctx.layout, () => ctx.workerId);
    const fetched = await fetchLatestFor(ctx, state.manifest_etags?.[ctx.channel]);
    if (fetched.kind !== 'manifest') return { kind: fetched.kind };
    // The same trust inputs as checkForUpdate. The trust state is not updated here: a newer
    // release is left to the next check, which does that.
    const { signed } = verifyForWorker(ctx, fetched.bytes, state.highest_serial[ctx.channel]);
    return { kind: 'verified', version: signed.version, serial: signed.serial };
  } catch (err) {
    if (err instanceof UpdateError) return { kind: 'failed', reason: err.code, detail: err.message };
    return { kind: 'failed', reason: 'manifest_fetch_failed', detail: errorMessage(err) };
  }
}

/**
 * Run after `runUpdateOnce` returned `staged`, before the worker exits to be switched. On cancel,
 * `pending_switch` (this attempt's) is removed and the channel's ETag forgotten, so the next check
 * gets the whole answer; the staged version stays complete in versions/ and is switched to without
 * a download if it is offered again.
 */
export async function recheckBeforeSwitch(ctx: UpdaterContext, staged: { version: string; serial: number }): Promise<RecheckDecision> {
  const answer = await askAgain(ctx);
  const decision = decideStagedSwitch(staged.serial, answer);
  const fields = { correlation_id: ctx.correlationId, to_version: staged.version, serial: staged.serial };
  if (decision.action === 'cancel') {
    await updateState(ctx.layout, (state) => {
      if (state.pending_switch?.correlation_id === ctx.correlationId) delete state.pending_switch;
      if (state.manifest_etags?.[ctx.channel] !== undefined) {
        const { [ctx.channel]: _forgotten, ...others } = state.manifest_etags;
        state.manifest_etags = others;
      }
    });
    ctx.log.info(
      { event: 'worker_update_cancelled', ...fields, cause: decision.cause, ...(answer.kind === 'verified' ? { offered_version: answer.version, offered_serial: answer.serial } : {}) },
      decision.cause === 'superseded' ? 'a newer release replaced the staged one; not switching' : 'the staged release is no longer offered; not switching',
    );
  } else if (answer.kind === 'failed') {
    ctx.log.warn(
      { event: 'worker_update_recheck_failed', ...fields, reason: answer.reason, error: answer.detail },
      'could not confirm the release is still offered; switching anyway',
    );
  } else {
    ctx.log.info({ event: 'worker_update_recheck', ...fields, result: decision.because }, 'the staged release is still offered');
  }
  return decision;
}
