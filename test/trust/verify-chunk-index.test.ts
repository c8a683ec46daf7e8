import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import { DeltaFallback, type SignedChunkIndex } from '../../src/protocol/chunk-index.js';
import { signDocument } from '../../src/trust/sign.js';
import { verifyChunkIndex, type ChunkIndexExpectation } from '../../src/trust/verify-chunk-index.js';
import { chunkIndexFor, seededBytes, signedChunkIndexBytes } from '../helpers/chunk-index-fixtures.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { makeKey } from '../helpers/trust-fixtures.js';

const SEED = Number(process.env['TEST_SEED'] ?? 4_242_001);
console.log(`verify-chunk-index seed ${SEED} (TEST_SEED to replay)`);

describe('verifyChunkIndex', () => {
  const key = makeKey();
  const second = makeKey();
  const stranger = makeKey();
  const artifact = seededBytes(seededRandom(SEED), 300_000);
  const index = chunkIndexFor(artifact, '1.2.0');
  const expected: ChunkIndexExpectation = {
    trustedKeys: [key.public, second.public],
    threshold: 1,
    version: '1.2.0',
    platform: 'linux-x64',
    sha256: index.artifact_sha256,
    size: index.artifact_size,
  };
  const good = signedChunkIndexBytes(index, [key.private]);

  test('a signed index of the manifest\'s artifact verifies', () => {
    assert.deepEqual(verifyChunkIndex(good, expected), index);
  });

  const signedWith = (signed: SignedChunkIndex) => signedChunkIndexBytes(signed, [key.private]);
  const refusals: Array<{ name: string; bytes: () => Buffer; options?: Partial<ChunkIndexExpectation>; message: RegExp }> = [
    { name: 'not JSON', bytes: () => Buffer.from('{"signed":'), message: /not UTF-8 JSON/ },
    { name: 'not canonical (pretty-printed)', bytes: () => Buffer.from(JSON.stringify(JSON.parse(good.toString()), null, 1)), message: /canonical/ },
    { name: 'an unknown field', bytes: () => canonicalBytes({ ...JSON.parse(good.toString()), extra: 1 }), message: /schema/ },
    { name: 'a manifest, not an index', bytes: () => canonicalBytes(signDocument({ _type: 'worker-release' }, [key.private])), message: /schema/ },
    { name: 'unsigned', bytes: () => canonicalBytes({ signed: index, signatures: [] }), message: /0 valid signature/ },
    { name: 'signed by an untrusted key', bytes: () => signedChunkIndexBytes(index, [stranger.private]), message: /0 valid signature/ },
    { name: 'one signature where two are required', bytes: () => good, options: { threshold: 2 }, message: /1 valid signature\(s\) from trusted keys; 2 required/ },
    { name: 'another artifact (SHA-256)', bytes: () => good, options: { sha256: 'a'.repeat(64) }, message: /describes/ },
    { name: 'another size', bytes: () => good, options: { size: index.artifact_size + 1 }, message: /describes/ },
    { name: 'another version (an older release\'s index replayed)', bytes: () => good, options: { version: '1.3.0' }, message: /describes/ },
    { name: 'another platform', bytes: () => good, options: { platform: 'linux-arm64' }, message: /describes/ },
    {
      name: 'chunks that run past the end of the file',
      bytes: () => signedWith({ ...index, chunk_lengths: [...index.chunk_lengths.slice(0, -1), index.chunk_lengths.at(-1)! + 1] }),
      message: /covers \d+ bytes; the artifact is/,
    },
    { name: 'chunks that stop short of the end', bytes: () => signedWith({ ...index, chunk_lengths: index.chunk_lengths.slice(0, -1), chunk_sha256: index.chunk_sha256.slice(0, -1) }), message: /covers/ },
    { name: 'a chunk over the maximum', bytes: () => signedWith({ ...index, chunk_lengths: [70_000, ...index.chunk_lengths.slice(1)] }), message: /outside/ },
    { name: 'a short chunk that is not the last', bytes: () => signedWith({ ...index, chunk_lengths: [100, ...index.chunk_lengths.slice(1)] }), message: /outside/ },
    { name: 'lengths and hashes that do not pair up', bytes: () => signedWith({ ...index, chunk_sha256: index.chunk_sha256.slice(1) }), message: /lengths and/ },
    { name: 'more bytes than any index of this artifact can have (read no further)', bytes: () => Buffer.alloc(50_000, 0x20), message: /over the \d+-byte limit for this artifact/ },
    { name: 'chunks under the 1 KiB floor', bytes: () => signedWith({ ...index, chunking: { ...index.chunking, min_bytes: 512 } }), message: /schema/ },
    { name: 'chunking parameters nobody could cut with', bytes: () => signedWith({ ...index, chunking: { ...index.chunking, avg_bytes: 12_000 } }), message: /chunking parameters/ },
  ];
  for (const row of refusals) {
    test(`refused as index_invalid: ${row.name}`, () => {
      assert.throws(
        () => verifyChunkIndex(row.bytes(), { ...expected, ...row.options }),
        (err: unknown) => err instanceof DeltaFallback && err.code === 'index_invalid' && row.message.test(err.message),
      );
    });
  }

  test('a threshold no index could meet, or any could, is a configuration error, not a verdict', () => {
    assert.throws(() => verifyChunkIndex(good, { ...expected, threshold: 0 }), RangeError);
    assert.throws(() => verifyChunkIndex(good, { ...expected, threshold: 3 }), RangeError);
  });

  test('64 signatures naming one trusted key cost one check, and do not count twice', () => {
    const document = JSON.parse(signedChunkIndexBytes(index, [stranger.private]).toString()) as { signed: SignedChunkIndex; signatures: Array<{ keyid: string; sig: string }> };
    const forged = { keyid: key.public.keyid, sig: document.signatures[0]!.sig };
    const genuine = JSON.parse(good.toString()) as { signatures: Array<{ keyid: string; sig: string }> };
    // The first signature naming the key is forged: the genuine one after it is not tried.
    const bytes = canonicalBytes({ signed: index, signatures: [...Array.from({ length: 63 }, () => forged), genuine.signatures[0]!] });
    assert.throws(() => verifyChunkIndex(bytes, expected), (err: unknown) => err instanceof DeltaFallback && /0 valid signature/.test(err.message));
  });

  test('flipping any byte of a signed index makes it fail (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, mask) => {
        const tampered = Buffer.from(good);
        tampered[at] = tampered[at]! ^ mask;
        assert.throws(() => verifyChunkIndex(tampered, expected), DeltaFallback);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});
