import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../src/shared/atomic-file.js';
import { lockedRename } from '../helpers/locked-rename.js';

// On Windows a rename over a file that another process has open fails (EPERM) until that
// process closes it: the supervisor reading state.json while the worker wrote it was enough to
// make a write fail under Wine. lockedRename fails the rename that way.
describe('writeFileAtomic', () => {
  const dirs: string[] = [];
  after(async () => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'bytebiota-atomic-'));
    dirs.push(dir);
    return dir;
  }

  test('on Windows a rename refused while a reader holds the target is retried, and the new bytes land', async () => {
    for (const code of ['EPERM', 'EACCES', 'EBUSY']) {
      const dir = await tempDir();
      const target = join(dir, 'state.json');
      await writeFile(target, 'old\n');
      const locked = lockedRename(code, 3);
      const waits: number[] = [];
      await writeFileAtomic(target, 'new\n', { platform: 'win32', rename: locked.rename, sleep: async (ms) => void waits.push(ms) });
      assert.equal(locked.calls(), 4);
      assert.deepEqual(waits, [10, 20, 40]);
      assert.equal(await readFile(target, 'utf8'), 'new\n');
      assert.deepEqual(await readdir(dir), ['state.json'], 'no temp file left');
    }
  });

  test('on Windows a target held open past the budget fails the write with the old bytes kept and no temp file', async () => {
    const dir = await tempDir();
    const target = join(dir, 'state.json');
    await writeFile(target, 'old\n');
    const locked = lockedRename('EPERM', Number.POSITIVE_INFINITY);
    let waitedMs = 0;
    await assert.rejects(writeFileAtomic(target, 'new\n', { platform: 'win32', rename: locked.rename, sleep: async (ms) => void (waitedMs += ms), budgetMs: 500 }), { code: 'EPERM' });
    assert.equal(waitedMs, 500);
    assert.equal(await readFile(target, 'utf8'), 'old\n');
    assert.deepEqual(await readdir(dir), ['state.json']);
  });

  test('elsewhere EPERM is a real refusal: no retry', async () => {
    const dir = await tempDir();
    const target = join(dir, 'state.json');
    const locked = lockedRename('EPERM', 1);
    await assert.rejects(writeFileAtomic(target, 'new\n', { platform: 'linux', rename: locked.rename, sleep: async () => assert.fail('no wait') }), { code: 'EPERM' });
    assert.equal(locked.calls(), 1);
    assert.deepEqual(await readdir(dir), []);
  });
});
