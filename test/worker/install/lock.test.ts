import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { acquireUpdateLock, UpdateInProgressError } from '../../../src/worker/install/lock.js';
import { tempInstallRoots } from '../../helpers/install-roots.js';

describe('update lock', () => {
  const installRoot = tempInstallRoots('lock');

  test('one holder at a time; released twice safely; free again after release', async () => {
    const layout = installRoot('a');
    const release = await acquireUpdateLock(layout);
    await assert.rejects(acquireUpdateLock(layout), (err) => err instanceof UpdateInProgressError && err.code === 'update_in_progress');
    await release();
    await release();
    await assert.rejects(access(layout.lockPath));
    const again = await acquireUpdateLock(layout);
    await again();
  });

  test('held past the lock refresh interval (a long download): still released, free again at once', async () => {
    const layout = installRoot('long');
    const release = await acquireUpdateLock(layout);
    // Longer than the 5 s refresh: the refresh must not mistake the pid file for another holder.
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    await assert.rejects(acquireUpdateLock(layout), (err) => err instanceof UpdateInProgressError);
    await release();
    await assert.rejects(access(layout.lockPath));
    const again = await acquireUpdateLock(layout);
    await again();
  });

  test('held by another live process: update_in_progress; that process killed -9: taken over', async () => {
    const layout = installRoot('b');
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      await mkdir(layout.lockPath, { recursive: true });
      await writeFile(join(layout.lockPath, 'pid'), String(child.pid));
      await assert.rejects(acquireUpdateLock(layout), (err) => err instanceof UpdateInProgressError && err.message.includes(String(child.pid)));
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      const release = await acquireUpdateLock(layout);
      await release();
    } finally {
      child.kill('SIGKILL');
    }
  });
});
