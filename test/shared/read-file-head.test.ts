import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readFileHead } from '../../src/shared/read-file-head.js';
import { makeTempDir } from '../helpers/engine-fixtures.js';

describe('readFileHead', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    temp = await makeTempDir('read-file-head');
  });
  after(() => temp.remove());

  const rows = [
    { name: 'shorter than the limit: all of it', content: 'abc', maxBytes: 10, expected: 'abc' },
    { name: 'exactly the limit', content: 'abcdefghij', maxBytes: 10, expected: 'abcdefghij' },
    { name: 'longer: only the first maxBytes', content: 'abcdefghijkl', maxBytes: 10, expected: 'abcdefghij' },
    { name: 'empty', content: '', maxBytes: 10, expected: '' },
  ];
  for (const row of rows) {
    test(row.name, async () => {
      const path = join(temp.dir, row.name);
      await writeFile(path, row.content);
      assert.equal((await readFileHead(path, row.maxBytes)).toString(), row.expected);
    });
  }

  test('a missing file or a folder is an error', async () => {
    await assert.rejects(readFileHead(join(temp.dir, 'missing'), 10), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
    await assert.rejects(readFileHead(temp.dir, 10), (err: NodeJS.ErrnoException) => err.code === 'EISDIR');
  });
});
