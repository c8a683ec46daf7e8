import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CHUNK_INDEX_SCHEMA_VERSION, CHUNK_INDEX_TYPE, chunkingSchemaOf, DEFAULT_CHUNKING, DeltaFallback, type SignedChunkIndex } from '../../../src/protocol/chunk-index.js';
import type { ChunkedFile } from '../../../src/shared/chunker.js';
import { chunksFromLengths } from '../../../src/worker/install/local-chunks.js';
import { MAX_RANGES, MAX_RANGE_BYTES, MIN_LOCAL_GAP_BYTES, planPieces } from '../../../src/worker/engine/delta-plan.js';

const KIB = 1024;

/**
 * A new file described by runs: `L` chunks the installed file has, `R` chunks it lacks, each of
 * `chunkBytes`. Hashes are labels (the plan compares them, it never hashes).
 */
function scenario(runs: Array<['L' | 'R', number]>, chunkBytes = 16 * KIB): { index: SignedChunkIndex; local: ChunkedFile } {
  const lengths: number[] = [];
  const hashes: string[] = [];
  const localHashes: string[] = [];
  let n = 0;
  for (const [kind, count] of runs) {
    for (let i = 0; i < count; i += 1, n += 1) {
      const hash = n.toString(16).padStart(64, '0');
      lengths.push(chunkBytes);
      hashes.push(hash);
      if (kind === 'L') localHashes.push(hash);
    }
  }
  const size = lengths.reduce((a, b) => a + b, 0);
  const index: SignedChunkIndex = {
    _type: CHUNK_INDEX_TYPE,
    schema_version: CHUNK_INDEX_SCHEMA_VERSION,
    version: '1.0.1',
    platform: 'linux-x64',
    artifact_sha256: 'a'.repeat(64),
    artifact_size: size,
    chunking: chunkingSchemaOf(DEFAULT_CHUNKING),
    chunk_lengths: lengths,
    chunk_sha256: hashes,
  };
  // The installed file holds the shared chunks in the same order, back to back.
  const local = { chunks: chunksFromLengths(localHashes.map(() => chunkBytes), localHashes), sha256: 'b'.repeat(64), size: localHashes.length * chunkBytes };
  return { index, local };
}

const shape = (pieces: ReturnType<typeof planPieces>): string[] => pieces.map((piece) => `${piece.kind}:${piece.chunks.length}`);

describe('planning a differential download', () => {
  const rows: Array<{ name: string; runs: Array<['L' | 'R', number]>; expected: string[] }> = [
    { name: 'a patch: one changed chunk in the middle', runs: [['L', 200], ['R', 1], ['L', 200]], expected: ['local:200', 'remote:1', 'local:200'] },
    { name: 'two changes a short local gap apart are fetched as one range', runs: [['L', 200], ['R', 1], ['L', MIN_LOCAL_GAP_BYTES / (16 * KIB) - 1], ['R', 1], ['L', 200]], expected: ['local:200', 'remote:5', 'local:200'] },
    { name: 'two changes a long gap apart stay two ranges', runs: [['L', 200], ['R', 1], ['L', MIN_LOCAL_GAP_BYTES / (16 * KIB)], ['R', 1], ['L', 200]], expected: ['local:200', 'remote:1', 'local:4', 'remote:1', 'local:200'] },
    { name: 'a long changed run is split at the range limit', runs: [['L', 2000], ['R', MAX_RANGE_BYTES / (16 * KIB) + 3]], expected: ['local:2000', `remote:${MAX_RANGE_BYTES / (16 * KIB)}`, 'remote:3'] },
  ];
  for (const row of rows) {
    test(row.name, () => {
      const { index, local } = scenario(row.runs);
      const pieces = planPieces(index, local);
      assert.deepEqual(shape(pieces), row.expected);
      // The pieces tile the file, in order.
      let at = 0;
      for (const piece of pieces) {
        assert.equal(piece.start, at);
        at = piece.end;
      }
      assert.equal(at, index.artifact_size);
    });
  }

  test('a chunk with a known hash but another length is fetched', () => {
    const { index, local } = scenario([['L', 10], ['L', 1]]);
    local.chunks[10] = { ...local.chunks[10]!, length: 999 };
    assert.deepEqual(shape(planPieces(index, local)), ['local:10', 'remote:1']);
  });

  const refusals: Array<{ name: string; runs: Array<['L' | 'R', number]> }> = [
    { name: 'more than 80 % to fetch', runs: [['L', 19], ['R', 81]] },
    { name: `more than ${MAX_RANGES} ranges`, runs: Array.from({ length: MAX_RANGES + 1 }, () => [['R', 1], ['L', 10]] as Array<['L' | 'R', number]>).flat() },
  ];
  for (const row of refusals) {
    test(`not worth it, falls back (delta_not_smaller): ${row.name}`, () => {
      const { index, local } = scenario(row.runs);
      assert.throws(() => planPieces(index, local), (err: unknown) => err instanceof DeltaFallback && err.code === 'delta_not_smaller');
    });
  }
});
