import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { digestFile, digestStream } from '../../src/shared/file-digest.js';
import { makeTempDir } from '../helpers/engine-fixtures.js';

describe('file digest', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    temp = await makeTempDir('file-digest');
  });
  after(() => temp.remove());

  // 3 MiB + 1 spans several 1 MiB reads; the empty file is a hash of nothing.
  for (const sizeBytes of [0, 1, 3 * 1024 * 1024 + 1]) {
    test(`a file of ${sizeBytes} bytes: its SHA-256 and size`, async () => {
      const bytes = randomBytes(sizeBytes);
      const path = join(temp.dir, `file-${sizeBytes}`);
      await writeFile(path, bytes);
      const expected = { sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes };
      assert.deepEqual(await digestFile(path), expected);
      assert.deepEqual(await digestStream(Readable.from([bytes.subarray(0, 7), bytes.subarray(7)])), expected);
    });
  }

  test('a missing file is the read error, not an empty digest', async () => {
    await assert.rejects(digestFile(join(temp.dir, 'missing')), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
  });
});
