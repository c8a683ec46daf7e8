import { open } from 'node:fs/promises';
import { MAX_MANIFEST_BYTES, storeKeys } from '../protocol/manifest.js';
import { errorMessage, isErrnoCode, UsageError } from '../shared/errors.js';
import type { ReleaseStore } from '../store/release-store.js';
import type { PublicKey } from '../trust/keys.js';
import { verifyManifest, type VerifiedManifest } from '../trust/verify.js';
import { checkStoredArtifacts, type StoredArtifactCheck } from './artifacts.js';
import { assertValidChannel } from './channel-state.js';
import { checkChunkIndexes, type ChunkIndexCheck } from './chunk-index.js';
import { ReleaseError } from './release-error.js';

export interface VerifyFileOptions {
  path: string;
  trustedKeys: readonly PublicKey[];
  threshold: number;
  /** The channel the manifest must be for; by default the one it names. */
  channel?: string;
  now: Date;
}

/** Read at most the manifest limit plus one byte: enough to tell an oversized file from a valid one. */
async function readManifestFile(path: string): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const reason = isErrnoCode(err, 'ENOENT') ? 'no such file' : errorMessage(err);
    throw new ReleaseError('manifest_unreadable', `cannot read manifest ${path}: ${reason}`, { cause: err });
  }
  try {
    const buffer = Buffer.alloc(MAX_MANIFEST_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    return buffer.subarray(0, length);
  } catch (err) {
    throw new ReleaseError('manifest_unreadable', `cannot read manifest ${path}: ${errorMessage(err)}`, { cause: err });
  } finally {
    await handle.close();
  }
}

/** The channel a manifest names, read without trusting it: only to default `--channel`. */
function claimedChannel(bytes: Buffer): string {
  try {
    const channel = (JSON.parse(bytes.toString('utf8')) as { signed?: { channel?: unknown } }).signed?.channel;
    return typeof channel === 'string' ? channel : '';
  } catch {
    return '';
  }
}

function assertTrustSettings(trustedKeys: readonly PublicKey[], threshold: number): void {
  if (trustedKeys.length === 0) throw new UsageError('give at least one --trusted-key');
  const distinct = new Set(trustedKeys.map((key) => key.keyid)).size;
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > distinct) {
    throw new UsageError(`--threshold ${threshold} needs between 1 and ${distinct} distinct trusted keys`);
  }
}

/**
 * `verify`: the exact check a worker makes (verifyManifest), on a file. Throws the
 * UpdateError with the reason code a worker would report.
 */
export async function verifyManifestFile(options: VerifyFileOptions): Promise<VerifiedManifest> {
  assertTrustSettings(options.trustedKeys, options.threshold);
  const bytes = await readManifestFile(options.path);
  return verifyManifest(bytes, {
    trustedKeys: options.trustedKeys,
    threshold: options.threshold,
    channel: options.channel ?? claimedChannel(bytes),
    now: options.now,
  });
}

export interface VerifyStoreOptions {
  store: ReleaseStore;
  channel: string;
  trustedKeys: readonly PublicKey[];
  threshold: number;
  now: Date;
  /** Progress lines for the operator. */
  log: (line: string) => void;
}

export interface VerifiedStoredRelease {
  /** The store key of the manifest verified. */
  manifestKey: string;
  verified: VerifiedManifest;
  /** One check per artifact the manifest names; the caller judges them (assertStoredArtifactsIntact). */
  artifacts: StoredArtifactCheck[];
  /** Each artifact's chunk index, judged as a worker would (docs/protocol.md, section 8). */
  chunkIndexes: ChunkIndexCheck[];
}

/**
 * `verify --store`: a channel's current manifest, checked exactly as a worker checks it, then
 * every artifact it names re-hashed from the store (size and SHA-256, streaming). The artifacts
 * are looked at only once the signatures pass: an unverified manifest names nothing worth reading.
 */
export async function verifyStoredChannel(options: VerifyStoreOptions): Promise<VerifiedStoredRelease> {
  const { store, channel } = options;
  assertTrustSettings(options.trustedKeys, options.threshold);
  assertValidChannel(channel);
  const manifestKey = storeKeys.manifest(channel);
  const bytes = await store.read(manifestKey, MAX_MANIFEST_BYTES);
  if (!bytes) throw new ReleaseError('manifest_unreadable', `channel ${channel} has no manifest in ${store.location} (${manifestKey})`);
  const verified = verifyManifest(bytes, { trustedKeys: options.trustedKeys, threshold: options.threshold, channel, now: options.now });
  options.log(`verified ${manifestKey}: ${channel} serial ${verified.signed.serial}, ${verified.signed.version}`);
  const artifacts = await checkStoredArtifacts(store, verified.signed.version, verified.signed.artifacts, options.log);
  const chunkIndexes = await checkChunkIndexes(store, verified.signed.version, verified.signed.artifacts, options);
  return { manifestKey, verified, artifacts, chunkIndexes };
}
