import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { resolveServeConfig } from '../../src/server/config.js';
import { AuthReadCache } from '../../src/server/fleet/auth-read-cache.js';
import type { TokenRecord } from '../../src/server/fleet/fleet-store.js';
import { SqliteFleetStore } from '../../src/server/fleet/sqlite-fleet-store.js';
import { WriteBatcher } from '../../src/server/fleet/write-batcher.js';
import { UsageError } from '../../src/shared/errors.js';
import { bearer, startTestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor } from '../helpers/server-fixtures.js';
import { makeKey } from '../helpers/trust-fixtures.js';

const at = new Date('2026-11-20T12:00:00Z');
const tokenRecord = (id: string): TokenRecord => ({
  id,
  role: 'worker',
  pool: 'canary',
  secretSha256: Buffer.alloc(32, 7),
  label: null,
  createdAt: at,
  revokedAt: null,
});

describe('auth read cache', () => {
  test('serves from memory until the epoch moves, and re-reads the epoch at most every recheckMs', () => {
    let nowMs = 0;
    let epoch = 1;
    let epochReads = 0;
    let loads = 0;
    const cache = new AuthReadCache({
      readEpoch: () => {
        epochReads += 1;
        return epoch;
      },
      recheckMs: 5,
      nowMs: () => nowMs,
    });
    const load = (id: string) => {
      loads += 1;
      return id === 'known' ? tokenRecord(id) : null;
    };
    assert.equal(cache.token('known', load)?.id, 'known');
    assert.equal(cache.token('unknown', load), null);
    assert.equal(cache.token('known', load)?.id, 'known');
    assert.equal(cache.token('unknown', load), null);
    assert.deepEqual({ loads, epochReads }, { loads: 2, epochReads: 1 });

    epoch = 2;
    nowMs = 4; // within recheckMs: the change is not looked for yet
    cache.token('known', load);
    assert.deepEqual({ loads, epochReads }, { loads: 2, epochReads: 1 });
    nowMs = 5;
    cache.token('known', load);
    assert.deepEqual({ loads, epochReads }, { loads: 3, epochReads: 2 });

    cache.clear();
    cache.policy('canary', () => ({ auto_update: true }));
    assert.equal(epochReads, 3, 'clear() makes the next lookup re-read the epoch');
  });

  test('unknown ids cannot grow the cache past maxEntries', () => {
    const cache = new AuthReadCache({ readEpoch: () => 1, maxEntries: 3, nowMs: () => 0 });
    let loads = 0;
    const load = () => {
      loads += 1;
      return null;
    };
    for (const id of ['a', 'b', 'c', 'd']) cache.token(id, load);
    cache.token('c', load);
    cache.token('d', load);
    assert.equal(loads, 4, "'c' and 'd' are still cached: only the oldest entry made room for 'd'");
    cache.token('a', load);
    assert.equal(loads, 5, "'a', the oldest, was dropped to make room for 'd'");
  });
});

describe('fleet store: cached auth reads, group commit, durability setting', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-perf-paths-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('a token revoked and a policy changed through another connection are seen within a few ms', async () => {
    const path = join(dir, 'shared.sqlite');
    const server = new SqliteFleetStore(path);
    const operator = new SqliteFleetStore(path);
    try {
      await operator.createToken(tokenRecord('aaaaaaaaaaaaaaaa'));
      await operator.setPoolPolicy('canary', { auto_update: false }, { at, byTokenId: 'aaaaaaaaaaaaaaaa' });
      await new Promise((resolve) => setTimeout(resolve, 5));
      assert.equal((await server.findToken('aaaaaaaaaaaaaaaa'))?.revokedAt, null);
      assert.deepEqual(await server.getPoolPolicy('canary'), { auto_update: false });

      assert.equal(await operator.revokeToken('aaaaaaaaaaaaaaaa', at), true);
      await operator.setPoolPolicy('canary', { auto_update: true }, { at, byTokenId: 'aaaaaaaaaaaaaaaa' });
      await new Promise((resolve) => setTimeout(resolve, 5));
      assert.deepEqual((await server.findToken('aaaaaaaaaaaaaaaa'))?.revokedAt, at);
      assert.deepEqual(await server.getPoolPolicy('canary'), { auto_update: true });
    } finally {
      await operator.close();
      await server.close();
    }
  });

  test('writes through the same store take effect at once', async () => {
    const store = new SqliteFleetStore(join(dir, 'own.sqlite'));
    try {
      assert.equal(await store.findToken('bbbbbbbbbbbbbbbb'), null);
      await store.createToken(tokenRecord('bbbbbbbbbbbbbbbb'));
      assert.equal((await store.findToken('bbbbbbbbbbbbbbbb'))?.id, 'bbbbbbbbbbbbbbbb');
      assert.equal(await store.getPoolPolicy('canary'), null);
      await store.setPoolPolicy('canary', { auto_update: true }, { at, byTokenId: 'bbbbbbbbbbbbbbbb' });
      assert.deepEqual(await store.getPoolPolicy('canary'), { auto_update: true });
    } finally {
      await store.close();
    }
  });

  test('group commit: after a batch of 4, a lone write waits up to maxWaitMs for companions; after a lone one, not at all', async () => {
    const db = new Database(join(dir, 'batch-window.sqlite'));
    db.exec('CREATE TABLE t (v INTEGER NOT NULL)');
    const batcher = new WriteBatcher(db, { maxWaitMs: 40 });
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    const write = (v: number) => batcher.write(() => insert.run(v));
    try {
      await Promise.all([1, 2, 3, 4].map(write));
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n, 4);

      // The previous batch had 4 writes: a single write now waits for companions, up to 40 ms.
      const started = performance.now();
      await write(5);
      const waitedMs = performance.now() - started;
      assert.ok(waitedMs >= 35, `waited ${waitedMs.toFixed(1)} ms`);
      // That batch had 1 write, so the next lone write commits at the end of the turn
      // (setImmediate), before any timer set now can fire, however loaded the machine is.
      const first = await Promise.race([write(6).then(() => 'write'), new Promise((resolve) => setTimeout(() => resolve('timer'), 1))]);
      assert.equal(first, 'write', 'a lone write after a lone batch does not wait for companions');
      assert.deepEqual((db.prepare('SELECT v FROM t ORDER BY v').all() as Array<{ v: number }>).map((r) => r.v), [1, 2, 3, 4, 5, 6]);
    } finally {
      batcher.flush();
      db.close();
    }
  });

  test('--db-sync selects flushed acknowledgements (full, the default) or not (normal); anything else is a usage error', async () => {
    const base = { store: 'store', db: 'fleet.sqlite', releaseKey: [makeKey().publicKeyBase64] };
    assert.equal((await resolveServeConfig(base, {})).dbSync, 'full');
    assert.equal((await resolveServeConfig({ ...base, dbSync: 'normal' }, {})).dbSync, 'normal');
    assert.equal((await resolveServeConfig(base, { BYTEBIOTA_DB_SYNC: 'normal' })).dbSync, 'normal');
    for (const bad of ['off', 'FULL', 'extra']) {
      await assert.rejects(
        resolveServeConfig({ ...base, dbSync: bad }, {}),
        (err: unknown) => err instanceof UsageError && err.code === 'usage' && err.message.includes('--db-sync'),
      );
    }
    for (const mode of ['full', 'normal'] as const) {
      const store = new SqliteFleetStore(join(dir, `sync-${mode}.sqlite`), { synchronous: mode });
      try {
        await store.createToken(tokenRecord('cccccccccccccccc'));
        assert.equal((await store.findToken('cccccccccccccccc'))?.id, 'cccccccccccccccc');
      } finally {
        await store.close();
      }
    }
  });
});

describe('latest 304', () => {
  test('a 304 carries the ETag and request id but no body, Content-Length or Content-Type', async () => {
    const server = await startTestServer();
    try {
      await publishRelease(server.storeDir, releaseFor({ serial: 1, version: '1.4.0' }), [server.key]);
      const url = '/api/worker-updates/latest?channel=stable&platform=linux-x64';
      const first = await server.app.inject({ url, headers: bearer(server.tokens.canary) });
      assert.equal(first.statusCode, 200);
      const etag = String(first.headers['etag']);
      const again = await server.app.inject({ url, headers: { ...bearer(server.tokens.canary), 'if-none-match': etag } });
      assert.equal(again.statusCode, 304);
      assert.equal(again.headers['etag'], etag);
      assert.ok(again.headers['x-request-id']);
      assert.equal(again.body, '');
      assert.equal(again.headers['content-length'], undefined);
      assert.equal(again.headers['content-type'], undefined);
    } finally {
      await server.close();
    }
  });
});
