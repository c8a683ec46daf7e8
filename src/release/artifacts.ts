import { stat } from 'node:fs/promises';
import { MAX_ARTIFACT_BYTES, storeKeys, type ArtifactEntry } from '../protocol/manifest.js';
import { artifactFileName, isPlatform, PLATFORMS } from '../protocol/platform.js';
import { errorMessage } from '../shared/errors.js';
import type { ReleaseStore } from '../store/release-store.js';
import { digestLocalFile, digestStoredObject } from './digest.js';
import { ReleaseError } from './release-error.js';
import { storeWrite } from './store-writes.js';

export interface ArtifactSource {
  platform: string;
  path: string;
}

export interface StoredArtifact {
  platform: string;
  /** The store key, `artifacts/<version>/<file>`. */
  key: string;
  sha256: string;
  size: number;
  /** True when the store already held these exact bytes and nothing was written. */
  reused: boolean;
}

export function assertKnownPlatform(platform: string): void {
  if (!isPlatform(platform)) {
    throw new ReleaseError('platform_unknown', `unknown platform ${JSON.stringify(platform)}; known: ${PLATFORMS.join(', ')}`);
  }
}

async function localArtifactSize(path: string): Promise<number> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new ReleaseError('artifact_unreadable', `cannot read artifact ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (!info.isFile()) throw new ReleaseError('artifact_unreadable', `artifact ${path} is not a regular file`);
  if (info.size === 0) throw new ReleaseError('artifact_unreadable', `artifact ${path} is empty`);
  if (info.size > MAX_ARTIFACT_BYTES) {
    throw new ReleaseError('artifact_too_large', `artifact ${path} is ${info.size} bytes, over the ${MAX_ARTIFACT_BYTES}-byte limit`);
  }
  return info.size;
}

/**
 * Publish step 1 for one platform: put the file into `artifacts/<version>/<file>` and prove it
 * landed intact by reading it back from the store and hashing what is there. A version's bytes
 * never change under its name: the same bytes already in the store are reused, different ones
 * are refused.
 */
export async function storeArtifact(store: ReleaseStore, version: string, source: ArtifactSource): Promise<StoredArtifact> {
  assertKnownPlatform(source.platform);
  const localSize = await localArtifactSize(source.path);
  const local = await digestLocalFile(source.path).catch((err: unknown) => {
    throw new ReleaseError('artifact_unreadable', `cannot read artifact ${source.path}: ${errorMessage(err)}`, { cause: err });
  });
  if (local.sizeBytes !== localSize) {
    throw new ReleaseError('artifact_unreadable', `artifact ${source.path} changed size while it was read`);
  }
  const key = storeKeys.artifact(version, artifactFileName(version, source.platform));

  const existing = await digestStoredObject(store, key);
  if (existing) {
    if (existing.sha256 === local.sha256 && existing.sizeBytes === local.sizeBytes) {
      return { platform: source.platform, key, sha256: local.sha256, size: local.sizeBytes, reused: true };
    }
    throw new ReleaseError(
      'artifact_conflict',
      `${key} already exists in ${store.location} with different bytes (sha256 ${existing.sha256}); a published version's artifacts never change: publish a new version`,
    );
  }

  await storeWrite(store, key, () => store.writeFile(key, source.path));
  const landed = await digestStoredObject(store, key);
  if (!landed || landed.sha256 !== local.sha256 || landed.sizeBytes !== local.sizeBytes) {
    throw new ReleaseError(
      'artifact_corrupted',
      `${key} in ${store.location} does not match ${source.path} after upload (expected sha256 ${local.sha256}, ${local.sizeBytes} bytes; store has ${landed ? `${landed.sha256}, ${landed.sizeBytes} bytes` : 'nothing'})`,
    );
  }
  return { platform: source.platform, key, sha256: local.sha256, size: local.sizeBytes, reused: false };
}

/**
 * Promote's check that a manifest's artifacts are really in the store as signed. Artifacts
 * served from elsewhere (an absolute url) are out of the store's reach and are left to the
 * workers, which verify every download anyway.
 */
export async function assertStoredArtifactsMatch(store: ReleaseStore, artifacts: Record<string, ArtifactEntry>): Promise<void> {
  for (const [platform, entry] of Object.entries(artifacts)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(entry.url)) continue;
    const landed = await digestStoredObject(store, entry.url);
    if (!landed) throw new ReleaseError('artifact_missing', `${platform} artifact ${entry.url} is missing from ${store.location}`);
    if (landed.sha256 !== entry.sha256 || landed.sizeBytes !== entry.size) {
      throw new ReleaseError(
        'artifact_corrupted',
        `${platform} artifact ${entry.url} in ${store.location} is ${landed.sizeBytes} bytes with sha256 ${landed.sha256}; the manifest says ${entry.size} bytes, ${entry.sha256}`,
      );
    }
  }
}
