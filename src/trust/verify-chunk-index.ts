import { canonicalBytes } from '../protocol/canonical-json.js';
import {
  chunkIndexChecker,
  DeltaFallback,
  maxChunkIndexBytes,
  type ChunkIndexDocument,
  type SignedChunkIndex,
} from '../protocol/chunk-index.js';
import { assertValidParams } from '../shared/chunker.js';
import type { PublicKey } from './keys.js';
import { validSigners } from './verify.js';

export interface ChunkIndexExpectation {
  trustedKeys: readonly PublicKey[];
  /** How many distinct trusted keys must have signed: the manifest's threshold. */
  threshold: number;
  /** The release and artifact the verified manifest names: the index must describe exactly these. */
  version: string;
  platform: string;
  sha256: string;
  size: number;
}

function invalid(message: string): DeltaFallback {
  return new DeltaFallback('index_invalid', message);
}

function parseIndex(bytes: Uint8Array, maxBytes: number): ChunkIndexDocument {
  if (bytes.byteLength > maxBytes) throw invalid(`chunk index is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit for this artifact`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw invalid('chunk index is not UTF-8 JSON');
  }
  // The schema first (cheap, and it bounds every array), then the one byte form, as for the
  // manifest: any other means the bytes were altered after signing.
  if (!chunkIndexChecker.Check(value)) {
    const first = chunkIndexChecker.Errors(value).First();
    throw invalid(`chunk index does not match the schema at ${first?.path || '/'}: ${first?.message ?? 'invalid'}`);
  }
  if (!canonicalBytes(value).equals(bytes)) throw invalid('chunk index is not in canonical JSON form (RFC 8785)');
  return value;
}

/**
 * Verify a fetched chunk index (docs/protocol.md, section 8) against the trusted keys and the
 * artifact entry of a manifest that already verified, or throw DeltaFallback `index_invalid`.
 * Pure, like verifyManifest, and in the same order: nothing in the index is believed before its
 * signatures pass. Then it must describe exactly the signed artifact (version, platform, SHA-256,
 * size), and its chunks must tile the file: every length within the chunking's bounds, summing
 * to the size. So no index can point a worker outside the file or at more bytes than it has.
 */
export function verifyChunkIndex(bytes: Uint8Array, expected: ChunkIndexExpectation): SignedChunkIndex {
  const distinctTrusted = new Set(expected.trustedKeys.map((key) => key.keyid)).size;
  if (!Number.isInteger(expected.threshold) || expected.threshold < 1 || expected.threshold > distinctTrusted) {
    // As in verifyManifest: a threshold no index could meet, or any could, is not a verdict.
    throw new RangeError(`threshold ${expected.threshold} needs between 1 and ${distinctTrusted} trusted keys`);
  }
  const document = parseIndex(bytes, maxChunkIndexBytes(expected.size));
  const signedBy = validSigners(document, expected.trustedKeys);
  if (signedBy.length < expected.threshold) {
    throw invalid(`chunk index has ${signedBy.length} valid signature(s) from trusted keys; ${expected.threshold} required`);
  }
  const index = document.signed;
  const describes =
    index.version === expected.version &&
    index.platform === expected.platform &&
    index.artifact_sha256 === expected.sha256 &&
    index.artifact_size === expected.size;
  if (!describes) {
    throw invalid(
      `chunk index describes ${index.version} ${index.platform} (${index.artifact_size} bytes, sha256 ${index.artifact_sha256}); the manifest signed ${expected.version} ${expected.platform} (${expected.size} bytes, sha256 ${expected.sha256})`,
    );
  }
  const { min_bytes: minBytes, avg_bytes: avgBytes, max_bytes: maxBytes } = index.chunking;
  try {
    assertValidParams({ minBytes, avgBytes, maxBytes });
  } catch (err) {
    throw invalid(`chunk index has unusable chunking parameters: ${(err as Error).message}`);
  }
  if (index.chunk_lengths.length !== index.chunk_sha256.length) {
    throw invalid(`chunk index lists ${index.chunk_lengths.length} lengths and ${index.chunk_sha256.length} hashes`);
  }
  let total = 0;
  const last = index.chunk_lengths.length - 1;
  for (const [i, length] of index.chunk_lengths.entries()) {
    // Only the last chunk may be shorter than the minimum (the file ended).
    if (length > maxBytes || (length < minBytes && i !== last)) {
      throw invalid(`chunk ${i} is ${length} bytes, outside ${minBytes}-${maxBytes}`);
    }
    total += length;
  }
  if (total !== index.artifact_size) {
    throw invalid(`chunk index covers ${total} bytes; the artifact is ${index.artifact_size}`);
  }
  return index;
}
