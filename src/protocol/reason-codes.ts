import { CodedError } from '../shared/errors.js';

/**
 * Reason codes (docs/protocol.md, section 5). They are stable: the report's `reason`, the log's `reason`
 * and the metric label `reason` all carry these strings. Add codes; never rename one.
 */
export const REASON_CODES = [
  'manifest_fetch_failed',
  'manifest_invalid',
  'signature_invalid',
  'manifest_expired',
  'manifest_rollback',
  'channel_mismatch',
  'downgrade_refused',
  'no_artifact_for_platform',
  'download_failed',
  'size_mismatch',
  'checksum_mismatch',
  'disk_full',
  'install_failed',
  'crashed_on_start',
  'health_check_failed',
  'rollback_failed',
  // Added with staged rollouts. A server says in its handshake (`accepts.reasons`) which codes
  // it takes; a worker maps these to LEGACY_REASON_CODES for a server that does not say.
  'self_test_failed',
  'crash_loop',
  // Added with the worker reorganisation: state.json cannot be read or does not parse. The
  // machine's fault, never the release's (docs/runbooks/worker-state-corrupt.md).
  'state_corrupt',
] as const;

export type ReasonCode = (typeof REASON_CODES)[number];

/** The codes every server version accepts: the ones known before servers said what they take. */
export const LEGACY_REASON_CODES: readonly ReasonCode[] = REASON_CODES.slice(0, REASON_CODES.indexOf('rollback_failed') + 1);

/**
 * Failures that are the release's fault, not the machine's: they count toward halting a
 * rollout. `self_test_failed` is a new executable that fails its own `--version --json`;
 * `crash_loop` is a version that passed its health watch and then keeps crashing.
 */
export const RELEASE_FAULT_REASONS: ReadonlySet<ReasonCode> = new Set<ReasonCode>([
  'crashed_on_start',
  'health_check_failed',
  'checksum_mismatch',
  'size_mismatch',
  'self_test_failed',
  'crash_loop',
]);

export function isReasonCode(value: unknown): value is ReasonCode {
  return typeof value === 'string' && (REASON_CODES as readonly string[]).includes(value);
}

/** A failed update step. `code` is the reason code that goes into reports, logs and metrics. */
export class UpdateError extends CodedError<ReasonCode> {}
