import { timingSafeEqual } from 'node:crypto';
import { mkdirSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3';
import type { PoolPolicy, UpdateState } from '../../protocol/messages.js';
import type { RolloutPlan } from '../../protocol/rollouts.js';
import type { RolloutReport } from '../rollout/failure-rate.js';
import {
  FleetStoreError,
  enrollmentRefusal,
  type AdmissionRecord,
  type ConsoleSessionRecord,
  type FailureGroup,
  type WorkerSearch,
  type WorkerStateCount,
  type CredentialRecord,
  type PendingCredentialRecord,
  type EnrollmentTokenRecord,
  type EnrollOutcome,
  type FailureView,
  type FleetGroup,
  type FleetQuery,
  type FleetStore,
  type FleetView,
  type HeartbeatRecord,
  type LiveWorker,
  type RolloutRecord,
  type RolloutState,
  type RolloutStateChange,
  type StoredReport,
  type TokenRecord,
  type WorkerCount,
  type WorkerHeartbeat,
  type WorkerRegistration,
  type WorkerView,
} from './fleet-store.js';
import { AuthReadCache } from './auth-read-cache.js';
import {
  admissionFromRow,
  consoleSessionFromRow,
  credentialFromRow,
  credentialRow,
  enrollmentTokenFromRow,
  pendingFromRow,
  policyFromRow,
  rolloutFromRow,
  tokenFromRow,
  versionSampleRows,
  workerFromRow,
  type AdmissionRow,
  type ConsoleSessionRow,
  type CredentialRow,
  type EnrollmentTokenRow,
  type PendingCredentialRow,
  type RolloutRow,
  type TokenRow,
  type WorkerRow,
} from './fleet-rows.js';
import { MIGRATIONS, type Migration } from './migrations/index.js';
import { checkSchemaReadable, RAISE_OLDEST_READER_SQLITE } from './schema-compat.js';
import { WalSyncer, type SyncFile } from './wal-syncer.js';
import { WriteBatcher } from './write-batcher.js';

export { FleetStoreError };

/** The WHERE terms and named parameters of a worker search, cursor and limit aside. */
function workerSearchWhere(search: WorkerSearch): { where: string[]; params: Record<string, unknown> } {
  const where: string[] = [];
  const params: Record<string, unknown> = {};
  if (search.idPrefix !== undefined && search.idPrefix !== '') {
    // A range on the primary key rather than LIKE, which SQLite cannot serve from the index.
    where.push('id >= @prefix AND id < @prefix_end');
    params['prefix'] = search.idPrefix;
    params['prefix_end'] = `${search.idPrefix}\u{10ffff}`;
  }
  for (const [column, value] of [
    ['pool', search.pool],
    ['version', search.version],
    ['channel', search.channel],
    ['state', search.state],
  ] as const) {
    if (value === undefined) continue;
    where.push(`${column} = @${column}`);
    params[column] = value;
  }
  if (search.updateState === 'none') where.push('update_state IS NULL');
  else if (search.updateState !== undefined) {
    where.push('update_state = @update_state');
    params['update_state'] = search.updateState;
  }
  if (search.seenSince !== undefined) {
    where.push('last_seen_at >= @seen_since');
    params['seen_since'] = search.seenSince.toISOString();
  }
  if (search.seenBefore !== undefined) {
    where.push('last_seen_at < @seen_before');
    params['seen_before'] = search.seenBefore.toISOString();
  }
  return { where, params };
}


/** Apply the migrations the database does not have yet, in order, each in a transaction. */
export function migrate(db: Database, migrations: readonly Migration[] = MIGRATIONS): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as Array<{ version: number }>).map((row) => row.version),
  );
  const newest = Math.max(0, ...migrations.map((m) => m.version));
  const hasReaders = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_readers'").get() !== undefined;
  const oldestReader = hasReaders ? ((db.prepare('SELECT oldest_reader FROM schema_readers WHERE id = 1').pluck().get() as number | undefined) ?? null) : null;
  // A newer server migrated this database: run on it only if it only grew since our newest.
  checkSchemaReadable(applied, newest, oldestReader);
  const done: number[] = [];
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    if (applied.has(migration.version)) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      if (migration.contract) db.prepare(RAISE_OLDEST_READER_SQLITE).run(migration.version);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        migration.version,
        migration.name,
        new Date().toISOString(),
      );
    })();
    done.push(migration.version);
  }
  return done;
}

export interface SqliteFleetStoreOptions {
  /**
   * `full` (the default): a write is acknowledged only after the WAL holding its commit was
   * flushed to disk (WalSyncer, off the event loop), so a report answered with 202 survives
   * kill -9 and power loss alike. `normal`: no flush before the acknowledgement (SQLite flushes
   * the WAL at each checkpoint), so an acknowledged write survives the server process crashing
   * or being killed but not the machine losing power (docs/server.md, "The database").
   * `--db-sync`.
   */
  synchronous?: 'full' | 'normal';
  /** How a file is flushed to disk; a test seam for slow and failing disks. */
  syncFile?: SyncFile;
}

/**
 * The embedded fleet store, in journal mode WAL. Group commit (WriteBatcher) puts many writes
 * in one transaction, and one WAL flush (WalSyncer) covers every transaction committed before it.
 */
export class SqliteFleetStore implements FleetStore {
  readonly kind = 'sqlite';
  private readonly db: Database;
  private readonly batcher: WriteBatcher;
  /** Null for `normal` durability and for a database in memory. */
  private readonly syncer: WalSyncer | null;
  private readonly authCache: AuthReadCache;
  private closed = false;
  private readonly statements: {
    upsertRegistration: Statement;
    touchHeartbeat: Statement;
    updateHeartbeat: Statement;
    workerChannel: Statement;
    insertReport: Statement;
    getPolicy: Statement;
    setPolicy: Statement;
    findToken: Statement;
    insertToken: Statement;
    revokeToken: Statement;
    authEpoch: Statement;
    highestServedSerial: Statement;
    raiseServedSerial: Statement;
    workerPlace: Statement;
    insertRollout: Statement;
    rolloutEpoch: Statement;
    insertAdmission: Statement;
    workerAdmittedSerials: Statement;
    rotationRequested: Statement;
    findEnrollmentToken: Statement;
    spendEnrollmentUse: Statement;
    findCredential: Statement;
    liveCredentialOf: Statement;
    newestCredentialOf: Statement;
    insertCredential: Statement;
  };

  constructor(
    readonly path: string,
    options: SqliteFleetStoreOptions = {},
  ) {
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      this.db = new BetterSqlite3(path);
      const journalMode = this.db.pragma('journal_mode = WAL', { simple: true });
      const flushesWal = options.synchronous !== 'normal' && journalMode === 'wal';
      // With `full`, the WAL flush is WalSyncer's. A database that could not switch to WAL (in
      // memory, or a file system without shared memory) keeps SQLite's own FULL.
      this.db.pragma(options.synchronous === 'normal' || flushesWal ? 'synchronous = NORMAL' : 'synchronous = FULL');
      // SQLite puts the WAL beside the real file when the path is a symbolic link.
      this.syncer = flushesWal ? new WalSyncer(`${realpathSync(path)}-wal`, options.syncFile) : null;
      this.db.pragma('busy_timeout = 5000');
      this.db.pragma('foreign_keys = ON');
    } catch (err) {
      throw new FleetStoreError('database_unavailable', `cannot open the SQLite database ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    migrate(this.db);
    const syncer = this.syncer;
    this.batcher = new WriteBatcher(this.db, syncer ? { durable: () => syncer.durable() } : {});
    this.statements = {
      upsertRegistration: this.db.prepare(`
        INSERT INTO workers (id, pool, channel, platform, version, state, registered_at, last_seen_at)
        VALUES (@id, @pool, @channel, @platform, @version, 'starting', @at, @at)
        ON CONFLICT (id) DO UPDATE SET pool = excluded.pool, channel = excluded.channel,
          platform = excluded.platform, version = excluded.version, state = 'starting',
          registered_at = excluded.registered_at, last_seen_at = excluded.last_seen_at`),
      // Most heartbeats repeat the worker's pool, version and update progress: this statement
      // then writes only state and last_seen_at, so the indexes on the other columns (the
      // console's filters, migration 8) are not rewritten. No row changed: use updateHeartbeat.
      touchHeartbeat: this.db.prepare(`
        UPDATE workers SET state = @state, last_seen_at = @at
        WHERE id = @id AND pool = @pool AND version = @version AND update_state IS @update_state
          AND update_to_version IS @to_version AND update_download_percent IS @download_percent
          AND update_reason IS @reason`),
      updateHeartbeat: this.db.prepare(`
        UPDATE workers SET pool = @pool, version = @version, state = @state,
          update_to_version = @to_version, update_state = @update_state,
          update_download_percent = @download_percent, update_reason = @reason,
          update_at = CASE
            WHEN update_state IS @update_state AND update_to_version IS @to_version
              AND update_download_percent IS @download_percent AND update_reason IS @reason
            THEN update_at ELSE @update_at END,
          last_seen_at = @at
        WHERE id = @id`),
      workerChannel: this.db.prepare('SELECT channel, platform FROM workers WHERE id = ?'),
      // A retried report (same worker, correlation id and event) is stored once; the check is one
      // lookup in update_events_by_correlation (migration 10).
      insertReport: this.db.prepare(`
        INSERT INTO update_events (received_at, request_id, worker_id, pool, event, channel, platform,
          from_version, to_version, reason, duration_ms, correlation_id, serial)
        SELECT @received_at, @request_id, @worker_id, @pool, @event, @channel, @platform,
          @from_version, @to_version, @reason, @duration_ms, @correlation_id, @serial
        WHERE @correlation_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM update_events WHERE worker_id = @worker_id AND correlation_id = @correlation_id AND event = @event)`),
      getPolicy: this.db.prepare('SELECT auto_update, maintenance_windows FROM pool_policies WHERE pool = ?'),
      setPolicy: this.db.prepare(`
        INSERT INTO pool_policies (pool, auto_update, maintenance_windows, updated_at, updated_by_token) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (pool) DO UPDATE SET auto_update = excluded.auto_update,
          maintenance_windows = excluded.maintenance_windows,
          updated_at = excluded.updated_at, updated_by_token = excluded.updated_by_token`),
      findToken: this.db.prepare('SELECT * FROM tokens WHERE id = ?'),
      insertToken: this.db.prepare(`
        INSERT INTO tokens (id, role, pool, secret_sha256, label, created_at, revoked_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)`),
      revokeToken: this.db.prepare('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      authEpoch: this.db.prepare('SELECT n FROM auth_epoch WHERE id = 1').pluck(),
      highestServedSerial: this.db.prepare('SELECT highest_serial FROM served_serials WHERE channel = ?').pluck(),
      raiseServedSerial: this.db.prepare(`
        INSERT INTO served_serials (channel, highest_serial, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (channel) DO UPDATE SET highest_serial = excluded.highest_serial, updated_at = excluded.updated_at
        WHERE excluded.highest_serial > served_serials.highest_serial`),
      workerPlace: this.db.prepare('SELECT * FROM workers WHERE id = ?'),
      insertRollout: this.db.prepare(`
        INSERT INTO rollouts (channel, serial, version, manifest, expires_at, urgent, plan, state, state_reason,
          state_changed_at, state_changed_by, failures_counted_from, waves_started, started_at)
        VALUES (@channel, @serial, @version, @manifest, @expires_at, @urgent, @plan, @state, @state_reason,
          @state_changed_at, @state_changed_by, @failures_counted_from, @waves_started, @started_at)
        ON CONFLICT (channel, serial) DO NOTHING`),
      rolloutEpoch: this.db.prepare('SELECT n FROM rollout_epoch WHERE id = 1').pluck(),
      insertAdmission: this.db.prepare(`
        INSERT INTO rollout_admissions (channel, serial, worker_id, pool, wave, forced, admitted_at)
        VALUES (@channel, @serial, @worker_id, @pool, @wave, @forced, @admitted_at)
        ON CONFLICT (channel, serial, worker_id) DO NOTHING`),
      workerAdmittedSerials: this.db
        .prepare('SELECT serial FROM rollout_admissions WHERE worker_id = ? AND channel = ? ORDER BY serial DESC')
        .pluck(),
      rotationRequested: this.db.prepare('SELECT 1 FROM credential_rotation_requests WHERE worker_id = ?'),
      findEnrollmentToken: this.db.prepare('SELECT * FROM enrollment_tokens WHERE id = ?'),
      spendEnrollmentUse: this.db.prepare(`
        UPDATE enrollment_tokens SET uses = uses + 1
        WHERE id = @id AND revoked_at IS NULL AND (max_uses IS NULL OR uses < max_uses)
          AND (expires_at IS NULL OR expires_at > @at)`),
      findCredential: this.db.prepare('SELECT * FROM worker_credentials WHERE id = ?'),
      liveCredentialOf: this.db.prepare('SELECT * FROM worker_credentials WHERE worker_id = ? AND revoked_at IS NULL'),
      newestCredentialOf: this.db.prepare('SELECT * FROM worker_credentials WHERE worker_id = ? ORDER BY created_at DESC, id LIMIT 1'),
      insertCredential: this.db.prepare(`
        INSERT INTO worker_credentials (id, worker_id, pool, secret_sha256, source, source_token_id, created_at,
          created_from, revoked_at, revoked_by)
        VALUES (@id, @worker_id, @pool, @secret_sha256, @source, @source_token_id, @created_at,
          @created_from, @revoked_at, @revoked_by)`),
    };
    this.authCache = new AuthReadCache({ readEpoch: () => this.statements.authEpoch.get() as number });
  }

  /** A write through the group commit that returns what `apply` computed in its transaction. */
  private async writeReturning<T>(apply: () => T): Promise<T> {
    let result: T | undefined;
    await this.batcher.write(() => {
      result = apply();
    });
    return result as T;
  }

  async ping(): Promise<void> {
    const failure = this.syncer?.failure;
    if (failure) throw new FleetStoreError('database_unavailable', `SQLite database ${this.path} is not durable: ${failure.message}`, { cause: failure });
    try {
      this.db.prepare('SELECT 1').get();
    } catch (err) {
      throw new FleetStoreError('database_unavailable', `SQLite database ${this.path} is not usable`, { cause: err });
    }
  }

  registerWorker(worker: WorkerRegistration): Promise<void> {
    const row = {
      id: worker.workerId,
      pool: worker.pool,
      channel: worker.channel,
      platform: worker.platform,
      version: worker.version,
      at: worker.at.toISOString(),
    };
    return this.batcher.write(() => this.statements.upsertRegistration.run(row));
  }

  async recordHeartbeat(heartbeat: WorkerHeartbeat): Promise<HeartbeatRecord | null> {
    const update = heartbeat.update;
    const row = {
      id: heartbeat.workerId,
      pool: heartbeat.pool,
      version: heartbeat.version,
      state: heartbeat.state,
      to_version: update?.to_version ?? null,
      update_state: update?.state ?? null,
      download_percent: update?.download_percent ?? null,
      reason: update?.reason ?? null,
      update_at: update ? heartbeat.at.toISOString() : null,
      at: heartbeat.at.toISOString(),
    };
    const known = await this.writeReturning(() => this.statements.touchHeartbeat.run(row).changes > 0 || this.statements.updateHeartbeat.run(row).changes > 0);
    if (!known) return null;
    const found = this.statements.workerChannel.get(heartbeat.workerId) as { channel: string | null; platform: string | null } | undefined;
    const channel = found?.channel ?? null;
    return {
      channel,
      platform: found?.platform ?? null,
      admittedSerials: channel === null ? [] : (this.statements.workerAdmittedSerials.all(heartbeat.workerId, channel) as number[]),
      rotationRequested: this.statements.rotationRequested.get(heartbeat.workerId) !== undefined,
    };
  }

  recordReport(report: StoredReport): Promise<boolean> {
    const row = {
      received_at: report.receivedAt.toISOString(),
      request_id: report.requestId,
      worker_id: report.worker_id,
      pool: report.pool,
      event: report.event,
      channel: report.channel,
      platform: report.platform,
      from_version: report.from_version,
      to_version: report.to_version,
      reason: report.reason ?? null,
      duration_ms: report.duration_ms ?? null,
      correlation_id: report.correlation_id ?? null,
      serial: report.rolloutSerial,
    };
    return this.writeReturning(() => this.statements.insertReport.run(row).changes > 0);
  }

  async getWorker(workerId: string): Promise<WorkerView | null> {
    const row = this.statements.workerPlace.get(workerId) as WorkerRow | undefined;
    return row ? workerFromRow(row) : null;
  }

  async liveWorkers(channel: string, seenSince: Date): Promise<LiveWorker[]> {
    return this.db
      .prepare('SELECT id, pool, version, platform FROM workers WHERE channel = ? AND last_seen_at >= ?')
      .all(channel, seenSince.toISOString()) as LiveWorker[];
  }

  async workerEvents(workerId: string, limit: number): Promise<FailureView[]> {
    return this.db
      .prepare(
        `SELECT worker_id, pool, event, channel, platform, from_version, to_version, reason, correlation_id, received_at
         FROM update_events WHERE worker_id = ? ORDER BY id DESC LIMIT ?`,
      )
      .all(workerId, limit) as FailureView[];
  }

  async workerChannels(): Promise<string[]> {
    return this.db.prepare('SELECT DISTINCT channel FROM workers WHERE channel IS NOT NULL').pluck().all() as string[];
  }

  async getPoolPolicy(pool: string): Promise<PoolPolicy | null> {
    return this.authCache.policy(pool, (key) => {
      const row = this.statements.getPolicy.get(key) as { auto_update: number; maintenance_windows: string | null } | undefined;
      return row ? policyFromRow(row) : null;
    });
  }

  setPoolPolicy(pool: string, policy: PoolPolicy, change: { at: Date; byTokenId: string }): Promise<void> {
    const windows = policy.maintenance_windows && policy.maintenance_windows.length > 0 ? JSON.stringify(policy.maintenance_windows) : null;
    return this.batcher.write(() => {
      this.authCache.clear();
      this.statements.setPolicy.run(pool, policy.auto_update ? 1 : 0, windows, change.at.toISOString(), change.byTokenId);
    });
  }

  async listPoolPolicies(): Promise<Array<{ pool: string; policy: PoolPolicy; updated_at: string }>> {
    const rows = this.db.prepare('SELECT pool, auto_update, maintenance_windows, updated_at FROM pool_policies ORDER BY pool').all() as Array<{
      pool: string;
      auto_update: number;
      maintenance_windows: string | null;
      updated_at: string;
    }>;
    return rows.map((row) => ({ pool: row.pool, policy: policyFromRow(row), updated_at: row.updated_at }));
  }

  async createRollout(rollout: RolloutRecord): Promise<boolean> {
    return this.writeReturning(() => {
      return this.statements.insertRollout.run({
        channel: rollout.channel,
        serial: rollout.serial,
        version: rollout.version,
        manifest: rollout.manifest,
        expires_at: rollout.expiresAt.toISOString(),
        urgent: rollout.urgent ? 1 : 0,
        plan: JSON.stringify(rollout.plan),
        state: rollout.state,
        state_reason: rollout.stateReason,
        state_changed_at: rollout.stateChangedAt.toISOString(),
        state_changed_by: rollout.stateChangedBy,
        failures_counted_from: rollout.failuresCountedFrom.toISOString(),
        waves_started: JSON.stringify(rollout.wavesStarted.map((at) => at.toISOString())),
        started_at: rollout.startedAt.toISOString(),
      }).changes > 0;
    });
  }

  async listRollouts(channel: string, limit: number): Promise<RolloutRecord[]> {
    const rows = this.db.prepare('SELECT * FROM rollouts WHERE channel = ? ORDER BY serial DESC LIMIT ?').all(channel, limit) as RolloutRow[];
    return rows.map(rolloutFromRow);
  }

  async rolloutChannels(states: readonly RolloutState[]): Promise<string[]> {
    if (states.length === 0) return [];
    return this.db
      .prepare(`SELECT DISTINCT channel FROM rollouts WHERE state IN (${states.map(() => '?').join(', ')}) ORDER BY channel`)
      .pluck()
      .all(...states) as string[];
  }

  async rolloutEpoch(): Promise<number> {
    return this.statements.rolloutEpoch.get() as number;
  }

  async setRolloutState(channel: string, serial: number, fromStates: readonly RolloutState[], change: RolloutStateChange): Promise<boolean> {
    return this.writeReturning(() => {
      return this.db
        .prepare(
          `UPDATE rollouts SET state = ?, state_reason = ?, state_changed_at = ?, state_changed_by = ?,
             failures_counted_from = CASE WHEN ? THEN ? ELSE failures_counted_from END
           WHERE channel = ? AND serial = ? AND state IN (${fromStates.map(() => '?').join(', ')})`,
        )
        .run(
          change.state,
          change.reason,
          change.at.toISOString(),
          change.by,
          change.restartFailureCount ? 1 : 0,
          change.at.toISOString(),
          channel,
          serial,
          ...fromStates,
        ).changes > 0;
    });
  }

  async startRolloutWave(channel: string, serial: number, waveIndex: number, at: Date): Promise<boolean> {
    return this.writeReturning(() => {
      const row = this.db.prepare("SELECT waves_started FROM rollouts WHERE channel = ? AND serial = ? AND state = 'active'").get(channel, serial) as
        | { waves_started: string }
        | undefined;
      if (!row) return false;
      const waves = JSON.parse(row.waves_started) as string[];
      if (waves.length !== waveIndex) return false;
      waves.push(at.toISOString());
      this.db.prepare('UPDATE rollouts SET waves_started = ? WHERE channel = ? AND serial = ?').run(JSON.stringify(waves), channel, serial);
      return true;
    });
  }

  admitWorker(admission: AdmissionRecord): Promise<void> {
    const row = {
      channel: admission.channel,
      serial: admission.serial,
      worker_id: admission.workerId,
      pool: admission.pool,
      wave: admission.wave,
      forced: admission.forced ? 1 : 0,
      admitted_at: admission.admittedAt.toISOString(),
    };
    return this.batcher.write(() => this.statements.insertAdmission.run(row));
  }

  async workerAdmittedSerials(workerId: string, channel: string): Promise<number[]> {
    return this.statements.workerAdmittedSerials.all(workerId, channel) as number[];
  }

  async rolloutAdmissions(channel: string, serial: number): Promise<AdmissionRecord[]> {
    const rows = this.db.prepare('SELECT * FROM rollout_admissions WHERE channel = ? AND serial = ?').all(channel, serial) as AdmissionRow[];
    return rows.map(admissionFromRow);
  }

  async liveAdmittedWorkers(channel: string, serial: number, seenSince: Date): Promise<string[]> {
    return this.db
      .prepare(
        `SELECT a.worker_id FROM rollout_admissions a JOIN workers w ON w.id = a.worker_id
         WHERE a.channel = ? AND a.serial = ? AND w.last_seen_at >= ?`,
      )
      .pluck()
      .all(channel, serial, seenSince.toISOString()) as string[];
  }

  async livePools(channel: string, seenSince: Date): Promise<string[]> {
    return this.db.prepare('SELECT DISTINCT pool FROM workers WHERE channel = ? AND last_seen_at >= ? ORDER BY pool').pluck().all(channel, seenSince.toISOString()) as string[];
  }

  async rolloutReports(channel: string, serial: number, since: Date): Promise<Array<RolloutReport & { received_at: string }>> {
    return this.db
      .prepare(
        `SELECT worker_id, event, reason, received_at FROM update_events
         WHERE channel = ? AND serial = ? AND received_at >= ? ORDER BY id`,
      )
      .all(channel, serial, since.toISOString()) as Array<RolloutReport & { received_at: string }>;
  }

  async getChannelPlan(channel: string): Promise<RolloutPlan | null> {
    const row = this.db.prepare('SELECT plan FROM channel_plans WHERE channel = ?').get(channel) as { plan: string } | undefined;
    return row ? (JSON.parse(row.plan) as RolloutPlan) : null;
  }

  setChannelPlan(channel: string, plan: RolloutPlan, change: { at: Date; byTokenId: string }): Promise<void> {
    return this.batcher.write(() =>
      this.db
        .prepare(
          `INSERT INTO channel_plans (channel, plan, updated_at, updated_by_token) VALUES (?, ?, ?, ?)
           ON CONFLICT (channel) DO UPDATE SET plan = excluded.plan, updated_at = excluded.updated_at,
             updated_by_token = excluded.updated_by_token`,
        )
        .run(channel, JSON.stringify(plan), change.at.toISOString(), change.byTokenId),
    );
  }

  async fleetView(query: FleetQuery): Promise<FleetView> {
    const total = this.db.prepare('SELECT COUNT(*) AS n FROM workers').get() as { n: number };
    const groups = this.db
      .prepare(
        `SELECT channel, pool, version, state, COUNT(*) AS count FROM workers
         GROUP BY channel, pool, version, state ORDER BY channel, pool, version, state`,
      )
      .all() as FleetGroup[];
    const workers = (
      this.db
        .prepare(
          `SELECT w.*, c.created_at AS credential_created_at FROM workers w
           LEFT JOIN worker_credentials c ON c.worker_id = w.id AND c.revoked_at IS NULL
           ORDER BY w.last_seen_at DESC, w.id LIMIT ?`,
        )
        .all(query.workerLimit) as Array<WorkerRow & { credential_created_at: string | null }>
    ).map((row) => ({ ...workerFromRow(row), credential_created_at: row.credential_created_at }));
    const recentFailures = this.db
      .prepare(
        `SELECT worker_id, pool, event, channel, platform, from_version, to_version, reason,
           correlation_id, received_at
         FROM update_events WHERE event IN ('failure', 'rollback') ORDER BY id DESC LIMIT ?`,
      )
      .all(query.failureLimit) as FailureView[];
    const pools = (
      this.db.prepare('SELECT pool, auto_update, updated_at FROM pool_policies ORDER BY pool').all() as Array<{
        pool: string;
        auto_update: number;
        updated_at: string;
      }>
    ).map((row) => ({ pool: row.pool, auto_update: row.auto_update === 1, updated_at: row.updated_at }));
    return { total_workers: total.n, groups, workers, recent_failures: recentFailures, pools };
  }

  async workerCounts(seenSince: Date): Promise<WorkerCount[]> {
    return this.db
      .prepare(
        `SELECT channel, pool, version, COUNT(*) AS count FROM workers WHERE last_seen_at >= ?
         GROUP BY channel, pool, version`,
      )
      .all(seenSince.toISOString()) as WorkerCount[];
  }

  createToken(token: TokenRecord): Promise<void> {
    return this.batcher.write(() => {
      this.authCache.clear();
      this.statements.insertToken.run(
        token.id,
        token.role,
        token.pool,
        token.secretSha256,
        token.label,
        token.createdAt.toISOString(),
        token.revokedAt?.toISOString() ?? null,
      );
    });
  }

  async highestServedSerial(channel: string): Promise<number | null> {
    return (this.statements.highestServedSerial.get(channel) as number | undefined) ?? null;
  }

  raiseServedSerial(channel: string, serial: number, at: Date): Promise<void> {
    return this.batcher.write(() => this.statements.raiseServedSerial.run(channel, serial, at.toISOString()));
  }

  async findToken(id: string): Promise<TokenRecord | null> {
    return this.authCache.token(id, (key) => {
      const row = this.statements.findToken.get(key) as TokenRow | undefined;
      return row ? tokenFromRow(row) : null;
    });
  }

  async revokeToken(id: string, at: Date): Promise<boolean> {
    return this.writeReturning(() => {
      this.authCache.clear();
      return this.statements.revokeToken.run(at.toISOString(), id).changes > 0;
    });
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (this.db.prepare('SELECT * FROM tokens ORDER BY created_at, id').all() as TokenRow[]).map(tokenFromRow);
  }

  createEnrollmentToken(token: EnrollmentTokenRecord): Promise<void> {
    return this.batcher.write(() =>
      this.db
        .prepare(
          `INSERT INTO enrollment_tokens (id, pool, secret_sha256, label, max_uses, uses, expires_at, created_at, created_by, revoked_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          token.id,
          token.pool,
          token.secretSha256,
          token.label,
          token.maxUses,
          token.uses,
          token.expiresAt?.toISOString() ?? null,
          token.createdAt.toISOString(),
          token.createdBy,
          token.revokedAt?.toISOString() ?? null,
        ),
    );
  }

  async findEnrollmentToken(id: string): Promise<EnrollmentTokenRecord | null> {
    const row = this.statements.findEnrollmentToken.get(id) as EnrollmentTokenRow | undefined;
    return row ? enrollmentTokenFromRow(row) : null;
  }

  async revokeEnrollmentToken(id: string, at: Date): Promise<boolean> {
    return this.writeReturning(
      () => this.db.prepare('UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at.toISOString(), id).changes > 0,
    );
  }

  async listEnrollmentTokens(): Promise<EnrollmentTokenRecord[]> {
    return (this.db.prepare('SELECT * FROM enrollment_tokens ORDER BY created_at, id').all() as EnrollmentTokenRow[]).map(enrollmentTokenFromRow);
  }

  async enrollWorker(credential: CredentialRecord): Promise<EnrollOutcome> {
    // No throw inside: the batcher retries a failed batch's writes one by one, and an outcome
    // is an answer, not a failure.
    return this.writeReturning((): EnrollOutcome => {
      const tokenRow = this.statements.findEnrollmentToken.get(credential.sourceTokenId) as EnrollmentTokenRow | undefined;
      if (!tokenRow) return { kind: 'refused', code: 'invalid_enrollment_token' };
      const refusal = enrollmentRefusal(enrollmentTokenFromRow(tokenRow), credential.createdAt);
      if (refusal !== null) return { kind: 'refused', code: refusal };
      const live = this.statements.liveCredentialOf.get(credential.workerId) as CredentialRow | undefined;
      if (live) return { kind: 'already_enrolled', existing: credentialFromRow(live) };
      const spent = this.statements.spendEnrollmentUse.run({ id: credential.sourceTokenId, at: credential.createdAt.toISOString() }).changes > 0;
      if (!spent) return { kind: 'refused', code: 'enrollment_token_used_up' };
      this.authCache.clear();
      this.statements.insertCredential.run(credentialRow(credential));
      return { kind: 'enrolled' };
    });
  }

  async claimCredential(credential: CredentialRecord, claimKeySha256?: Buffer): Promise<{ claimed: true } | { claimed: false; existing: CredentialRecord }> {
    return this.writeReturning(() => {
      const existing = this.statements.newestCredentialOf.get(credential.workerId) as CredentialRow | undefined;
      if (existing) return { claimed: false as const, existing: credentialFromRow(existing) };
      this.authCache.clear();
      this.statements.insertCredential.run(credentialRow(credential));
      if (claimKeySha256 !== undefined) {
        this.db
          .prepare('INSERT INTO credential_claim_keys (worker_id, credential_id, key_sha256, created_at) VALUES (?, ?, ?, ?)')
          .run(credential.workerId, credential.id, claimKeySha256, credential.createdAt.toISOString());
      }
      return { claimed: true as const };
    });
  }

  async reissueClaimedCredential(change: { workerId: string; credentialId: string; claimKeySha256: Buffer; secretSha256: Buffer }): Promise<boolean> {
    return this.writeReturning(() => {
      const live = this.statements.liveCredentialOf.get(change.workerId) as CredentialRow | undefined;
      if (!live || live.id !== change.credentialId || live.source !== 'claim') return false;
      const key = this.db.prepare('SELECT key_sha256 FROM credential_claim_keys WHERE worker_id = ? AND credential_id = ?').get(change.workerId, live.id) as
        | { key_sha256: Buffer }
        | undefined;
      if (!key || !timingSafeEqual(key.key_sha256, change.claimKeySha256)) return false;
      this.authCache.clear();
      this.db.prepare('UPDATE worker_credentials SET secret_sha256 = ? WHERE id = ?').run(change.secretSha256, live.id);
      return true;
    });
  }

  async findCredential(id: string): Promise<CredentialRecord | null> {
    return this.authCache.credential(id, (key) => {
      const row = this.statements.findCredential.get(key) as CredentialRow | undefined;
      return row ? credentialFromRow(row) : null;
    });
  }

  async revokeWorkerCredential(workerId: string, change: { at: Date; by: string }): Promise<CredentialRecord | null> {
    return this.writeReturning(() => {
      const live = this.statements.liveCredentialOf.get(workerId) as CredentialRow | undefined;
      if (!live) return null;
      this.authCache.clear();
      this.db
        .prepare('UPDATE worker_credentials SET revoked_at = ?, revoked_by = ? WHERE id = ?')
        .run(change.at.toISOString(), change.by, live.id);
      return credentialFromRow({ ...live, revoked_at: change.at.toISOString(), revoked_by: change.by });
    });
  }

  async startRotation(pending: PendingCredentialRecord): Promise<boolean> {
    return this.writeReturning(() => {
      const live = this.statements.liveCredentialOf.get(pending.workerId) as CredentialRow | undefined;
      if (!live || live.id !== pending.replacesId) return false;
      this.db
        .prepare(
          `INSERT INTO pending_credentials (worker_id, id, pool, secret_sha256, replaces_id, created_at, created_from)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (worker_id) DO UPDATE SET id = excluded.id, pool = excluded.pool, secret_sha256 = excluded.secret_sha256,
             replaces_id = excluded.replaces_id, created_at = excluded.created_at, created_from = excluded.created_from`,
        )
        .run(pending.workerId, pending.id, pending.pool, pending.secretSha256, pending.replacesId, pending.createdAt.toISOString(), pending.createdFrom);
      return true;
    });
  }

  async findPendingCredential(id: string): Promise<PendingCredentialRecord | null> {
    const row = this.db.prepare('SELECT * FROM pending_credentials WHERE id = ?').get(id) as PendingCredentialRow | undefined;
    return row ? pendingFromRow(row) : null;
  }

  async confirmRotation(pendingId: string, at: Date): Promise<CredentialRecord | null> {
    return this.writeReturning(() => {
      const row = this.db.prepare('SELECT * FROM pending_credentials WHERE id = ?').get(pendingId) as PendingCredentialRow | undefined;
      if (!row) return null;
      const live = this.statements.liveCredentialOf.get(row.worker_id) as CredentialRow | undefined;
      if (!live || live.id !== row.replaces_id) return null;
      this.authCache.clear();
      this.db.prepare("UPDATE worker_credentials SET revoked_at = ?, revoked_by = 'rotation' WHERE id = ?").run(at.toISOString(), live.id);
      const confirmed: CredentialRecord = {
        id: row.id,
        workerId: row.worker_id,
        pool: row.pool,
        secretSha256: row.secret_sha256,
        // The lineage: a rotated credential keeps the source of the first one.
        source: live.source,
        sourceTokenId: live.source_token_id,
        createdAt: at,
        createdFrom: row.created_from,
        revokedAt: null,
        revokedBy: null,
      };
      this.statements.insertCredential.run(credentialRow(confirmed));
      this.db.prepare('DELETE FROM pending_credentials WHERE worker_id = ?').run(row.worker_id);
      this.db.prepare('DELETE FROM credential_rotation_requests WHERE worker_id = ?').run(row.worker_id);
      return confirmed;
    });
  }

  async requestRotation(workerId: string, request: { at: Date; by: string }): Promise<boolean> {
    return this.writeReturning(() => {
      if (!this.statements.liveCredentialOf.get(workerId)) return false;
      this.db
        .prepare(
          `INSERT INTO credential_rotation_requests (worker_id, requested_at, requested_by) VALUES (?, ?, ?)
           ON CONFLICT (worker_id) DO UPDATE SET requested_at = excluded.requested_at, requested_by = excluded.requested_by`,
        )
        .run(workerId, request.at.toISOString(), request.by);
      return true;
    });
  }

  async rotationRequested(workerId: string): Promise<boolean> {
    return this.statements.rotationRequested.get(workerId) !== undefined;
  }

  createConsoleSession(session: ConsoleSessionRecord): Promise<void> {
    return this.batcher.write(() =>
      this.db
        .prepare(
          `INSERT INTO console_sessions (id, secret_sha256, token_id, created_at, expires_at, created_from, ended_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          session.id,
          session.secretSha256,
          session.tokenId,
          session.createdAt.toISOString(),
          session.expiresAt.toISOString(),
          session.createdFrom,
          session.endedAt?.toISOString() ?? null,
        ),
    );
  }

  async findConsoleSession(id: string): Promise<ConsoleSessionRecord | null> {
    const row = this.db.prepare('SELECT * FROM console_sessions WHERE id = ?').get(id) as ConsoleSessionRow | undefined;
    return row ? consoleSessionFromRow(row) : null;
  }

  endConsoleSession(id: string, at: Date, purgeBefore: Date): Promise<boolean> {
    return this.writeReturning(() => {
      const ended = this.db.prepare('UPDATE console_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL').run(at.toISOString(), id).changes > 0;
      this.db.prepare('DELETE FROM console_sessions WHERE expires_at < ?').run(purgeBefore.toISOString());
      return ended;
    });
  }

  async searchWorkers(search: WorkerSearch): Promise<{ workers: WorkerView[]; total: number }> {
    const { where, params } = workerSearchWhere(search);
    const total = this.db.prepare(`SELECT COUNT(*) FROM workers${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`).pluck().get(params) as number;
    if (search.after !== undefined) {
      where.push('id > @after');
      params['after'] = search.after;
    }
    params['limit'] = search.limit;
    const rows = this.db
      .prepare(`SELECT * FROM workers${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT @limit`)
      .all(params) as WorkerRow[];
    return { workers: rows.map(workerFromRow), total };
  }

  async workerFacets(): Promise<{ pools: string[]; versions: string[]; channels: string[] }> {
    // DISTINCT over an index's leading column is a skip-scan: cheap at any fleet size.
    const distinct = (sql: string) => this.db.prepare(sql).pluck().all() as string[];
    return {
      pools: distinct('SELECT DISTINCT pool FROM workers ORDER BY pool'),
      versions: distinct('SELECT DISTINCT version FROM workers ORDER BY version'),
      channels: distinct('SELECT DISTINCT channel FROM workers WHERE channel IS NOT NULL ORDER BY channel'),
    };
  }

  async workerStateCounts(seenSince: Date): Promise<WorkerStateCount[]> {
    return this.db
      .prepare(
        `SELECT channel, version, state, update_state, COUNT(*) AS count FROM workers WHERE last_seen_at >= ?
         GROUP BY channel, version, state, update_state`,
      )
      .all(seenSince.toISOString()) as WorkerStateCount[];
  }

  async unseenWorkerCounts(seenSince: Date, seenBefore: Date): Promise<Array<{ channel: string | null; pool: string; count: number }>> {
    return this.db
      .prepare(
        `SELECT channel, pool, COUNT(*) AS count FROM workers WHERE last_seen_at >= ? AND last_seen_at < ?
         GROUP BY channel, pool`,
      )
      .all(seenSince.toISOString(), seenBefore.toISOString()) as Array<{ channel: string | null; pool: string; count: number }>;
  }

  async stalledUpdateCounts(
    seenSince: Date,
    updateBefore: Date,
    states: readonly UpdateState[],
  ): Promise<Array<{ channel: string | null; update_state: UpdateState; count: number }>> {
    if (states.length === 0) return [];
    return this.db
      .prepare(
        `SELECT channel, update_state, COUNT(*) AS count FROM workers
         WHERE last_seen_at >= ? AND update_at < ? AND update_state IN (${states.map(() => '?').join(', ')})
         GROUP BY channel, update_state`,
      )
      .all(seenSince.toISOString(), updateBefore.toISOString(), ...states) as Array<{ channel: string | null; update_state: UpdateState; count: number }>;
  }

  async failureGroups(since: Date, workerIdsPerGroup: number): Promise<FailureGroup[]> {
    const groups = this.db
      .prepare(
        `SELECT event, reason, to_version, channel, COUNT(*) AS reports, COUNT(DISTINCT worker_id) AS workers,
           MAX(received_at) AS last_at
         FROM update_events WHERE received_at >= ? AND event IN ('failure', 'rollback')
         GROUP BY event, reason, to_version, channel ORDER BY reports DESC, last_at DESC`,
      )
      .all(since.toISOString()) as Array<Omit<FailureGroup, 'worker_ids'>>;
    const workerIds = this.db
      .prepare(
        `SELECT worker_id FROM update_events
         WHERE received_at >= @since AND event = @event AND reason IS @reason AND to_version = @to_version AND channel = @channel
         GROUP BY worker_id ORDER BY MAX(id) DESC LIMIT @limit`,
      )
      .pluck();
    return groups.map((group) => ({
      ...group,
      worker_ids: workerIds.all({ since: since.toISOString(), event: group.event, reason: group.reason, to_version: group.to_version, channel: group.channel, limit: workerIdsPerGroup }) as string[],
    }));
  }

  recordVersionSample(slot: Date, counts: readonly WorkerCount[], keepSince: Date): Promise<boolean> {
    return this.writeReturning(() => {
      const at = slot.toISOString();
      if (this.db.prepare('INSERT INTO fleet_sample_slots (sampled_at) VALUES (?) ON CONFLICT DO NOTHING').run(at).changes === 0) return false;
      const insert = this.db.prepare('INSERT INTO fleet_version_samples (sampled_at, channel, version, count) VALUES (?, ?, ?, ?)');
      for (const entry of versionSampleRows(counts)) insert.run(at, entry.channel, entry.version, entry.count);
      const keep = keepSince.toISOString();
      this.db.prepare('DELETE FROM fleet_version_samples WHERE sampled_at < ?').run(keep);
      this.db.prepare('DELETE FROM fleet_sample_slots WHERE sampled_at < ?').run(keep);
      return true;
    });
  }

  async versionSamples(channel: string, since: Date): Promise<Array<{ sampled_at: string; version: string; count: number }>> {
    return this.db
      .prepare('SELECT sampled_at, version, count FROM fleet_version_samples WHERE channel = ? AND sampled_at >= ? ORDER BY sampled_at, version')
      .all(channel, since.toISOString()) as Array<{ sampled_at: string; version: string; count: number }>;
  }

  tryLease(name: string, holder: string, now: Date, ttlMs: number): Promise<boolean> {
    return this.writeReturning(
      () =>
        this.db
          .prepare(
            `INSERT INTO fleet_leases (name, holder, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE fleet_leases.holder = excluded.holder OR fleet_leases.expires_at <= ?`,
          )
          .run(name, holder, new Date(now.getTime() + ttlMs).toISOString(), now.toISOString()).changes > 0,
    );
  }

  releaseLease(name: string, holder: string): Promise<void> {
    return this.batcher.write(() => this.db.prepare('DELETE FROM fleet_leases WHERE name = ? AND holder = ?').run(name, holder));
  }

  pruneEvents(before: Date, limit: number): Promise<number> {
    return this.writeReturning(
      () =>
        this.db
          .prepare('DELETE FROM update_events WHERE id IN (SELECT id FROM update_events WHERE received_at < ? ORDER BY received_at LIMIT ?)')
          .run(before.toISOString(), limit).changes,
    );
  }

  pruneWorkers(before: Date, limit: number): Promise<number> {
    return this.writeReturning(() => {
      const ids = this.db.prepare('SELECT id FROM workers WHERE last_seen_at < ? ORDER BY last_seen_at LIMIT ?').pluck().all(before.toISOString(), limit) as string[];
      if (ids.length === 0) return 0;
      const list = JSON.stringify(ids);
      // Admissions (serial floors) and credentials (identities) are kept on purpose.
      for (const table of ['pending_credentials', 'credential_rotation_requests']) {
        this.db.prepare(`DELETE FROM ${table} WHERE worker_id IN (SELECT value FROM json_each(?))`).run(list);
      }
      return this.db.prepare('DELETE FROM workers WHERE id IN (SELECT value FROM json_each(?))').run(list).changes;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.batcher.flush();
    // Writers still waiting for their flush get their answer before the database goes.
    await this.syncer?.idle();
    this.db.close();
  }
}
