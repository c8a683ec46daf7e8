import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { askChildToStop } from '../../../src/worker/supervisor/child-stop.js';
import { until } from '../../helpers/wait.js';

const RUN_MODULE = new URL('../../../src/worker/runtime/run.ts', import.meta.url).href;

/**
 * A real child with the worker's own IPC channel (processSupervisorChannel): it says so when a
 * stop request arrives and exits 0 after a moment (the unit it finishes), and exits 15 from its
 * SIGTERM handler, so the exit code tells which way the request came.
 */
const CHILD = `
import { processSupervisorChannel } from ${JSON.stringify(RUN_MODULE)};
const channel = processSupervisorChannel();
process.on('SIGTERM', () => process.exit(15));
channel.onStopRequest(() => {
  process.stdout.write('stop requested\\n');
  setTimeout(() => process.exit(0), 50);
});
channel.send({ type: 'ready', version: '1.0.0' });
setInterval(() => undefined, 1_000);
`;

/**
 * A child still starting: it listens for the stop only once told to on stdin, after it has seen
 * the stop message arrive (its own second listener says so). The request must not be lost.
 */
const LATE_LISTENER_CHILD = `
import { processSupervisorChannel } from ${JSON.stringify(RUN_MODULE)};
const channel = processSupervisorChannel();
process.on('message', () => process.stdout.write('message arrived\\n'));
process.stdin.setEncoding('utf8').once('data', () => {
  channel.onStopRequest(() => {
    process.stdout.write('stop requested\\n');
    process.exit(0);
  });
});
channel.send({ type: 'ready', version: '1.0.0' });
setInterval(() => undefined, 1_000);
`;

interface Child {
  process: ChildProcess;
  stdout: () => string;
  exit: Promise<[number | null, NodeJS.Signals | null]>;
}

async function startChild(source = CHILD): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], {
    cwd: fileURLToPath(new URL('../../..', import.meta.url)),
    stdio: ['pipe', 'pipe', 'inherit', 'ipc'],
  });
  let stdout = '';
  proc.stdout?.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  const exit = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  await once(proc, 'message');
  return { process: proc, stdout: () => stdout, exit };
}

describe('asking the worker child to stop', () => {
  test("win32: an IPC 'stop' message, which the worker takes like SIGTERM (a Windows SIGTERM would terminate it at once)", async () => {
    const child = await startChild();
    assert.equal(askChildToStop(child.process, 'win32'), 'ipc');
    assert.deepEqual(await child.exit, [0, null]);
    assert.equal(child.stdout(), 'stop requested\n');
  });

  test('linux and darwin: SIGTERM, handled by the worker', async () => {
    for (const platform of ['linux', 'darwin'] as const) {
      const child = await startChild();
      assert.equal(askChildToStop(child.process, platform), 'signal');
      assert.deepEqual(await child.exit, [15, null]);
      assert.equal(child.stdout(), '');
    }
  });

  test('a stop that arrives while the worker is still starting is kept until the work loop listens', { timeout: 30_000 }, async () => {
    const child = await startChild(LATE_LISTENER_CHILD);
    assert.equal(askChildToStop(child.process, 'win32'), 'ipc');
    await until('the stop message to reach the child', () => child.stdout().includes('message arrived'), 10_000, 10);
    child.process.stdin?.write('listen now\n');
    const exited = await Promise.race([child.exit, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 10_000).unref())]);
    if (exited === 'running') child.process.kill('SIGKILL');
    assert.deepEqual(exited, [0, null], 'the stop sent during start-up was lost');
    assert.equal(child.stdout(), 'message arrived\nstop requested\n');
  });

  test('win32 with the channel already gone: the signal, the only way left to reach the child', async () => {
    const child = await startChild();
    child.process.disconnect();
    assert.equal(askChildToStop(child.process, 'win32'), 'signal');
    assert.deepEqual(await child.exit, [15, null]);
  });
});
