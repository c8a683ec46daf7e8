import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { StoredReport } from '../../src/server/fleet/fleet-store.js';
import { FleetStoreError, SqliteFleetStore } from '../../src/server/fleet/sqlite-fleet-store.js';
import { syncFileToDisk, WalSyncError, WalSyncer, type SyncFile } from '../../src/server/fleet/wal-syncer.js';
import { bearer, startTestServer } from '../helpers/server-app.js';

/** A flush that waits until the test opens its gate, recording what it was asked to flush. */
function gatedSync() {
  const calls: Array<{ path: string; kind: 'file' | 'folder' }> = [];
  let openGate: (() => void) | null = null;
  let failWith: Error | null = null;
  const syncFile: SyncFile = async (path, kind) => {
    calls.push({ path, kind });
    await new Promise<void>((resolve) => (openGate = resolve));
    if (failWith) throw failWith;
  };
  return {
    calls,
    syncFile,
    /** Let the flush that is waiting finish (with `error`, fail it). */
    release(error?: Error) {
      failWith = error ?? null;
      const open = openGate;
      openGate = null;
      assert.ok(open, 'no flush is waiting');
      open();
    },
    get waiting() {
      return openGate !== null;
    },
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Which of the promises have resolved so far. */
function tracker<T>(promises: Array<Promise<T>>) {
  const done = promises.map(() => false);
  promises.forEach((promise, index) => {
    promise.then(
      () => (done[index] = true),
      () => undefined,
    );
  });
  return done;
}

describe('WalSyncer', () => {
  test('a writer is told only after a flush that started after its commit has ended', async () => {
    const disk = gatedSync();
    const syncer = new WalSyncer('/data/fleet.sqlite-wal', disk.syncFile);
    const first = syncer.durable();
    const firstDone = tracker([first]);
    await settle();
    assert.equal(disk.calls.length, 1);

    // Commits made while the first flush runs wait for the next one, all together.
    const later = Array.from({ length: 50 }, () => syncer.durable());
    const laterDone = tracker(later);
    disk.release(); // the WAL
    await settle();
    disk.release(); // its folder, once
    await first;
    assert.deepEqual(firstDone, [true]);
    await settle();
    assert.ok(laterDone.every((done) => !done), 'a later commit was acknowledged by an earlier flush');
    assert.equal(disk.calls.length, 3, 'one more flush covers all fifty');
    disk.release();
    await Promise.all(later);
    assert.deepEqual(disk.calls, [
      { path: '/data/fleet.sqlite-wal', kind: 'file' },
      { path: '/data', kind: 'folder' },
      { path: '/data/fleet.sqlite-wal', kind: 'file' },
    ]);
    await syncer.idle();
    assert.equal(syncer.failure, null);
  });

  test('a failed flush refuses its writers, the ones queued behind it and every later one', async () => {
    const disk = gatedSync();
    const syncer = new WalSyncer('/data/fleet.sqlite-wal', disk.syncFile);
    const covered = syncer.durable();
    await settle();
    const queued = syncer.durable();
    disk.release(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    const refused = (err: unknown) => err instanceof WalSyncError && /flushing the SQLite WAL .* failed: EIO/.test(err.message);
    await assert.rejects(covered, refused);
    await assert.rejects(queued, refused);
    await assert.rejects(syncer.durable(), refused);
    assert.ok(syncer.failure instanceof WalSyncError);
    assert.equal(disk.calls.length, 1, 'no flush is tried after a failure: a later success would prove nothing');
  });
});

describe('SqliteFleetStore durability', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-walsync-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const report = (workerId: string): StoredReport => ({
    worker_id: workerId,
    event: 'attempt',
    from_version: '1.0.0',
    to_version: '1.1.0',
    channel: 'stable',
    platform: 'linux-x64',
    pool: 'canary',
    receivedAt: new Date('2026-11-27T12:00:00Z'),
    requestId: `req-${workerId}`,
    rolloutSerial: null,
  });
  const countReports = (path: string) => {
    const reader = new Database(path, { readonly: true });
    try {
      return (reader.prepare('SELECT COUNT(*) AS n FROM update_events').get() as { n: number }).n;
    } finally {
      reader.close();
    }
  };

  test('full (the default): a report is acknowledged only after its WAL flush, and the row is there', async () => {
    const path = join(dir, 'full.sqlite');
    const disk = gatedSync();
    const store = new SqliteFleetStore(path, { syncFile: disk.syncFile });
    try {
      const writes = [store.recordReport(report('w1')), store.recordReport(report('w2'))];
      const done = tracker(writes);
      while (!disk.waiting) await settle();
      assert.equal(countReports(path), 2, 'committed (visible to readers) before the flush');
      assert.deepEqual(done, [false, false], 'acknowledged before the WAL reached the disk');
      assert.deepEqual(disk.calls[0], { path: `${path}-wal`, kind: 'file' });
      disk.release();
      while (!disk.waiting) await settle();
      disk.release(); // the folder
      await Promise.all(writes);
    } finally {
      await store.close();
    }
  });

  test('full with the real disk flush: writes resolve, and closing waits for the flush', async () => {
    const path = join(dir, 'real.sqlite');
    const store = new SqliteFleetStore(path);
    const writes = Array.from({ length: 20 }, (_, index) => store.recordReport(report(`r${index}`)));
    await store.close();
    await Promise.all(writes);
    assert.equal(countReports(path), 20);
  });

  test('a database opened through a symbolic link: the WAL beside the real file is the one flushed', async () => {
    const realDir = join(dir, 'real-place');
    await mkdir(realDir);
    const realPath = join(realDir, 'fleet.sqlite');
    new Database(realPath).close();
    const linkPath = join(dir, 'linked.sqlite');
    await symlink(realPath, linkPath);
    const flushed: string[] = [];
    const store = new SqliteFleetStore(linkPath, { syncFile: async (path, kind) => {
      flushed.push(path);
      await syncFileToDisk(path, kind);
    } });
    await store.recordReport(report('l1'));
    await store.close();
    assert.deepEqual(flushed, [`${realPath}-wal`, realDir]);
    assert.equal(countReports(realPath), 1);
  });

  test('normal: nothing is flushed before the acknowledgement', async () => {
    const path = join(dir, 'normal.sqlite');
    const disk = gatedSync();
    const store = new SqliteFleetStore(path, { synchronous: 'normal', syncFile: disk.syncFile });
    await store.recordReport(report('n1'));
    await store.close();
    assert.equal(disk.calls.length, 0);
    assert.equal(countReports(path), 1);
  });

  test('a failed flush fails the waiting writes and every later one, and ping says the database is not durable', async () => {
    const path = join(dir, 'eio.sqlite');
    const disk = gatedSync();
    const store = new SqliteFleetStore(path, { syncFile: disk.syncFile });
    try {
      const write = store.recordReport(report('e1'));
      while (!disk.waiting) await settle();
      disk.release(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      await assert.rejects(write, WalSyncError);
      await assert.rejects(store.recordReport(report('e2')), WalSyncError);
      await assert.rejects(
        store.ping(),
        (err: unknown) => err instanceof FleetStoreError && err.code === 'database_unavailable' && /not durable/.test(err.message),
      );
    } finally {
      await store.close();
    }
  });

  test('through the server: after a failed flush a report gets 503 database_unavailable, and so does /readyz', async () => {
    let failing = false;
    const server = await startTestServer(
      {},
      {
        syncFile: async (path, kind) => {
          if (failing) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
          await syncFileToDisk(path, kind);
        },
      },
    );
    try {
      const post = () =>
        server.app.inject({
          method: 'POST',
          url: '/api/worker-updates/report',
          headers: bearer(server.tokens.canary),
          payload: { worker_id: 'w-eio', event: 'attempt', from_version: '1.0.0', to_version: '1.1.0', channel: 'stable', platform: 'linux-x64' },
        });
      assert.equal((await post()).statusCode, 202);
      failing = true;
      for (const response of [await post(), await post(), await server.app.inject({ url: '/readyz' })]) {
        assert.equal(response.statusCode, 503);
        assert.equal((response.json() as { error: { code: string } }).error.code, 'database_unavailable');
      }
    } finally {
      await server.close();
    }
  });
});
