import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/**
 * Content-defined chunking (FastCDC: Xia et al., USENIX ATC 2016), the cut the release tool makes
 * at publish and the worker repeats over the version it already has (docs/protocol.md, section 8).
 * A boundary depends only on the 32 bytes before it, so an insertion or removal moves the
 * boundaries next to it and no others: the unchanged Node runtime of a patch release cuts into
 * the same chunks whatever shifted around it. Both sides must cut identically, so every number
 * here is part of the protocol and named by `algorithm`.
 */
export const CHUNKING_ALGORITHM = 'fastcdc-gear32-v1';

export interface ChunkingParams {
  /** No boundary before this many bytes of a chunk (except at the end of the file). */
  minBytes: number;
  /** The size chunks are normalised around: a power of two. */
  avgBytes: number;
  /** A boundary is forced here. */
  maxBytes: number;
}

export interface Chunk {
  offset: number;
  length: number;
  /** Lowercase hex. */
  sha256: string;
}

/**
 * The gear table: 256 fixed pseudo-random 32-bit values, derived from SHA-256 so that anyone can
 * recompute them (no table of magic numbers to copy by hand).
 */
const GEAR: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i += 1) {
    table[i] = createHash('sha256').update(`bytebiota-gear-${i}`).digest().readUInt32BE(0);
  }
  return table;
})();

/** The top `bits` bits: with the gear hash, only high bits depend on a whole 32-byte window. */
function topBitsMask(bits: number): number {
  return (0xffffffff << (32 - bits)) >>> 0;
}

export function assertValidParams(params: ChunkingParams): void {
  const { minBytes, avgBytes, maxBytes } = params;
  const ok =
    Number.isInteger(minBytes) &&
    Number.isInteger(maxBytes) &&
    Number.isInteger(avgBytes) &&
    avgBytes >= 256 &&
    (avgBytes & (avgBytes - 1)) === 0 &&
    minBytes >= 64 &&
    minBytes < avgBytes &&
    avgBytes < maxBytes &&
    maxBytes <= 16 * 1024 * 1024;
  if (!ok) throw new RangeError(`invalid chunking parameters ${JSON.stringify(params)}`);
}

/**
 * Cuts a byte stream pushed in pieces of any size. Normalised chunking (FastCDC level 1): a
 * harder mask below the average size and an easier one above it keep most chunks near it.
 */
export class ContentChunker {
  private readonly maskBelowAvg: number;
  private readonly maskAboveAvg: number;
  private hash: Hash = createHash('sha256');
  private gear = 0;
  private chunkLength = 0;
  private chunkOffset = 0;

  constructor(
    private readonly params: ChunkingParams,
    private readonly onChunk: (chunk: Chunk) => void,
  ) {
    assertValidParams(params);
    const bits = Math.log2(params.avgBytes);
    this.maskBelowAvg = topBitsMask(bits + 1);
    this.maskAboveAvg = topBitsMask(bits - 1);
  }

  push(bytes: Uint8Array): void {
    const { minBytes, avgBytes, maxBytes } = this.params;
    let sliceStart = 0;
    let i = 0;
    while (i < bytes.length) {
      // The first minBytes of a chunk are never a boundary: skip them without hashing.
      if (this.chunkLength < minBytes) {
        const skip = Math.min(minBytes - this.chunkLength, bytes.length - i);
        i += skip;
        this.chunkLength += skip;
        continue;
      }
      let gear = this.gear;
      let length = this.chunkLength;
      let cut = false;
      while (i < bytes.length) {
        gear = ((gear << 1) + GEAR[bytes[i] as number]!) >>> 0;
        i += 1;
        length += 1;
        const mask = length < avgBytes ? this.maskBelowAvg : this.maskAboveAvg;
        if ((gear & mask) === 0 || length >= maxBytes) {
          cut = true;
          break;
        }
      }
      this.gear = gear;
      this.chunkLength = length;
      if (cut) {
        this.hash.update(bytes.subarray(sliceStart, i));
        sliceStart = i;
        this.emit();
      }
    }
    if (sliceStart < bytes.length) this.hash.update(bytes.subarray(sliceStart));
  }

  /** The last chunk, however short. */
  end(): void {
    if (this.chunkLength > 0) this.emit();
  }

  private emit(): void {
    this.onChunk({ offset: this.chunkOffset, length: this.chunkLength, sha256: this.hash.digest('hex') });
    this.chunkOffset += this.chunkLength;
    this.chunkLength = 0;
    this.gear = 0;
    this.hash = createHash('sha256');
  }
}

export interface ChunkedFile {
  chunks: Chunk[];
  sha256: string;
  size: number;
}

/** Read in 1 MiB pieces: memory stays flat whatever the file's size. */
const READ_PIECE_BYTES = 1024 * 1024;

/** The chunks of a byte stream and its whole SHA-256, in one pass. */
export async function chunkStream(stream: AsyncIterable<Uint8Array>, params: ChunkingParams): Promise<ChunkedFile> {
  const chunks: Chunk[] = [];
  const chunker = new ContentChunker(params, (chunk) => chunks.push(chunk));
  const whole = createHash('sha256');
  let size = 0;
  for await (const piece of stream) {
    chunker.push(piece);
    whole.update(piece);
    size += piece.length;
  }
  chunker.end();
  return { chunks, sha256: whole.digest('hex'), size };
}

/** The chunks of a file and its whole SHA-256, streamed. */
export function chunkFile(path: string, params: ChunkingParams): Promise<ChunkedFile> {
  return chunkStream(createReadStream(path, { highWaterMark: READ_PIECE_BYTES }), params);
}
