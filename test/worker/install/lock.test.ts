import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { installLayout } from '../../../src/worker/install/install-layout.js';
import { acquireUpdateLock, UpdateInProgressError } from '../../../src/worker/install/lock.js';
import { makeTempDir } from '../../helpers/engine-fixtures.js';

describe('update lock', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    temp = await makeTempDir('lock');
  });
  after(() => temp.remove());

  test('one holder at a time; released twice safely; free again after release', async () => {
    const layout = installLayout(join(temp.dir, 'a'), 'linux-x64');
    const release = await acquireUpdateLock(layout);
    await assert.rejects(acquireUpdateLock(layout), (err) => err instanceof UpdateInProgressError && err.code === 'update_in_progress');
    await release();
    await release();
    await assert.rejects(access(layout.lockPath));
    const again = await acquireUpdateLock(layout);
    await again();
  });

  test('held past the lock refresh interval (a long download): still released, free again at once', async () => {
    const layout = installLayout(join(temp.dir, 'long'), 'linux-x64');
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
    const layout = installLayout(join(temp.dir, 'b'), 'linux-x64');
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
