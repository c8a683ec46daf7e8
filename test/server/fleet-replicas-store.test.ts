/**
 * What several replicas on one database rely on, on both stores: the leader lease, and retention
 * that deletes activity rows but never a worker's serial floor or identity.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { FleetStoreError } from '../../src/server/fleet/fleet-store.js';
import { MIGRATIONS, type Migration } from '../../src/server/fleet/migrations/index.js';
import { migratePostgres } from '../../src/server/fleet/postgres/migrate.js';
import { POSTGRES_MIGRATIONS } from '../../src/server/fleet/postgres/migrations.js';
import { LeaderLease } from '../../src/server/fleet/leader-lease.js';
import { Retention } from '../../src/server/fleet/retention.js';
import { migrate } from '../../src/server/fleet/sqlite-fleet-store.js';
import { fixedClock } from '../../src/shared/clock.js';
import { STORE_KINDS, TestFleetStores, type StoreKind } from '../helpers/fleet-stores.js';

const DAY = 86_400_000;
const NOW = new Date('2026-06-01T12:00:00.000Z');
const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** Migrate the database as a newer server would: this release's migrations and `future` after them. */
async function migrateAsNewerServer(kind: StoreKind, location: string, future: Migration): Promise<void> {
  if (kind === 'sqlite') {
    const db = new Database(location);
    try {
      migrate(db, [...MIGRATIONS, future]);
    } finally {
      db.close();
    }
    return;
  }
  const client = new pg.Client({ connectionString: location });
  await client.connect();
  try {
    await migratePostgres(client, [...POSTGRES_MIGRATIONS, future]);
  } finally {
    await client.end();
  }
}

for (const kind of STORE_KINDS) {
  describe(`replicas and retention: ${kind}`, () => {
    const stores = new TestFleetStores();
    after(() => stores.close());

    test('the leader lease: one holder at a time, renewed by its holder, taken over once expired or released', async () => {
      const { store: a, location } = await stores.open(kind);
      const b = await stores.reopen(location);
      assert.equal(await a.tryLease('fleet-leader', 'a', NOW, 30_000), true);
      assert.equal(await b.tryLease('fleet-leader', 'b', NOW, 30_000), false, 'held by a');
      assert.equal(await a.tryLease('fleet-leader', 'a', new Date(NOW.getTime() + 10_000), 30_000), true, 'a renews');
      // a's renewal at +10 s holds until +40 s.
      assert.equal(await b.tryLease('fleet-leader', 'b', new Date(NOW.getTime() + 39_000), 30_000), false);
      assert.equal(await b.tryLease('fleet-leader', 'b', new Date(NOW.getTime() + 40_000), 30_000), true, 'expired: b takes it');
      assert.equal(await a.tryLease('fleet-leader', 'a', new Date(NOW.getTime() + 41_000), 30_000), false, 'a lost it');
      await b.releaseLease('fleet-leader', 'b');
      await b.releaseLease('fleet-leader', 'nobody');
      assert.equal(await a.tryLease('fleet-leader', 'a', new Date(NOW.getTime() + 42_000), 30_000), true, 'released: a takes it back at once');
      assert.equal(await a.tryLease('other-lease', 'b', NOW, 30_000), true, 'leases are independent');
    });

    test('a rolling upgrade: this server runs on a schema a newer one expanded, and refuses one it contracted', async () => {
      const { store, location } = await stores.open(kind);
      await store.registerWorker({ workerId: 'before', pool: 'p', channel: 'stable', platform: 'linux-x64', version: '1.0.0', at: NOW });
      await store.close();
      await migrateAsNewerServer(kind, location, { version: 500, name: 'future-expand', sql: 'CREATE TABLE future_things (x INTEGER); ALTER TABLE workers ADD COLUMN future_note TEXT' });
      const older = await stores.reopen(location);
      await older.registerWorker({ workerId: 'during', pool: 'p', channel: 'stable', platform: 'linux-x64', version: '1.0.0', at: NOW });
      assert.equal((await older.fleetView({ workerLimit: 10, failureLimit: 0 })).total_workers, 2, 'the older server works on the expanded schema');
      await older.close();

      await migrateAsNewerServer(kind, location, { version: 501, name: 'future-contract', sql: 'DROP TABLE future_things', contract: true });
      await assert.rejects(stores.reopen(location), (err: unknown) => {
        assert.ok(err instanceof FleetStoreError && err.code === 'database_schema_newer', String(err));
        assert.match(err.message, /schema version 501 is newer than this server knows .* needs a server that knows version 501/);
        return true;
      });
    });

    test('a server killed while leading: on SQLite its restart leads at once; on PostgreSQL another replica waits out the TTL', async () => {
      const { store, location } = await stores.open(kind);
      const clock = fixedClock(NOW);
      const crashed = new LeaderLease({ fleet: store, clock, logger: silent });
      await crashed.renew();
      assert.equal(crashed.held, true);
      // No stop(): the process died holding the lease.
      const restarted = new LeaderLease({ fleet: await stores.reopen(location), clock, logger: silent });
      await restarted.renew();
      assert.equal(restarted.held, kind === 'sqlite', 'SQLite: one server per database, the lease is its own');
      if (kind === 'postgres') {
        clock.set(new Date(NOW.getTime() + 30_000));
        await restarted.renew();
        assert.equal(restarted.held, true, 'taken over once the dead leader\'s lease expired');
      }
    });

    test('two replicas racing for a free lease: exactly one wins', async () => {
      const { store: a, location } = await stores.open(kind);
      const b = await stores.reopen(location);
      for (let round = 0; round < 10; round += 1) {
        const at = new Date(NOW.getTime() + round * 60_000);
        const won = await Promise.all([a.tryLease(`race-${round}`, 'a', at, 30_000), b.tryLease(`race-${round}`, 'b', at, 30_000)]);
        assert.equal(won.filter(Boolean).length, 1, `round ${round}: ${JSON.stringify(won)}`);
      }
    });

    test('retention deletes old events and long-unseen workers in batches, and keeps their serial floors and credentials', async () => {
      const { store } = await stores.open(kind);
      const old = new Date(NOW.getTime() - 40 * DAY);
      const recent = new Date(NOW.getTime() - DAY);
      for (let i = 0; i < 25; i += 1) {
        await store.registerWorker({ workerId: `gone-${i}`, pool: 'p', channel: 'stable', platform: 'linux-x64', version: '1.0.0', at: old });
      }
      await store.registerWorker({ workerId: 'alive', pool: 'p', channel: 'stable', platform: 'linux-x64', version: '1.0.0', at: recent });
      await store.admitWorker({ channel: 'stable', serial: 7, workerId: 'gone-0', pool: 'p', wave: 0, forced: false, admittedAt: old });
      await store.claimCredential({
        id: 'cred-gone-0',
        workerId: 'gone-0',
        pool: 'p',
        secretSha256: Buffer.alloc(32, 1),
        source: 'claim',
        sourceTokenId: 'pool-token',
        createdAt: old,
        createdFrom: null,
        revokedAt: null,
        revokedBy: null,
      });
      const report = (workerId: string, receivedAt: Date, correlation: string) =>
        store.recordReport({
          worker_id: workerId,
          event: 'attempt',
          from_version: '1.0.0',
          to_version: '1.1.0',
          channel: 'stable',
          platform: 'linux-x64',
          correlation_id: correlation,
          pool: 'p',
          rolloutSerial: 7,
          receivedAt,
          requestId: `r-${correlation}`,
        });
      for (let i = 0; i < 23; i += 1) await report('gone-0', new Date(NOW.getTime() - 100 * DAY + i), `old-${i}`);
      await report('alive', recent, 'new');

      const pruned: Array<{ events: number; workers: number }> = [];
      const retention = new Retention({
        fleet: store,
        clock: fixedClock(NOW),
        logger: silent,
        eventRetentionMs: 90 * DAY,
        workerRetentionMs: 30 * DAY,
        isLeader: () => true,
        onPruned: (deleted) => pruned.push(deleted),
        batch: 10,
      });
      assert.deepEqual(await retention.prune(), { events: 23, workers: 25 });
      assert.deepEqual(pruned, [{ events: 23, workers: 25 }]);
      assert.deepEqual(await retention.prune(), { events: 0, workers: 0 }, 'nothing left to delete');

      assert.equal(await store.getWorker('gone-0'), null);
      assert.notEqual(await store.getWorker('alive'), null);
      assert.deepEqual((await store.workerEvents('alive', 10)).map((e) => e.correlation_id), ['new']);
      assert.deepEqual(await store.workerEvents('gone-0', 10), []);
      assert.equal((await store.fleetView({ workerLimit: 10, failureLimit: 10 })).total_workers, 1);
      // What the worker's safety depends on is still there if it comes back.
      assert.deepEqual(await store.workerAdmittedSerials('gone-0', 'stable'), [7]);
      assert.equal((await store.findCredential('cred-gone-0'))?.revokedAt, null);
      const again = await store.claimCredential({
        id: 'cred-gone-0-second',
        workerId: 'gone-0',
        pool: 'p',
        secretSha256: Buffer.alloc(32, 2),
        source: 'claim',
        sourceTokenId: 'pool-token',
        createdAt: NOW,
        createdFrom: null,
        revokedAt: null,
        revokedBy: null,
      });
      assert.equal(again.claimed, false, 'a second machine cannot claim the id of a pruned worker');
    });

    test('group commit: a row the database refuses fails only its own write; the rest of its batch is stored', async () => {
      const { store } = await stores.open(kind);
      const report = (i: number, event: string) =>
        store.recordReport({
          worker_id: `w-${i}`,
          event: event as 'attempt',
          from_version: '1.0.0',
          to_version: '1.1.0',
          channel: 'stable',
          platform: 'linux-x64',
          correlation_id: `c-${i}`,
          pool: 'p',
          rolloutSerial: 1,
          receivedAt: NOW,
          requestId: `r-${i}`,
        });
      // Sent together, so they share one statement (PostgreSQL) or one transaction (SQLite); the
      // event CHECK refuses the bogus one.
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => report(i, i === 7 ? 'bogus' : 'attempt')));
      assert.deepEqual(
        results.map((result) => result.status),
        results.map((_, i) => (i === 7 ? 'rejected' : 'fulfilled')),
      );
      const stored = await store.rolloutReports('stable', 1, new Date(0));
      assert.deepEqual(stored.map((row) => row.worker_id).sort(), Array.from({ length: 20 }, (_, i) => `w-${i}`).filter((id) => id !== 'w-7').sort());
    });

    test('a retried report (same worker, correlation id and event) is stored once, also through another replica; one without a correlation id always', async () => {
      const { store: a, location } = await stores.open(kind);
      const b = await stores.reopen(location);
      const base = {
        worker_id: 'w',
        event: 'failure' as const,
        from_version: '1.0.0',
        to_version: '1.1.0',
        channel: 'stable',
        platform: 'linux-x64',
        reason: 'health_check_failed' as const,
        pool: 'p',
        rolloutSerial: 3,
        receivedAt: NOW,
      };
      const first = await Promise.all([
        a.recordReport({ ...base, correlation_id: 'c-1', requestId: 'r1' }),
        a.recordReport({ ...base, correlation_id: 'c-1', requestId: 'r2' }),
        b.recordReport({ ...base, correlation_id: 'c-1', requestId: 'r3' }),
      ]);
      assert.equal(first.filter(Boolean).length, 1, `stored once: ${JSON.stringify(first)}`);
      assert.equal(await b.recordReport({ ...base, event: 'rollback', correlation_id: 'c-1', requestId: 'r4' }), true, 'another event of the same update');
      assert.equal(await a.recordReport({ ...base, requestId: 'r5' }), true);
      assert.equal(await b.recordReport({ ...base, requestId: 'r6' }), true);
      const events = await a.workerEvents('w', 10);
      assert.equal(events.length, 4);
      assert.equal((await a.rolloutReports('stable', 3, new Date(0))).filter((r) => r.event === 'failure').length, 3);
    });
  });
}
