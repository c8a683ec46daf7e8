import { DeltaFallback, type SignedChunkIndex } from '../../protocol/chunk-index.js';
import type { Chunk, ChunkedFile } from '../../shared/chunker.js';
import { chunksFromLengths } from '../install/local-chunks.js';

/** One request fetches at most this much, so a resumed download loses at most one range. */
export const MAX_RANGE_BYTES = 8 * 1024 * 1024;
/**
 * A run of local chunks shorter than this between two fetched ranges is fetched with them: one
 * request instead of two costs a few KiB more and keeps the request count low.
 */
export const MIN_LOCAL_GAP_BYTES = 64 * 1024;
/**
 * Above this share of the artifact to fetch, a differential download is not worth its requests:
 * one plain download is cheaper (`delta_not_smaller`).
 */
export const MAX_DELTA_SHARE = 0.8;
/** More ranges than this (changes scattered all over the file) is not worth it either. */
export const MAX_RANGES = 1000;

/** A run of consecutive chunks of the new file, taken from one place. */
export interface Piece {
  kind: 'local' | 'remote';
  /** Chunks of the new file, in order. */
  chunks: Chunk[];
  /** For a local piece, where each chunk is in the installed file (same order). */
  localOffsets: number[];
  start: number;
  end: number;
}

/** Consecutive chunks from one place; remote runs split at MAX_RANGE_BYTES. */
function runsOf(index: SignedChunkIndex, local: ChunkedFile): Piece[] {
  const localByHash = new Map<string, Chunk>();
  for (const chunk of local.chunks) if (!localByHash.has(chunk.sha256)) localByHash.set(chunk.sha256, chunk);
  const pieces: Piece[] = [];
  for (const chunk of chunksFromLengths(index.chunk_lengths, index.chunk_sha256)) {
    const found = localByHash.get(chunk.sha256);
    const kind = found && found.length === chunk.length ? 'local' : 'remote';
    const last = pieces.at(-1);
    const joins = last !== undefined && last.kind === kind && (kind === 'local' || last.end - last.start + chunk.length <= MAX_RANGE_BYTES);
    const piece: Piece = joins ? last : { kind, chunks: [], localOffsets: [], start: chunk.offset, end: chunk.offset };
    if (!joins) pieces.push(piece);
    piece.chunks.push(chunk);
    if (kind === 'local' && found) piece.localOffsets.push(found.offset);
    piece.end = chunk.offset + chunk.length;
  }
  return pieces;
}

/**
 * Plan the new file (docs/protocol.md, section 8): each chunk from the installed version when it
 * has one with the same hash and length, else fetched; consecutive fetched chunks merged into one
 * range of at most MAX_RANGE_BYTES, and a local gap under MIN_LOCAL_GAP_BYTES between two ranges
 * fetched with them. Throws DeltaFallback `delta_not_smaller` when more than MAX_DELTA_SHARE of
 * the file or more than MAX_RANGES requests would be needed.
 */
export function planPieces(index: SignedChunkIndex, local: ChunkedFile): Piece[] {
  const pieces: Piece[] = [];
  for (const piece of runsOf(index, local)) {
    const previous = pieces.at(-1);
    const beforePrevious = pieces.at(-2);
    // remote, short local, remote: the gap and the second range join the first.
    if (
      piece.kind === 'remote' &&
      previous?.kind === 'local' &&
      previous.end - previous.start < MIN_LOCAL_GAP_BYTES &&
      beforePrevious?.kind === 'remote' &&
      piece.end - beforePrevious.start <= MAX_RANGE_BYTES
    ) {
      beforePrevious.chunks.push(...previous.chunks, ...piece.chunks);
      beforePrevious.end = piece.end;
      pieces.pop();
      continue;
    }
    pieces.push(piece);
  }
  const toFetch = bytesToFetch(pieces);
  if (toFetch > index.artifact_size * MAX_DELTA_SHARE) {
    throw new DeltaFallback('delta_not_smaller', `${toFetch} of ${index.artifact_size} bytes differ from the installed version: one plain download is cheaper`);
  }
  const ranges = pieces.filter((piece) => piece.kind === 'remote').length;
  if (ranges > MAX_RANGES) {
    throw new DeltaFallback('delta_not_smaller', `${ranges} ranges would be needed (at most ${MAX_RANGES}): one plain download is cheaper`);
  }
  return pieces;
}

export function bytesToFetch(pieces: readonly Piece[]): number {
  return pieces.reduce((sum, piece) => sum + (piece.kind === 'remote' ? piece.end - piece.start : 0), 0);
}

/**
 * The chunks of a local piece from `assembled` on, as spans that are contiguous both in the new
 * file and in the installed one (a patch release keeps long runs of the old file in order).
 */
export function localSpans(piece: Piece, assembled: number): Array<{ localOffset: number; length: number }> {
  const spans: Array<{ localOffset: number; length: number }> = [];
  for (const [i, chunk] of piece.chunks.entries()) {
    if (chunk.offset < assembled) continue;
    const localOffset = piece.localOffsets[i] as number;
    const last = spans.at(-1);
    if (last && last.localOffset + last.length === localOffset) last.length += chunk.length;
    else spans.push({ localOffset, length: chunk.length });
  }
  return spans;
}
