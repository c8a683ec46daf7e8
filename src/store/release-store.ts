import type { Readable } from 'node:stream';
import { CodedError } from '../shared/errors.js';

/**
 * Where releases live (docs/protocol.md, section 2): `channels/<channel>/worker-release.json`,
 * `channels/<channel>/history/<serial>.json`, `artifacts/<version>/<file>`. The same keys on a
 * folder and on S3; keys always use `/`.
 */
export interface ObjectInfo {
  size: number;
  /** A strong validator for this exact content: changes whenever the bytes change. */
  etag: string;
  lastModified: Date;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface ObjectStream extends ObjectInfo {
  stream: Readable;
}

export type StoreErrorCode = 'store_unavailable' | 'store_not_writable' | 'store_key_invalid' | 'store_object_too_large';

export class StoreError extends CodedError<StoreErrorCode> {}

export interface ReleaseStore {
  /** A human-readable name for logs and errors: the folder path or `s3://bucket/prefix`. */
  readonly location: string;
  /** Check that the store can be reached (readiness); throws StoreError when not. */
  ping(): Promise<void>;
  stat(key: string): Promise<ObjectInfo | null>;
  /** A small object read whole (manifests); null when missing; StoreError when over maxBytes. */
  read(key: string, maxBytes: number): Promise<Buffer | null>;
  /** An object streamed, whole or one byte range; never buffered whole in memory. */
  openRead(key: string, range?: ByteRange): Promise<ObjectStream | null>;
  /**
   * Write an object so that readers see the whole old content or the whole new one, never part.
   * Durable when it resolves (fsynced, or acknowledged by S3).
   */
  write(key: string, data: Buffer): Promise<void>;
  /** Copy a local file into the store, streaming; same atomicity and durability as write(). */
  writeFile(key: string, sourcePath: string): Promise<void>;
  /** Keys under a prefix (e.g. a channel's history), in no particular order. */
  list(prefix: string): Promise<string[]>;
}

const KEY_SEGMENT = /^[A-Za-z0-9._+-]+$/;

/**
 * Keys come from manifests, URLs and flags: refuse anything that could climb out of the store
 * (`..`, absolute paths, backslashes, empty segments) before it reaches a filesystem or bucket.
 */
export function assertSafeKey(key: string): void {
  const segments = key.split('/');
  const ok =
    key.length > 0 &&
    key.length <= 512 &&
    segments.every((segment) => KEY_SEGMENT.test(segment) && segment !== '.' && segment !== '..');
  if (!ok) throw new StoreError('store_key_invalid', `invalid store key ${JSON.stringify(key)}`);
}
