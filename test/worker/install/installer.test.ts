import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, cp, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { build } from 'esbuild';
import { UpdateError, type ReasonCode } from '../../../src/protocol/reason-codes.js';
import { installLayout, type InstallLayout } from '../../../src/worker/install/install-layout.js';
import {
  installExecutable,
  isCompleteVersion,
  readCompleteMark,
  recoverInstallRoot,
  rollbackToPrevious,
  selfTestRunFailureCode,
  stageVersion,
  switchCurrent,
} from '../../../src/worker/install/installer.js';
import { readPointer, writePointer } from '../../../src/worker/install/pointer.js';
import { acquireUpdateLock } from '../../../src/worker/install/lock.js';
import { downloadArtifact } from '../../../src/worker/engine/download.js';
import { fileIdentity, sameFile } from '../../../src/worker/install/file-receipt.js';
import { startEngineUpdateServer } from '../../helpers/engine-update-server.js';
import { until } from '../../helpers/wait.js';
import { fakeWorkerExecutable, installFakeVersion, makeTempDir, runVersionOf, sha256Hex, exists } from '../../helpers/engine-fixtures.js';

const isCode = (code: ReasonCode) => (err: unknown) => err instanceof UpdateError && err.code === code;


describe('installer', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let n = 0;
  before(async () => {
    temp = await makeTempDir('installer');
  });
  after(() => temp.remove());

  function freshLayout(platform = 'linux-x64'): InstallLayout {
    n += 1;
    return installLayout(join(temp.dir, `root${n}`), platform);
  }

  async function sourceFile(bytes: Buffer): Promise<string> {
    n += 1;
    const path = join(temp.dir, `src${n}`);
    await writeFile(path, bytes);
    return path;
  }

  test('stageVersion: tmp → self-test → mark last → versions/<v>; nothing left in tmp', async () => {
    const layout = freshLayout();
    const bytes = fakeWorkerExecutable('1.1.0');
    const sourcePath = await sourceFile(bytes);
    const result = await stageVersion({ layout, sourcePath, version: '1.1.0', sha256: sha256Hex(bytes), size: bytes.length });
    assert.equal(result.executablePath, layout.executablePath('1.1.0'));
    assert.equal((await stat(result.executablePath)).mode & 0o777, 0o755);
    assert.equal(await runVersionOf(result.executablePath), '1.1.0');
    const mark = await readCompleteMark(layout, '1.1.0');
    assert.equal(mark?.sha256, sha256Hex(bytes));
    assert.equal(mark?.size, bytes.length);
    assert.equal(await isCompleteVersion(layout, '1.1.0'), true);
    assert.deepEqual(await readdir(layout.tmpDir), []);
    assert.equal(await exists(sourcePath), true, 'a copy leaves the source in place');

    // Idempotent: the same bytes again return the installed version untouched.
    const again = await stageVersion({ layout, sourcePath, version: '1.1.0', sha256: sha256Hex(bytes), size: bytes.length });
    assert.equal(again.executablePath, result.executablePath);
    // The same version with other bytes is refused: a version's bytes never change.
    const other = fakeWorkerExecutable('1.1.0', { paddingBytes: 3 });
    await assert.rejects(
      stageVersion({ layout, sourcePath: await sourceFile(other), version: '1.1.0', sha256: sha256Hex(other), size: other.length }),
      isCode('install_failed'),
    );
    assert.equal(await runVersionOf(result.executablePath), '1.1.0');
  });

  test('stageVersion with moveSource consumes the source', async () => {
    const layout = freshLayout();
    const bytes = fakeWorkerExecutable('1.2.0');
    await mkdir(layout.tmpDir, { recursive: true });
    const sourcePath = join(layout.tmpDir, '1.2.0-linux-x64.partial');
    await writeFile(sourcePath, bytes);
    await stageVersion({ layout, sourcePath, version: '1.2.0', sha256: sha256Hex(bytes), size: bytes.length, moveSource: true });
    assert.equal(await exists(sourcePath), false);
    assert.equal(await isCompleteVersion(layout, '1.2.0'), true);
  });

  test('a fetcher receipt for the very file skips nothing it should not: a file changed after hashing is re-hashed and refused', async () => {
    const server = await startEngineUpdateServer();
    try {
      const layout = freshLayout();
      const bytes = fakeWorkerExecutable('1.3.0');
      server.artifacts.set('/w', { bytes, etag: '"w"' });
      const signed = { sha256: sha256Hex(bytes), size: bytes.length };
      const partialPath = join(layout.tmpDir, '1.3.0-linux-x64.partial');
      const download = await downloadArtifact({ url: `${server.url}/w`, partialPath, ...signed, statfs: async () => ({ bavail: 1n << 30n, bsize: 4096n }) });
      // Same size, other bytes, written after the receipt was made: the identity no longer matches.
      // (Written again until the filesystem's clock has moved on, so the write shows in mtime.)
      const tampered = Buffer.from(bytes);
      tampered[tampered.length - 2] = 0x41;
      await until('the rewrite to change the file identity', async () => {
        await writeFile(partialPath, tampered);
        return !sameFile(await fileIdentity(partialPath), download.verified.identity);
      }, 5_000, 1);
      await assert.rejects(
        stageVersion({ layout, sourcePath: partialPath, version: '1.3.0', ...signed, moveSource: true, verified: download.verified }),
        isCode('checksum_mismatch'),
      );
      assert.equal(await exists(layout.versionDir('1.3.0')), false);

      // Untouched: the receipt is honoured and the version is staged.
      const again = await downloadArtifact({ url: `${server.url}/w`, partialPath, ...signed, statfs: async () => ({ bavail: 1n << 30n, bsize: 4096n }) });
      await stageVersion({ layout, sourcePath: partialPath, version: '1.3.0', ...signed, moveSource: true, verified: again.verified });
      assert.equal(await runVersionOf(layout.executablePath('1.3.0')), '1.3.0');

      // A receipt for other values does not stand in for hashing.
      const other = fakeWorkerExecutable('1.4.0');
      const otherPath = await sourceFile(other);
      await assert.rejects(
        stageVersion({ layout, sourcePath: otherPath, version: '1.4.0', sha256: 'e'.repeat(64), size: other.length, verified: { ...again.verified, path: otherPath, sha256: 'e'.repeat(64), size: other.length } }),
        isCode('checksum_mismatch'),
      );
    } finally {
      await server.close();
    }
  });

  const stageFailures: Array<{ name: string; code: ReasonCode; bytes: () => Buffer; signed?: (b: Buffer) => { sha256: string; size: number } }> = [
    // The new executable fails its own self-test: the release's fault (it counts toward halting a rollout).
    { name: 'self-test reports another version', code: 'self_test_failed', bytes: () => fakeWorkerExecutable('2.0.0', { reportVersion: '1.9.9' }) },
    { name: 'self-test exits non-zero', code: 'self_test_failed', bytes: () => fakeWorkerExecutable('2.0.0', { versionExitCode: 3 }) },
    { name: 'self-test prints no JSON', code: 'self_test_failed', bytes: () => Buffer.from('#!/bin/sh\necho hello\n') },
    { name: 'self-test hangs past its timeout', code: 'self_test_failed', bytes: () => Buffer.from('#!/bin/sh\nexec sleep 30\n') },
    { name: 'not an executable format', code: 'self_test_failed', bytes: () => randomBytes(2048) },
    { name: 'the interpreter it names is missing', code: 'self_test_failed', bytes: () => Buffer.from('#!/nonexistent/bytebiota-interpreter\n') },
    { name: 'size differs from the signed size', code: 'size_mismatch', bytes: () => fakeWorkerExecutable('2.0.0'), signed: (b) => ({ sha256: sha256Hex(b), size: b.length + 1 }) },
    { name: 'hash differs from the signed hash', code: 'checksum_mismatch', bytes: () => fakeWorkerExecutable('2.0.0'), signed: (b) => ({ sha256: 'f'.repeat(64), size: b.length }) },
  ];
  for (const row of stageFailures) {
    test(`stageVersion fails with ${row.code} (${row.name}); nothing enters versions/, staging removed`, async () => {
      const layout = freshLayout();
      await installFakeVersion(layout, '1.0.0', temp.dir);
      const bytes = row.bytes();
      const signed = row.signed?.(bytes) ?? { sha256: sha256Hex(bytes), size: bytes.length };
      await assert.rejects(
        stageVersion({ layout, sourcePath: await sourceFile(bytes), version: '2.0.0', ...signed, selfTestTimeoutMs: 500 }),
        isCode(row.code),
      );
      assert.equal(await exists(layout.versionDir('2.0.0')), false);
      assert.deepEqual(await readdir(layout.tmpDir), []);
      assert.equal(await readPointer(layout, 'current'), '1.0.0');
      assert.equal(await runVersionOf(layout.executablePath('1.0.0')), '1.0.0');
    });
  }

  test('a self-test run that fails is the executable\'s fault, unless this machine could not start a process', () => {
    const errno = (code: string): Error => Object.assign(new Error(code), { code });
    const rows: Array<{ name: string; err: unknown; code: ReasonCode }> = [
      { name: 'exited non-zero', err: new Error('exited with code 3'), code: 'self_test_failed' },
      { name: 'timed out', err: new Error('no answer within 500 ms'), code: 'self_test_failed' },
      { name: 'ENOEXEC: not an executable format', err: errno('ENOEXEC'), code: 'self_test_failed' },
      { name: 'ENOENT: its interpreter or loader is missing', err: errno('ENOENT'), code: 'self_test_failed' },
      { name: 'EACCES: a noexec mount', err: errno('EACCES'), code: 'install_failed' },
      { name: 'EAGAIN: no process slots', err: errno('EAGAIN'), code: 'install_failed' },
      { name: 'ENOMEM', err: errno('ENOMEM'), code: 'install_failed' },
      { name: 'ETXTBSY that did not clear', err: errno('ETXTBSY'), code: 'install_failed' },
    ];
    for (const row of rows) assert.equal(selfTestRunFailureCode(row.err), row.code, row.name);
  });

  for (const platform of ['linux-x64', 'win32-x64']) {
    test(`switchCurrent and its revert (${platform} pointers)`, async () => {
      const layout = freshLayout(platform);
      await installFakeVersion(layout, '1.0.0', temp.dir);
      assert.equal(await readPointer(layout, 'previous'), null);
      const bytes = fakeWorkerExecutable('1.1.0');
      await stageVersion({ layout, sourcePath: await sourceFile(bytes), version: '1.1.0', sha256: sha256Hex(bytes), size: bytes.length });

      const switched = await switchCurrent(layout, '1.1.0');
      assert.equal(switched.from, '1.0.0');
      assert.equal(await readPointer(layout, 'current'), '1.1.0');
      assert.equal(await readPointer(layout, 'previous'), '1.0.0');
      assert.equal(await runVersionOf(join(layout.root, 'current', 'bytebiota-worker')).catch(() => 'pointer-file'), platform === 'linux-x64' ? '1.1.0' : 'pointer-file');

      await switched.revert();
      await switched.revert();
      assert.equal(await readPointer(layout, 'current'), '1.0.0');
      assert.equal(await readPointer(layout, 'previous'), null);

      const same = await switchCurrent(layout, '1.0.0');
      assert.equal(same.from, '1.0.0');
    });
  }

  test('switchCurrent refuses an incomplete version and leaves current alone', async () => {
    const layout = freshLayout();
    await installFakeVersion(layout, '1.0.0', temp.dir);
    await mkdir(layout.versionDir('3.0.0'), { recursive: true });
    await writeFile(layout.executablePath('3.0.0'), fakeWorkerExecutable('3.0.0'));
    await assert.rejects(switchCurrent(layout, '3.0.0'), isCode('install_failed'));
    await assert.rejects(switchCurrent(layout, '4.0.0'), isCode('install_failed'));
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
  });

  test('rollbackToPrevious: current := previous; previous stays on the good version', async () => {
    const layout = freshLayout();
    await installFakeVersion(layout, '1.0.0', temp.dir);
    await installFakeVersion(layout, '1.1.0', temp.dir);
    assert.deepEqual(await rollbackToPrevious(layout), { from: '1.1.0', to: '1.0.0' });
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
    assert.equal(await readPointer(layout, 'previous'), '1.0.0');
    assert.equal(await runVersionOf(layout.executablePath('1.0.0')), '1.0.0');
  });

  test('rollbackToPrevious fails with rollback_failed when previous is missing or incomplete', async () => {
    const layout = freshLayout();
    await installFakeVersion(layout, '1.0.0', temp.dir);
    await assert.rejects(rollbackToPrevious(layout), isCode('rollback_failed'));
    await writePointer(layout, 'previous', '0.9.0');
    await assert.rejects(rollbackToPrevious(layout), isCode('rollback_failed'));
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
  });

  test('installExecutable stages the given file and makes it current', async () => {
    const layout = freshLayout();
    const bytes = fakeWorkerExecutable('0.5.0');
    const path = await sourceFile(bytes);
    await chmod(path, 0o755);
    await installExecutable(layout, path, '0.5.0');
    assert.equal(await readPointer(layout, 'current'), '0.5.0');
    assert.equal(await exists(layout.lockPath), false, 'the lock is released');
    await installExecutable(layout, path, '0.5.0');
  });

  test('recoverInstallRoot removes staging leftovers and incomplete versions, keeps partial downloads', async () => {
    const layout = freshLayout();
    await installFakeVersion(layout, '1.0.0', temp.dir);
    await mkdir(join(layout.tmpDir, 'stage-2.0.0-abc'), { recursive: true });
    await writeFile(join(layout.tmpDir, 'stage-2.0.0-abc', 'bytebiota-worker'), 'half');
    await writeFile(join(layout.tmpDir, '2.0.0-linux-x64.partial'), 'partial bytes');
    await writeFile(join(layout.tmpDir, '2.0.0-linux-x64.partial.json'), '{}');
    await writeFile(join(layout.tmpDir, '.x.abc.tmp'), '');
    await mkdir(layout.versionDir('3.0.0'), { recursive: true });
    await writeFile(join(layout.root, '.current.0a1b.tmp'), '');
    await recoverInstallRoot(layout);
    assert.deepEqual((await readdir(layout.tmpDir)).sort(), ['2.0.0-linux-x64.partial', '2.0.0-linux-x64.partial.json']);
    assert.deepEqual(await readdir(layout.versionsDir), ['1.0.0']);
    assert.equal(await exists(join(layout.root, '.current.0a1b.tmp')), false);
    for (const dir of [layout.reportsDir, layout.logsDir]) assert.equal(await exists(dir), true);
  });

  test('recoverInstallRoot leaves everything alone while another update holds the lock', async () => {
    const layout = freshLayout();
    await mkdir(join(layout.tmpDir, 'stage-2.0.0-live'), { recursive: true });
    const release = await acquireUpdateLock(layout);
    try {
      await recoverInstallRoot(layout);
      assert.equal(await exists(join(layout.tmpDir, 'stage-2.0.0-live')), true);
    } finally {
      await release();
    }
  });

  test('kill -9 during switchCurrent at random moments: current always names a complete version (24 trials)', async () => {
    const template = freshLayout();
    await installFakeVersion(template, '1.0.0', temp.dir);
    await installFakeVersion(template, '2.0.0', temp.dir);
    // The loop is bundled once with esbuild so that each trial's child starts in milliseconds.
    const loopScript = join(temp.dir, 'switch-loop.mjs');
    await build({
      entryPoints: ['test/helpers/engine-switch-loop.ts'],
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile: loopScript,
      logLevel: 'error',
      // proper-lockfile and semver are CommonJS and require() Node's built-ins.
      banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    });
    const trials = 24;
    const parallel = 4;
    const results: string[] = [];
    const runTrial = async (trial: number): Promise<void> => {
      const root = join(temp.dir, `crash-${trial}`);
      await cp(template.root, root, { recursive: true, verbatimSymlinks: true });
      const child = spawn(process.execPath, [loopScript, root, 'linux-x64', '1.0.0', '2.0.0'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
      try {
        await Promise.race([
          new Promise<void>((resolve) => child.stdout.once('data', () => resolve())),
          exited.then(() => Promise.reject(new Error('the switch loop exited by itself'))),
        ]);
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.floor(Math.random() * 150)));
      } finally {
        child.kill('SIGKILL');
      }
      assert.equal(await exited, 'SIGKILL');
      const layout = installLayout(root, 'linux-x64');
      const current = await readPointer(layout, 'current');
      assert.ok(current === '1.0.0' || current === '2.0.0', `trial ${trial}: current is ${current}`);
      assert.equal(await isCompleteVersion(layout, current), true);
      assert.equal(await runVersionOf(join(root, 'current', 'bytebiota-worker')), current);
      results.push(current);
    };
    for (let start = 0; start < trials; start += parallel) {
      await Promise.all(Array.from({ length: Math.min(parallel, trials - start) }, (_, i) => runTrial(start + i)));
    }
    assert.equal(results.length, trials);
    assert.ok(JSON.parse(await readFile(join(template.versionDir('1.0.0'), '.complete'), 'utf8')).version === '1.0.0');
  });
});
