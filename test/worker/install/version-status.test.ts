/**
 * Unreadable is not missing: a version whose mark or executable exists but cannot be read
 * (EACCES, EPERM, EIO, ...) is told apart from one that is not there, is never removed as
 * incomplete, and is never switched to (install_failed).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UpdateError } from '../../../src/protocol/reason-codes.js';
import { COMPLETE_MARK_FILE, installLayout, type InstallLayout } from '../../../src/worker/install/install-layout.js';
import {
  fsVersionReader,
  inspectVersion,
  isCompleteVersion,
  readCompleteMark,
  recoverInstallRoot,
  rollbackToPrevious,
  stageVersion,
  switchCurrent,
  type VersionReader,
} from '../../../src/worker/install/installer.js';
import { readPointer, writePointer } from '../../../src/worker/install/pointer.js';
import { fakeWorkerExecutable, makeTempDir, memoryLogger, sha256Hex, exists } from '../../helpers/engine-fixtures.js';
import { makeFixtureRoot, spawnWorkerCli, type FixtureRoot } from '../../helpers/worker-fixtures.js';
import { eventIs } from '../../helpers/log-lines.js';

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

/** node:fs, except that reading `failing` fails with `errno`. */
function failingReader(failing: string, errno: string): VersionReader {
  return {
    readFile: (path) => (path === failing ? Promise.reject(errnoError(errno)) : fsVersionReader.readFile(path)),
    stat: (path) => (path === failing ? Promise.reject(errnoError(errno)) : fsVersionReader.stat(path)),
  };
}


describe('version status', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let n = 0;
  before(async () => {
    temp = await makeTempDir('version-status');
  });
  after(() => temp.remove());

  async function rootWith(...versions: string[]): Promise<InstallLayout> {
    n += 1;
    const layout = installLayout(join(temp.dir, `root${n}`), 'linux-x64');
    for (const version of versions) {
      const bytes = fakeWorkerExecutable(version);
      const sourcePath = join(temp.dir, `source-${n}-${version}`);
      await writeFile(sourcePath, bytes, { mode: 0o755 });
      await stageVersion({ layout, sourcePath, version, sha256: sha256Hex(bytes), size: bytes.length, moveSource: true });
    }
    return layout;
  }

  const reads: Array<{ errno: string; fails: 'mark' | 'executable'; kind: 'incomplete' | 'unreadable' }> = [
    { errno: 'ENOENT', fails: 'mark', kind: 'incomplete' },
    { errno: 'ENOTDIR', fails: 'mark', kind: 'incomplete' },
    { errno: 'ENOENT', fails: 'executable', kind: 'incomplete' },
    { errno: 'EACCES', fails: 'mark', kind: 'unreadable' },
    { errno: 'EPERM', fails: 'mark', kind: 'unreadable' },
    { errno: 'EIO', fails: 'mark', kind: 'unreadable' },
    { errno: 'EACCES', fails: 'executable', kind: 'unreadable' },
    { errno: 'EIO', fails: 'executable', kind: 'unreadable' },
  ];
  for (const { errno, fails, kind } of reads) {
    test(`${errno} reading the ${fails}: ${kind}`, async () => {
      const layout = await rootWith('1.0.0');
      const failing = fails === 'mark' ? join(layout.versionDir('1.0.0'), COMPLETE_MARK_FILE) : layout.executablePath('1.0.0');
      const reader = failingReader(failing, errno);
      const status = await inspectVersion(layout, '1.0.0', reader);
      assert.equal(status.kind, kind);
      if (status.kind === 'unreadable') {
        assert.equal(status.errno, errno);
        assert.equal(status.path, failing);
      }
      assert.equal(await isCompleteVersion(layout, '1.0.0', reader), false);
      if (fails === 'mark' && kind === 'unreadable') {
        await assert.rejects(readCompleteMark(layout, '1.0.0', reader), (err) => err instanceof UpdateError && err.code === 'install_failed');
      } else if (fails === 'mark') {
        assert.equal(await readCompleteMark(layout, '1.0.0', reader), null);
      }

      // Recovery removes an incomplete version that no pointer names, and leaves an unreadable one, logged.
      const { log, lines } = memoryLogger();
      await recoverInstallRoot(layout, { log, reader });
      assert.equal(await exists(layout.versionDir('1.0.0')), kind === 'unreadable');
      const logged = lines().find(eventIs('worker_version_unreadable'));
      assert.equal(logged?.['errno'], kind === 'unreadable' ? errno : undefined);
    });
  }

  /** A mark that is a directory: reading it fails with EISDIR, as root too (chmod 000 does not stop root). */
  async function unreadableMark(layout: InstallLayout, version: string): Promise<void> {
    const mark = join(layout.versionDir(version), COMPLETE_MARK_FILE);
    await rm(mark);
    await mkdir(mark);
  }

  test('an unreadable version is never switched to, rolled back to, or staged over: install_failed, naming the errno', async () => {
    const layout = await rootWith('1.0.0', '2.0.0');
    await switchCurrent(layout, '1.0.0');
    await unreadableMark(layout, '2.0.0');
    const failsWith = (code: string) => (err: unknown) => {
      assert.ok(err instanceof UpdateError, String(err));
      assert.equal(err.code, code);
      assert.match(err.message, /EISDIR/);
      return true;
    };
    await assert.rejects(switchCurrent(layout, '2.0.0'), failsWith('install_failed'));
    assert.equal(await readPointer(layout, 'current'), '1.0.0');

    const bytes = fakeWorkerExecutable('2.0.0');
    const sourcePath = join(temp.dir, `restage-${n}`);
    await writeFile(sourcePath, bytes, { mode: 0o755 });
    await assert.rejects(stageVersion({ layout, sourcePath, version: '2.0.0', sha256: sha256Hex(bytes), size: bytes.length }), failsWith('install_failed'));
    assert.equal(await exists(join(layout.versionDir('2.0.0'), COMPLETE_MARK_FILE)), true, 'not replaced');

    await writePointer(layout, 'previous', '2.0.0');
    await assert.rejects(rollbackToPrevious(layout), failsWith('rollback_failed'));
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
  });
});

describe('the supervisor and an unreadable staged version', { timeout: 60_000 }, () => {
  let root: FixtureRoot;
  before(async () => {
    root = await makeFixtureRoot();
  });
  after(() => root.remove());

  test('refuses the switch with install_failed, keeps the version, and runs the current one', async () => {
    await root.install('1.0.0', 'ready');
    await root.install('2.0.0', 'ready');
    await root.makeCurrent('1.0.0');
    const mark = join(root.layout.versionDir('2.0.0'), COMPLETE_MARK_FILE);
    await rm(mark);
    await mkdir(mark);
    await root.stage('2.0.0', '1.0.0');
    const program = spawnWorkerCli(['supervise', '--install-root', root.root, '--health-window', '5', '--stop-timeout', '2']);
    try {
      const unreadable = await program.waitForLine(eventIs('worker_version_unreadable'));
      assert.equal(unreadable['errno'], 'EISDIR');
      const refused = await program.waitForLine(eventIs('worker_update_switch_refused'));
      assert.match(String(refused['detail']), /EISDIR/);
      const failure = await program.waitForLine(eventIs('worker_update_failure'));
      assert.equal(failure['reason'], 'install_failed');
      await program.waitForLine((line) => line['event'] === 'worker_child_started' && line['child_version'] === '1.0.0');
      assert.equal(await readPointer(root.layout, 'current'), '1.0.0');
      assert.equal(await exists(mark), true, 'an unreadable version is not removed');
    } finally {
      program.kill('SIGTERM');
      await program.exited;
    }
  });
});
