import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { openFleetStore } from '../../src/server/fleet/open-fleet-store.js';
import { FleetStoreError, migrate, SqliteFleetStore } from '../../src/server/fleet/sqlite-fleet-store.js';
import { WriteBatcher } from '../../src/server/fleet/write-batcher.js';
import { MIGRATIONS } from '../../src/server/fleet/migrations/index.js';
import { UsageError } from '../../src/shared/errors.js';

describe('SQLite fleet store', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-fleet-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('migrations run once, in order, and are recorded; WAL is on', async () => {
    const path = join(dir, 'a.sqlite');
    const store = new SqliteFleetStore(path);
    await store.close();
    const again = new SqliteFleetStore(path);
    await again.close();
    const db = new Database(path);
    try {
      const versions = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as Array<{ version: number }>;
      assert.deepEqual(versions.map((v) => v.version), MIGRATIONS.map((m) => m.version));
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.deepEqual(migrate(db), []);
    } finally {
      db.close();
    }
  });

  test('a database a newer server migrated past what this one can read (a contract step) is refused', async () => {
    const path = join(dir, 'newer.sqlite');
    (await Promise.resolve(new SqliteFleetStore(path))).close();
    const db = new Database(path);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')").run();
    db.prepare('UPDATE schema_readers SET oldest_reader = 999').run();
    db.close();
    assert.throws(
      () => new SqliteFleetStore(path),
      (err: unknown) => err instanceof FleetStoreError && err.code === 'database_schema_newer',
    );
  });

  test('a database path that cannot be opened is database_unavailable', async () => {
    const file = join(dir, 'plain-file');
    await writeFile(file, 'not a folder');
    assert.throws(
      () => new SqliteFleetStore(join(file, 'fleet.sqlite')),
      (err: unknown) => err instanceof FleetStoreError && err.code === 'database_unavailable',
    );
  });

  test('URLs other than postgres:// are configuration errors', async () => {
    for (const location of ['mysql://h/db', 'http://h/db', '']) {
      await assert.rejects(openFleetStore(location), (err: unknown) => err instanceof UsageError && err.code === 'usage', location);
    }
  });

  test('group commit: one failing write is isolated, the rest of its batch commits', async () => {
    const db = new Database(join(dir, 'batch.sqlite'));
    db.exec('CREATE TABLE t (v INTEGER NOT NULL CHECK (v >= 0))');
    const batcher = new WriteBatcher(db);
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const results = await Promise.allSettled([1, 2, -1, 3].map((v) => batcher.write(() => insert.run(v))));
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    assert.deepEqual((db.prepare('SELECT v FROM t ORDER BY v').all() as Array<{ v: number }>).map((r) => r.v), [1, 2, 3]);
    db.close();
  });

  test('heartbeats: a repeated one touches only state and last seen; a change of pool, version or progress is written, and update_at is when the progress last changed', async () => {
    const store = new SqliteFleetStore(join(dir, 'heartbeats.sqlite'));
    try {
      const at = (minutes: number) => new Date(Date.UTC(2026, 10, 1, 12, minutes));
      await store.registerWorker({ workerId: 'w1', pool: 'canary', channel: 'stable', platform: 'linux-x64', version: '1.0.0', at: at(0) });
      const downloading = { to_version: '1.1.0', state: 'downloading' as const, download_percent: 10 };
      assert.ok(await store.recordHeartbeat({ workerId: 'w1', pool: 'canary', version: '1.0.0', state: 'working', update: downloading, at: at(1) }));
      assert.ok(await store.recordHeartbeat({ workerId: 'w1', pool: 'canary', version: '1.0.0', state: 'idle', update: downloading, at: at(2) }));
      let row = await store.getWorker('w1');
      assert.equal(row?.state, 'idle');
      assert.equal(row?.last_seen_at, at(2).toISOString());
      assert.equal(row?.update?.updated_at, at(1).toISOString(), 'the same progress again keeps the time it started');
      await store.recordHeartbeat({ workerId: 'w1', pool: 'canary', version: '1.0.0', state: 'working', update: { ...downloading, download_percent: 60 }, at: at(3) });
      row = await store.getWorker('w1');
      assert.equal(row?.update?.download_percent, 60);
      assert.equal(row?.update?.updated_at, at(3).toISOString(), 'progress moved');
      await store.recordHeartbeat({ workerId: 'w1', pool: 'stable', version: '1.1.0', state: 'working', update: null, at: at(4) });
      row = await store.getWorker('w1');
      assert.deepEqual([row?.pool, row?.version, row?.update], ['stable', '1.1.0', null]);
      assert.equal(await store.recordHeartbeat({ workerId: 'nobody', pool: 'canary', version: '1.0.0', state: 'working', update: null, at: at(5) }), null, 'an unknown worker is still reported');
      const byPool = await store.searchWorkers({ pool: 'stable', limit: 10 });
      assert.deepEqual(byPool.workers.map((w) => w.worker_id), ['w1'], 'the pool index follows the change');
    } finally {
      await store.close();
    }
  });

  test('tokens: create, find, revoke once, list', async () => {
    const store = new SqliteFleetStore(join(dir, 'tokens.sqlite'));
    try {
      const at = new Date('2026-11-20T12:00:00Z');
      await store.createToken({ id: 'aaaaaaaaaaaaaaaa', role: 'worker', pool: 'canary', secretSha256: Buffer.alloc(32, 1), label: 'l', createdAt: at, revokedAt: null });
      assert.equal((await store.findToken('aaaaaaaaaaaaaaaa'))?.pool, 'canary');
      assert.equal(await store.findToken('bbbbbbbbbbbbbbbb'), null);
      assert.equal(await store.revokeToken('aaaaaaaaaaaaaaaa', at), true);
      assert.equal(await store.revokeToken('aaaaaaaaaaaaaaaa', at), false);
      assert.deepEqual((await store.findToken('aaaaaaaaaaaaaaaa'))?.revokedAt, at);
      await assert.rejects(
        store.createToken({ id: 'cccccccccccccccc', role: 'admin', pool: 'canary', secretSha256: Buffer.alloc(32), label: null, createdAt: at, revokedAt: null }),
        /CHECK constraint/,
      );
      assert.equal((await store.listTokens()).length, 1);
    } finally {
      await store.close();
    }
  });

  test('migration 5 on a version-4 database keeps its rows; credentials: one live per worker id, revocations seen across connections', async () => {
    const path = join(dir, 'identity.sqlite');
    const old = new Database(path);
    migrate(old, MIGRATIONS.filter((m) => m.version <= 4));
    old.prepare("INSERT INTO workers (id, pool, version, state, registered_at, last_seen_at) VALUES ('w-1', 'canary', '1.0.0', 'working', 'x', 'x')").run();
    old.close();

    const store = new SqliteFleetStore(path);
    const other = new Database(path);
    try {
      assert.equal((await store.getWorker('w-1'))?.pool, 'canary');
      const at = new Date('2026-11-20T12:00:00Z');
      await store.createEnrollmentToken({ id: 'eeeeeeeeeeeeeeee', pool: 'canary', secretSha256: Buffer.alloc(32, 2), label: null, maxUses: 5, uses: 0, expiresAt: null, createdAt: at, createdBy: null, revokedAt: null });
      const credential = (id: string) => ({ id, workerId: 'w-1', pool: 'canary', secretSha256: Buffer.alloc(32, 3), source: 'enroll' as const, sourceTokenId: 'eeeeeeeeeeeeeeee', createdAt: at, createdFrom: null, revokedAt: null, revokedBy: null });
      assert.deepEqual(await store.enrollWorker(credential('1111111111111111')), { kind: 'enrolled' });
      const second = await store.enrollWorker(credential('2222222222222222'));
      assert.equal(second.kind, 'already_enrolled');
      assert.equal((await store.findEnrollmentToken('eeeeeeeeeeeeeeee'))?.uses, 1, 'a refused enrollment spends no use');
      // Whatever process writes, the index allows one live credential per worker id.
      assert.throws(
        () =>
          other
            .prepare("INSERT INTO worker_credentials (id, worker_id, pool, secret_sha256, source, source_token_id, created_at) VALUES ('3333333333333333', 'w-1', 'canary', x'00', 'claim', 't', 'x')")
            .run(),
        /UNIQUE constraint/,
      );

      assert.equal((await store.findCredential('1111111111111111'))?.revokedAt, null);
      other.prepare("UPDATE worker_credentials SET revoked_at = 'x', revoked_by = 'cli' WHERE id = '1111111111111111'").run();
      await new Promise((resolve) => setTimeout(resolve, 5));
      assert.equal((await store.findCredential('1111111111111111'))?.revokedBy, 'cli', 'the auth cache saw the other connection revoke it');
      assert.equal(await store.revokeWorkerCredential('w-1', { at, by: 'admin' }), null);
      // Revoked, the id may enroll again; a claim never comes after any credential.
      assert.deepEqual(await store.enrollWorker(credential('4444444444444444')), { kind: 'enrolled' });
      assert.equal((await store.claimCredential({ ...credential('5555555555555555'), source: 'claim' })).claimed, false);
    } finally {
      other.close();
      await store.close();
    }
  });
});
