/**
 * The FleetStore contract, checked against every implementation (SQLite and PostgreSQL) with the
 * same assertions: what each method stores and returns, its boundaries (inclusive `since`,
 * exclusive `before`), the refusals and races the routes rely on (first rollout, first claim,
 * last enrollment use, one version sample per slot), and what a second replica on the same
 * database sees (rollout epoch, revoked tokens and credentials, changed policies).
 *
 * Every test opens its own empty database, so tests are independent and can be run alone.
 * Order is asserted only where the interface promises one; elsewhere rows are compared sorted.
 * Views that routes send as JSON are compared as JSON (what a client sees); records that code
 * reads (tokens, credentials, rollouts) are compared as they are, with their Buffers and Dates.
 */
import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';
import { UPDATE_EVENTS, UPDATE_STATES, WORKER_STATES, type UpdateProgress } from '../../src/protocol/messages.js';
import type { RolloutPlan } from '../../src/protocol/rollouts.js';
import type {
  AdmissionRecord,
  ConsoleSessionRecord,
  CredentialRecord,
  EnrollmentTokenRecord,
  FleetStore,
  PendingCredentialRecord,
  RolloutRecord,
  StoredReport,
  TokenRecord,
  WorkerCount,
  WorkerHeartbeat,
  WorkerRegistration,
  WorkerSearch,
} from '../../src/server/fleet/fleet-store.js';
import { STORE_KINDS, TestFleetStores } from '../helpers/fleet-stores.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { until } from '../helpers/wait.js';

/** How long a change made through one replica may stay unseen by another's caches. */
const CROSS_REPLICA_MS = 5_000;

const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);
/** `seconds` after a fixed instant: every timestamp in these tests is exact (ms precision). */
function at(seconds: number): Date {
  return new Date(T0 + Math.round(seconds * 1000));
}
function iso(seconds: number): string {
  return at(seconds).toISOString();
}

/** What a route sends: JSON, where an absent optional field and an undefined one are the same. */
function asJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/** Rows whose order the interface leaves open, in one canonical order (keys sorted, so column order does not matter). */
function sorted(rows: unknown): unknown[] {
  const canonical = (row: unknown) => JSON.stringify(row, row && typeof row === 'object' ? Object.keys(row).sort() : undefined);
  return [...(asJson(rows) as unknown[])].sort((a, b) => (canonical(a) < canonical(b) ? -1 : canonical(a) > canonical(b) ? 1 : 0));
}

/** Ids shaped like the server's (16 hex digits), distinct per kind by their first digit. */
function hexId(kind: 'a' | 'b' | 'c' | 'd' | 'e' | 'f', n: number): string {
  return `${kind}${n.toString(16).padStart(15, '0')}`;
}
const tokenId = (n: number) => hexId('a', n);
const enrollmentId = (n: number) => hexId('e', n);
const credentialId = (n: number) => hexId('c', n);
const pendingId = (n: number) => hexId('d', n);
const sessionId = (n: number) => hexId('f', n);
/** A SHA-256-sized value, distinct per `n`. */
const sha = (n: number) => Buffer.alloc(32, n);

const ADMIN = tokenId(0xad);
const POOL_TOKEN = tokenId(0xcafe);

function registration(workerId: string, seconds: number, overrides: Partial<WorkerRegistration> = {}): WorkerRegistration {
  return { workerId, pool: 'canary', channel: 'stable', platform: 'linux-x64', version: '1.0.0', at: at(seconds), ...overrides };
}

function heartbeat(workerId: string, seconds: number, overrides: Partial<WorkerHeartbeat> = {}): WorkerHeartbeat {
  return { workerId, pool: 'canary', version: '1.0.0', state: 'working', update: null, at: at(seconds), ...overrides };
}

/** A worker registered at 0 (or at `seenAt`, if earlier) whose last heartbeat, with `state` and `update`, was at `seenAt`. */
async function seenWorker(
  store: FleetStore,
  workerId: string,
  seenAt: number,
  overrides: Partial<Pick<WorkerRegistration, 'pool' | 'channel' | 'platform' | 'version'>> & Partial<Pick<WorkerHeartbeat, 'state' | 'update'>> = {},
): Promise<void> {
  const { state, update, ...place } = overrides;
  await store.registerWorker(registration(workerId, Math.min(0, seenAt), place));
  const result = await store.recordHeartbeat(
    heartbeat(workerId, seenAt, { pool: place.pool ?? 'canary', version: place.version ?? '1.0.0', state: state ?? 'working', update: update ?? null }),
  );
  assert.ok(result, `${workerId} is registered`);
}

function report(workerId: string, seconds: number, overrides: Partial<StoredReport> = {}): StoredReport {
  return {
    worker_id: workerId,
    event: 'failure',
    from_version: '1.0.0',
    to_version: '1.1.0',
    channel: 'stable',
    platform: 'linux-x64',
    reason: 'crashed_on_start',
    pool: 'canary',
    rolloutSerial: null,
    receivedAt: at(seconds),
    requestId: `req-${workerId}-${seconds}`,
    ...overrides,
  };
}

function token(id: string, overrides: Partial<TokenRecord> = {}): TokenRecord {
  return { id, role: 'worker', pool: 'canary', secretSha256: sha(1), label: null, createdAt: at(0), revokedAt: null, ...overrides };
}

function enrollmentToken(id: string, overrides: Partial<EnrollmentTokenRecord> = {}): EnrollmentTokenRecord {
  return { id, pool: 'canary', secretSha256: sha(2), label: null, maxUses: null, uses: 0, expiresAt: null, createdAt: at(0), createdBy: null, revokedAt: null, ...overrides };
}

function credential(id: string, workerId: string, overrides: Partial<CredentialRecord> = {}): CredentialRecord {
  return {
    id,
    workerId,
    pool: 'canary',
    secretSha256: sha(3),
    source: 'enroll',
    sourceTokenId: enrollmentId(1),
    createdAt: at(10),
    createdFrom: '192.0.2.1',
    revokedAt: null,
    revokedBy: null,
    ...overrides,
  };
}

/** A claim by the pool token (no enrollment token needed). */
function claimed(id: string, workerId: string, overrides: Partial<CredentialRecord> = {}): CredentialRecord {
  return credential(id, workerId, { source: 'claim', sourceTokenId: POOL_TOKEN, ...overrides });
}

function pending(id: string, workerId: string, replacesId: string, overrides: Partial<PendingCredentialRecord> = {}): PendingCredentialRecord {
  return { id, workerId, pool: 'canary', secretSha256: sha(4), replacesId, createdAt: at(20), createdFrom: '192.0.2.2', ...overrides };
}

const PLAN: RolloutPlan = {
  immediate: false,
  waves: [
    { pools: ['canary'], percent: 10, soak_s: 600, min_healthy: 2 },
    { pools: ['canary', 'edge'], percent: 50, soak_s: 3600, min_healthy: 5 },
    { pools: ['*'], percent: 100, soak_s: 0, min_healthy: 0 },
  ],
};
const IMMEDIATE: RolloutPlan = { immediate: true, waves: [{ pools: ['*'], percent: 100, soak_s: 0, min_healthy: 0 }] };

/** Manifest bytes with every byte value, so an encoding that is not byte-exact (text, UTF-8) shows. */
function manifestBytes(serial: number): Buffer {
  return Buffer.concat([Buffer.from(`{"serial":${serial}}\n`), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);
}

function rollout(serial: number, overrides: Partial<RolloutRecord> = {}): RolloutRecord {
  return {
    channel: 'stable',
    serial,
    version: `1.${serial}.0`,
    manifest: manifestBytes(serial),
    expiresAt: at(86_400),
    urgent: false,
    plan: PLAN,
    state: 'active',
    stateReason: null,
    stateChangedAt: at(0),
    stateChangedBy: null,
    failuresCountedFrom: at(0),
    wavesStarted: [at(0)],
    startedAt: at(0),
    ...overrides,
  };
}

function admission(workerId: string, serial: number, overrides: Partial<AdmissionRecord> = {}): AdmissionRecord {
  return { channel: 'stable', serial, workerId, pool: 'canary', wave: 0, forced: false, admittedAt: at(10), ...overrides };
}

function session(id: string, overrides: Partial<ConsoleSessionRecord> = {}): ConsoleSessionRecord {
  return { id, secretSha256: sha(5), tokenId: ADMIN, createdAt: at(0), expiresAt: at(3600), createdFrom: '198.51.100.7', endedAt: null, ...overrides };
}

async function rolloutOf(store: FleetStore, serial: number, channel = 'stable'): Promise<RolloutRecord | undefined> {
  return (await store.listRollouts(channel, 100)).find((r) => r.serial === serial);
}

const stores = new TestFleetStores();
after(() => stores.close());

for (const kind of STORE_KINDS) {
  describe(`fleet store conformance: ${kind}`, () => {
    // A PostgreSQL store holds a pool of connections and one listening connection: each test's
    // stores are closed after it, so that a run never nears the cluster's connection limit.
    // (TestFleetStores.close() closes them again at the end, which both stores take as a no-op.)
    const openedInTest: FleetStore[] = [];
    afterEach(async () => {
      for (const store of openedInTest.splice(0)) await store.close();
    });

    /** A store on a new, empty database. */
    async function fresh(): Promise<FleetStore> {
      const { store } = await stores.open(kind);
      openedInTest.push(store);
      return store;
    }
    /** Two stores on one new database: two replicas of the server. */
    async function replicas(): Promise<[FleetStore, FleetStore]> {
      const { store, location } = await stores.open(kind);
      const other = await stores.reopen(location);
      openedInTest.push(store, other);
      return [store, other];
    }

    describe('store', () => {
      test('kind names the implementation and ping resolves', async () => {
        const store = await fresh();
        assert.equal(store.kind, kind);
        await store.ping();
      });
    });

    describe('workers and heartbeats', () => {
      test('a registered worker reads back as registered: state starting, no update, seen at registration', async () => {
        const store = await fresh();
        await store.registerWorker(registration('w-1', 0, { pool: 'edge', channel: 'beta', platform: 'linux-arm64', version: '1.2.3' }));
        assert.deepEqual(asJson(await store.getWorker('w-1')), {
          worker_id: 'w-1',
          pool: 'edge',
          channel: 'beta',
          platform: 'linux-arm64',
          version: '1.2.3',
          state: 'starting',
          update: null,
          registered_at: iso(0),
          last_seen_at: iso(0),
        });
        assert.equal(await store.getWorker('w-2'), null);
      });

      test('re-registration takes the new pool, channel, platform and version and resets the state to starting', async () => {
        const store = await fresh();
        await store.registerWorker(registration('w-1', 0));
        await store.recordHeartbeat(heartbeat('w-1', 5, { state: 'draining' }));
        await store.registerWorker(registration('w-1', 10, { pool: 'edge', channel: 'beta', platform: 'windows-x64', version: '2.0.0' }));
        const row = await store.getWorker('w-1');
        // registered_at after a re-registration is left open by the interface; the rest is not.
        assert.deepEqual(
          { pool: row?.pool, channel: row?.channel, platform: row?.platform, version: row?.version, state: row?.state, last_seen_at: row?.last_seen_at },
          { pool: 'edge', channel: 'beta', platform: 'windows-x64', version: '2.0.0', state: 'starting', last_seen_at: iso(10) },
        );
        assert.deepEqual(
          asJson(await store.recordHeartbeat(heartbeat('w-1', 11, { pool: 'edge', version: '2.0.0' }))),
          { channel: 'beta', platform: 'windows-x64', admittedSerials: [], rotationRequested: false },
          'a heartbeat answers with the channel and platform of the latest registration',
        );
      });

      test('a heartbeat returns what its answer needs: the admissions on its channel (highest first) and a rotation request', async () => {
        const store = await fresh();
        await store.registerWorker(registration('w-1', 0, { channel: 'beta' }));
        for (const [channel, serial] of [['beta', 3], ['beta', 9], ['stable', 12], ['beta', 5]] as const) {
          await store.admitWorker({ channel, serial, workerId: 'w-1', pool: 'canary', wave: 0, forced: false, admittedAt: at(1) });
        }
        await store.claimCredential({
          id: hexId('c', 1),
          workerId: 'w-1',
          pool: 'canary',
          secretSha256: Buffer.alloc(32, 1),
          source: 'claim',
          sourceTokenId: hexId('a', 1),
          createdAt: at(1),
          createdFrom: null,
          revokedAt: null,
          revokedBy: null,
        });
        const before = await store.recordHeartbeat(heartbeat('w-1', 2));
        assert.deepEqual([before?.admittedSerials, before?.rotationRequested], [[9, 5, 3], false]);
        assert.equal(await store.requestRotation('w-1', { at: at(3), by: 'admin' }), true);
        const after = await store.recordHeartbeat(heartbeat('w-1', 4));
        assert.deepEqual([after?.admittedSerials, after?.rotationRequested], [[9, 5, 3], true]);
      });

      test('a heartbeat of an unknown worker returns null and creates no row', async () => {
        const store = await fresh();
        assert.equal(await store.recordHeartbeat(heartbeat('ghost', 1, { update: { to_version: '1.1.0', state: 'downloading' } })), null);
        assert.equal(await store.getWorker('ghost'), null);
        assert.equal((await store.fleetView({ workerLimit: 10, failureLimit: 10 })).total_workers, 0);
        assert.deepEqual(asJson(await store.searchWorkers({ limit: 10 })), { workers: [], total: 0 });
      });

      test('a heartbeat returns channel and platform and writes state, pool, version and last seen', async () => {
        const store = await fresh();
        await store.registerWorker(registration('w-1', 0, { channel: 'beta', platform: 'darwin-arm64' }));
        assert.deepEqual(asJson(await store.recordHeartbeat(heartbeat('w-1', 30, { state: 'idle' }))), {
          channel: 'beta',
          platform: 'darwin-arm64',
          admittedSerials: [],
          rotationRequested: false,
        });
        assert.deepEqual(
          asJson(await store.getWorker('w-1')),
          { worker_id: 'w-1', pool: 'canary', channel: 'beta', platform: 'darwin-arm64', version: '1.0.0', state: 'idle', update: null, registered_at: iso(0), last_seen_at: iso(30) },
        );
        // The worker moved pool (a new token) and updated itself.
        await store.recordHeartbeat(heartbeat('w-1', 60, { pool: 'edge', version: '1.1.0', state: 'draining' }));
        const row = await store.getWorker('w-1');
        assert.deepEqual([row?.pool, row?.version, row?.state, row?.last_seen_at, row?.registered_at], ['edge', '1.1.0', 'draining', iso(60), iso(0)]);
      });

      test('update progress round-trips: to_version, state, a fractional download_percent and reason', async () => {
        const store = await fresh();
        await store.registerWorker(registration('w-1', 0));
        await store.recordHeartbeat(heartbeat('w-1', 1, { update: { to_version: '1.1.0', state: 'downloading', download_percent: 37.5 } }));
        assert.deepEqual(asJson((await store.getWorker('w-1'))?.update), { to_version: '1.1.0', state: 'downloading', download_percent: 37.5, updated_at: iso(1) });
        await store.recordHeartbeat(heartbeat('w-1', 2, { update: { to_version: '1.1.0', state: 'failed', download_percent: 100, reason: 'checksum_mismatch' } }));
        assert.deepEqual(asJson((await store.getWorker('w-1'))?.update), {
          to_version: '1.1.0',
          state: 'failed',
          download_percent: 100,
          reason: 'checksum_mismatch',
          updated_at: iso(2),
        });
        // Fields the worker did not send are absent, not null.
        await store.recordHeartbeat(heartbeat('w-1', 3, { update: { to_version: '1.2.0', state: 'verifying' } }));
        assert.deepEqual(asJson((await store.getWorker('w-1'))?.update), { to_version: '1.2.0', state: 'verifying', updated_at: iso(3) });
      });

      test('update.updated_at is when the progress last changed: a repeat keeps it, any change of progress moves it', async () => {
        const store = await fresh();
        await store.registerWorker(registration('w-1', 0));
        const updatedAt = async () => (await store.getWorker('w-1'))?.update?.updated_at;
        const downloading: UpdateProgress = { to_version: '1.1.0', state: 'downloading', download_percent: 10 };
        await store.recordHeartbeat(heartbeat('w-1', 1, { update: downloading }));
        assert.equal(await updatedAt(), iso(1));
        await store.recordHeartbeat(heartbeat('w-1', 2, { update: { ...downloading } }));
        assert.equal(await updatedAt(), iso(1), 'the same progress again');
        await store.recordHeartbeat(heartbeat('w-1', 3, { state: 'idle', update: { ...downloading } }));
        assert.equal(await updatedAt(), iso(1), "the worker's own state is not update progress");
        assert.equal((await store.getWorker('w-1'))?.last_seen_at, iso(3));
        await store.recordHeartbeat(heartbeat('w-1', 3.5, { pool: 'edge', update: { ...downloading } }));
        assert.equal(await updatedAt(), iso(1), 'nor is its pool (a heartbeat that changes the row keeps the time too)');

        const steps: Array<[number, UpdateProgress, string]> = [
          [4, { ...downloading, download_percent: 60 }, 'download_percent changed'],
          [5, { to_version: '1.1.0', state: 'verifying' }, 'state changed, percent dropped'],
          [6, { to_version: '1.1.0', state: 'failed', reason: 'checksum_mismatch' }, 'failed with a reason'],
          [7, { to_version: '1.1.0', state: 'failed', reason: 'download_failed' }, 'only the reason changed'],
          [8, { to_version: '1.2.0', state: 'failed', reason: 'download_failed' }, 'only to_version changed'],
        ];
        for (const [seconds, update, why] of steps) {
          await store.recordHeartbeat(heartbeat('w-1', seconds, { update }));
          assert.equal(await updatedAt(), iso(seconds), why);
          await store.recordHeartbeat(heartbeat('w-1', seconds + 0.5, { update: { ...update } }));
          assert.equal(await updatedAt(), iso(seconds), `${why}, then repeated`);
        }
      });

      test('a heartbeat with update null clears the update; the next update starts its own time', async () => {
        const store = await fresh();
        await store.registerWorker(registration('w-1', 0));
        const update: UpdateProgress = { to_version: '1.1.0', state: 'watching' };
        await store.recordHeartbeat(heartbeat('w-1', 1, { update }));
        await store.recordHeartbeat(heartbeat('w-1', 2, { update: null }));
        assert.equal((await store.getWorker('w-1'))?.update, null);
        assert.deepEqual(asJson((await store.searchWorkers({ updateState: 'none', limit: 10 })).workers.map((w) => w.worker_id)), ['w-1']);
        await store.recordHeartbeat(heartbeat('w-1', 3, { update }));
        assert.deepEqual(asJson((await store.getWorker('w-1'))?.update), { ...update, updated_at: iso(3) });
      });

      test('last_seen_at moves with every heartbeat, registered_at does not', async () => {
        const store = await fresh();
        await store.registerWorker(registration('w-1', 0));
        for (const seconds of [1, 30, 61.25]) {
          await store.recordHeartbeat(heartbeat('w-1', seconds));
          const row = await store.getWorker('w-1');
          assert.deepEqual([row?.last_seen_at, row?.registered_at], [iso(seconds), iso(0)]);
        }
      });
    });

    describe('update reports', () => {
      test('workerEvents: one worker’s reports, newest first, at most `limit`, every field', async () => {
        const store = await fresh();
        await store.recordReport(report('w-1', 1, { event: 'attempt', reason: undefined, correlation_id: 'corr-1', duration_ms: 5 }));
        await store.recordReport(report('w-2', 2));
        await store.recordReport(report('w-1', 3, { event: 'failure', reason: 'health_check_failed', correlation_id: 'corr-1', pool: 'edge', platform: 'linux-arm64' }));
        await store.recordReport(report('w-1', 4, { event: 'rollback', from_version: '1.1.0', to_version: '1.0.0', channel: 'beta', rolloutSerial: 3 }));
        const event = (seconds: number, fields: object) => ({
          worker_id: 'w-1',
          pool: 'canary',
          event: 'failure',
          channel: 'stable',
          platform: 'linux-x64',
          from_version: '1.0.0',
          to_version: '1.1.0',
          reason: 'crashed_on_start',
          correlation_id: null,
          received_at: iso(seconds),
          ...fields,
        });
        const all = [
          event(4, { event: 'rollback', from_version: '1.1.0', to_version: '1.0.0', channel: 'beta' }),
          event(3, { reason: 'health_check_failed', correlation_id: 'corr-1', pool: 'edge', platform: 'linux-arm64' }),
          event(1, { event: 'attempt', reason: null, correlation_id: 'corr-1' }),
        ];
        assert.deepEqual(asJson(await store.workerEvents('w-1', 10)), all);
        assert.deepEqual(asJson(await store.workerEvents('w-1', 2)), all.slice(0, 2));
        assert.deepEqual(await store.workerEvents('nobody', 10), []);
      });

      test('recordReport stores a retried report (same worker, correlation id and event) once, through any replica; one without a correlation id always', async () => {
        const [store, other] = await replicas();
        const first = report('w-1', 1, { correlation_id: 'corr-1' });
        assert.equal(await store.recordReport(first), true);
        assert.equal(await store.recordReport({ ...first, receivedAt: at(2), requestId: 'req-again' }), false, 'a retry');
        assert.equal(await other.recordReport({ ...first, receivedAt: at(3), requestId: 'req-other' }), false, 'a retry through the other replica');
        assert.equal(await store.recordReport(report('w-1', 4, { correlation_id: 'corr-1', event: 'rollback' })), true, 'another event of the same update');
        assert.equal(await other.recordReport(report('w-2', 5, { correlation_id: 'corr-1' })), true, 'another worker');
        assert.equal(await store.recordReport(report('w-1', 6)), true);
        assert.equal(await store.recordReport(report('w-1', 6)), true, 'without a correlation id: always appended');
        assert.deepEqual((await store.workerEvents('w-1', 10)).map((e) => [e.received_at, e.event, e.correlation_id]), [
          [iso(6), 'failure', null],
          [iso(6), 'failure', null],
          [iso(4), 'rollback', 'corr-1'],
          [iso(1), 'failure', 'corr-1'],
        ]);
      });

      test('the same report sent concurrently, to one replica and to another, is stored once', async () => {
        const [store, other] = await replicas();
        for (let round = 1; round <= 3; round += 1) {
          const sent = report('w-1', round, { correlation_id: `corr-${round}` });
          const stored = await Promise.all([
            store.recordReport(sent),
            store.recordReport({ ...sent, requestId: 'req-b' }),
            other.recordReport({ ...sent, requestId: 'req-c' }),
            other.recordReport({ ...sent, requestId: 'req-d' }),
          ]);
          assert.equal(stored.filter((wrote) => wrote).length, 1, `round ${round}: ${stored.join(', ')}`);
        }
        assert.deepEqual((await store.workerEvents('w-1', 10)).map((e) => e.correlation_id), ['corr-3', 'corr-2', 'corr-1']);
      });

      test('rolloutReports: the channel and serial’s reports received since `since` (inclusive), in the order received', async () => {
        const store = await fresh();
        await store.recordReport(report('w-0', 9.999, { event: 'rollback', rolloutSerial: 2 }));
        await store.recordReport(report('w-1', 10, { rolloutSerial: 2 }));
        await store.recordReport(report('w-2', 11, { event: 'success', reason: undefined, rolloutSerial: 2 }));
        await store.recordReport(report('w-3', 12, { rolloutSerial: 1 }));
        await store.recordReport(report('w-4', 13, { channel: 'beta', rolloutSerial: 2 }));
        await store.recordReport(report('w-5', 14, { event: 'attempt', rolloutSerial: null }));
        await store.recordReport(report('w-1', 15, { event: 'rollback', reason: 'health_check_failed', rolloutSerial: 2 }));
        assert.deepEqual(asJson(await store.rolloutReports('stable', 2, at(10))), [
          { worker_id: 'w-1', event: 'failure', reason: 'crashed_on_start', received_at: iso(10) },
          { worker_id: 'w-2', event: 'success', reason: null, received_at: iso(11) },
          { worker_id: 'w-1', event: 'rollback', reason: 'health_check_failed', received_at: iso(15) },
        ]);
        assert.deepEqual(asJson(await store.rolloutReports('beta', 2, at(0))), [{ worker_id: 'w-4', event: 'failure', reason: 'crashed_on_start', received_at: iso(13) }]);
        assert.deepEqual(await store.rolloutReports('stable', 2, at(15.001)), []);
      });

      test('failureGroups: failures and rollbacks since `since` by event, reason, version and channel; counts; newest workers first; most reports first', async () => {
        const store = await fresh();
        const reports: StoredReport[] = [
          report('w-9', 5), // before `since`: would otherwise join the first group
          // failure / crashed_on_start / 1.1.0 / stable: 5 reports by w-1, w-2, w-3
          report('w-1', 10),
          report('w-2', 11),
          report('w-1', 12),
          report('w-3', 13),
          report('w-1', 14),
          // failure / no reason: 4 reports by w-4, w-5
          report('w-4', 15, { reason: undefined }),
          report('w-5', 16, { reason: undefined }),
          report('w-4', 17, { reason: undefined }),
          report('w-5', 18, { reason: undefined }),
          // rollback / crashed_on_start: 3 reports by w-2, w-6
          report('w-2', 19, { event: 'rollback' }),
          report('w-2', 20, { event: 'rollback' }),
          report('w-6', 21, { event: 'rollback' }),
          // another version: 2 reports by w-7
          report('w-7', 22, { to_version: '1.2.0' }),
          report('w-7', 23, { to_version: '1.2.0' }),
          // another channel: 1 report by w-8
          report('w-8', 24, { channel: 'beta' }),
          // not failures
          report('w-1', 25, { event: 'success', reason: undefined }),
          report('w-1', 26, { event: 'attempt', reason: undefined }),
        ];
        for (const r of reports) await store.recordReport(r);
        const group = (fields: object) => ({ event: 'failure', reason: 'crashed_on_start', to_version: '1.1.0', channel: 'stable', ...fields });
        assert.deepEqual(asJson(await store.failureGroups(at(10), 2)), [
          group({ reports: 5, workers: 3, worker_ids: ['w-1', 'w-3'], last_at: iso(14) }),
          group({ reason: null, reports: 4, workers: 2, worker_ids: ['w-5', 'w-4'], last_at: iso(18) }),
          group({ event: 'rollback', reports: 3, workers: 2, worker_ids: ['w-6', 'w-2'], last_at: iso(21) }),
          group({ to_version: '1.2.0', reports: 2, workers: 1, worker_ids: ['w-7'], last_at: iso(23) }),
          group({ channel: 'beta', reports: 1, workers: 1, worker_ids: ['w-8'], last_at: iso(24) }),
        ]);
        const wide = await store.failureGroups(at(10), 10);
        assert.deepEqual(asJson(wide[0]?.worker_ids), ['w-1', 'w-3', 'w-2']);
        assert.deepEqual(await store.failureGroups(at(24.001), 10), []);
      });
    });

    describe('fleet view', () => {
      test('fleetView: total, groups, most recently seen workers with their live credential time, newest failures and rollbacks, pools', async () => {
        const store = await fresh();
        await seenWorker(store, 'w-a', 5);
        await seenWorker(store, 'w-b', 6, { update: { to_version: '1.1.0', state: 'downloading', download_percent: 50 } });
        await store.registerWorker(registration('w-c', 2, { pool: 'edge', channel: 'beta', version: '1.1.0' }));
        assert.deepEqual(await store.claimCredential(claimed(credentialId(1), 'w-a', { createdAt: at(3) })), { claimed: true });
        assert.deepEqual(await store.claimCredential(claimed(credentialId(2), 'w-b', { createdAt: at(4) })), { claimed: true });
        assert.ok(await store.revokeWorkerCredential('w-b', { at: at(7), by: ADMIN }));

        await store.recordReport(report('w-a', 10, { event: 'attempt', reason: undefined }));
        await store.recordReport(report('w-a', 11));
        await store.recordReport(report('w-b', 12, { event: 'success', reason: undefined }));
        await store.recordReport(report('w-b', 13, { event: 'rollback', reason: 'health_check_failed', correlation_id: 'c-13' }));
        await store.recordReport(report('w-c', 14, { channel: 'beta', pool: 'edge' }));
        await store.setPoolPolicy('edge', { auto_update: false }, { at: at(20), byTokenId: ADMIN });
        await store.setPoolPolicy('canary', { auto_update: true, maintenance_windows: ['mon-fri 02:00-04:00 UTC'] }, { at: at(21), byTokenId: ADMIN });

        const view = await store.fleetView({ workerLimit: 2, failureLimit: 2 });
        assert.equal(view.total_workers, 3);
        assert.deepEqual(sorted(view.groups), sorted([
          { channel: 'stable', pool: 'canary', version: '1.0.0', state: 'working', count: 2 },
          { channel: 'beta', pool: 'edge', version: '1.1.0', state: 'starting', count: 1 },
        ]));
        const worker = (id: string, seen: number, fields: object) => ({
          worker_id: id, pool: 'canary', channel: 'stable', platform: 'linux-x64', version: '1.0.0', state: 'working', update: null,
          registered_at: iso(0), last_seen_at: iso(seen), ...fields,
        });
        assert.deepEqual(asJson(view.workers), [
          worker('w-b', 6, { update: { to_version: '1.1.0', state: 'downloading', download_percent: 50, updated_at: iso(6) }, credential_created_at: null }),
          worker('w-a', 5, { credential_created_at: iso(3) }),
        ]);
        const failure = (id: string, seconds: number, fields: object) => ({
          worker_id: id, pool: 'canary', event: 'failure', channel: 'stable', platform: 'linux-x64', from_version: '1.0.0', to_version: '1.1.0',
          reason: 'crashed_on_start', correlation_id: null, received_at: iso(seconds), ...fields,
        });
        assert.deepEqual(asJson(view.recent_failures), [
          failure('w-c', 14, { channel: 'beta', pool: 'edge' }),
          failure('w-b', 13, { event: 'rollback', reason: 'health_check_failed', correlation_id: 'c-13' }),
        ]);
        assert.deepEqual(sorted(view.pools), sorted([
          { pool: 'canary', auto_update: true, updated_at: iso(21) },
          { pool: 'edge', auto_update: false, updated_at: iso(20) },
        ]));

        const wide = await store.fleetView({ workerLimit: 10, failureLimit: 10 });
        assert.deepEqual(wide.workers.map((w) => [w.worker_id, w.credential_created_at]), [['w-b', null], ['w-a', iso(3)], ['w-c', null]]);
        assert.deepEqual(wide.recent_failures.map((f) => f.received_at), [iso(14), iso(13), iso(11)], 'only failures and rollbacks');
      });

      test('fleetView of an empty database', async () => {
        const store = await fresh();
        assert.deepEqual(asJson(await store.fleetView({ workerLimit: 10, failureLimit: 10 })), { total_workers: 0, groups: [], workers: [], recent_failures: [], pools: [] });
      });
    });

    describe('live workers and counts', () => {
      test('liveWorkers, livePools, workerChannels and workerCounts: seen at or after `seenSince`', async () => {
        const store = await fresh();
        await seenWorker(store, 'w-old', 99.999);
        await seenWorker(store, 'w-edge', 100, { pool: 'edge' });
        await seenWorker(store, 'w-new', 150, { version: '1.1.0', platform: 'linux-arm64' });
        await seenWorker(store, 'w-new2', 160, { version: '1.1.0' });
        await seenWorker(store, 'w-beta', 150, { channel: 'beta' });

        assert.deepEqual(sorted(await store.liveWorkers('stable', at(100))), sorted([
          { id: 'w-edge', pool: 'edge', version: '1.0.0', platform: 'linux-x64' },
          { id: 'w-new', pool: 'canary', version: '1.1.0', platform: 'linux-arm64' },
          { id: 'w-new2', pool: 'canary', version: '1.1.0', platform: 'linux-x64' },
        ]));
        assert.deepEqual(await store.liveWorkers('stable', at(160.001)), []);
        assert.deepEqual(sorted(await store.livePools('stable', at(100))), ['canary', 'edge']);
        assert.deepEqual(await store.livePools('stable', at(150.001)), ['canary']);
        assert.deepEqual(await store.livePools('gamma', at(0)), []);
        assert.deepEqual(sorted(await store.workerChannels()), ['beta', 'stable'], 'every channel, live or not, once');
        assert.deepEqual(sorted(await store.workerCounts(at(100))), sorted([
          { channel: 'stable', pool: 'edge', version: '1.0.0', count: 1 },
          { channel: 'stable', pool: 'canary', version: '1.1.0', count: 2 },
          { channel: 'beta', pool: 'canary', version: '1.0.0', count: 1 },
        ]));
      });

      test('workerStateCounts: live workers by channel, version, state and update state (null when none)', async () => {
        const store = await fresh();
        const downloading: UpdateProgress = { to_version: '1.1.0', state: 'downloading', download_percent: 5 };
        await seenWorker(store, 'a', 150);
        await seenWorker(store, 'b', 100);
        await seenWorker(store, 'c', 150, { update: downloading });
        await seenWorker(store, 'd', 150, { state: 'idle', update: { ...downloading, download_percent: 90 } });
        await store.registerWorker(registration('e', 150, { channel: 'beta', version: '1.1.0' }));
        await seenWorker(store, 'f', 99.999);
        assert.deepEqual(sorted(await store.workerStateCounts(at(100))), sorted([
          { channel: 'stable', version: '1.0.0', state: 'working', update_state: null, count: 2 },
          { channel: 'stable', version: '1.0.0', state: 'working', update_state: 'downloading', count: 1 },
          { channel: 'stable', version: '1.0.0', state: 'idle', update_state: 'downloading', count: 1 },
          { channel: 'beta', version: '1.1.0', state: 'starting', update_state: null, count: 1 },
        ]));
      });

      test('unseenWorkerCounts: last seen in [seenSince, seenBefore), by channel and pool', async () => {
        const store = await fresh();
        await seenWorker(store, 'u1', 100);
        await seenWorker(store, 'u2', 150);
        await seenWorker(store, 'u3', 199.999, { pool: 'edge' });
        await seenWorker(store, 'u4', 200);
        await seenWorker(store, 'u5', 99.999);
        await seenWorker(store, 'u6', 120, { channel: 'beta' });
        assert.deepEqual(sorted(await store.unseenWorkerCounts(at(100), at(200))), sorted([
          { channel: 'stable', pool: 'canary', count: 2 },
          { channel: 'stable', pool: 'edge', count: 1 },
          { channel: 'beta', pool: 'canary', count: 1 },
        ]));
        assert.deepEqual(await store.unseenWorkerCounts(at(300), at(400)), []);
      });

      test('stalledUpdateCounts: live workers whose update has stayed in one of `states` since before `updateBefore`', async () => {
        const store = await fresh();
        /** A worker whose progress started at `since` and was repeated until `seen`. */
        async function stuck(workerId: string, update: UpdateProgress | null, since: number, seen: number, channel = 'stable') {
          await store.registerWorker(registration(workerId, 0, { channel }));
          await store.recordHeartbeat(heartbeat(workerId, since, { update }));
          await store.recordHeartbeat(heartbeat(workerId, seen, { update }));
        }
        const downloading: UpdateProgress = { to_version: '1.1.0', state: 'downloading', download_percent: 10 };
        await stuck('s1', downloading, 10, 200);
        await stuck('s2', downloading, 49.999, 200);
        await stuck('s3', downloading, 50, 200); // not before updateBefore
        await stuck('s4', { to_version: '1.1.0', state: 'verifying' }, 10, 200);
        await stuck('s5', { to_version: '1.1.0', state: 'completed' }, 10, 200);
        await stuck('s6', downloading, 10, 99.999); // not seen since
        await stuck('s7', null, 10, 200);
        await stuck('s8', downloading, 10, 200, 'beta');
        assert.deepEqual(sorted(await store.stalledUpdateCounts(at(100), at(50), ['downloading', 'verifying'])), sorted([
          { channel: 'stable', update_state: 'downloading', count: 2 },
          { channel: 'stable', update_state: 'verifying', count: 1 },
          { channel: 'beta', update_state: 'downloading', count: 1 },
        ]));
        assert.deepEqual(asJson(await store.stalledUpdateCounts(at(100), at(50), ['completed'])), [{ channel: 'stable', update_state: 'completed', count: 1 }]);
        assert.deepEqual(await store.stalledUpdateCounts(at(100), at(50), []), []);
      });
    });

    describe('pool policies', () => {
      test('a pool policy is null until set, round-trips with and without maintenance windows, and an overwrite replaces it', async () => {
        const store = await fresh();
        assert.equal(await store.getPoolPolicy('canary'), null);
        await store.setPoolPolicy('canary', { auto_update: false }, { at: at(1), byTokenId: ADMIN });
        assert.deepEqual(asJson(await store.getPoolPolicy('canary')), { auto_update: false });
        const windows = ['sat,sun 01:00-05:00 Europe/Berlin', 'mon-fri 22:00-23:30 UTC'];
        await store.setPoolPolicy('canary', { auto_update: true, maintenance_windows: windows }, { at: at(2), byTokenId: ADMIN });
        assert.deepEqual(asJson(await store.getPoolPolicy('canary')), { auto_update: true, maintenance_windows: windows }, 'windows in the order given');
        await store.setPoolPolicy('canary', { auto_update: true }, { at: at(3), byTokenId: ADMIN });
        assert.deepEqual(asJson(await store.getPoolPolicy('canary')), { auto_update: true }, 'the windows are gone with the overwrite');
        assert.equal(await store.getPoolPolicy('edge'), null);
      });

      test('listPoolPolicies: every pool, by pool name, with the time of its last change', async () => {
        const store = await fresh();
        assert.deepEqual(await store.listPoolPolicies(), []);
        await store.setPoolPolicy('stable', { auto_update: true }, { at: at(1), byTokenId: ADMIN });
        await store.setPoolPolicy('canary', { auto_update: false, maintenance_windows: ['mon 00:00-01:00 UTC'] }, { at: at(2), byTokenId: ADMIN });
        await store.setPoolPolicy('edge', { auto_update: true }, { at: at(3), byTokenId: ADMIN });
        await store.setPoolPolicy('stable', { auto_update: false }, { at: at(4), byTokenId: tokenId(2) });
        assert.deepEqual(asJson(await store.listPoolPolicies()), [
          { pool: 'canary', policy: { auto_update: false, maintenance_windows: ['mon 00:00-01:00 UTC'] }, updated_at: iso(2) },
          { pool: 'edge', policy: { auto_update: true }, updated_at: iso(3) },
          { pool: 'stable', policy: { auto_update: false }, updated_at: iso(4) },
        ]);
      });

      test('a pool policy changed through another replica is seen within a bounded time', async () => {
        const [store, other] = await replicas();
        await store.setPoolPolicy('canary', { auto_update: true }, { at: at(1), byTokenId: ADMIN });
        assert.deepEqual(asJson(await store.getPoolPolicy('canary')), { auto_update: true }, 'now cached');
        assert.equal(await store.getPoolPolicy('edge'), null, 'an unknown pool, cached too');
        await other.setPoolPolicy('canary', { auto_update: false, maintenance_windows: ['sun 03:00-04:00 UTC'] }, { at: at(2), byTokenId: ADMIN });
        await other.setPoolPolicy('edge', { auto_update: false }, { at: at(2), byTokenId: ADMIN });
        await until('the first replica to see the canary policy change', async () => (await store.getPoolPolicy('canary'))?.auto_update === false, CROSS_REPLICA_MS, 20);
        assert.deepEqual(asJson(await store.getPoolPolicy('canary')), { auto_update: false, maintenance_windows: ['sun 03:00-04:00 UTC'] });
        await until('the first replica to see the new edge policy', async () => (await store.getPoolPolicy('edge')) !== null, CROSS_REPLICA_MS, 20);
      });
    });

    describe('rollouts', () => {
      test('createRollout is true once; the same channel and serial again is false and leaves the first untouched', async () => {
        const store = await fresh();
        const first = rollout(3);
        assert.equal(await store.createRollout(first), true);
        assert.equal(await store.createRollout(rollout(3, { version: '9.9.9', manifest: Buffer.from('other'), state: 'paused', urgent: true, plan: IMMEDIATE })), false);
        assert.deepEqual(await store.listRollouts('stable', 10), [first]);
        assert.equal(await store.createRollout(rollout(3, { channel: 'beta' })), true, 'the same serial on another channel is another rollout');
      });

      test('a rollout round-trips exactly: manifest bytes, plan, flags, dates and started waves', async () => {
        const store = await fresh();
        const record = rollout(7, {
          urgent: true,
          plan: PLAN,
          state: 'paused',
          stateReason: 'held for the weekend',
          stateChangedAt: at(30),
          stateChangedBy: ADMIN,
          failuresCountedFrom: at(20),
          wavesStarted: [at(0), at(600.5)],
          startedAt: at(-5),
          expiresAt: at(7 * 86_400),
        });
        await store.createRollout(record);
        const [read] = await store.listRollouts('stable', 1);
        assert.ok(read && Buffer.isBuffer(read.manifest), 'the manifest is a Buffer');
        assert.ok(read.manifest.equals(manifestBytes(7)), 'the manifest bytes are exactly those stored');
        assert.deepEqual(read, record);
      });

      test('listRollouts: the channel’s rollouts, newest serial first (numerically), at most `limit`', async () => {
        const store = await fresh();
        for (const serial of [2, 10, 9]) await store.createRollout(rollout(serial));
        await store.createRollout(rollout(11, { channel: 'beta' }));
        assert.deepEqual((await store.listRollouts('stable', 10)).map((r) => r.serial), [10, 9, 2]);
        assert.deepEqual((await store.listRollouts('stable', 2)).map((r) => r.serial), [10, 9]);
        assert.deepEqual((await store.listRollouts('beta', 10)).map((r) => [r.channel, r.serial]), [['beta', 11]]);
        assert.deepEqual(await store.listRollouts('gamma', 10), []);
      });

      test('rolloutChannels: each channel with a rollout in one of `states`, once', async () => {
        const store = await fresh();
        await store.createRollout(rollout(1));
        await store.createRollout(rollout(2, { state: 'completed' }));
        await store.createRollout(rollout(3, { state: 'active' }));
        await store.createRollout(rollout(1, { channel: 'beta', state: 'paused' }));
        await store.createRollout(rollout(1, { channel: 'edge', state: 'completed' }));
        assert.deepEqual(await store.rolloutChannels(['active']), ['stable']);
        assert.deepEqual(sorted(await store.rolloutChannels(['active', 'paused'])), ['beta', 'stable']);
        assert.deepEqual(sorted(await store.rolloutChannels(['completed'])), ['edge', 'stable']);
        assert.deepEqual(await store.rolloutChannels(['halted', 'aborted']), []);
        assert.deepEqual(await store.rolloutChannels([]), []);
      });

      test('setRolloutState changes only from the given states and records reason, by and at; a resume restarts the failure count', async () => {
        const store = await fresh();
        const original = rollout(1);
        await store.createRollout(original);
        assert.equal(await store.setRolloutState('stable', 1, ['paused'], { state: 'active', reason: 'x', by: ADMIN, at: at(5) }), false, 'it is not paused');
        assert.deepEqual(await rolloutOf(store, 1), original, 'a refused change changes nothing');

        assert.equal(await store.setRolloutState('stable', 1, ['active'], { state: 'paused', reason: 'operator pause', by: ADMIN, at: at(10) }), true);
        const paused = { ...original, state: 'paused' as const, stateReason: 'operator pause', stateChangedBy: ADMIN, stateChangedAt: at(10) };
        assert.deepEqual(await rolloutOf(store, 1), paused, 'without restartFailureCount, failuresCountedFrom stays');

        assert.equal(await store.setRolloutState('stable', 1, ['paused', 'halted'], { state: 'active', reason: null, by: null, at: at(20), restartFailureCount: true }), true);
        assert.deepEqual(await rolloutOf(store, 1), { ...original, stateChangedAt: at(20), failuresCountedFrom: at(20) });

        assert.equal(await store.setRolloutState('stable', 1, ['active'], { state: 'halted', reason: 'failure rate', by: 'automatic', at: at(30), restartFailureCount: false }), true);
        assert.deepEqual((await rolloutOf(store, 1))?.failuresCountedFrom, at(20));
        assert.equal(await store.setRolloutState('stable', 2, ['active', 'halted'], { state: 'aborted', reason: null, by: ADMIN, at: at(40) }), false, 'no such rollout');
        assert.equal(await store.setRolloutState('beta', 1, ['halted'], { state: 'aborted', reason: null, by: ADMIN, at: at(40) }), false, 'no such rollout on that channel');
        assert.equal((await rolloutOf(store, 1))?.state, 'halted');
      });

      test('startRolloutWave records only the next wave, and only while the rollout is active', async () => {
        const store = await fresh();
        await store.createRollout(rollout(1, { wavesStarted: [at(0)] }));
        assert.equal(await store.startRolloutWave('stable', 1, 2, at(5)), false, 'wave 1 has not started');
        assert.equal(await store.startRolloutWave('stable', 1, 0, at(5)), false, 'wave 0 has started');
        assert.equal(await store.startRolloutWave('stable', 1, 1, at(10)), true);
        assert.equal(await store.startRolloutWave('stable', 1, 1, at(11)), false, 'twice');
        assert.deepEqual((await rolloutOf(store, 1))?.wavesStarted, [at(0), at(10)]);

        await store.setRolloutState('stable', 1, ['active'], { state: 'paused', reason: null, by: ADMIN, at: at(15) });
        assert.equal(await store.startRolloutWave('stable', 1, 2, at(20)), false, 'paused');
        await store.setRolloutState('stable', 1, ['paused'], { state: 'active', reason: null, by: ADMIN, at: at(25) });
        assert.equal(await store.startRolloutWave('stable', 1, 2, at(30)), true);
        assert.deepEqual((await rolloutOf(store, 1))?.wavesStarted, [at(0), at(10), at(30)]);
        assert.equal(await store.startRolloutWave('stable', 9, 0, at(30)), false, 'no such rollout');
        assert.equal(await store.startRolloutWave('beta', 1, 1, at(30)), false, 'no such rollout on that channel');
      });

      test('rolloutEpoch is a number that changes after createRollout, setRolloutState and startRolloutWave', async () => {
        const store = await fresh();
        const epochs = [await store.rolloutEpoch()];
        await store.createRollout(rollout(1));
        epochs.push(await store.rolloutEpoch());
        await store.setRolloutState('stable', 1, ['active'], { state: 'paused', reason: null, by: ADMIN, at: at(1) });
        epochs.push(await store.rolloutEpoch());
        await store.setRolloutState('stable', 1, ['paused'], { state: 'active', reason: null, by: ADMIN, at: at(2) });
        epochs.push(await store.rolloutEpoch());
        await store.startRolloutWave('stable', 1, 1, at(3));
        epochs.push(await store.rolloutEpoch());
        for (const epoch of epochs) assert.equal(typeof epoch, 'number');
        for (let i = 1; i < epochs.length; i += 1) assert.notEqual(epochs[i], epochs[i - 1], `change ${i}: ${epochs.join(', ')}`);
      });

      test('rolloutEpoch changes for a change made through another replica, which sees the rollout at once', async () => {
        const [store, other] = await replicas();
        let seen = await store.rolloutEpoch();
        /** Waits until `store`'s epoch differs from the last one it saw. */
        const epochMoves = async (what: string) => {
          seen = await until(`the epoch to change after ${what} through the other replica`, async () => {
            const epoch = await store.rolloutEpoch();
            return epoch !== seen ? { epoch } : null;
          }, CROSS_REPLICA_MS, 20).then((found) => found.epoch);
        };
        assert.equal(await other.createRollout(rollout(1)), true);
        await epochMoves('createRollout');
        assert.deepEqual(await store.listRollouts('stable', 10), [rollout(1)], 'the rollout itself is read from the database');
        assert.equal(await store.createRollout(rollout(1)), false, 'the other replica created it first');
        assert.equal(await other.setRolloutState('stable', 1, ['active'], { state: 'halted', reason: 'r', by: 'automatic', at: at(5) }), true);
        await epochMoves('setRolloutState');
        assert.equal((await rolloutOf(store, 1))?.state, 'halted');
        assert.equal(await other.setRolloutState('stable', 1, ['halted'], { state: 'active', reason: null, by: ADMIN, at: at(6) }), true);
        await epochMoves('resume');
        assert.equal(await other.startRolloutWave('stable', 1, 1, at(7)), true);
        await epochMoves('startRolloutWave');
        assert.deepEqual((await rolloutOf(store, 1))?.wavesStarted, [at(0), at(7)]);
      });

      test('admitWorker keeps a worker’s first admission to a rollout; rolloutAdmissions lists that rollout’s', async () => {
        const store = await fresh();
        await store.createRollout(rollout(2));
        await store.createRollout(rollout(3));
        const first = admission('w-1', 2, { wave: 0, admittedAt: at(10) });
        await store.admitWorker(first);
        await store.admitWorker(admission('w-1', 2, { wave: 1, pool: 'edge', forced: true, admittedAt: at(20) }));
        const forced = admission('w-2', 2, { wave: -1, forced: true, pool: 'edge', admittedAt: at(11) });
        await store.admitWorker(forced);
        await store.admitWorker(admission('w-3', 3));
        const byWorker = (rows: AdmissionRecord[]) => [...rows].sort((a, b) => a.workerId.localeCompare(b.workerId));
        assert.deepEqual(byWorker(await store.rolloutAdmissions('stable', 2)), [first, forced]);
        assert.deepEqual(await store.rolloutAdmissions('stable', 3), [admission('w-3', 3)]);
        assert.deepEqual(await store.rolloutAdmissions('beta', 2), []);
      });

      test('workerAdmittedSerials: the serials a worker was admitted to on a channel, highest first', async () => {
        const store = await fresh();
        for (const serial of [2, 10, 3]) {
          await store.createRollout(rollout(serial));
          await store.admitWorker(admission('w-1', serial));
        }
        await store.createRollout(rollout(5, { channel: 'beta' }));
        await store.admitWorker(admission('w-1', 5, { channel: 'beta' }));
        await store.admitWorker(admission('w-2', 3));
        assert.deepEqual(await store.workerAdmittedSerials('w-1', 'stable'), [10, 3, 2]);
        assert.deepEqual(await store.workerAdmittedSerials('w-1', 'beta'), [5]);
        assert.deepEqual(await store.workerAdmittedSerials('w-9', 'stable'), []);
      });

      test('liveAdmittedWorkers: the rollout’s admitted workers seen at or after `seenSince`', async () => {
        const store = await fresh();
        await store.createRollout(rollout(1));
        await store.createRollout(rollout(2));
        await seenWorker(store, 'w-live', 100);
        await seenWorker(store, 'w-gone', 99.999);
        await seenWorker(store, 'w-other', 150);
        await seenWorker(store, 'w-unadmitted', 150);
        await store.admitWorker(admission('w-live', 1));
        await store.admitWorker(admission('w-gone', 1));
        await store.admitWorker(admission('w-other', 2));
        assert.deepEqual(await store.liveAdmittedWorkers('stable', 1, at(100)), ['w-live']);
        assert.deepEqual(sorted(await store.liveAdmittedWorkers('stable', 1, at(0))), ['w-gone', 'w-live']);
        assert.deepEqual(await store.liveAdmittedWorkers('stable', 2, at(100)), ['w-other']);
        assert.deepEqual(await store.liveAdmittedWorkers('stable', 3, at(0)), []);
      });

      test('channel plans: null until set, round-trip, overwrite, per channel', async () => {
        const store = await fresh();
        assert.equal(await store.getChannelPlan('stable'), null);
        await store.setChannelPlan('stable', PLAN, { at: at(1), byTokenId: ADMIN });
        assert.deepEqual(await store.getChannelPlan('stable'), PLAN);
        await store.setChannelPlan('stable', IMMEDIATE, { at: at(2), byTokenId: ADMIN });
        assert.deepEqual(await store.getChannelPlan('stable'), IMMEDIATE);
        assert.equal(await store.getChannelPlan('beta'), null);
      });
    });

    describe('served serials', () => {
      test('highestServedSerial is null at first; raiseServedSerial only raises, numerically, per channel', async () => {
        const store = await fresh();
        assert.equal(await store.highestServedSerial('stable'), null);
        await store.raiseServedSerial('stable', 5, at(1));
        assert.equal(await store.highestServedSerial('stable'), 5);
        await store.raiseServedSerial('stable', 3, at(2));
        assert.equal(await store.highestServedSerial('stable'), 5, 'a lower serial leaves it');
        await store.raiseServedSerial('stable', 5, at(3));
        assert.equal(await store.highestServedSerial('stable'), 5);
        await store.raiseServedSerial('stable', 12, at(4));
        assert.equal(await store.highestServedSerial('stable'), 12, '12 > 5 as numbers');
        assert.equal(await store.highestServedSerial('beta'), null);
      });
    });

    describe('tokens', () => {
      test('createToken, findToken exactly, listTokens, revokeToken once', async () => {
        const store = await fresh();
        const admin = token(ADMIN, { role: 'admin', pool: null, label: 'ops laptop', secretSha256: sha(7), createdAt: at(1) });
        const worker = token(tokenId(1), { createdAt: at(2) });
        await store.createToken(admin);
        await store.createToken(worker);
        assert.deepEqual(await store.findToken(ADMIN), admin);
        assert.deepEqual(await store.findToken(tokenId(1)), worker);
        assert.equal(await store.findToken(tokenId(2)), null);
        const byId = (rows: TokenRecord[]) => [...rows].sort((a, b) => a.id.localeCompare(b.id));
        assert.deepEqual(byId(await store.listTokens()), byId([admin, worker]));

        assert.equal(await store.revokeToken(tokenId(1), at(50)), true);
        assert.equal(await store.revokeToken(tokenId(1), at(60)), false, 'already revoked');
        assert.equal(await store.revokeToken(tokenId(2), at(60)), false, 'no such token');
        assert.deepEqual(await store.findToken(tokenId(1)), { ...worker, revokedAt: at(50) });
        assert.deepEqual(byId(await store.listTokens()), byId([admin, { ...worker, revokedAt: at(50) }]));
      });

      test('a token revoked, or created, through another replica is seen by the first within a bounded time', async () => {
        const [store, other] = await replicas();
        await store.createToken(token(tokenId(1)));
        assert.equal((await store.findToken(tokenId(1)))?.revokedAt, null, 'now cached as live');
        assert.equal(await store.findToken(tokenId(2)), null, 'now cached as unknown');
        assert.equal((await other.findToken(tokenId(1)))?.revokedAt, null);

        assert.equal(await other.revokeToken(tokenId(1), at(30)), true);
        const revoked = await until('the first replica to see the revocation', async () => {
          const found = await store.findToken(tokenId(1));
          return found?.revokedAt ? found : null;
        }, CROSS_REPLICA_MS, 20);
        assert.deepEqual(revoked, token(tokenId(1), { revokedAt: at(30) }));
        assert.equal(await store.revokeToken(tokenId(1), at(31)), false, 'already revoked, by the other replica');

        await other.createToken(token(tokenId(2), { pool: 'edge' }));
        const created = await until('the first replica to see the new token', () => store.findToken(tokenId(2)), CROSS_REPLICA_MS, 20);
        assert.equal(created.pool, 'edge');
      });
    });

    describe('enrollment', () => {
      test('enrollment tokens: create, find exactly, list, revoke once', async () => {
        const store = await fresh();
        const limited = enrollmentToken(enrollmentId(1), { label: 'rack 4', maxUses: 3, expiresAt: at(3600), createdBy: ADMIN, secretSha256: sha(9), createdAt: at(1) });
        const open = enrollmentToken(enrollmentId(2), { createdAt: at(2) });
        await store.createEnrollmentToken(limited);
        await store.createEnrollmentToken(open);
        assert.deepEqual(await store.findEnrollmentToken(enrollmentId(1)), limited);
        assert.deepEqual(await store.findEnrollmentToken(enrollmentId(2)), open);
        assert.equal(await store.findEnrollmentToken(enrollmentId(3)), null);
        const byId = (rows: EnrollmentTokenRecord[]) => [...rows].sort((a, b) => a.id.localeCompare(b.id));
        assert.deepEqual(byId(await store.listEnrollmentTokens()), [limited, open]);
        assert.equal(await store.revokeEnrollmentToken(enrollmentId(2), at(5)), true);
        assert.equal(await store.revokeEnrollmentToken(enrollmentId(2), at(6)), false, 'already revoked');
        assert.equal(await store.revokeEnrollmentToken(enrollmentId(3), at(6)), false, 'no such token');
        assert.deepEqual(await store.findEnrollmentToken(enrollmentId(2)), { ...open, revokedAt: at(5) });
      });

      test('enrollWorker refusals: invalid, revoked (before expired before used up), expired at its expiry, used up; none spends a use or stores a credential', async () => {
        const store = await fresh();
        await store.createEnrollmentToken(enrollmentToken(enrollmentId(1), { maxUses: 1, uses: 1, expiresAt: at(5), revokedAt: at(1) }));
        await store.createEnrollmentToken(enrollmentToken(enrollmentId(2), { maxUses: 1, uses: 1, expiresAt: at(100) }));
        await store.createEnrollmentToken(enrollmentToken(enrollmentId(3), { maxUses: 2, uses: 2 }));
        const attempt = (n: number, token: number, seconds = 100) => store.enrollWorker(credential(credentialId(n), `w-${n}`, { sourceTokenId: enrollmentId(token), createdAt: at(seconds) }));
        assert.deepEqual(await attempt(1, 9), { kind: 'refused', code: 'invalid_enrollment_token' });
        assert.deepEqual(await attempt(2, 1), { kind: 'refused', code: 'enrollment_token_revoked' });
        assert.deepEqual(await attempt(3, 2, 100), { kind: 'refused', code: 'enrollment_token_expired' }, 'expired at its expiry instant, and expiry beats used up');
        assert.deepEqual(await attempt(4, 3), { kind: 'refused', code: 'enrollment_token_used_up' });
        for (const n of [1, 2, 3, 4]) assert.equal(await store.findCredential(credentialId(n)), null);
        assert.equal((await store.findEnrollmentToken(enrollmentId(2)))?.uses, 1);
        assert.equal((await store.findEnrollmentToken(enrollmentId(3)))?.uses, 2);
      });

      test('enrollWorker: enrolled counts a use; a worker with a live credential is already_enrolled (no use spent); the last use then refuses', async () => {
        const store = await fresh();
        await store.createEnrollmentToken(enrollmentToken(enrollmentId(1), { maxUses: 2, expiresAt: at(100) }));
        const first = credential(credentialId(1), 'w-1', { createdAt: at(99.999) });
        assert.deepEqual(await store.enrollWorker(first), { kind: 'enrolled' }, 'just before expiry');
        assert.deepEqual(await store.findCredential(credentialId(1)), first);
        assert.equal((await store.findEnrollmentToken(enrollmentId(1)))?.uses, 1);

        assert.deepEqual(await store.enrollWorker(credential(credentialId(2), 'w-1', { createdAt: at(50) })), { kind: 'already_enrolled', existing: first });
        assert.equal(await store.findCredential(credentialId(2)), null);
        assert.equal((await store.findEnrollmentToken(enrollmentId(1)))?.uses, 1, 'a refused enrollment spends no use');

        assert.deepEqual(await store.enrollWorker(credential(credentialId(3), 'w-2', { createdAt: at(50) })), { kind: 'enrolled' });
        assert.equal((await store.findEnrollmentToken(enrollmentId(1)))?.uses, 2);
        assert.deepEqual(await store.enrollWorker(credential(credentialId(4), 'w-3', { createdAt: at(50) })), { kind: 'refused', code: 'enrollment_token_used_up' });
        assert.equal(await store.findCredential(credentialId(4)), null);

        // Revoked, a worker id may enroll again (with a token that has uses left).
        await store.createEnrollmentToken(enrollmentToken(enrollmentId(2)));
        assert.ok(await store.revokeWorkerCredential('w-1', { at: at(60), by: ADMIN }));
        assert.deepEqual(await store.enrollWorker(credential(credentialId(5), 'w-1', { sourceTokenId: enrollmentId(2), createdAt: at(70) })), { kind: 'enrolled' });
        assert.equal((await store.findEnrollmentToken(enrollmentId(2)))?.uses, 1, 'an unlimited token still counts its uses');
      });

      /** Two enrollments for the last use of fresh tokens, `rounds` times: exactly one wins each time. */
      async function raceForLastUse(first: FleetStore, second: FleetStore, rounds: number): Promise<void> {
        for (let round = 1; round <= rounds; round += 1) {
          const tokenIdOfRound = enrollmentId(round);
          await first.createEnrollmentToken(enrollmentToken(tokenIdOfRound, { maxUses: 3, uses: 2 }));
          const a = credential(credentialId(round * 2), `w-a-${round}`, { sourceTokenId: tokenIdOfRound });
          const b = credential(credentialId(round * 2 + 1), `w-b-${round}`, { sourceTokenId: tokenIdOfRound });
          const outcomes = await Promise.all([first.enrollWorker(a), second.enrollWorker(b)]);
          const kinds = outcomes.map((o) => (o.kind === 'refused' ? o.code : o.kind)).sort();
          assert.deepEqual(kinds, ['enrolled', 'enrollment_token_used_up'], `round ${round}`);
          assert.equal((await first.findEnrollmentToken(tokenIdOfRound))?.uses, 3, `round ${round}: the use is counted once`);
          const stored = [await first.findCredential(a.id), await first.findCredential(b.id)].filter((c) => c !== null);
          assert.equal(stored.length, 1, `round ${round}: one credential stored`);
        }
      }

      test('two enrollments racing for a token’s last use on one store: exactly one wins', async () => {
        const store = await fresh();
        await raceForLastUse(store, store, 5);
      });

      test('two enrollments racing for a token’s last use through two replicas: exactly one wins', async () => {
        const [store, other] = await replicas();
        await raceForLastUse(store, other, 5);
      });

      test('two enrollments of one worker id racing through two replicas: one enrolled, the other already_enrolled, one use spent', async () => {
        const [store, other] = await replicas();
        await store.createEnrollmentToken(enrollmentToken(enrollmentId(1)));
        for (let round = 1; round <= 3; round += 1) {
          const workerId = `w-${round}`;
          const a = credential(credentialId(round * 2), workerId);
          const b = credential(credentialId(round * 2 + 1), workerId);
          const outcomes = await Promise.all([store.enrollWorker(a), other.enrollWorker(b)]);
          assert.deepEqual(outcomes.map((o) => o.kind).sort(), ['already_enrolled', 'enrolled'], `round ${round}`);
          const winner = outcomes[0]?.kind === 'enrolled' ? a : b;
          const loser = outcomes.find((o) => o.kind === 'already_enrolled');
          assert.deepEqual(loser, { kind: 'already_enrolled', existing: winner }, `round ${round}: the loser is shown the winner`);
        }
        assert.equal((await store.findEnrollmentToken(enrollmentId(1)))?.uses, 3);
      });
    });

    describe('worker credentials', () => {
      test('claimCredential: the first claim wins; later claims, even after a revocation or an enrollment, get the existing one', async () => {
        const store = await fresh();
        const first = claimed(credentialId(1), 'w-1');
        assert.deepEqual(await store.claimCredential(first, sha(11)), { claimed: true });
        assert.deepEqual(await store.findCredential(credentialId(1)), first);
        assert.deepEqual(await store.claimCredential(claimed(credentialId(2), 'w-1', { createdAt: at(20) }), sha(12)), { claimed: false, existing: first });
        assert.equal(await store.findCredential(credentialId(2)), null);

        const revoked = await store.revokeWorkerCredential('w-1', { at: at(30), by: ADMIN });
        assert.deepEqual(revoked, { ...first, revokedAt: at(30), revokedBy: ADMIN });
        assert.deepEqual(
          await store.claimCredential(claimed(credentialId(3), 'w-1', { createdAt: at(40) })),
          { claimed: false, existing: revoked },
          'a revoked worker cannot claim its way back in',
        );

        await store.createEnrollmentToken(enrollmentToken(enrollmentId(1)));
        const enrolled = credential(credentialId(4), 'w-2');
        assert.deepEqual(await store.enrollWorker(enrolled), { kind: 'enrolled' });
        assert.deepEqual(await store.claimCredential(claimed(credentialId(5), 'w-2')), { claimed: false, existing: enrolled });
      });

      test('claimCredential racing for one worker id through two replicas: one claims, the other gets its credential', async () => {
        const [store, other] = await replicas();
        for (let round = 1; round <= 3; round += 1) {
          const a = claimed(credentialId(round * 2), `w-${round}`);
          const b = claimed(credentialId(round * 2 + 1), `w-${round}`);
          const outcomes = await Promise.all([store.claimCredential(a, sha(21)), other.claimCredential(b, sha(22))]);
          assert.deepEqual(outcomes.map((o) => o.claimed).sort(), [false, true], `round ${round}`);
          const winner = outcomes[0]?.claimed ? a : b;
          assert.deepEqual(outcomes.find((o) => !o.claimed), { claimed: false, existing: winner }, `round ${round}`);
        }
      });

      test('reissueClaimedCredential: a new secret only with the first claim’s key, for the live claimed credential', async () => {
        const store = await fresh();
        const first = claimed(credentialId(1), 'w-1', { secretSha256: sha(31) });
        await store.claimCredential(first, sha(41));
        const reissue = (fields: Partial<{ workerId: string; credentialId: string; claimKeySha256: Buffer; secretSha256: Buffer }>) =>
          store.reissueClaimedCredential({ workerId: 'w-1', credentialId: credentialId(1), claimKeySha256: sha(41), secretSha256: sha(32), ...fields });
        assert.equal(await reissue({ claimKeySha256: sha(42) }), false, 'another key');
        assert.deepEqual((await store.findCredential(credentialId(1)))?.secretSha256, sha(31), 'unchanged');
        assert.equal(await reissue({ credentialId: credentialId(9) }), false, 'another credential id');
        assert.equal(await reissue({ workerId: 'w-9' }), false, 'another worker');
        assert.equal(await reissue({}), true);
        assert.deepEqual(await store.findCredential(credentialId(1)), { ...first, secretSha256: sha(32) });
        assert.equal(await reissue({ secretSha256: sha(33) }), true, 'again: the answer was lost again');
        assert.deepEqual((await store.findCredential(credentialId(1)))?.secretSha256, sha(33));

        await store.claimCredential(claimed(credentialId(2), 'w-2'));
        assert.equal(await reissue({ workerId: 'w-2', credentialId: credentialId(2) }), false, 'claimed without a key');

        await store.createEnrollmentToken(enrollmentToken(enrollmentId(1)));
        await store.enrollWorker(credential(credentialId(3), 'w-3'));
        assert.equal(await reissue({ workerId: 'w-3', credentialId: credentialId(3) }), false, 'enrolled, not claimed');

        await store.revokeWorkerCredential('w-1', { at: at(50), by: ADMIN });
        assert.equal(await reissue({ secretSha256: sha(34) }), false, 'revoked');
        assert.deepEqual((await store.findCredential(credentialId(1)))?.secretSha256, sha(33));
      });

      test('findCredential and revokeWorkerCredential: the revoked record is returned once; then null', async () => {
        const store = await fresh();
        assert.equal(await store.findCredential(credentialId(1)), null);
        const live = claimed(credentialId(1), 'w-1', { createdFrom: null });
        await store.claimCredential(live);
        assert.deepEqual(await store.findCredential(credentialId(1)), live);
        const revoked = { ...live, revokedAt: at(50), revokedBy: ADMIN };
        assert.deepEqual(await store.revokeWorkerCredential('w-1', { at: at(50), by: ADMIN }), revoked);
        assert.equal(await store.revokeWorkerCredential('w-1', { at: at(60), by: ADMIN }), null, 'no live credential left');
        assert.equal(await store.revokeWorkerCredential('w-9', { at: at(60), by: ADMIN }), null, 'never had one');
        assert.deepEqual(await store.findCredential(credentialId(1)), revoked, 'a revoked credential is still found');
      });

      test('a credential revoked through another replica is seen revoked by the first within a bounded time', async () => {
        const [store, other] = await replicas();
        const live = claimed(credentialId(1), 'w-1');
        await store.claimCredential(live);
        assert.deepEqual(await store.findCredential(credentialId(1)), live, 'now cached as live');
        assert.deepEqual(await other.revokeWorkerCredential('w-1', { at: at(50), by: ADMIN }), { ...live, revokedAt: at(50), revokedBy: ADMIN });
        const seen = await until('the first replica to see the credential revoked', async () => {
          const found = await store.findCredential(credentialId(1));
          return found?.revokedAt ? found : null;
        }, CROSS_REPLICA_MS, 20);
        assert.deepEqual(seen, { ...live, revokedAt: at(50), revokedBy: ADMIN });
        assert.equal(await store.revokeWorkerCredential('w-1', { at: at(60), by: ADMIN }), null);
      });
    });

    describe('credential rotation', () => {
      test('startRotation keeps one pending credential per worker, replacing an earlier one, while the current one stays live', async () => {
        const store = await fresh();
        await store.createEnrollmentToken(enrollmentToken(enrollmentId(1)));
        const current = credential(credentialId(1), 'w-1');
        await store.enrollWorker(current);
        const p1 = pending(pendingId(1), 'w-1', credentialId(1));
        assert.equal(await store.startRotation(p1), true);
        assert.deepEqual(await store.findPendingCredential(pendingId(1)), p1);
        assert.equal(await store.findCredential(pendingId(1)), null, 'a pending credential is not live');
        assert.deepEqual(await store.findCredential(credentialId(1)), current, 'the current one stays live');

        const p2 = pending(pendingId(2), 'w-1', credentialId(1), { secretSha256: sha(5), createdAt: at(25), createdFrom: null });
        assert.equal(await store.startRotation(p2), true);
        assert.equal(await store.findPendingCredential(pendingId(1)), null, 'replaced');
        assert.deepEqual(await store.findPendingCredential(pendingId(2)), p2);
        assert.equal(await store.confirmRotation(pendingId(1), at(30)), null, 'the replaced one cannot be confirmed');

        assert.equal(await store.startRotation(pending(pendingId(3), 'w-1', credentialId(9))), false, 'it does not replace the live one');
        assert.equal(await store.startRotation(pending(pendingId(4), 'w-9', credentialId(1))), false, 'not that worker’s');
        assert.equal(await store.findPendingCredential(pendingId(3)), null);
        assert.deepEqual(await store.findPendingCredential(pendingId(2)), p2, 'a refused start leaves the pending one');
      });

      test('confirmRotation revokes the current credential, makes the pending one live with the first one’s source, and clears the request', async () => {
        const store = await fresh();
        await store.createEnrollmentToken(enrollmentToken(enrollmentId(1)));
        const current = credential(credentialId(1), 'w-1');
        await store.enrollWorker(current);
        assert.equal(await store.rotationRequested('w-1'), false);
        assert.equal(await store.requestRotation('w-1', { at: at(15), by: ADMIN }), true);
        assert.equal(await store.requestRotation('w-1', { at: at(16), by: ADMIN }), true, 'asked again');
        assert.equal(await store.rotationRequested('w-1'), true);
        assert.equal(await store.requestRotation('w-9', { at: at(15), by: ADMIN }), false, 'no live credential');
        assert.equal(await store.rotationRequested('w-9'), false);

        const next = pending(pendingId(1), 'w-1', credentialId(1));
        await store.startRotation(next);
        const confirmed = await store.confirmRotation(pendingId(1), at(30));
        assert.ok(confirmed);
        // When a confirmed credential counts as created (issued or confirmed) is left open; both are exact instants.
        assert.ok([at(20).getTime(), at(30).getTime()].includes(confirmed.createdAt.getTime()), `createdAt ${confirmed.createdAt.toISOString()}`);
        const expected: CredentialRecord = {
          id: pendingId(1),
          workerId: 'w-1',
          pool: 'canary',
          secretSha256: next.secretSha256,
          source: 'enroll',
          sourceTokenId: enrollmentId(1),
          createdAt: confirmed.createdAt,
          createdFrom: next.createdFrom,
          revokedAt: null,
          revokedBy: null,
        };
        assert.deepEqual(confirmed, expected);
        assert.deepEqual(await store.findCredential(pendingId(1)), expected);
        assert.deepEqual((await store.findCredential(credentialId(1)))?.revokedAt, at(30), 'the old one is revoked at the confirm');
        assert.equal(await store.findPendingCredential(pendingId(1)), null);
        assert.equal(await store.rotationRequested('w-1'), false, 'the request is cleared by the confirm');
        assert.equal(await store.confirmRotation(pendingId(1), at(31)), null, 'a second confirm finds nothing pending');
        assert.deepEqual(await store.revokeWorkerCredential('w-1', { at: at(40), by: ADMIN }), { ...expected, revokedAt: at(40), revokedBy: ADMIN }, 'it is the live one now');
      });

      test('a claimed credential rotates keeping its claim lineage', async () => {
        const store = await fresh();
        await store.claimCredential(claimed(credentialId(1), 'w-1'), sha(41));
        await store.startRotation(pending(pendingId(1), 'w-1', credentialId(1)));
        const confirmed = await store.confirmRotation(pendingId(1), at(30));
        assert.deepEqual([confirmed?.source, confirmed?.sourceTokenId, confirmed?.workerId], ['claim', POOL_TOKEN, 'w-1']);
      });

      test('confirmRotation is null when the credential it replaces was revoked meanwhile', async () => {
        const store = await fresh();
        await store.claimCredential(claimed(credentialId(1), 'w-1'));
        await store.startRotation(pending(pendingId(1), 'w-1', credentialId(1)));
        await store.revokeWorkerCredential('w-1', { at: at(25), by: ADMIN });
        assert.equal(await store.confirmRotation(pendingId(1), at(30)), null);
        assert.equal(await store.findCredential(pendingId(1)), null, 'it never became live');
        assert.equal(await store.confirmRotation(pendingId(9), at(30)), null, 'no such pending credential');
      });
    });

    describe('console', () => {
      test('console sessions: create, find exactly, end once; ending purges sessions expired before `purgeBefore`', async () => {
        const store = await fresh();
        const s1 = session(sessionId(1));
        await store.createConsoleSession(s1);
        assert.deepEqual(await store.findConsoleSession(sessionId(1)), s1);
        assert.equal(await store.findConsoleSession(sessionId(9)), null);
        assert.equal(await store.endConsoleSession(sessionId(1), at(10), at(0)), true);
        assert.deepEqual(await store.findConsoleSession(sessionId(1)), { ...s1, endedAt: at(10) });
        assert.equal(await store.endConsoleSession(sessionId(1), at(11), at(0)), false, 'already ended');
        assert.deepEqual((await store.findConsoleSession(sessionId(1)))?.endedAt, at(10), 'the first end is kept');
        assert.equal(await store.endConsoleSession(sessionId(9), at(11), at(0)), false, 'no such session');

        await store.createConsoleSession(session(sessionId(2), { expiresAt: at(100), createdFrom: null }));
        await store.createConsoleSession(session(sessionId(3), { expiresAt: at(200) }));
        await store.createConsoleSession(session(sessionId(4), { expiresAt: at(300) }));
        assert.equal(await store.endConsoleSession(sessionId(4), at(150), at(200)), true);
        assert.equal(await store.findConsoleSession(sessionId(2)), null, 'expired before purgeBefore: deleted');
        assert.deepEqual(await store.findConsoleSession(sessionId(3)), session(sessionId(3), { expiresAt: at(200) }), 'expired at purgeBefore: kept');
        assert.deepEqual((await store.findConsoleSession(sessionId(4)))?.endedAt, at(150));
        assert.deepEqual((await store.findConsoleSession(sessionId(1)))?.endedAt, at(10), 'an ended session that has not expired is kept');
      });

      /** Workers whose ids test prefixes (`_` is a LIKE wildcard) and byte order: a-2 < a_1 < ab1 < b.1 < b.2. */
      async function searchFleet(store: FleetStore): Promise<void> {
        await seenWorker(store, 'a_1', 100);
        await seenWorker(store, 'a-2', 110, { version: '1.1.0', state: 'idle', update: { to_version: '1.2.0', state: 'failed', reason: 'disk_full' } });
        await seenWorker(store, 'ab1', 120, { pool: 'edge', channel: 'beta', update: { to_version: '1.1.0', state: 'downloading', download_percent: 3 } });
        await seenWorker(store, 'b.1', 130, { pool: 'edge', version: '1.1.0', state: 'draining' });
        await store.registerWorker(registration('b.2', 140, { channel: 'beta' }));
      }

      test('searchWorkers: every filter narrows, all combine; ids in order', async () => {
        const store = await fresh();
        await searchFleet(store);
        const ids = async (search: Omit<WorkerSearch, 'limit'>) => {
          const found = await store.searchWorkers({ limit: 50, ...search });
          return { ids: found.workers.map((w) => w.worker_id), total: found.total };
        };
        const page = (list: string[]) => ({ ids: list, total: list.length });
        assert.deepEqual(await ids({}), page(['a-2', 'a_1', 'ab1', 'b.1', 'b.2']));
        assert.deepEqual(await ids({ idPrefix: 'a' }), page(['a-2', 'a_1', 'ab1']));
        assert.deepEqual(await ids({ idPrefix: 'a_' }), page(['a_1']), 'the prefix is literal, not a pattern');
        assert.deepEqual(await ids({ idPrefix: 'b.' }), page(['b.1', 'b.2']));
        assert.deepEqual(await ids({ idPrefix: 'A' }), page([]), 'ids are case-sensitive');
        assert.deepEqual(await ids({ idPrefix: '' }), page(['a-2', 'a_1', 'ab1', 'b.1', 'b.2']), 'an empty prefix is no filter');
        assert.deepEqual(await ids({ pool: 'edge' }), page(['ab1', 'b.1']));
        assert.deepEqual(await ids({ version: '1.1.0' }), page(['a-2', 'b.1']));
        assert.deepEqual(await ids({ channel: 'beta' }), page(['ab1', 'b.2']));
        assert.deepEqual(await ids({ state: 'working' }), page(['a_1', 'ab1']));
        assert.deepEqual(await ids({ state: 'starting' }), page(['b.2']));
        assert.deepEqual(await ids({ updateState: 'failed' }), page(['a-2']));
        assert.deepEqual(await ids({ updateState: 'none' }), page(['a_1', 'b.1', 'b.2']));
        assert.deepEqual(await ids({ seenSince: at(120) }), page(['ab1', 'b.1', 'b.2']), 'seenSince is inclusive');
        assert.deepEqual(await ids({ seenBefore: at(120) }), page(['a-2', 'a_1']), 'seenBefore is exclusive');
        assert.deepEqual(await ids({ seenSince: at(110), seenBefore: at(130) }), page(['a-2', 'ab1']));
        assert.deepEqual(await ids({ pool: 'canary', channel: 'stable', idPrefix: 'a' }), page(['a-2', 'a_1']));
        assert.deepEqual(await ids({ pool: 'edge', state: 'working', updateState: 'downloading', version: '1.0.0', channel: 'beta' }), page(['ab1']));
        assert.deepEqual(await ids({ pool: 'nowhere' }), page([]));
      });

      test('searchWorkers: keyset pages by id after the cursor, at most `limit`; total counts every match, cursor aside', async () => {
        const store = await fresh();
        await searchFleet(store);
        const pageOf = async (search: WorkerSearch) => {
          const found = await store.searchWorkers(search);
          return [found.workers.map((w) => w.worker_id), found.total];
        };
        assert.deepEqual(await pageOf({ limit: 2 }), [['a-2', 'a_1'], 5]);
        assert.deepEqual(await pageOf({ limit: 2, after: 'a_1' }), [['ab1', 'b.1'], 5]);
        assert.deepEqual(await pageOf({ limit: 2, after: 'b.1' }), [['b.2'], 5]);
        assert.deepEqual(await pageOf({ limit: 2, after: 'b.2' }), [[], 5]);
        assert.deepEqual(await pageOf({ limit: 2, after: 'a' }), [['a-2', 'a_1'], 5], 'a cursor that is no id');
        assert.deepEqual(await pageOf({ limit: 1, pool: 'canary', after: 'a-2' }), [['a_1'], 3]);
        const full = await store.searchWorkers({ limit: 1, after: 'a_1' });
        assert.deepEqual(asJson(full.workers), [{
          worker_id: 'ab1', pool: 'edge', channel: 'beta', platform: 'linux-x64', version: '1.0.0', state: 'working',
          update: { to_version: '1.1.0', state: 'downloading', download_percent: 3, updated_at: iso(120) },
          registered_at: iso(0), last_seen_at: iso(120),
        }], 'whole worker rows');
      });

      test('workerFacets: the distinct pools, versions and channels', async () => {
        const store = await fresh();
        assert.deepEqual(await store.workerFacets(), { pools: [], versions: [], channels: [] });
        await searchFleet(store);
        const facets = await store.workerFacets();
        assert.deepEqual(
          { pools: [...facets.pools].sort(), versions: [...facets.versions].sort(), channels: [...facets.channels].sort() },
          { pools: ['canary', 'edge'], versions: ['1.0.0', '1.1.0'], channels: ['beta', 'stable'] },
        );
      });

      test('recordVersionSample: one sample per slot, summed by channel and version; versionSamples since `since`, oldest first; old samples deleted', async () => {
        const [store, other] = await replicas();
        const counts: WorkerCount[] = [
          { channel: 'stable', pool: 'canary', version: '1.0.0', count: 3 },
          { channel: 'stable', pool: 'edge', version: '1.0.0', count: 2 },
          { channel: 'stable', pool: 'canary', version: '1.1.0', count: 1 },
          { channel: 'beta', pool: 'canary', version: '1.1.0', count: 4 },
        ];
        assert.equal(await store.recordVersionSample(at(0), counts, at(-86_400)), true);
        assert.equal(await store.recordVersionSample(at(0), [{ channel: 'stable', pool: 'canary', version: '9.9.9', count: 9 }], at(-86_400)), false, 'the slot is taken');
        assert.equal(await other.recordVersionSample(at(0), counts, at(-86_400)), false, 'taken, for the other replica too');
        const inOrder = (rows: Array<{ sampled_at: string; version: string; count: number }>) => {
          const times = rows.map((r) => r.sampled_at);
          assert.deepEqual(times, [...times].sort(), 'oldest first');
          return sorted(rows);
        };
        assert.deepEqual(inOrder(await store.versionSamples('stable', at(0))), sorted([
          { sampled_at: iso(0), version: '1.0.0', count: 5 },
          { sampled_at: iso(0), version: '1.1.0', count: 1 },
        ]));
        assert.deepEqual(asJson(await other.versionSamples('beta', at(0))), [{ sampled_at: iso(0), version: '1.1.0', count: 4 }]);

        assert.equal(await other.recordVersionSample(at(300), [{ channel: 'stable', pool: 'canary', version: '1.1.0', count: 6 }], at(0)), true);
        assert.equal(await store.recordVersionSample(at(300), counts, at(0)), false, 'the other replica took this slot');
        assert.deepEqual(inOrder(await store.versionSamples('stable', at(0))), sorted([
          { sampled_at: iso(0), version: '1.0.0', count: 5 },
          { sampled_at: iso(0), version: '1.1.0', count: 1 },
          { sampled_at: iso(300), version: '1.1.0', count: 6 },
        ]), 'a sample at keepSince is kept');
        assert.deepEqual(asJson(await store.versionSamples('stable', at(0.001))), [{ sampled_at: iso(300), version: '1.1.0', count: 6 }], 'since is inclusive, and filters');

        assert.equal(await store.recordVersionSample(at(600), [{ channel: 'stable', pool: 'edge', version: '1.2.0', count: 1 }], at(300)), true);
        assert.deepEqual(inOrder(await store.versionSamples('stable', at(-86_400))), sorted([
          { sampled_at: iso(300), version: '1.1.0', count: 6 },
          { sampled_at: iso(600), version: '1.2.0', count: 1 },
        ]), 'samples older than keepSince are deleted');
        assert.deepEqual(await store.versionSamples('beta', at(-86_400)), [], 'of every channel');
        assert.deepEqual(await store.versionSamples('gamma', at(-86_400)), []);
      });

      test('recordVersionSample racing for one slot through two replicas: exactly one writes it', async () => {
        const [store, other] = await replicas();
        const counts: WorkerCount[] = [{ channel: 'stable', pool: 'canary', version: '1.0.0', count: 2 }];
        for (let slot = 1; slot <= 5; slot += 1) {
          const wrote = await Promise.all([store.recordVersionSample(at(slot * 300), counts, at(0)), other.recordVersionSample(at(slot * 300), counts, at(0))]);
          assert.deepEqual([...wrote].sort(), [false, true], `slot ${slot}`);
        }
        assert.equal((await store.versionSamples('stable', at(0))).length, 5, 'one sample per slot');
      });
    });

    describe('concurrency', () => {
      test('100 concurrent registrations, heartbeats and reports all resolve and are all stored', async (t) => {
        const seed = Number(process.env['FLEET_CONFORMANCE_SEED'] ?? 20261101);
        t.diagnostic(`seed ${seed} (replay with FLEET_CONFORMANCE_SEED=${seed})`);
        const random = seededRandom(seed);
        const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
        const store = await fresh();
        const workers = Array.from({ length: 100 }, (_, i) => {
          const id = `w-${String(i).padStart(3, '0')}`;
          const update: UpdateProgress | null = random() < 0.5 ? null : { to_version: '1.1.0', state: pick(UPDATE_STATES), download_percent: Math.floor(random() * 101) };
          return { id, pool: pick(['canary', 'edge']), state: pick(WORKER_STATES), update, event: pick(UPDATE_EVENTS) };
        });
        await Promise.all(workers.map((w) => store.registerWorker(registration(w.id, 0, { pool: w.pool }))));
        const heartbeats = Promise.all(workers.map((w) => store.recordHeartbeat(heartbeat(w.id, 10, { pool: w.pool, state: w.state, update: w.update }))));
        const reports = Promise.all(workers.map((w) => store.recordReport(report(w.id, 10, { event: w.event, pool: w.pool }))));
        const [answers, stored] = await Promise.all([heartbeats, reports]);
        assert.deepEqual(asJson(answers), workers.map(() => ({ channel: 'stable', platform: 'linux-x64', admittedSerials: [], rotationRequested: false })));
        assert.deepEqual(stored, workers.map(() => true), 'reports without a correlation id are all stored');

        const rows = await Promise.all(workers.map((w) => store.getWorker(w.id)));
        assert.deepEqual(
          asJson(rows.map((row) => row && { id: row.worker_id, pool: row.pool, state: row.state, update: row.update, last_seen_at: row.last_seen_at })),
          asJson(workers.map((w) => ({ id: w.id, pool: w.pool, state: w.state, update: w.update && { ...w.update, updated_at: iso(10) }, last_seen_at: iso(10) }))),
        );
        const events = await Promise.all(workers.map((w) => store.workerEvents(w.id, 10)));
        assert.deepEqual(events.map((list) => list.map((e) => e.event)), workers.map((w) => [w.event]));
        assert.equal((await store.searchWorkers({ limit: 1 })).total, 100);
        const failures = workers.filter((w) => w.event === 'failure' || w.event === 'rollback').length;
        assert.equal((await store.fleetView({ workerLimit: 1, failureLimit: 1000 })).recent_failures.length, failures);
      });
    });
  });
}
