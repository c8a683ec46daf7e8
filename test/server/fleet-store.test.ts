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

  test('a database migrated by a newer server is refused', async () => {
    const path = join(dir, 'newer.sqlite');
    (await Promise.resolve(new SqliteFleetStore(path))).close();
    const db = new Database(path);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')").run();
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

  test('postgres:// and other URLs are configuration errors', () => {
    for (const location of ['postgres://u@h/db', 'postgresql://h/db', 'mysql://h/db', '']) {
      assert.throws(() => openFleetStore(location), (err: unknown) => err instanceof UsageError && err.code === 'usage', location);
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
});
