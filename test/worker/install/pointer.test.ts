import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readPointer, removePointer, writePointer, PointerError } from '../../../src/worker/install/pointer.js';
import { lockedRename } from '../../helpers/locked-rename.js';
import { tempInstallRoots } from '../../helpers/install-roots.js';

describe('pointer', () => {
  const installRoot = tempInstallRoots('pointer');

  test('symlink: missing is null; written as a relative link; replaced atomically; no temp left', async () => {
    const layout = installRoot('a');
    assert.equal(await readPointer(layout, 'current'), null);
    await writePointer(layout, 'current', '1.0.0');
    assert.equal(await readlink(layout.currentPointer), join('versions', '1.0.0'));
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
    await writePointer(layout, 'current', '2.0.0-rc.1');
    assert.equal(await readPointer(layout, 'current'), '2.0.0-rc.1');
    assert.equal(await readPointer(layout, 'previous'), null);
    assert.deepEqual((await readdir(layout.root)).sort(), ['current']);
    await removePointer(layout, 'current');
    assert.equal(await readPointer(layout, 'current'), null);
  });

  test('Windows scheme: a file holding the version, replaced by rename', async () => {
    const layout = installRoot('w', 'win32-x64');
    await writePointer(layout, 'previous', '1.0.0');
    assert.equal(await readFile(layout.previousPointer, 'utf8'), '1.0.0\n');
    assert.equal((await lstat(layout.previousPointer)).isFile(), true);
    assert.equal(await readPointer(layout, 'previous'), '1.0.0');
  });

  test('Windows scheme: a rename refused while a reader holds the pointer (EPERM, EACCES, EBUSY) is retried, and then succeeds', async () => {
    for (const code of ['EPERM', 'EACCES', 'EBUSY']) {
      const layout = installRoot(`retry-${code}`, 'win32-x64');
      await writePointer(layout, 'current', '1.0.0');
      const locked = lockedRename(code, 2);
      const waits: number[] = [];
      await writePointer(layout, 'current', '1.1.0', { rename: locked.rename, sleep: async (ms) => void waits.push(ms) });
      assert.equal(locked.calls(), 3);
      assert.deepEqual(waits, [10, 20], 'short waits, doubling');
      assert.equal(await readPointer(layout, 'current'), '1.1.0');
      assert.deepEqual(await readdir(layout.root), ['current'], 'no temp file left');
    }
  });

  test('Windows scheme: a pointer held open for longer than the budget fails the write, the old pointer and no temp file left', async () => {
    const layout = installRoot('retry-budget', 'win32-x64');
    await writePointer(layout, 'current', '1.0.0');
    const locked = lockedRename('EPERM', Number.POSITIVE_INFINITY);
    let waitedMs = 0;
    const sleep = async (ms: number): Promise<void> => void (waitedMs += ms);
    await assert.rejects(writePointer(layout, 'current', '1.1.0', { rename: locked.rename, sleep, budgetMs: 1_000 }), { code: 'EPERM' });
    assert.equal(waitedMs, 1_000, 'waited exactly the budget');
    assert.ok(locked.calls() > 2 && locked.calls() < 20, `bounded: ${locked.calls()} attempts`);
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
    assert.deepEqual(await readdir(layout.root), ['current']);
  });

  test('Windows scheme: any other rename failure is not retried', async () => {
    const layout = installRoot('retry-other', 'win32-x64');
    const locked = lockedRename('ENOSPC', 1);
    await assert.rejects(writePointer(layout, 'current', '1.0.0', { rename: locked.rename, sleep: async () => assert.fail('no wait') }), { code: 'ENOSPC' });
    assert.equal(locked.calls(), 1);
    assert.deepEqual(await readdir(layout.root), []);
  });

  test('a pointer that names no version is an error, not a guess', async () => {
    const layout = installRoot('bad');
    await writePointer(layout, 'current', '1.0.0');
    await removePointer(layout, 'current');
    await symlink('/etc', layout.currentPointer);
    await assert.rejects(readPointer(layout, 'current'), (err) => err instanceof PointerError && err.code === 'pointer_invalid');
    await removePointer(layout, 'current');
    await writeFile(layout.currentPointer, 'x');
    await assert.rejects(readPointer(layout, 'current'), (err) => err instanceof PointerError);
    const win = installRoot('badwin', 'win32-x64');
    await writePointer(win, 'current', '1.0.0');
    await writeFile(win.currentPointer, '../../etc\n');
    await assert.rejects(readPointer(win, 'current'), (err) => err instanceof PointerError);
  });

  test('refuses to write a non-version', async () => {
    const layout = installRoot('nv');
    await assert.rejects(writePointer(layout, 'current', '../x'), RangeError);
  });
});
