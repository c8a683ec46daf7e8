import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, readFile, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readPointer, removePointer, writePointer, PointerError } from '../../../src/worker/install/pointer.js';
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
