/**
 * `bytebiota-server db copy`: an operator moves a SQLite fleet database into PostgreSQL, and every
 * token, policy, rollout, serial floor, worker and event comes across, so that the server on
 * PostgreSQL takes the same tokens and never offers a worker a lower serial than before.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteFleetStore } from '../../src/server/fleet/sqlite-fleet-store.js';
import { openFleetStore } from '../../src/server/fleet/open-fleet-store.js';
import type { FleetStore } from '../../src/server/fleet/fleet-store.js';
import { TestFleetStores } from '../helpers/fleet-stores.js';
import { createTokenWithCli, runServerCommand, startServerProcess } from '../helpers/server-process.js';
import { releaseFor } from '../helpers/server-fixtures.js';
import { makeKey, signedManifestBytes } from '../helpers/trust-fixtures.js';

const AT = new Date('2026-11-30T10:00:00.000Z');

/** Fill a SQLite fleet database through its store, as a running server would have. */
async function fillSqlite(path: string): Promise<void> {
  const store = new SqliteFleetStore(path);
  try {
    await store.setPoolPolicy('canary', { auto_update: true, maintenance_windows: ['Mon-Fri 09:00-17:00 Europe/Berlin'] }, { at: AT, byTokenId: 'admin-1' });
    await store.raiseServedSerial('stable', 7, AT);
    await store.setChannelPlan('stable', { immediate: false, waves: [{ pools: ['canary'], percent: 100, soak_s: 60, min_healthy: 1 }] }, { at: AT, byTokenId: 'admin-1' });
    await store.createRollout({
      channel: 'stable',
      serial: 7,
      version: '1.7.0',
      manifest: signedManifestBytes(releaseFor({ serial: 7, version: '1.7.0' }), [makeKey()]),
      expiresAt: new Date('2026-12-30T00:00:00.000Z'),
      urgent: false,
      plan: { immediate: false, waves: [{ pools: ['canary'], percent: 100, soak_s: 60, min_healthy: 1 }] },
      state: 'halted',
      stateReason: 'bad canary',
      stateChangedAt: AT,
      stateChangedBy: 'admin-1',
      failuresCountedFrom: AT,
      wavesStarted: [AT],
      startedAt: AT,
    });
    for (let i = 0; i < 250; i += 1) {
      const workerId = `w-${String(i).padStart(3, '0')}`;
      await store.registerWorker({ workerId, pool: 'canary', channel: 'stable', platform: 'linux-x64', version: '1.6.0', at: AT });
      await store.recordHeartbeat({ workerId, pool: 'canary', version: '1.6.0', state: 'working', update: { to_version: '1.7.0', state: 'downloading', download_percent: i / 3 }, at: AT });
      await store.admitWorker({ channel: 'stable', serial: 7, workerId, pool: 'canary', wave: 0, forced: false, admittedAt: AT });
      await store.recordReport({
        worker_id: workerId,
        event: 'failure',
        from_version: '1.6.0',
        to_version: '1.7.0',
        channel: 'stable',
        platform: 'linux-x64',
        reason: 'health_check_failed',
        correlation_id: `c-${i}`,
        pool: 'canary',
        rolloutSerial: 7,
        receivedAt: new Date(AT.getTime() + i),
        requestId: `r-${i}`,
      });
    }
    await store.claimCredential(
      {
        id: 'cred-1',
        workerId: 'w-000',
        pool: 'canary',
        secretSha256: Buffer.alloc(32, 7),
        source: 'claim',
        sourceTokenId: 'pool-1',
        createdAt: AT,
        createdFrom: '10.0.0.1',
        revokedAt: null,
        revokedBy: null,
      },
      Buffer.alloc(32, 9),
    );
  } finally {
    await store.close();
  }
  // A report stored twice by a server from before retries were recognised.
  const db = new Database(path);
  db.prepare(
    `INSERT INTO update_events (received_at, request_id, worker_id, pool, event, channel, platform, from_version, to_version, reason, correlation_id, serial)
     SELECT received_at, 'r-retry', worker_id, pool, event, channel, platform, from_version, to_version, reason, correlation_id, serial FROM update_events WHERE correlation_id = 'c-0'`,
  ).run();
  db.close();
}

describe('db copy: SQLite into PostgreSQL', () => {
  const stores = new TestFleetStores();
  let dir: string;
  let sqlitePath: string;
  let workerToken: string;
  let url: string;
  let copied: FleetStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-db-copy-'));
    sqlitePath = join(dir, 'fleet.sqlite');
    await fillSqlite(sqlitePath);
    workerToken = await createTokenWithCli(sqlitePath, 'worker', 'canary');
    url = await stores.location('postgres');
  });
  after(async () => {
    await stores.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('every row comes across, verified; a report stored twice comes once', async () => {
    const result = await runServerCommand(['db', 'copy', '--from', sqlitePath, '--to', url]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^update_events: 250 rows copied and verified$/m);
    assert.match(result.stdout, /^workers: 250 rows copied and verified$/m);
    assert.match(result.stdout, /^1 retried reports were stored twice in SQLite; copied once$/m);

    const source = new SqliteFleetStore(sqlitePath);
    copied = await stores.reopen(url);
    try {
      for (const [what, read] of [
        ['tokens', (s: FleetStore) => s.listTokens()],
        ['policies', (s: FleetStore) => s.listPoolPolicies()],
        ['rollouts', (s: FleetStore) => s.listRollouts('stable', 10)],
        ['plan', (s: FleetStore) => s.getChannelPlan('stable')],
        ['floor', (s: FleetStore) => s.highestServedSerial('stable')],
        ['admissions', (s: FleetStore) => s.workerAdmittedSerials('w-123', 'stable')],
        ['worker', (s: FleetStore) => s.getWorker('w-042')],
        ['events', (s: FleetStore) => s.workerEvents('w-001', 10)],
        ['credential', (s: FleetStore) => s.findCredential('cred-1')],
        ['fleet view', (s: FleetStore) => s.fleetView({ workerLimit: 5, failureLimit: 0 })],
      ] as const) {
        assert.deepEqual(await read(copied), await read(source), what);
      }
      assert.equal((await copied.workerEvents('w-000', 10)).length, 1, 'the retried report once');
      assert.deepEqual(await copied.workerAdmittedSerials('w-123', 'stable'), [7]);
      // A new report gets an id after the copied ones: newest first stays right.
      await copied.recordReport({
        worker_id: 'w-000',
        event: 'rollback',
        from_version: '1.7.0',
        to_version: '1.6.0',
        channel: 'stable',
        platform: 'linux-x64',
        correlation_id: 'c-0',
        pool: 'canary',
        rolloutSerial: 7,
        receivedAt: AT,
        requestId: 'r-new',
      });
      assert.equal((await copied.workerEvents('w-000', 1))[0]?.event, 'rollback');
    } finally {
      await source.close();
    }
  });

  test('a server on the copy takes the tokens issued before the move', async () => {
    const storeDir = join(dir, 'store');
    await mkdir(storeDir, { recursive: true });
    const server = await startServerProcess(['--store', storeDir, '--db', url, '--release-key', makeKey().publicKeyBase64]);
    try {
      const res = await fetch(`${server.url}/api/workers/heartbeat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${workerToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ worker_id: 'w-007', current_version: '1.6.0', state: 'working' }),
      });
      assert.equal(res.status, 200, await res.text());
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  test('a database that is not empty is refused, and left as it was', async () => {
    const before = (await copied.fleetView({ workerLimit: 1, failureLimit: 1 })).total_workers;
    const again = await runServerCommand(['db', 'copy', '--from', sqlitePath, '--to', url]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /is not empty \(table tokens has rows\)/);
    assert.equal((await copied.fleetView({ workerLimit: 1, failureLimit: 1 })).total_workers, before);
  });

  test('the wrong kind of location on either side is a usage error', async () => {
    for (const args of [
      ['--from', url, '--to', url],
      ['--from', sqlitePath, '--to', join(dir, 'other.sqlite')],
    ]) {
      const result = await runServerCommand(['db', 'copy', ...args]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /--from must be the SQLite file|--to must be the postgres:\/\/ URL/);
    }
  });

  test('openFleetStore opens the copy', async () => {
    const store = await openFleetStore(url);
    try {
      assert.equal(store.kind, 'postgres');
      assert.equal((await store.listTokens()).length, 1);
    } finally {
      await store.close();
    }
  });
});
