import type { PoolPolicy, UpdateProgress, UpdateReport, WorkerState } from '../../protocol/messages.js';
import type { TokenRole } from '../tokens.js';

/**
 * The server's database: workers, update events, pool policies and tokens. Routes talk only to
 * this interface; SQLite is the embedded implementation and a PostgreSQL one can follow behind
 * the same methods. Every write method resolves only once the write is durable, so a `202`
 * answered after `recordReport` means the report survives a crash of the server process.
 */
export interface FleetStore {
  /** `sqlite` or `postgres`: for logs and readiness output. */
  readonly kind: string;
  /** Throws when the database cannot be reached (readiness). */
  ping(): Promise<void>;

  /** The handshake: create or update the worker's row; its pool is the token's. */
  registerWorker(worker: WorkerRegistration): Promise<void>;
  /** Record state and update progress; returns the worker's channel when it has registered. */
  recordHeartbeat(heartbeat: WorkerHeartbeat): Promise<{ channel: string | null }>;
  /** Append one update event (every report is kept). */
  recordReport(report: StoredReport): Promise<void>;

  getPoolPolicy(pool: string): Promise<PoolPolicy | null>;
  setPoolPolicy(pool: string, policy: PoolPolicy, change: { at: Date; byTokenId: string }): Promise<void>;

  fleetView(query: FleetQuery): Promise<FleetView>;
  /** Workers seen since `seenSince`, counted by channel, pool and version (the fleet gauge). */
  workerCounts(seenSince: Date): Promise<WorkerCount[]>;

  /** The highest manifest serial served for the channel (the server's rollback floor), or null. */
  highestServedSerial(channel: string): Promise<number | null>;
  /** Raise the channel's floor to `serial`; a lower serial leaves it as it is. */
  raiseServedSerial(channel: string, serial: number, at: Date): Promise<void>;

  createToken(token: TokenRecord): Promise<void>;
  findToken(id: string): Promise<TokenRecord | null>;
  /** Marks the token revoked; false when no such token (or already revoked). */
  revokeToken(id: string, at: Date): Promise<boolean>;
  listTokens(): Promise<TokenRecord[]>;

  /** Finish pending writes and close the connection. */
  close(): Promise<void>;
}

export interface WorkerRegistration {
  workerId: string;
  pool: string;
  channel: string;
  platform: string;
  version: string;
  at: Date;
}

export interface WorkerHeartbeat {
  workerId: string;
  pool: string;
  version: string;
  state: WorkerState;
  update: UpdateProgress | null;
  at: Date;
}

export interface StoredReport extends UpdateReport {
  pool: string;
  receivedAt: Date;
  /** The X-Request-Id of the request that carried the report. */
  requestId: string;
}

export interface TokenRecord {
  id: string;
  role: TokenRole;
  /** The worker pool of a worker token; null for admin tokens. */
  pool: string | null;
  secretSha256: Buffer;
  label: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface FleetQuery {
  /** Most workers to list (most recently seen first). */
  workerLimit: number;
  /** Most recent failure and rollback reports to list. */
  failureLimit: number;
}

export interface WorkerView {
  worker_id: string;
  pool: string;
  channel: string | null;
  platform: string | null;
  version: string;
  state: WorkerState;
  update: (UpdateProgress & { updated_at: string }) | null;
  registered_at: string;
  last_seen_at: string;
}

export interface FleetGroup {
  channel: string | null;
  pool: string;
  version: string;
  state: WorkerState;
  count: number;
}

export interface FailureView {
  worker_id: string;
  pool: string;
  event: 'failure' | 'rollback';
  channel: string;
  platform: string;
  from_version: string;
  to_version: string;
  reason: string | null;
  correlation_id: string | null;
  received_at: string;
}

export interface FleetView {
  total_workers: number;
  groups: FleetGroup[];
  workers: WorkerView[];
  recent_failures: FailureView[];
  pools: Array<{ pool: string; auto_update: boolean; updated_at: string }>;
}

export interface WorkerCount {
  channel: string | null;
  pool: string;
  version: string;
  count: number;
}
