import { stat } from 'node:fs/promises';
import { MAX_ARTIFACT_BYTES, storeKeys, type ArtifactEntry } from '../protocol/manifest.js';
import { artifactFileName, isPlatform, PLATFORMS } from '../protocol/platform.js';
import { errorMessage } from '../shared/errors.js';
import { digestFile, type FileDigest } from '../shared/file-digest.js';
import type { ReleaseStore } from '../store/release-store.js';
import { digestStoredObject } from './digest.js';
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
  const local = await digestFile(source.path).catch((err: unknown) => {
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

/** A url with a scheme (`https://…`): served from outside the store's own layout. */
const ABSOLUTE_URL = /^[a-z][a-z0-9+.-]*:/i;

/** Where workers may download from (docs/protocol.md, section 1): https, or http only to a loopback host; no query or fragment. */
export function isServableUrl(url: URL): boolean {
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  return (url.protocol === 'https:' || (url.protocol === 'http:' && loopback)) && !url.search && !url.hash;
}

/**
 * The store key of a release's artifact for one platform, `artifacts/<version>/<file>`, when the
 * manifest url names exactly that: as publish writes it, relative or under a `--base-url`. Null for
 * any other url: such a url says nothing about which stored bytes a worker would get.
 */
export function artifactStoreKey(version: string, platform: string, url: string): string | null {
  const key = storeKeys.artifact(version, artifactFileName(version, platform));
  if (url === key) return key;
  if (!ABSOLUTE_URL.test(url) || !URL.canParse(url)) return null;
  const parsed = new URL(url);
  return isServableUrl(parsed) && parsed.pathname.endsWith(`/${key}`) ? key : null;
}

export interface StoredArtifactCheck {
  platform: string;
  /** What the manifest says. */
  entry: ArtifactEntry;
  /** Where the store holds it; null when the url names no `artifacts/<version>/<file>`. */
  key: string | null;
  /** What the store holds there, re-hashed; null when missing. */
  found: FileDigest | null;
  status: 'ok' | 'missing' | 'corrupted';
}

/**
 * Re-hash, from the store, every artifact a verified manifest names (promote, `verify --store`),
 * streaming each one, and compare size and SHA-256 with what the manifest signed. Every artifact
 * is checked, so a report names all the damage at once; assertStoredArtifactsIntact judges.
 */
export async function checkStoredArtifacts(
  store: ReleaseStore,
  version: string,
  artifacts: Record<string, ArtifactEntry>,
  log: (line: string) => void = () => {},
): Promise<StoredArtifactCheck[]> {
  const checks: StoredArtifactCheck[] = [];
  for (const [platform, entry] of Object.entries(artifacts)) {
    const key = artifactStoreKey(version, platform, entry.url);
    if (key) log(`hashing ${key} from ${store.location}`);
    const found = key ? await digestStoredObject(store, key) : null;
    const status = !found ? 'missing' : found.sha256 === entry.sha256 && found.sizeBytes === entry.size ? 'ok' : 'corrupted';
    checks.push({ platform, entry, key, found, status });
  }
  return checks;
}

/** Refuse when any checked artifact is missing or differs from its manifest entry; the first one names the code. */
export function assertStoredArtifactsIntact(store: ReleaseStore, checks: readonly StoredArtifactCheck[]): void {
  const failed = checks.filter((check) => check.status !== 'ok');
  const first = failed[0];
  if (!first) return;
  const others = failed.length > 1 ? ` (and ${failed.length - 1} more of ${checks.length} artifacts fail)` : '';
  const { platform, entry, key, found } = first;
  if (!key) {
    throw new ReleaseError('artifact_missing', `${platform} artifact url ${entry.url} names no artifacts/<version>/<file> of ${store.location}${others}`);
  }
  if (!found) throw new ReleaseError('artifact_missing', `${platform} artifact ${key} is missing from ${store.location}${others}`);
  throw new ReleaseError(
    'artifact_corrupted',
    `${platform} artifact ${key} in ${store.location} is ${found.sizeBytes} bytes with sha256 ${found.sha256}; the manifest says ${entry.size} bytes, ${entry.sha256}${others}`,
  );
}
