import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { DEFAULT_CHUNKING } from '../../src/protocol/chunk-index.js';
import { assertValidParams, chunkFile, ContentChunker, type Chunk } from '../../src/shared/chunker.js';
import { chunksOf, seededBytes } from '../helpers/chunk-index-fixtures.js';
import { seededRandom } from '../helpers/seeded-random.js';

const SEED = Number(process.env['TEST_SEED'] ?? 7_771_201);
console.log(`chunker seed ${SEED} (TEST_SEED to replay)`);
const random = seededRandom(SEED);
const data = seededBytes(random, 1024 * 1024);

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('content-defined chunking', () => {
  test('chunks tile the input, stay within the bounds, and hash to their bytes', () => {
    const chunks = chunksOf(data);
    let offset = 0;
    for (const [i, chunk] of chunks.entries()) {
      assert.equal(chunk.offset, offset);
      assert.ok(chunk.length <= DEFAULT_CHUNKING.maxBytes);
      if (i < chunks.length - 1) assert.ok(chunk.length >= DEFAULT_CHUNKING.minBytes);
      assert.equal(chunk.sha256, sha256(data.subarray(chunk.offset, chunk.offset + chunk.length)));
      offset += chunk.length;
    }
    assert.equal(offset, data.length);
    const averageBytes = data.length / chunks.length;
    assert.ok(averageBytes > DEFAULT_CHUNKING.avgBytes / 2 && averageBytes < DEFAULT_CHUNKING.avgBytes * 2, `average ${averageBytes}`);
  });

  test('the cut does not depend on how the bytes were pushed (property)', () => {
    const whole = chunksOf(data);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 1, maxLength: 30 }), (sizes) => {
        const pieces: Chunk[] = [];
        const chunker = new ContentChunker(DEFAULT_CHUNKING, (chunk) => pieces.push(chunk));
        let at = 0;
        for (let i = 0; at < data.length; i += 1) {
          const size = sizes[i % sizes.length]!;
          chunker.push(data.subarray(at, at + size));
          at += size;
        }
        chunker.end();
        assert.deepEqual(pieces, whole);
      }),
      { seed: SEED, numRuns: 25 },
    );
  });

  test('an insertion moves only the boundaries next to it', () => {
    const inserted = Buffer.concat([data.subarray(0, 500_000), seededBytes(random, 777), data.subarray(500_000)]);
    const before = new Set(chunksOf(data).map((chunk) => chunk.sha256));
    const after = chunksOf(inserted);
    const newBytes = after.filter((chunk) => !before.has(chunk.sha256)).reduce((sum, chunk) => sum + chunk.length, 0);
    assert.ok(newBytes < 4 * DEFAULT_CHUNKING.maxBytes, `${newBytes} bytes in new chunks after a 777-byte insertion`);
  });

  test('a file is cut as its bytes are, with its whole SHA-256; an empty file has no chunks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bytebiota-chunker-'));
    try {
      await writeFile(join(dir, 'f'), data);
      const cut = await chunkFile(join(dir, 'f'), DEFAULT_CHUNKING);
      assert.deepEqual(cut.chunks, chunksOf(data));
      assert.equal(cut.sha256, sha256(data));
      assert.equal(cut.size, data.length);
      await writeFile(join(dir, 'empty'), '');
      assert.deepEqual((await chunkFile(join(dir, 'empty'), DEFAULT_CHUNKING)).chunks, []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('parameters that could not cut sensibly are refused', () => {
    for (const params of [
      { minBytes: 4096, avgBytes: 12_000, maxBytes: 65_536 },
      { minBytes: 16_384, avgBytes: 16_384, maxBytes: 65_536 },
      { minBytes: 4096, avgBytes: 16_384, maxBytes: 16_384 },
      { minBytes: 10, avgBytes: 16_384, maxBytes: 65_536 },
      { minBytes: 4096, avgBytes: 16_384, maxBytes: 64 * 1024 * 1024 },
    ]) {
      assert.throws(() => assertValidParams(params), RangeError, JSON.stringify(params));
    }
    assert.doesNotThrow(() => assertValidParams(DEFAULT_CHUNKING));
  });
});
