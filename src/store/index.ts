import { resolve } from 'node:path';
import { UsageError } from '../shared/errors.js';
import { FolderStore } from './folder-store.js';
import type { ReleaseStore } from './release-store.js';
import { S3Store } from './s3-store.js';

export * from './release-store.js';
export { FolderStore } from './folder-store.js';
export { S3Store, parseS3Location, s3ClientConfigFromEnv, type S3Location } from './s3-store.js';

/**
 * Open the store a location names (docs/protocol.md, section 2): `s3://bucket/prefix` for S3 or an
 * S3-compatible server (settings from the environment, see s3ClientConfigFromEnv), anything
 * else a folder path. Nothing is contacted here; call ping() to check reachability.
 */
export function openReleaseStore(location: string, env: Record<string, string | undefined> = process.env): ReleaseStore {
  const trimmed = location.trim();
  if (trimmed === '') throw new UsageError('the release store location is empty: give a folder path or s3://bucket/prefix');
  if (/^s3:/i.test(trimmed)) return S3Store.fromUrl(trimmed, env);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    throw new UsageError(`unsupported release store ${JSON.stringify(location)}: give a folder path or s3://bucket/prefix`);
  }
  return new FolderStore(resolve(trimmed));
}
