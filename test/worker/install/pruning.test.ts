import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { COMPLETE_MARK_FILE, installLayout, type InstallLayout } from '../../../src/worker/install/install-layout.js';
import { fsVersionReader, inspectVersion, stageVersion, type VersionReader } from '../../../src/worker/install/installer.js';
import { acquireUpdateLock } from '../../../src/worker/install/lock.js';
import { writePointer, type PointerName } from '../../../src/worker/install/pointer.js';
import { planPrune, pruneVersions, type RemovePath, type VersionOnDisk } from '../../../src/worker/install/pruning.js';
import { loadState, updateState, type WorkerStateFile } from '../../../src/worker/install/state.js';
import { fakeWorkerExecutable, makeTempDir, memoryLogger, sha256Hex, exists } from '../../helpers/engine-fixtures.js';

const noWait = (): Promise<void> => Promise.resolve();

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}


describe('pruning', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let n = 0;
  before(async () => {
    temp = await makeTempDir('pruning');
  });
  after(() => temp.remove());

  async function install(layout: InstallLayout, version: string): Promise<void> {
    n += 1;
    const bytes = fakeWorkerExecutable(version);
    const sourcePath = join(temp.dir, `source-${n}`);
    await writeFile(sourcePath, bytes, { mode: 0o755 });
    await stageVersion({ layout, sourcePath, version, sha256: sha256Hex(bytes), size: bytes.length, moveSource: true });
  }

  interface Root {
    versions: string[];
    pointers?: Partial<Record<PointerName, string>>;
    state?: (state: WorkerStateFile) => void;
    /** versions/<v> folders without a mark: what a crash mid-removal leaves. */
    incomplete?: string[];
    /** tmp/ entries, as a crashed staging leaves them. */
    tmp?: string[];
  }

  async function makeRoot(spec: Root): Promise<InstallLayout> {
    n += 1;
    const layout = installLayout(join(temp.dir, `root${n}`), 'linux-x64');
    for (const version of spec.versions) await install(layout, version);
    for (const version of spec.incomplete ?? []) {
      await mkdir(layout.versionDir(version), { recursive: true });
      await writeFile(layout.executablePath(version), 'half');
    }
    for (const name of spec.tmp ?? []) await mkdir(join(layout.tmpDir, name), { recursive: true });
    for (const [which, version] of Object.entries(spec.pointers ?? {})) await writePointer(layout, which as PointerName, version);
    await loadState(layout, randomUUID);
    if (spec.state) await updateState(layout, spec.state);
    return layout;
  }

  async function onDisk(layout: InstallLayout): Promise<string[]> {
    return (await readdir(layout.versionsDir)).sort();
  }

  const pending = (to: string, from: string) => ({ to_version: to, from_version: from, correlation_id: randomUUID(), channel: 'stable' });
  const six = ['1.0.0', '1.0.1', '1.0.2', '1.0.3', '1.0.4', '1.0.5'];

  const cases: Array<{ name: string; root: Root; keepVersions?: number; kept: string[] }> = [
    {
      name: 'after a watch: current and previous, plus the newest other version',
      root: { versions: six, pointers: { current: '1.0.5', previous: '1.0.4', launcher: '1.0.5' } },
      kept: ['1.0.3', '1.0.4', '1.0.5'],
    },
    {
      name: 'three pointers on three versions leave no room for another',
      root: { versions: six, pointers: { current: '1.0.5', previous: '1.0.4', launcher: '1.0.1' } },
      kept: ['1.0.1', '1.0.4', '1.0.5'],
    },
    {
      name: 'a pending switch and a pending watch are kept beyond the count',
      root: {
        versions: six,
        pointers: { current: '1.0.3', previous: '1.0.2', launcher: '1.0.1' },
        state: (s) => {
          s.pending_switch = pending('1.0.5', '1.0.3');
          s.pending_watch = { ...pending('1.0.0', '1.0.3'), started_at: '2026-01-01T00:00:00.000Z' };
        },
      },
      kept: ['1.0.0', '1.0.1', '1.0.2', '1.0.3', '1.0.5'],
    },
    {
      name: 'a version a staging dir in tmp/ names is kept, and counted',
      root: { versions: six, pointers: { current: '1.0.3', previous: '1.0.2', launcher: '1.0.3' }, tmp: ['stage-1.0.0-a1B2c3'] },
      kept: ['1.0.0', '1.0.2', '1.0.3'],
    },
    {
      name: '--keep-versions 5 keeps the five newest',
      root: { versions: six, pointers: { current: '1.0.5', previous: '1.0.4', launcher: '1.0.5' } },
      keepVersions: 5,
      kept: ['1.0.1', '1.0.2', '1.0.3', '1.0.4', '1.0.5'],
    },
    {
      name: 'newest by SemVer, not by name: 1.0.10 is newer than 1.0.9',
      root: { versions: ['1.0.1', '1.0.2', '1.0.9', '1.0.10'], pointers: { current: '1.0.2', previous: '1.0.1', launcher: '1.0.2' } },
      kept: ['1.0.1', '1.0.10', '1.0.2'],
    },
    {
      name: 'a version rolled back here is never kept as an extra',
      root: {
        versions: six,
        pointers: { current: '1.0.4', previous: '1.0.3', launcher: '1.0.4' },
        state: (s) => {
          s.rolled_back['1.0.5'] = { reason: 'crashed_on_start', at: '2026-01-01T00:00:00.000Z' };
        },
      },
      kept: ['1.0.2', '1.0.3', '1.0.4'],
    },
    {
      name: 'incomplete versions go, unless a pointer names one',
      root: { versions: ['1.0.3', '1.0.4'], incomplete: ['1.0.5', '1.0.1'], pointers: { current: '1.0.4', previous: '1.0.1', launcher: '1.0.4' } },
      kept: ['1.0.1', '1.0.3', '1.0.4'],
    },
    {
      name: 'a fresh install: nothing to remove',
      root: { versions: ['1.0.0'], pointers: { current: '1.0.0', launcher: '1.0.0' } },
      kept: ['1.0.0'],
    },
  ];
  for (const { name, root, keepVersions, kept } of cases) {
    test(`keeps exactly what it must: ${name}`, async () => {
      const layout = await makeRoot(root);
      const { log, lines } = memoryLogger();
      const outcome = await pruneVersions(layout, { keepVersions: keepVersions ?? 3 }, { log });
      assert.equal(outcome.kind, 'pruned');
      assert.deepEqual(await onDisk(layout), [...kept].sort());
      for (const version of kept) {
        const expected = (root.incomplete ?? []).includes(version) ? 'incomplete' : 'complete';
        assert.equal((await inspectVersion(layout, version)).kind, expected, `${version} is left as it was`);
      }
      const pruned = lines().find((line) => line['event'] === 'worker_versions_pruned');
      assert.ok(pruned, 'worker_versions_pruned is logged');
      const removed = [...root.versions, ...(root.incomplete ?? [])].filter((version) => !kept.includes(version));
      assert.deepEqual([...(pruned['removed'] as string[])].sort(), removed.sort());
      assert.equal(typeof pruned['bytes_freed'], 'number');
      if (removed.length > 0) assert.ok((pruned['bytes_freed'] as number) > 0);
    });
  }

  test('the mark goes first, then the folder; a crash between leaves a plainly incomplete version that the next prune removes', async () => {
    const layout = await makeRoot({ versions: ['1.0.0', '1.0.1', '1.0.2', '1.0.3'], pointers: { current: '1.0.3', previous: '1.0.2', launcher: '1.0.3' } });
    const calls: Array<{ path: string; recursive: boolean }> = [];
    // Removes the mark for real, then "crashes" before the folder goes.
    const crashAfterMark: RemovePath = async (path, options) => {
      calls.push({ path, ...options });
      if (options.recursive) throw errnoError('EIO');
      await rm(path, { force: true });
    };
    const { log } = memoryLogger();
    const first = await pruneVersions(layout, { keepVersions: 3 }, { log, remove: crashAfterMark });
    assert.deepEqual(calls, [
      { path: join(layout.versionDir('1.0.0'), COMPLETE_MARK_FILE), recursive: false },
      { path: layout.versionDir('1.0.0'), recursive: true },
    ]);
    assert.deepEqual(first.kind === 'pruned' && first.notRemoved, ['1.0.0']);
    assert.equal((await inspectVersion(layout, '1.0.0')).kind, 'incomplete', 'never complete-looking without its mark');

    const second = await pruneVersions(layout, { keepVersions: 3 }, { log });
    assert.deepEqual(second.kind === 'pruned' && second.removed, ['1.0.0']);
    assert.deepEqual(await onDisk(layout), ['1.0.1', '1.0.2', '1.0.3']);
  });

  const undeletable: Array<{ errno: string; step: 'mark' | 'folder' }> = [
    { errno: 'EBUSY', step: 'mark' },
    { errno: 'EPERM', step: 'mark' },
    { errno: 'EACCES', step: 'folder' },
  ];
  for (const { errno, step } of undeletable) {
    test(`a version that cannot be removed now (${errno} on its ${step}) is logged and removed at the next prune`, async () => {
      const layout = await makeRoot({ versions: ['1.0.0', '1.0.1', '1.0.2', '1.0.3'], pointers: { current: '1.0.3', previous: '1.0.2', launcher: '1.0.3' } });
      const refuse: RemovePath = async (path, options) => {
        if (options.recursive === (step === 'folder')) throw errnoError(errno);
        await rm(path, { recursive: options.recursive, force: true });
      };
      const { log, lines } = memoryLogger();
      const first = await pruneVersions(layout, { keepVersions: 3 }, { log, remove: refuse });
      assert.equal(first.kind, 'pruned');
      const failed = lines().find((line) => line['event'] === 'worker_version_remove_failed');
      assert.equal(failed?.['version'], '1.0.0');
      assert.equal(failed?.['errno'], errno);
      assert.equal(failed?.['step'], step);
      assert.deepEqual(await onDisk(layout), ['1.0.0', '1.0.1', '1.0.2', '1.0.3']);
      assert.equal((await inspectVersion(layout, '1.0.0')).kind, step === 'mark' ? 'complete' : 'incomplete');

      const second = await pruneVersions(layout, { keepVersions: 3 }, { log });
      assert.deepEqual(second.kind === 'pruned' && second.removed, ['1.0.0']);
      assert.deepEqual(await onDisk(layout), ['1.0.1', '1.0.2', '1.0.3']);
    });
  }

  const unreadable: Array<{ errno: string; fails: 'mark' | 'executable' }> = [
    { errno: 'EACCES', fails: 'mark' },
    { errno: 'EPERM', fails: 'mark' },
    { errno: 'EIO', fails: 'executable' },
  ];
  for (const { errno, fails } of unreadable) {
    test(`a version that cannot be read (${errno} on its ${fails}) is never removed, takes no room, and is logged`, async () => {
      const layout = await makeRoot({ versions: ['1.0.0', '1.0.1', '1.0.2', '1.0.3', '1.0.4'], pointers: { current: '1.0.4', previous: '1.0.3', launcher: '1.0.4' } });
      const target = fails === 'mark' ? join(layout.versionDir('1.0.0'), COMPLETE_MARK_FILE) : layout.executablePath('1.0.0');
      const reader: VersionReader = {
        readFile: (path) => (path === target ? Promise.reject(errnoError(errno)) : fsVersionReader.readFile(path)),
        stat: (path) => (path === target ? Promise.reject(errnoError(errno)) : fsVersionReader.stat(path)),
      };
      const { log, lines } = memoryLogger();
      const outcome = await pruneVersions(layout, { keepVersions: 3 }, { log, reader });
      assert.deepEqual(outcome.kind === 'pruned' && outcome.removed, ['1.0.1']);
      assert.deepEqual(await onDisk(layout), ['1.0.0', '1.0.2', '1.0.3', '1.0.4']);
      const logged = lines().find((line) => line['event'] === 'worker_version_unreadable');
      assert.equal(logged?.['version'], '1.0.0');
      assert.equal(logged?.['errno'], errno);
    });
  }

  test('never follows a symlink out of versions/, and leaves anything that is not a version folder alone', async () => {
    const layout = await makeRoot({ versions: ['1.0.1', '1.0.2', '1.0.3', '1.0.4'], pointers: { current: '1.0.4', previous: '1.0.3', launcher: '1.0.4' } });
    const outside = join(temp.dir, `outside-${n}`);
    await mkdir(outside);
    await writeFile(join(outside, COMPLETE_MARK_FILE), 'not ours');
    await symlink(outside, join(layout.versionsDir, '1.0.0'));
    await writeFile(join(layout.versionsDir, 'notes.txt'), 'an operator was here');
    const { log } = memoryLogger();
    const outcome = await pruneVersions(layout, { keepVersions: 3 }, { log });
    assert.deepEqual(outcome.kind === 'pruned' && outcome.removed, ['1.0.1']);
    assert.deepEqual(await onDisk(layout), ['1.0.0', '1.0.2', '1.0.3', '1.0.4', 'notes.txt']);
    assert.equal(await exists(join(outside, COMPLETE_MARK_FILE)), true);
  });

  test('while an update holds update.lock the prune is deferred, and done by the next one', async () => {
    const layout = await makeRoot({ versions: ['1.0.0', '1.0.1', '1.0.2', '1.0.3'], pointers: { current: '1.0.3', previous: '1.0.2', launcher: '1.0.3' } });
    const release = await acquireUpdateLock(layout);
    const { log, lines } = memoryLogger();
    let waits = 0;
    try {
      const deferred = await pruneVersions(layout, { keepVersions: 3 }, { log, sleep: () => ((waits += 1), Promise.resolve()) });
      assert.equal(deferred.kind, 'deferred');
      assert.ok(waits > 1, 'it waits a little for a short update check first');
      assert.ok(lines().some((line) => line['event'] === 'worker_versions_prune_deferred'));
      assert.deepEqual(await onDisk(layout), ['1.0.0', '1.0.1', '1.0.2', '1.0.3']);
      const stopping = new AbortController();
      stopping.abort();
      assert.equal((await pruneVersions(layout, { keepVersions: 3 }, { log, signal: stopping.signal, sleep: noWait })).kind, 'deferred');
    } finally {
      await release();
    }
    const next = await pruneVersions(layout, { keepVersions: 3 }, { log });
    assert.deepEqual(next.kind === 'pruned' && next.removed, ['1.0.0']);
  });

  test('a failure never throws: a pointer that cannot be read stops the prune, logged, with nothing removed', async () => {
    const layout = await makeRoot({ versions: ['1.0.0', '1.0.1', '1.0.2', '1.0.3'], pointers: { current: '1.0.3', launcher: '1.0.3' } });
    await symlink('somewhere/else', layout.previousPointer);
    const { log, lines } = memoryLogger();
    const outcome = await pruneVersions(layout, { keepVersions: 3 }, { log });
    assert.equal(outcome.kind, 'failed');
    assert.ok(lines().some((line) => line['event'] === 'worker_versions_prune_failed'));
    assert.deepEqual(await onDisk(layout), ['1.0.0', '1.0.1', '1.0.2', '1.0.3']);
  });
});

describe('planPrune', () => {
  const complete = (...versions: string[]): VersionOnDisk[] => versions.map((version) => ({ version, status: 'complete' }));

  test('fewer than three versions to keep is refused', () => {
    for (const keepVersions of [0, 2, 2.5]) {
      assert.throws(() => planPrune({ onDisk: [], pinned: new Set(), rolledBack: new Set(), keepVersions }), RangeError);
    }
  });

  test('pinned versions that are not on disk take no room', () => {
    const plan = planPrune({ onDisk: complete('1.0.0', '1.0.1', '1.0.2', '1.0.3'), pinned: new Set(['1.0.3', '9.9.9']), rolledBack: new Set(), keepVersions: 3 });
    assert.deepEqual(plan, { keep: ['1.0.3', '1.0.2', '1.0.1'], remove: ['1.0.0'] });
  });

  test('unreadable versions are kept and take no room; prereleases order below their release', () => {
    const plan = planPrune({
      onDisk: [...complete('2.0.0', '2.0.0-rc.1', '1.9.0', '1.8.0'), { version: '1.0.0', status: 'unreadable' }],
      pinned: new Set(['2.0.0']),
      rolledBack: new Set(),
      keepVersions: 3,
    });
    assert.deepEqual(plan, { keep: ['2.0.0', '2.0.0-rc.1', '1.9.0', '1.0.0'], remove: ['1.8.0'] });
  });
});
