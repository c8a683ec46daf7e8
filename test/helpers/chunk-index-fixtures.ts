import { createHash } from 'node:crypto';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import {
  CHUNK_INDEX_SCHEMA_VERSION,
  CHUNK_INDEX_TYPE,
  chunkingSchemaOf,
  DEFAULT_CHUNKING,
  type SignedChunkIndex,
} from '../../src/protocol/chunk-index.js';
import { ContentChunker, type Chunk, type ChunkingParams } from '../../src/shared/chunker.js';
import type { PrivateKey } from '../../src/trust/keys.js';
import { signDocument } from '../../src/trust/sign.js';
import { fakeWorkerExecutable } from './engine-fixtures.js';
import { seededRandom } from './seeded-random.js';

/** The chunks of bytes in memory, cut as the release tool cuts a file. */
export function chunksOf(bytes: Buffer, params: ChunkingParams = DEFAULT_CHUNKING): Chunk[] {
  const chunks: Chunk[] = [];
  const chunker = new ContentChunker(params, (chunk) => chunks.push(chunk));
  chunker.push(bytes);
  chunker.end();
  return chunks;
}

/** The signed part of the chunk index the release tool would publish for these bytes. */
export function chunkIndexFor(bytes: Buffer, version: string, platform = 'linux-x64'): SignedChunkIndex {
  const chunks = chunksOf(bytes);
  return {
    _type: CHUNK_INDEX_TYPE,
    schema_version: CHUNK_INDEX_SCHEMA_VERSION,
    version,
    platform,
    artifact_sha256: createHash('sha256').update(bytes).digest('hex'),
    artifact_size: bytes.length,
    chunking: chunkingSchemaOf(DEFAULT_CHUNKING),
    chunk_lengths: chunks.map((chunk) => chunk.length),
    chunk_sha256: chunks.map((chunk) => chunk.sha256),
  };
}

/** The published bytes of an index: canonical JSON of the signed envelope. */
export function signedChunkIndexBytes(signed: SignedChunkIndex, keys: readonly PrivateKey[]): Buffer {
  return canonicalBytes(signDocument(signed, keys));
}

export function seededBytes(random: () => number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i += 1) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

/**
 * Two fake worker executables that share most of their bytes, as a patch release shares the Node
 * runtime: a runnable script (its version differs), then `payloadBytes` of seeded bytes of which
 * the new one changes a few KiB in the middle and to which it appends 40 KiB.
 */
export function releasePair(seed: number, oldVersion: string, newVersion: string, payloadBytes = 2 * 1024 * 1024): { oldBytes: Buffer; newBytes: Buffer } {
  const random = seededRandom(seed);
  const payload = seededBytes(random, payloadBytes);
  const changed = Buffer.from(payload);
  seededBytes(random, 3000).copy(changed, Math.floor(payloadBytes / 2));
  return {
    oldBytes: Buffer.concat([fakeWorkerExecutable(oldVersion), payload]),
    newBytes: Buffer.concat([fakeWorkerExecutable(newVersion), changed, seededBytes(random, 40 * 1024)]),
  };
}
