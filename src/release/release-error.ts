import { CodedError } from '../shared/errors.js';

/**
 * Why the release tool refused or failed. The CLI prints `bytebiota-release: <code>: <message>`
 * and exits 1; scripts branch on the code, people read the message.
 */
export type ReleaseErrorCode =
  | 'key_unreadable'
  | 'key_exists'
  | 'channel_invalid'
  | 'version_invalid'
  | 'platform_unknown'
  | 'artifact_unreadable'
  | 'artifact_too_large'
  | 'artifact_conflict'
  | 'artifact_corrupted'
  | 'artifact_missing'
  | 'version_not_newer'
  | 'version_not_older'
  | 'version_never_released'
  | 'store_key_mismatch'
  | 'store_manifest_invalid'
  | 'store_not_writable'
  | 'serial_conflict'
  | 'source_manifest_missing'
  | 'source_manifest_invalid'
  | 'source_manifest_expired'
  | 'manifest_unreadable'
  | 'manifest_invalid'
  | 'chunk_index_invalid';

export class ReleaseError extends CodedError<ReleaseErrorCode> {}
