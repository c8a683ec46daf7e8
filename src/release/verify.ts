import { open } from 'node:fs/promises';
import { MAX_MANIFEST_BYTES } from '../protocol/manifest.js';
import { errorMessage, isErrnoCode, UsageError } from '../shared/errors.js';
import type { PublicKey } from '../trust/keys.js';
import { verifyManifest, type VerifiedManifest } from '../trust/verify.js';
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

/**
 * `verify`: the exact check a worker makes (verifyManifest), on a file. Throws the
 * UpdateError with the reason code a worker would report.
 */
export async function verifyManifestFile(options: VerifyFileOptions): Promise<VerifiedManifest> {
  if (options.trustedKeys.length === 0) throw new UsageError('give at least one --trusted-key');
  const distinct = new Set(options.trustedKeys.map((key) => key.keyid)).size;
  if (!Number.isInteger(options.threshold) || options.threshold < 1 || options.threshold > distinct) {
    throw new UsageError(`--threshold ${options.threshold} needs between 1 and ${distinct} distinct trusted keys`);
  }
  const bytes = await readManifestFile(options.path);
  return verifyManifest(bytes, {
    trustedKeys: options.trustedKeys,
    threshold: options.threshold,
    channel: options.channel ?? claimedChannel(bytes),
    now: options.now,
  });
}
