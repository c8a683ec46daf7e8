import { timingSafeEqual } from 'node:crypto';
import pg from 'pg';
import type { PoolPolicy, UpdateState } from '../../../protocol/messages.js';
import type { RolloutPlan } from '../../../protocol/rollouts.js';
import type { RolloutReport } from '../../rollout/failure-rate.js';
import {
  FleetStoreError,
  enrollmentRefusal,
  type AdmissionRecord,
  type ConsoleSessionRecord,
  type CredentialRecord,
  type EnrollmentTokenRecord,
  type EnrollOutcome,
  type FailureGroup,
  type FailureView,
  type FleetGroup,
  type FleetQuery,
  type FleetStore,
  type FleetView,
  type HeartbeatRecord,
  type LiveWorker,
  type PendingCredentialRecord,
  type RolloutRecord,
  type RolloutState,
  type RolloutStateChange,
  type StoredReport,
  type TokenRecord,
  type WorkerCount,
  type WorkerHeartbeat,
  type WorkerRegistration,
  type WorkerSearch,
  type WorkerStateCount,
  type WorkerView,
} from '../fleet-store.js';
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
} from '../fleet-rows.js';
import { ChangeListener } from './change-listener.js';
import { migratePostgres } from './migrate.js';
import { NotifiedAuthCache } from './notified-auth-cache.js';
import { isRetryableConflict, StatementCoalescer } from './statement-coalescer.js';

export interface PostgresFleetStoreOptions {
  /** Connections this replica opens (besides the one that listens for changes). */
  poolSize?: number;
}

export const DEFAULT_POSTGRES_POOL_SIZE = 10;

/** The URL without its password, for messages and logs. */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

type HeartbeatResult = HeartbeatRecord | null;

interface HeartbeatRow {
  id: string;
  pool: string;
  version: string;
  state: string;
  to_version: string | null;
  update_state: string | null;
  download_percent: number | null;
  reason: string | null;
  update_at: string | null;
  at: string;
}

/** Columns of `update_events` a report writes, in the order of the batched INSERT. */
const REPORT_COLUMNS = [
  ['received_at', 'text'],
  ['request_id', 'text'],
  ['worker_id', 'text'],
  ['pool', 'text'],
  ['event', 'text'],
  ['channel', 'text'],
  ['platform', 'text'],
  ['from_version', 'text'],
  ['to_version', 'text'],
  ['reason', 'text'],
  ['duration_ms', 'int4'],
  ['correlation_id', 'text'],
  ['serial', 'int4'],
] as const;

/**
 * The database cannot be reached or cannot serve now: a refused, reset or timed-out connection,
 * SQLSTATE classes 08 (connection), 53 (insufficient resources), 57P0x (shutting down, starting
 * up) and 58 (system error).
 */
function isConnectionFailure(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    if (/^(08|53|58)/.test(code) || /^57P0/.test(code)) return true;
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE'].includes(code)) return true;
  }
  return typeof message === 'string' && /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error/.test(message);
}

/** Unique violation: a row another transaction (maybe on another replica) committed first. */
function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '23505';
}

/** Worker search terms in PostgreSQL's numbered parameters; `params` grows as terms are added. */
function workerSearchWhere(search: WorkerSearch, params: unknown[]): string[] {
  const where: string[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (search.idPrefix !== undefined && search.idPrefix !== '') {
    // A range on the primary key, served by its index whatever the collation.
    where.push(`id >= ${param(search.idPrefix)} AND id < ${param(`${search.idPrefix}\u{10ffff}`)}`);
  }
  for (const [column, value] of [
    ['pool', search.pool],
    ['version', search.version],
    ['channel', search.channel],
    ['state', search.state],
  ] as const) {
    if (value !== undefined) where.push(`${column} = ${param(value)}`);
  }
  if (search.updateState === 'none') where.push('update_state IS NULL');
  else if (search.updateState !== undefined) where.push(`update_state = ${param(search.updateState)}`);
  if (search.seenSince !== undefined) where.push(`last_seen_at >= ${param(search.seenSince.toISOString())}`);
  if (search.seenBefore !== undefined) where.push(`last_seen_at < ${param(search.seenBefore.toISOString())}`);
  return where;
}

/** Opens the pool, migrates (once across replicas) and starts listening for changes. */
export async function openPostgresFleetStore(url: string, options: PostgresFleetStoreOptions = {}): Promise<PostgresFleetStore> {
  const store = new PostgresFleetStore(url, options);
  try {
    await store.start();
  } catch (err) {
    await store.close();
    if (err instanceof FleetStoreError) throw err;
    throw new FleetStoreError('database_unavailable', `cannot use the PostgreSQL database ${redactDatabaseUrl(url)}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return store;
}

/**
 * The fleet store several server replicas share (docs/server.md, "Several replicas"). Every write
 * resolves after its transaction committed (synchronous_commit as the database has it, `on` by
 * default), so a 202 survives a kill -9 of any replica. Heartbeats and reports are group-committed
 * by StatementCoalescer; tokens, credentials and pool policies are cached per replica and
 * forgotten entry by entry as the database notifies their changes.
 */
export class PostgresFleetStore implements FleetStore {
  readonly kind = 'postgres';
  private readonly pool: pg.Pool;
  private readonly listener: ChangeListener;
  private readonly authCache: NotifiedAuthCache;
  /** Moves with every notified rollout change; see rolloutEpoch(). */
  private rolloutChanges = 0;
  private readonly heartbeats: StatementCoalescer<HeartbeatRow, HeartbeatResult>;
  private readonly reports: StatementCoalescer<StoredReport, boolean>;
  private closed = false;

  constructor(
    private readonly url: string,
    options: PostgresFleetStoreOptions = {},
  ) {
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? DEFAULT_POSTGRES_POOL_SIZE,
      application_name: 'bytebiota-server',
      // A request waits at most this long for a connection, or for a statement's answer, then
      // fails with 503 rather than hang on a database cut off without a word.
      connectionTimeoutMillis: 10_000,
      query_timeout: 60_000,
    });
    // An idle connection that breaks (the database restarted) is replaced on next use; without a
    // listener its error would end the process.
    this.pool.on('error', () => undefined);
    this.listener = new ChangeListener({
      connectionString: url,
      onChange: (kind, key) => {
        if (kind === 'rollouts') this.rolloutChanges += 1;
        else this.authCache.forget(kind, key);
      },
      onGap: () => {
        this.rolloutChanges += 1;
        this.authCache.clear();
      },
    });
    this.authCache = new NotifiedAuthCache(() => this.listener.connected);
    this.heartbeats = new StatementCoalescer({ writeMany: (rows) => this.writeHeartbeats(rows) });
    this.reports = new StatementCoalescer({ writeMany: (reports) => this.writeReports(reports) });
  }

  /** Connect, migrate and listen; called once by openPostgresFleetStore. */
  async start(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await migratePostgres(client);
    } finally {
      client.release();
    }
    await this.listener.start();
  }

  /** One statement on a pooled connection; a lost database becomes `database_unavailable` (503). */
  private async query<T extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<pg.QueryResult<T>> {
    try {
      return await this.pool.query<T>(text, params);
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  /** `err` as FleetStoreError `database_unavailable` when it says the database cannot be reached or used now. */
  private unavailable(err: unknown): unknown {
    if (!isConnectionFailure(err)) return err;
    return new FleetStoreError('database_unavailable', `PostgreSQL database ${redactDatabaseUrl(this.url)} is not reachable: ${(err as Error).message}`, { cause: err });
  }

  private async rows<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return (await this.query(text, params)).rows as T[];
  }

  private async first<T>(text: string, params: unknown[] = []): Promise<T | null> {
    return (await this.rows<T>(text, params))[0] ?? null;
  }

  private async changed(text: string, params: unknown[] = []): Promise<boolean> {
    return ((await this.query(text, params)).rowCount ?? 0) > 0;
  }

  /** Run `work` in one transaction, again when it lost a deadlock or serialization race. */
  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (err) {
        throw this.unavailable(err);
      }
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        if (!isRetryableConflict(err) || attempt >= 3) throw this.unavailable(err);
      } finally {
        client.release();
      }
    }
  }

  async ping(): Promise<void> {
    try {
      await this.query('SELECT 1');
    } catch (err) {
      if (err instanceof FleetStoreError) throw err;
      throw new FleetStoreError('database_unavailable', `PostgreSQL database ${redactDatabaseUrl(this.url)} is not usable: ${(err as Error).message}`, { cause: err });
    }
  }

  async registerWorker(worker: WorkerRegistration): Promise<void> {
    await this.query(
      `INSERT INTO workers (id, pool, channel, platform, version, state, registered_at, last_seen_at)
       VALUES ($1, $2, $3, $4, $5, 'starting', $6, $6)
       ON CONFLICT (id) DO UPDATE SET pool = excluded.pool, channel = excluded.channel,
         platform = excluded.platform, version = excluded.version, state = 'starting',
         registered_at = excluded.registered_at, last_seen_at = excluded.last_seen_at`,
      [worker.workerId, worker.pool, worker.channel, worker.platform, worker.version, worker.at.toISOString()],
    );
  }

  recordHeartbeat(heartbeat: WorkerHeartbeat): Promise<HeartbeatResult> {
    const update = heartbeat.update;
    return this.heartbeats.write({
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
    });
  }

  /**
   * One UPDATE for many heartbeats; a worker twice in the batch keeps its latest. It also returns
   * what the answer needs (admissions, a rotation request), so a heartbeat costs the database one
   * statement shared with its batch, not three round trips of its own.
   */
  private async writeHeartbeats(batch: HeartbeatRow[]): Promise<HeartbeatResult[]> {
    const latest = new Map<string, HeartbeatRow>();
    for (const row of batch) latest.set(row.id, row);
    // Rows in one order on every replica, so that two batches never wait on each other in a cycle.
    const rows = [...latest.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const column = <K extends keyof HeartbeatRow>(key: K) => rows.map((row) => row[key]);
    const result = await this.query<{ id: string; channel: string | null; platform: string | null; admitted: number[]; rotation_requested: boolean }>(
      `UPDATE workers AS w SET pool = v.pool, version = v.version, state = v.state,
         update_to_version = v.to_version, update_state = v.update_state,
         update_download_percent = v.download_percent, update_reason = v.reason,
         update_at = CASE
           WHEN w.update_state IS NOT DISTINCT FROM v.update_state AND w.update_to_version IS NOT DISTINCT FROM v.to_version
             AND w.update_download_percent IS NOT DISTINCT FROM v.download_percent AND w.update_reason IS NOT DISTINCT FROM v.reason
           THEN w.update_at ELSE v.update_at END,
         last_seen_at = v.at
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[], $9::text[], $10::text[])
         AS v (id, pool, version, state, to_version, update_state, download_percent, reason, update_at, at)
       WHERE w.id = v.id
       RETURNING w.id, w.channel, w.platform,
         ARRAY(SELECT a.serial FROM rollout_admissions a WHERE a.worker_id = w.id AND a.channel = w.channel ORDER BY a.serial DESC) AS admitted,
         EXISTS (SELECT 1 FROM credential_rotation_requests r WHERE r.worker_id = w.id) AS rotation_requested`,
      [
        column('id'),
        column('pool'),
        column('version'),
        column('state'),
        column('to_version'),
        column('update_state'),
        column('download_percent'),
        column('reason'),
        column('update_at'),
        column('at'),
      ],
    );
    const found = new Map(
      result.rows.map((row) => [row.id, { channel: row.channel, platform: row.platform, admittedSerials: row.admitted, rotationRequested: row.rotation_requested }]),
    );
    return batch.map((row) => found.get(row.id) ?? null);
  }

  recordReport(report: StoredReport): Promise<boolean> {
    return this.reports.write(report);
  }

  /**
   * One INSERT for many reports. A report whose worker, correlation id and event are already
   * stored (the worker retried it, maybe against another replica) is not stored again; one
   * without a correlation id is always stored. True for each report stored.
   */
  private async writeReports(batch: StoredReport[]): Promise<boolean[]> {
    const values: Record<(typeof REPORT_COLUMNS)[number][0], unknown[]> = Object.fromEntries(REPORT_COLUMNS.map(([name]) => [name, []])) as never;
    for (const report of batch) {
      values.received_at.push(report.receivedAt.toISOString());
      values.request_id.push(report.requestId);
      values.worker_id.push(report.worker_id);
      values.pool.push(report.pool);
      values.event.push(report.event);
      values.channel.push(report.channel);
      values.platform.push(report.platform);
      values.from_version.push(report.from_version);
      values.to_version.push(report.to_version);
      values.reason.push(report.reason ?? null);
      values.duration_ms.push(report.duration_ms ?? null);
      values.correlation_id.push(report.correlation_id ?? null);
      values.serial.push(report.rolloutSerial);
    }
    const inserted = await this.query<{ worker_id: string; correlation_id: string | null; event: string }>(
      `INSERT INTO update_events (${REPORT_COLUMNS.map(([name]) => name).join(', ')})
       SELECT * FROM unnest(${REPORT_COLUMNS.map(([, type], i) => `$${i + 1}::${type}[]`).join(', ')})
       ON CONFLICT (worker_id, correlation_id, event) WHERE correlation_id IS NOT NULL DO NOTHING
       RETURNING worker_id, correlation_id, event`,
      REPORT_COLUMNS.map(([name]) => values[name]),
    );
    const key = (workerId: string, correlationId: string, event: string) => JSON.stringify([workerId, correlationId, event]);
    const stored = new Set(inserted.rows.filter((row) => row.correlation_id !== null).map((row) => key(row.worker_id, row.correlation_id!, row.event)));
    // The first of a batch's copies of one report is the one stored.
    const seen = new Set<string>();
    return batch.map((report) => {
      if (report.correlation_id === undefined) return true;
      const id = key(report.worker_id, report.correlation_id, report.event);
      if (seen.has(id)) return false;
      seen.add(id);
      return stored.has(id);
    });
  }

  async getWorker(workerId: string): Promise<WorkerView | null> {
    const row = await this.first<WorkerRow>('SELECT * FROM workers WHERE id = $1', [workerId]);
    return row ? workerFromRow(row) : null;
  }

  liveWorkers(channel: string, seenSince: Date): Promise<LiveWorker[]> {
    return this.rows<LiveWorker>('SELECT id, pool, version, platform FROM workers WHERE channel = $1 AND last_seen_at >= $2', [channel, seenSince.toISOString()]);
  }

  workerEvents(workerId: string, limit: number): Promise<FailureView[]> {
    return this.rows<FailureView>(
      `SELECT worker_id, pool, event, channel, platform, from_version, to_version, reason, correlation_id, received_at
       FROM update_events WHERE worker_id = $1 ORDER BY id DESC LIMIT $2`,
      [workerId, limit],
    );
  }

  async workerChannels(): Promise<string[]> {
    return (await this.rows<{ channel: string }>('SELECT DISTINCT channel FROM workers WHERE channel IS NOT NULL')).map((row) => row.channel);
  }

  getPoolPolicy(pool: string): Promise<PoolPolicy | null> {
    return this.authCache.policy(pool, async (key) => {
      const row = await this.first<{ auto_update: number; maintenance_windows: string | null }>(
        'SELECT auto_update, maintenance_windows FROM pool_policies WHERE pool = $1',
        [key],
      );
      return row ? policyFromRow(row) : null;
    });
  }

  async setPoolPolicy(pool: string, policy: PoolPolicy, change: { at: Date; byTokenId: string }): Promise<void> {
    const windows = policy.maintenance_windows && policy.maintenance_windows.length > 0 ? JSON.stringify(policy.maintenance_windows) : null;
    await this.query(
      `INSERT INTO pool_policies (pool, auto_update, maintenance_windows, updated_at, updated_by_token) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (pool) DO UPDATE SET auto_update = excluded.auto_update, maintenance_windows = excluded.maintenance_windows,
         updated_at = excluded.updated_at, updated_by_token = excluded.updated_by_token`,
      [pool, policy.auto_update ? 1 : 0, windows, change.at.toISOString(), change.byTokenId],
    );
    // This replica sees its own write at once, before the notification comes back.
    this.authCache.forget('policy', pool);
  }

  async listPoolPolicies(): Promise<Array<{ pool: string; policy: PoolPolicy; updated_at: string }>> {
    const rows = await this.rows<{ pool: string; auto_update: number; maintenance_windows: string | null; updated_at: string }>(
      'SELECT pool, auto_update, maintenance_windows, updated_at FROM pool_policies ORDER BY pool',
    );
    return rows.map((row) => ({ pool: row.pool, policy: policyFromRow(row), updated_at: row.updated_at }));
  }

  async createRollout(rollout: RolloutRecord): Promise<boolean> {
    const created = await this.changed(
      `INSERT INTO rollouts (channel, serial, version, manifest, expires_at, urgent, plan, state, state_reason,
         state_changed_at, state_changed_by, failures_counted_from, waves_started, started_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
       ON CONFLICT (channel, serial) DO NOTHING`,
      [
        rollout.channel,
        rollout.serial,
        rollout.version,
        rollout.manifest,
        rollout.expiresAt.toISOString(),
        rollout.urgent ? 1 : 0,
        JSON.stringify(rollout.plan),
        rollout.state,
        rollout.stateReason,
        rollout.stateChangedAt.toISOString(),
        rollout.stateChangedBy,
        rollout.failuresCountedFrom.toISOString(),
        JSON.stringify(rollout.wavesStarted.map((at) => at.toISOString())),
        rollout.startedAt.toISOString(),
      ],
    );
    return this.rolloutWritten(created);
  }

  /** A rollout write through this replica moves its epoch at once, before the notification comes back. */
  private rolloutWritten(changed: boolean): boolean {
    if (changed) this.rolloutChanges += 1;
    return changed;
  }

  async listRollouts(channel: string, limit: number): Promise<RolloutRecord[]> {
    return (await this.rows<RolloutRow>('SELECT * FROM rollouts WHERE channel = $1 ORDER BY serial DESC LIMIT $2', [channel, limit])).map(rolloutFromRow);
  }

  async rolloutChannels(states: readonly RolloutState[]): Promise<string[]> {
    if (states.length === 0) return [];
    return (await this.rows<{ channel: string }>('SELECT DISTINCT channel FROM rollouts WHERE state = ANY($1) ORDER BY channel', [[...states]])).map(
      (row) => row.channel,
    );
  }

  /**
   * Moves with every rollout change notified by the database, and at every gap in notifications.
   * While nobody listens it moves at every call, so a cache keyed by it reloads every time rather
   * than serve a halt it may have missed.
   */
  async rolloutEpoch(): Promise<number> {
    if (!this.listener.connected) this.rolloutChanges += 1;
    return this.rolloutChanges;
  }

  async setRolloutState(channel: string, serial: number, fromStates: readonly RolloutState[], change: RolloutStateChange): Promise<boolean> {
    const changed = await this.changed(
      `UPDATE rollouts SET state = $1, state_reason = $2, state_changed_at = $3, state_changed_by = $4,
         failures_counted_from = CASE WHEN $5 THEN $3 ELSE failures_counted_from END
       WHERE channel = $6 AND serial = $7 AND state = ANY($8)`,
      [change.state, change.reason, change.at.toISOString(), change.by, change.restartFailureCount === true, channel, serial, [...fromStates]],
    );
    return this.rolloutWritten(changed);
  }

  async startRolloutWave(channel: string, serial: number, waveIndex: number, at: Date): Promise<boolean> {
    const started = await this.transaction(async (client) => {
      const found = await client.query<{ waves_started: string }>(
        "SELECT waves_started FROM rollouts WHERE channel = $1 AND serial = $2 AND state = 'active' FOR UPDATE",
        [channel, serial],
      );
      const row = found.rows[0];
      if (!row) return false;
      const waves = JSON.parse(row.waves_started) as string[];
      if (waves.length !== waveIndex) return false;
      waves.push(at.toISOString());
      await client.query('UPDATE rollouts SET waves_started = $1 WHERE channel = $2 AND serial = $3', [JSON.stringify(waves), channel, serial]);
      return true;
    });
    return this.rolloutWritten(started);
  }

  async admitWorker(admission: AdmissionRecord): Promise<void> {
    await this.query(
      `INSERT INTO rollout_admissions (channel, serial, worker_id, pool, wave, forced, admitted_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel, serial, worker_id) DO NOTHING`,
      [admission.channel, admission.serial, admission.workerId, admission.pool, admission.wave, admission.forced ? 1 : 0, admission.admittedAt.toISOString()],
    );
  }

  async workerAdmittedSerials(workerId: string, channel: string): Promise<number[]> {
    return (
      await this.rows<{ serial: number }>('SELECT serial FROM rollout_admissions WHERE worker_id = $1 AND channel = $2 ORDER BY serial DESC', [workerId, channel])
    ).map((row) => row.serial);
  }

  async rolloutAdmissions(channel: string, serial: number): Promise<AdmissionRecord[]> {
    return (await this.rows<AdmissionRow>('SELECT * FROM rollout_admissions WHERE channel = $1 AND serial = $2', [channel, serial])).map(admissionFromRow);
  }

  async liveAdmittedWorkers(channel: string, serial: number, seenSince: Date): Promise<string[]> {
    return (
      await this.rows<{ worker_id: string }>(
        `SELECT a.worker_id FROM rollout_admissions a JOIN workers w ON w.id = a.worker_id
         WHERE a.channel = $1 AND a.serial = $2 AND w.last_seen_at >= $3`,
        [channel, serial, seenSince.toISOString()],
      )
    ).map((row) => row.worker_id);
  }

  async livePools(channel: string, seenSince: Date): Promise<string[]> {
    return (
      await this.rows<{ pool: string }>('SELECT DISTINCT pool FROM workers WHERE channel = $1 AND last_seen_at >= $2 ORDER BY pool', [channel, seenSince.toISOString()])
    ).map((row) => row.pool);
  }

  rolloutReports(channel: string, serial: number, since: Date): Promise<Array<RolloutReport & { received_at: string }>> {
    return this.rows(
      `SELECT worker_id, event, reason, received_at FROM update_events
       WHERE channel = $1 AND serial = $2 AND received_at >= $3 ORDER BY id`,
      [channel, serial, since.toISOString()],
    );
  }

  async getChannelPlan(channel: string): Promise<RolloutPlan | null> {
    const row = await this.first<{ plan: string }>('SELECT plan FROM channel_plans WHERE channel = $1', [channel]);
    return row ? (JSON.parse(row.plan) as RolloutPlan) : null;
  }

  async setChannelPlan(channel: string, plan: RolloutPlan, change: { at: Date; byTokenId: string }): Promise<void> {
    await this.query(
      `INSERT INTO channel_plans (channel, plan, updated_at, updated_by_token) VALUES ($1, $2, $3, $4)
       ON CONFLICT (channel) DO UPDATE SET plan = excluded.plan, updated_at = excluded.updated_at, updated_by_token = excluded.updated_by_token`,
      [channel, JSON.stringify(plan), change.at.toISOString(), change.byTokenId],
    );
  }

  async fleetView(query: FleetQuery): Promise<FleetView> {
    const [total, groups, workers, recentFailures, pools] = await Promise.all([
      this.first<{ n: number }>('SELECT COUNT(*)::int AS n FROM workers'),
      this.rows<FleetGroup>(
        `SELECT channel, pool, version, state, COUNT(*)::int AS count FROM workers
         GROUP BY channel, pool, version, state ORDER BY channel, pool, version, state`,
      ),
      this.rows<WorkerRow & { credential_created_at: string | null }>(
        `SELECT w.*, c.created_at AS credential_created_at FROM workers w
         LEFT JOIN worker_credentials c ON c.worker_id = w.id AND c.revoked_at IS NULL
         ORDER BY w.last_seen_at DESC, w.id LIMIT $1`,
        [query.workerLimit],
      ),
      this.rows<FailureView>(
        `SELECT worker_id, pool, event, channel, platform, from_version, to_version, reason, correlation_id, received_at
         FROM update_events WHERE event IN ('failure', 'rollback') ORDER BY id DESC LIMIT $1`,
        [query.failureLimit],
      ),
      this.rows<{ pool: string; auto_update: number; updated_at: string }>('SELECT pool, auto_update, updated_at FROM pool_policies ORDER BY pool'),
    ]);
    return {
      total_workers: total?.n ?? 0,
      groups,
      workers: workers.map((row) => ({ ...workerFromRow(row), credential_created_at: row.credential_created_at })),
      recent_failures: recentFailures,
      pools: pools.map((row) => ({ pool: row.pool, auto_update: row.auto_update === 1, updated_at: row.updated_at })),
    };
  }

  workerCounts(seenSince: Date): Promise<WorkerCount[]> {
    return this.rows<WorkerCount>(
      `SELECT channel, pool, version, COUNT(*)::int AS count FROM workers WHERE last_seen_at >= $1
       GROUP BY channel, pool, version`,
      [seenSince.toISOString()],
    );
  }

  async highestServedSerial(channel: string): Promise<number | null> {
    return (await this.first<{ highest_serial: number }>('SELECT highest_serial FROM served_serials WHERE channel = $1', [channel]))?.highest_serial ?? null;
  }

  async raiseServedSerial(channel: string, serial: number, at: Date): Promise<void> {
    await this.query(
      `INSERT INTO served_serials (channel, highest_serial, updated_at) VALUES ($1, $2, $3)
       ON CONFLICT (channel) DO UPDATE SET highest_serial = excluded.highest_serial, updated_at = excluded.updated_at
       WHERE excluded.highest_serial > served_serials.highest_serial`,
      [channel, serial, at.toISOString()],
    );
  }

  async createToken(token: TokenRecord): Promise<void> {
    await this.query('INSERT INTO tokens (id, role, pool, secret_sha256, label, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
      token.id,
      token.role,
      token.pool,
      token.secretSha256,
      token.label,
      token.createdAt.toISOString(),
      token.revokedAt?.toISOString() ?? null,
    ]);
    this.authCache.forget('token', token.id);
  }

  findToken(id: string): Promise<TokenRecord | null> {
    return this.authCache.token(id, async (key) => {
      const row = await this.first<TokenRow>('SELECT * FROM tokens WHERE id = $1', [key]);
      return row ? tokenFromRow(row) : null;
    });
  }

  async revokeToken(id: string, at: Date): Promise<boolean> {
    const revoked = await this.changed('UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at.toISOString(), id]);
    this.authCache.forget('token', id);
    return revoked;
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.rows<TokenRow>('SELECT * FROM tokens ORDER BY created_at, id')).map(tokenFromRow);
  }

  async createEnrollmentToken(token: EnrollmentTokenRecord): Promise<void> {
    await this.query(
      `INSERT INTO enrollment_tokens (id, pool, secret_sha256, label, max_uses, uses, expires_at, created_at, created_by, revoked_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
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
      ],
    );
  }

  async findEnrollmentToken(id: string): Promise<EnrollmentTokenRecord | null> {
    const row = await this.first<EnrollmentTokenRow>('SELECT * FROM enrollment_tokens WHERE id = $1', [id]);
    return row ? enrollmentTokenFromRow(row) : null;
  }

  revokeEnrollmentToken(id: string, at: Date): Promise<boolean> {
    return this.changed('UPDATE enrollment_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at.toISOString(), id]);
  }

  async listEnrollmentTokens(): Promise<EnrollmentTokenRecord[]> {
    return (await this.rows<EnrollmentTokenRow>('SELECT * FROM enrollment_tokens ORDER BY created_at, id')).map(enrollmentTokenFromRow);
  }

  private async insertCredential(client: pg.ClientBase, credential: CredentialRecord): Promise<void> {
    const row = credentialRow(credential);
    await client.query(
      `INSERT INTO worker_credentials (id, worker_id, pool, secret_sha256, source, source_token_id, created_at, created_from, revoked_at, revoked_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [row.id, row.worker_id, row.pool, row.secret_sha256, row.source, row.source_token_id, row.created_at, row.created_from, row.revoked_at, row.revoked_by],
    );
  }

  private async liveCredentialOf(client: pg.Pool | pg.ClientBase, workerId: string, lock = false): Promise<CredentialRow | null> {
    const found = await client.query<CredentialRow>(`SELECT * FROM worker_credentials WHERE worker_id = $1 AND revoked_at IS NULL${lock ? ' FOR UPDATE' : ''}`, [workerId]);
    return found.rows[0] ?? null;
  }

  async enrollWorker(credential: CredentialRecord): Promise<EnrollOutcome> {
    try {
      return await this.transaction(async (client): Promise<EnrollOutcome> => {
        // The token's row is locked: enrollments spending the same token go one at a time.
        const tokenRow = (await client.query<EnrollmentTokenRow>('SELECT * FROM enrollment_tokens WHERE id = $1 FOR UPDATE', [credential.sourceTokenId])).rows[0];
        if (!tokenRow) return { kind: 'refused', code: 'invalid_enrollment_token' };
        const refusal = enrollmentRefusal(enrollmentTokenFromRow(tokenRow), credential.createdAt);
        if (refusal !== null) return { kind: 'refused', code: refusal };
        const live = await this.liveCredentialOf(client, credential.workerId);
        if (live) return { kind: 'already_enrolled', existing: credentialFromRow(live) };
        await client.query('UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1', [credential.sourceTokenId]);
        await this.insertCredential(client, credential);
        return { kind: 'enrolled' };
      }).finally(() => this.authCache.forget('credential', credential.id));
    } catch (err) {
      // Another transaction gave this worker id a live credential first (through another token).
      if (!isUniqueViolation(err)) throw err;
      const live = await this.liveCredentialOf(this.pool, credential.workerId);
      if (!live) throw err;
      return { kind: 'already_enrolled', existing: credentialFromRow(live) };
    }
  }

  async claimCredential(credential: CredentialRecord, claimKeySha256?: Buffer): Promise<{ claimed: true } | { claimed: false; existing: CredentialRecord }> {
    const newest = () =>
      this.first<CredentialRow>('SELECT * FROM worker_credentials WHERE worker_id = $1 ORDER BY created_at DESC, id LIMIT 1', [credential.workerId]);
    try {
      return await this.transaction(async (client) => {
        const existing = (
          await client.query<CredentialRow>('SELECT * FROM worker_credentials WHERE worker_id = $1 ORDER BY created_at DESC, id LIMIT 1', [credential.workerId])
        ).rows[0];
        if (existing) return { claimed: false as const, existing: credentialFromRow(existing) };
        await this.insertCredential(client, credential);
        if (claimKeySha256 !== undefined) {
          await client.query('INSERT INTO credential_claim_keys (worker_id, credential_id, key_sha256, created_at) VALUES ($1, $2, $3, $4)', [
            credential.workerId,
            credential.id,
            claimKeySha256,
            credential.createdAt.toISOString(),
          ]);
        }
        return { claimed: true as const };
      }).finally(() => this.authCache.forget('credential', credential.id));
    } catch (err) {
      // Two first claims for one worker id at once (maybe on two replicas): the other won.
      if (!isUniqueViolation(err)) throw err;
      const existing = await newest();
      if (!existing) throw err;
      return { claimed: false, existing: credentialFromRow(existing) };
    }
  }

  reissueClaimedCredential(change: { workerId: string; credentialId: string; claimKeySha256: Buffer; secretSha256: Buffer }): Promise<boolean> {
    return this.transaction(async (client) => {
      const live = await this.liveCredentialOf(client, change.workerId, true);
      if (!live || live.id !== change.credentialId || live.source !== 'claim') return false;
      const key = (
        await client.query<{ key_sha256: Buffer }>('SELECT key_sha256 FROM credential_claim_keys WHERE worker_id = $1 AND credential_id = $2', [change.workerId, live.id])
      ).rows[0];
      if (!key || key.key_sha256.length !== change.claimKeySha256.length || !timingSafeEqual(key.key_sha256, change.claimKeySha256)) return false;
      await client.query('UPDATE worker_credentials SET secret_sha256 = $1 WHERE id = $2', [change.secretSha256, live.id]);
      this.authCache.forget('credential', live.id);
      return true;
    });
  }

  findCredential(id: string): Promise<CredentialRecord | null> {
    return this.authCache.credential(id, async (key) => {
      const row = await this.first<CredentialRow>('SELECT * FROM worker_credentials WHERE id = $1', [key]);
      return row ? credentialFromRow(row) : null;
    });
  }

  async revokeWorkerCredential(workerId: string, change: { at: Date; by: string }): Promise<CredentialRecord | null> {
    const revoked = await this.transaction(async (client) => {
      const live = await this.liveCredentialOf(client, workerId, true);
      if (!live) return null;
      await client.query('UPDATE worker_credentials SET revoked_at = $1, revoked_by = $2 WHERE id = $3', [change.at.toISOString(), change.by, live.id]);
      return credentialFromRow({ ...live, revoked_at: change.at.toISOString(), revoked_by: change.by });
    });
    if (revoked) this.authCache.forget('credential', revoked.id);
    return revoked;
  }

  startRotation(pending: PendingCredentialRecord): Promise<boolean> {
    return this.transaction(async (client) => {
      const live = await this.liveCredentialOf(client, pending.workerId, true);
      if (!live || live.id !== pending.replacesId) return false;
      await client.query(
        `INSERT INTO pending_credentials (worker_id, id, pool, secret_sha256, replaces_id, created_at, created_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (worker_id) DO UPDATE SET id = excluded.id, pool = excluded.pool, secret_sha256 = excluded.secret_sha256,
           replaces_id = excluded.replaces_id, created_at = excluded.created_at, created_from = excluded.created_from`,
        [pending.workerId, pending.id, pending.pool, pending.secretSha256, pending.replacesId, pending.createdAt.toISOString(), pending.createdFrom],
      );
      return true;
    });
  }

  async findPendingCredential(id: string): Promise<PendingCredentialRecord | null> {
    const row = await this.first<PendingCredentialRow>('SELECT * FROM pending_credentials WHERE id = $1', [id]);
    return row ? pendingFromRow(row) : null;
  }

  async confirmRotation(pendingId: string, at: Date): Promise<CredentialRecord | null> {
    const outcome = await this.transaction(async (client) => {
      const row = (await client.query<PendingCredentialRow>('SELECT * FROM pending_credentials WHERE id = $1 FOR UPDATE', [pendingId])).rows[0];
      if (!row) return null;
      const live = await this.liveCredentialOf(client, row.worker_id, true);
      if (!live || live.id !== row.replaces_id) return null;
      await client.query("UPDATE worker_credentials SET revoked_at = $1, revoked_by = 'rotation' WHERE id = $2", [at.toISOString(), live.id]);
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
      await this.insertCredential(client, confirmed);
      await client.query('DELETE FROM pending_credentials WHERE worker_id = $1', [row.worker_id]);
      await client.query('DELETE FROM credential_rotation_requests WHERE worker_id = $1', [row.worker_id]);
      return { confirmed, replaced: live.id };
    });
    if (!outcome) return null;
    this.authCache.forget('credential', outcome.replaced);
    this.authCache.forget('credential', outcome.confirmed.id);
    return outcome.confirmed;
  }

  requestRotation(workerId: string, request: { at: Date; by: string }): Promise<boolean> {
    return this.transaction(async (client) => {
      if (!(await this.liveCredentialOf(client, workerId))) return false;
      await client.query(
        `INSERT INTO credential_rotation_requests (worker_id, requested_at, requested_by) VALUES ($1, $2, $3)
         ON CONFLICT (worker_id) DO UPDATE SET requested_at = excluded.requested_at, requested_by = excluded.requested_by`,
        [workerId, request.at.toISOString(), request.by],
      );
      return true;
    });
  }

  async rotationRequested(workerId: string): Promise<boolean> {
    return (await this.first('SELECT 1 FROM credential_rotation_requests WHERE worker_id = $1', [workerId])) !== null;
  }

  async createConsoleSession(session: ConsoleSessionRecord): Promise<void> {
    await this.query(
      `INSERT INTO console_sessions (id, secret_sha256, token_id, created_at, expires_at, created_from, ended_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        session.id,
        session.secretSha256,
        session.tokenId,
        session.createdAt.toISOString(),
        session.expiresAt.toISOString(),
        session.createdFrom,
        session.endedAt?.toISOString() ?? null,
      ],
    );
  }

  async findConsoleSession(id: string): Promise<ConsoleSessionRecord | null> {
    const row = await this.first<ConsoleSessionRow>('SELECT * FROM console_sessions WHERE id = $1', [id]);
    return row ? consoleSessionFromRow(row) : null;
  }

  endConsoleSession(id: string, at: Date, purgeBefore: Date): Promise<boolean> {
    return this.transaction(async (client) => {
      const ended = ((await client.query('UPDATE console_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL', [at.toISOString(), id])).rowCount ?? 0) > 0;
      await client.query('DELETE FROM console_sessions WHERE expires_at < $1', [purgeBefore.toISOString()]);
      return ended;
    });
  }

  async searchWorkers(search: WorkerSearch): Promise<{ workers: WorkerView[]; total: number }> {
    const params: unknown[] = [];
    const where = workerSearchWhere(search, params);
    const whereSql = (terms: string[]) => (terms.length > 0 ? ` WHERE ${terms.join(' AND ')}` : '');
    const total = await this.first<{ n: number }>(`SELECT COUNT(*)::int AS n FROM workers${whereSql(where)}`, params);
    const pageParams = [...params];
    const pageWhere = [...where];
    if (search.after !== undefined) {
      pageParams.push(search.after);
      pageWhere.push(`id > $${pageParams.length}`);
    }
    pageParams.push(search.limit);
    const rows = await this.rows<WorkerRow>(`SELECT * FROM workers${whereSql(pageWhere)} ORDER BY id LIMIT $${pageParams.length}`, pageParams);
    return { workers: rows.map(workerFromRow), total: total?.n ?? 0 };
  }

  async workerFacets(): Promise<{ pools: string[]; versions: string[]; channels: string[] }> {
    const distinct = async (column: 'pool' | 'version' | 'channel') =>
      (await this.rows<{ value: string }>(`SELECT DISTINCT ${column} AS value FROM workers WHERE ${column} IS NOT NULL ORDER BY ${column}`)).map((row) => row.value);
    const [pools, versions, channels] = await Promise.all([distinct('pool'), distinct('version'), distinct('channel')]);
    return { pools, versions, channels };
  }

  workerStateCounts(seenSince: Date): Promise<WorkerStateCount[]> {
    return this.rows<WorkerStateCount>(
      `SELECT channel, version, state, update_state, COUNT(*)::int AS count FROM workers WHERE last_seen_at >= $1
       GROUP BY channel, version, state, update_state`,
      [seenSince.toISOString()],
    );
  }

  unseenWorkerCounts(seenSince: Date, seenBefore: Date): Promise<Array<{ channel: string | null; pool: string; count: number }>> {
    return this.rows(
      `SELECT channel, pool, COUNT(*)::int AS count FROM workers WHERE last_seen_at >= $1 AND last_seen_at < $2
       GROUP BY channel, pool`,
      [seenSince.toISOString(), seenBefore.toISOString()],
    );
  }

  async stalledUpdateCounts(
    seenSince: Date,
    updateBefore: Date,
    states: readonly UpdateState[],
  ): Promise<Array<{ channel: string | null; update_state: UpdateState; count: number }>> {
    if (states.length === 0) return [];
    return this.rows(
      `SELECT channel, update_state, COUNT(*)::int AS count FROM workers
       WHERE last_seen_at >= $1 AND update_at < $2 AND update_state = ANY($3)
       GROUP BY channel, update_state`,
      [seenSince.toISOString(), updateBefore.toISOString(), [...states]],
    );
  }

  async failureGroups(since: Date, workerIdsPerGroup: number): Promise<FailureGroup[]> {
    const groups = await this.rows<Omit<FailureGroup, 'worker_ids'>>(
      `SELECT event, reason, to_version, channel, COUNT(*)::int AS reports, COUNT(DISTINCT worker_id)::int AS workers,
         MAX(received_at) AS last_at
       FROM update_events WHERE received_at >= $1 AND event IN ('failure', 'rollback')
       GROUP BY event, reason, to_version, channel ORDER BY reports DESC, last_at DESC`,
      [since.toISOString()],
    );
    return Promise.all(
      groups.map(async (group) => ({
        ...group,
        worker_ids: (
          await this.rows<{ worker_id: string }>(
            `SELECT worker_id FROM update_events
             WHERE received_at >= $1 AND event = $2 AND reason IS NOT DISTINCT FROM $3 AND to_version = $4 AND channel = $5
             GROUP BY worker_id ORDER BY MAX(id) DESC LIMIT $6`,
            [since.toISOString(), group.event, group.reason, group.to_version, group.channel, workerIdsPerGroup],
          )
        ).map((row) => row.worker_id),
      })),
    );
  }

  recordVersionSample(slot: Date, counts: readonly WorkerCount[], keepSince: Date): Promise<boolean> {
    return this.transaction(async (client) => {
      const at = slot.toISOString();
      // The first replica to insert the slot writes the sample; the others find it taken.
      const taken = await client.query('INSERT INTO fleet_sample_slots (sampled_at) VALUES ($1) ON CONFLICT DO NOTHING', [at]);
      if ((taken.rowCount ?? 0) === 0) return false;
      const entries = versionSampleRows(counts);
      if (entries.length > 0) {
        await client.query('INSERT INTO fleet_version_samples (sampled_at, channel, version, count) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int4[])', [
          at,
          entries.map((entry) => entry.channel),
          entries.map((entry) => entry.version),
          entries.map((entry) => entry.count),
        ]);
      }
      const keep = keepSince.toISOString();
      await client.query('DELETE FROM fleet_version_samples WHERE sampled_at < $1', [keep]);
      await client.query('DELETE FROM fleet_sample_slots WHERE sampled_at < $1', [keep]);
      return true;
    });
  }

  versionSamples(channel: string, since: Date): Promise<Array<{ sampled_at: string; version: string; count: number }>> {
    return this.rows(
      'SELECT sampled_at, version, count FROM fleet_version_samples WHERE channel = $1 AND sampled_at >= $2 ORDER BY sampled_at, version',
      [channel, since.toISOString()],
    );
  }

  tryLease(name: string, holder: string, now: Date, ttlMs: number): Promise<boolean> {
    return this.changed(
      `INSERT INTO fleet_leases (name, holder, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE fleet_leases.holder = excluded.holder OR fleet_leases.expires_at <= $4`,
      [name, holder, new Date(now.getTime() + ttlMs).toISOString(), now.toISOString()],
    );
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.query('DELETE FROM fleet_leases WHERE name = $1 AND holder = $2', [name, holder]);
  }

  async pruneEvents(before: Date, limit: number): Promise<number> {
    const deleted = await this.query(
      'DELETE FROM update_events WHERE id IN (SELECT id FROM update_events WHERE received_at < $1 ORDER BY received_at LIMIT $2)',
      [before.toISOString(), limit],
    );
    return deleted.rowCount ?? 0;
  }

  pruneWorkers(before: Date, limit: number): Promise<number> {
    return this.transaction(async (client) => {
      // SKIP LOCKED: a worker whose heartbeat is being written right now is not pruned.
      const ids = (
        await client.query<{ id: string }>('SELECT id FROM workers WHERE last_seen_at < $1 ORDER BY last_seen_at LIMIT $2 FOR UPDATE SKIP LOCKED', [
          before.toISOString(),
          limit,
        ])
      ).rows.map((row) => row.id);
      if (ids.length === 0) return 0;
      // Admissions (serial floors) and credentials (identities) are kept on purpose.
      await client.query('DELETE FROM pending_credentials WHERE worker_id = ANY($1)', [ids]);
      await client.query('DELETE FROM credential_rotation_requests WHERE worker_id = ANY($1)', [ids]);
      return (await client.query('DELETE FROM workers WHERE id = ANY($1)', [ids])).rowCount ?? 0;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Writers still waiting get their answer before the connections go.
    await Promise.all([this.heartbeats.idle(), this.reports.idle()]);
    await this.listener.stop();
    await this.pool.end();
  }
}
