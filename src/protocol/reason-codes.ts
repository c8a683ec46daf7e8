import { CodedError } from '../shared/errors.js';

/**
 * Reason codes (contract section 6). They are stable: the report's `reason`, the log's `reason`
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
] as const;

export type ReasonCode = (typeof REASON_CODES)[number];

export function isReasonCode(value: unknown): value is ReasonCode {
  return typeof value === 'string' && (REASON_CODES as readonly string[]).includes(value);
}

/** A failed update step. `code` is the reason code that goes into reports, logs and metrics. */
export class UpdateError extends CodedError<ReasonCode> {}
