import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { isProcessAlive } from '../../src/shared/process-alive.js';

test('this process is alive; a child is alive until it has exited', async () => {
  assert.equal(isProcessAlive(process.pid), true);
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    assert.equal(isProcessAlive(child.pid!), true);
  } finally {
    child.kill('SIGKILL');
  }
  await once(child, 'exit');
  assert.equal(isProcessAlive(child.pid!), false);
});

test('a process of another user (EPERM) counts as alive; no such process (ESRCH) does not', () => {
  const failWith = (code: string) => () => {
    throw Object.assign(new Error(`kill: ${code}`), { code });
  };
  assert.equal(isProcessAlive(4242, failWith('EPERM')), true);
  assert.equal(isProcessAlive(4242, failWith('ESRCH')), false);
  assert.equal(isProcessAlive(4242, () => undefined), true);
});
