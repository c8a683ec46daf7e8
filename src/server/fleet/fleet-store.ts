import type { PoolPolicy, UpdateProgress, UpdateReport, UpdateState, WorkerState } from '../../protocol/messages.js';
import type { RolloutReport } from '../rollout/failure-rate.js';
import type { RolloutPlan, RolloutState } from '../../protocol/rollouts.js';

export type { RolloutState };
import type { TokenRole } from '../tokens.js';
import { CodedError } from '../../shared/errors.js';

/** The database cannot be reached or used, or was migrated by a newer server. */
export class FleetStoreError extends CodedError<'database_unavailable' | 'database_schema_newer'> {}

/**
 * The server's database: workers, update events, pool policies and tokens. Routes talk only to
 * this interface; SQLite is the embedded implementation, PostgreSQL the one several replicas
 * share (both pass test/server/fleet-store-conformance.test.ts). Every write method resolves only once the write is durable, so a `202`
 * answered after `recordReport` means the report survives a crash of the server process.
 */
export interface FleetStore {
  /** `sqlite` or `postgres`: for logs and readiness output. */
  readonly kind: string;
  /** Throws when the database cannot be reached (readiness). */
  ping(): Promise<void>;

  /** The handshake: create or update the worker's row; its pool is the token's. */
  registerWorker(worker: WorkerRegistration): Promise<void>;
  /**
   * Record state and update progress of a registered worker; returns what the heartbeat's answer
   * needs of its row, read with the write (one round trip on PostgreSQL), or null when no such
   * worker has registered (the database was lost or restored): it must register again, with its
   * channel and platform, rather than become a half-empty row.
   */
  recordHeartbeat(heartbeat: WorkerHeartbeat): Promise<HeartbeatRecord | null>;
  /**
   * Append one update event; false (nothing written) when the same worker's report with the same
   * correlation id and event is already stored: a retry, maybe through another replica. A report
   * without a correlation id (older workers) is always appended.
   */
  recordReport(report: StoredReport): Promise<boolean>;
  /** One worker's row, or null. */
  getWorker(workerId: string): Promise<WorkerView | null>;
  /** Workers of a channel seen since `seenSince` (the live fleet a rollout's shares count). */
  liveWorkers(channel: string, seenSince: Date): Promise<LiveWorker[]>;
  /** A worker's most recent update events, newest first. */
  workerEvents(workerId: string, limit: number): Promise<FailureView[]>;
  /** Channels that workers registered on. */
  workerChannels(): Promise<string[]>;

  getPoolPolicy(pool: string): Promise<PoolPolicy | null>;
  setPoolPolicy(pool: string, policy: PoolPolicy, change: { at: Date; byTokenId: string }): Promise<void>;
  listPoolPolicies(): Promise<Array<{ pool: string; policy: PoolPolicy; updated_at: string }>>;

  // Staged rollouts (docs/runbooks/rollout.md). Written so that a PostgreSQL store can carry them.
  /** Insert the rollout unless one exists for its channel and serial; true when this call created it. */
  createRollout(rollout: RolloutRecord): Promise<boolean>;
  /** A channel's rollouts, newest serial first, at most `limit`. */
  listRollouts(channel: string, limit: number): Promise<RolloutRecord[]>;
  /** Channels that have rollouts in one of `states`. */
  rolloutChannels(states: readonly RolloutState[]): Promise<string[]>;
  /** A number that changes whenever any rollout does, in any process (a cache's validator). */
  rolloutEpoch(): Promise<number>;
  /** Change the state only if it is one of `fromStates`; true when changed. */
  setRolloutState(channel: string, serial: number, fromStates: readonly RolloutState[], change: RolloutStateChange): Promise<boolean>;
  /** Record that wave `waveIndex` started, only if the rollout is active and exactly the waves before it have started; true when recorded. */
  startRolloutWave(channel: string, serial: number, waveIndex: number, at: Date): Promise<boolean>;
  /** Record an admission unless the worker already has one for this rollout. */
  admitWorker(admission: AdmissionRecord): Promise<void>;
  /** The serials a worker was admitted to on a channel, highest first (its floor is the first). */
  workerAdmittedSerials(workerId: string, channel: string): Promise<number[]>;
  rolloutAdmissions(channel: string, serial: number): Promise<AdmissionRecord[]>;
  /** The ids of the workers admitted to a rollout that were seen since `seenSince`. */
  liveAdmittedWorkers(channel: string, serial: number, seenSince: Date): Promise<string[]>;
  /** The pools with workers on the channel seen since `seenSince`. */
  livePools(channel: string, seenSince: Date): Promise<string[]>;
  /** The reports about a rollout's release received since `since`. */
  rolloutReports(channel: string, serial: number, since: Date): Promise<Array<RolloutReport & { received_at: string }>>;
  getChannelPlan(channel: string): Promise<RolloutPlan | null>;
  setChannelPlan(channel: string, plan: RolloutPlan, change: { at: Date; byTokenId: string }): Promise<void>;

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

  // Worker identity (docs/protocol.md, section 3: enrollment, claim, credentials).
  createEnrollmentToken(token: EnrollmentTokenRecord): Promise<void>;
  findEnrollmentToken(id: string): Promise<EnrollmentTokenRecord | null>;
  /** Marks the enrollment token revoked; false when no such token (or already revoked). */
  revokeEnrollmentToken(id: string, at: Date): Promise<boolean>;
  listEnrollmentTokens(): Promise<EnrollmentTokenRecord[]>;
  /**
   * Spend one use of the enrollment token `credential.sourceTokenId` on `credential`, in one
   * transaction: the token is re-checked there (revoked, expired at `credential.createdAt`, used
   * up), the worker id must hold no live credential, and the use is counted only when the
   * credential is stored. Of two enrollments racing for a token's last use, one wins.
   */
  enrollWorker(credential: CredentialRecord): Promise<EnrollOutcome>;
  /**
   * Store `credential` (a claim by a pool token) unless its worker id has ever held one: the
   * first claim wins, and a revoked worker cannot claim its way back in. Returns the credential
   * that was there first when refused.
   */
  claimCredential(credential: CredentialRecord, claimKeySha256?: Buffer): Promise<{ claimed: true } | { claimed: false; existing: CredentialRecord }>;
  /**
   * A repeated claim (its answer was lost): give the worker's live claimed credential
   * `credentialId` the new secret `secretSha256`, if `claimKeySha256` is the hash of the key its
   * first claim was made with. False, changing nothing, otherwise.
   */
  reissueClaimedCredential(change: { workerId: string; credentialId: string; claimKeySha256: Buffer; secretSha256: Buffer }): Promise<boolean>;
  /** A credential by its id, revoked or not (cached like tokens). */
  findCredential(id: string): Promise<CredentialRecord | null>;
  /** Revoke the worker's live credential; returns it, or null when the worker has none. */
  revokeWorkerCredential(workerId: string, change: { at: Date; by: string }): Promise<CredentialRecord | null>;
  /**
   * Rotation step 1: keep `pending` as the worker's next credential, replacing any earlier pending
   * one, while its current one (`pending.replacesId`) stays live. False when that one is no longer live.
   */
  startRotation(pending: PendingCredentialRecord): Promise<boolean>;
  /** A pending credential by its id, or null. */
  findPendingCredential(id: string): Promise<PendingCredentialRecord | null>;
  /**
   * Rotation step 3, in one transaction: revoke the credential the pending one replaces, make the
   * pending one live (keeping the source of the first), and clear any rotation request. Null when
   * it is no longer pending or the one it replaces is no longer live (revoked meanwhile).
   */
  confirmRotation(pendingId: string, at: Date): Promise<CredentialRecord | null>;
  /** An admin's request that the worker rotate now; false when it holds no live credential. */
  requestRotation(workerId: string, request: { at: Date; by: string }): Promise<boolean>;
  rotationRequested(workerId: string): Promise<boolean>;

  // The fleet console (docs/console.md).
  createConsoleSession(session: ConsoleSessionRecord): Promise<void>;
  /** A session by its id, ended or not; null when there is none. */
  findConsoleSession(id: string): Promise<ConsoleSessionRecord | null>;
  /** End a session (sign-out); false when it had already ended. Sessions expired before `purgeBefore` are deleted. */
  endConsoleSession(id: string, at: Date, purgeBefore: Date): Promise<boolean>;
  /** One page of workers matching `search`, ordered by worker id after `search.after`, and how many match in all. */
  searchWorkers(search: WorkerSearch): Promise<{ workers: WorkerView[]; total: number }>;
  /** The values the console's worker filters offer. */
  workerFacets(): Promise<{ pools: string[]; versions: string[]; channels: string[] }>;
  /** Workers seen since `seenSince`, counted by channel, version, state and update state. */
  workerStateCounts(seenSince: Date): Promise<WorkerStateCount[]>;
  /** Workers last seen in [`seenSince`, `seenBefore`): alive recently, quiet now. By channel and pool. */
  unseenWorkerCounts(seenSince: Date, seenBefore: Date): Promise<Array<{ channel: string | null; pool: string; count: number }>>;
  /** Workers seen since `seenSince` whose update has stayed in one of `states` since before `updateBefore`. */
  stalledUpdateCounts(seenSince: Date, updateBefore: Date, states: readonly UpdateState[]): Promise<Array<{ channel: string | null; update_state: UpdateState; count: number }>>;
  /** Failure and rollback reports since `since`, grouped by event, reason, version and channel, most reports first. */
  failureGroups(since: Date, workerIdsPerGroup: number): Promise<FailureGroup[]>;
  /**
   * Record the version distribution for the sample slot `slot` unless a sample for it exists
   * (another replica took it); delete samples older than `keepSince`. True when this call wrote it.
   */
  recordVersionSample(slot: Date, counts: readonly WorkerCount[], keepSince: Date): Promise<boolean>;
  /** A channel's samples since `since`, oldest first. */
  versionSamples(channel: string, since: Date): Promise<Array<{ sampled_at: string; version: string; count: number }>>;

  // Several replicas on one database (docs/server.md, "Several replicas").
  /**
   * Take or renew the lease `name` for `holder` until `now` + `ttlMs`: true when `holder` holds it
   * now (it held it, or it was free or expired). One replica at a time does the fleet-wide work.
   */
  tryLease(name: string, holder: string, now: Date, ttlMs: number): Promise<boolean>;
  /** Give the lease up (a replica stopping), so that another takes it at its next try. */
  releaseLease(name: string, holder: string): Promise<void>;

  // Retention (docs/server.md, "Retention"): small batches, so no statement holds the database long.
  /** Delete up to `limit` of the oldest update events received before `before`; how many were deleted. */
  pruneEvents(before: Date, limit: number): Promise<number>;
  /**
   * Delete up to `limit` workers last seen before `before`: their rows, pending rotations and
   * rotation requests only. Their rollout admissions (the serial floor each keeps) and their
   * credentials (their identity) stay. How many workers were deleted.
   */
  pruneWorkers(before: Date, limit: number): Promise<number>;

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

export interface HeartbeatRecord {
  channel: string | null;
  platform: string | null;
  /** The serials the worker was admitted to on its channel, highest first (workerAdmittedSerials). */
  admittedSerials: number[];
  /** An admin asked for this worker's credential to be rotated (rotationRequested). */
  rotationRequested: boolean;
}

export interface StoredReport extends UpdateReport {
  pool: string;
  /** The rollout the report is about: its own `serial`, or the one the server matched it to. */
  rolloutSerial: number | null;
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

export interface EnrollmentTokenRecord {
  id: string;
  /** The pool every worker enrolled with it joins. */
  pool: string;
  secretSha256: Buffer;
  label: string | null;
  /** Null: any number of enrollments. */
  maxUses: number | null;
  uses: number;
  /** Null: never expires. */
  expiresAt: Date | null;
  createdAt: Date;
  /** The admin token id that made it through the API; null from the command line. */
  createdBy: string | null;
  revokedAt: Date | null;
}

/** Why an enrollment token cannot be used now; each is its own error code. */
export type EnrollmentRefusal = 'invalid_enrollment_token' | 'enrollment_token_revoked' | 'enrollment_token_expired' | 'enrollment_token_used_up';

/** Why the enrollment token cannot be spent at `now`, or null when it can (revoked beats expired beats used up). */
export function enrollmentRefusal(token: EnrollmentTokenRecord, now: Date): EnrollmentRefusal | null {
  if (token.revokedAt !== null) return 'enrollment_token_revoked';
  if (token.expiresAt !== null && token.expiresAt.getTime() <= now.getTime()) return 'enrollment_token_expired';
  if (token.maxUses !== null && token.uses >= token.maxUses) return 'enrollment_token_used_up';
  return null;
}

/** An enrollment token as the admin API and `token list` show it: never its secret, which is not stored. */
export function enrollmentTokenView(token: EnrollmentTokenRecord) {
  return {
    id: token.id,
    pool: token.pool,
    label: token.label,
    max_uses: token.maxUses,
    uses: token.uses,
    expires_at: token.expiresAt?.toISOString() ?? null,
    created_at: token.createdAt.toISOString(),
    created_by: token.createdBy,
    revoked_at: token.revokedAt?.toISOString() ?? null,
  };
}

export type EnrollOutcome =
  | { kind: 'enrolled' }
  | { kind: 'refused'; code: EnrollmentRefusal }
  | { kind: 'already_enrolled'; existing: CredentialRecord };

export interface CredentialRecord {
  id: string;
  workerId: string;
  pool: string;
  secretSha256: Buffer;
  /** `enroll` (an enrollment token) or `claim` (a pool token, once per worker id). */
  source: 'enroll' | 'claim';
  /** The enrollment token or pool token it was issued against. */
  sourceTokenId: string;
  createdAt: Date;
  /** The client address it was issued to, when known. */
  createdFrom: string | null;
  revokedAt: Date | null;
  /** The admin token id that revoked it. */
  revokedBy: string | null;
}

/** A rotated credential, issued and awaiting the worker's confirmation with it. */
export interface PendingCredentialRecord {
  id: string;
  workerId: string;
  pool: string;
  secretSha256: Buffer;
  /** The live credential it replaces once confirmed. */
  replacesId: string;
  createdAt: Date;
  createdFrom: string | null;
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
  event: 'attempt' | 'success' | 'failure' | 'rollback';
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
  /** `credential_created_at`: when the worker's live credential was issued; null when it has none. */
  workers: Array<WorkerView & { credential_created_at: string | null }>;
  recent_failures: FailureView[];
  pools: Array<{ pool: string; auto_update: boolean; updated_at: string }>;
}

export interface WorkerCount {
  channel: string | null;
  pool: string;
  version: string;
  count: number;
}

export interface LiveWorker {
  id: string;
  pool: string;
  version: string;
  platform: string | null;
}


export interface RolloutStateChange {
  state: RolloutState;
  reason: string | null;
  /** Who: an admin token id, `automatic`, or `server` (superseded by a newer release). */
  by: string | null;
  at: Date;
  /** A resume: failures reported before `at` no longer count toward the automatic halt. */
  restartFailureCount?: boolean;
}

export interface RolloutRecord {
  channel: string;
  serial: number;
  version: string;
  /** The manifest bytes exactly as verified when the rollout started: what it serves. */
  manifest: Buffer;
  expiresAt: Date;
  /** A rollback release: offered at once to every worker, not staged. */
  urgent: boolean;
  plan: RolloutPlan;
  state: RolloutState;
  stateReason: string | null;
  stateChangedAt: Date;
  stateChangedBy: string | null;
  /** Reports before this do not count toward the automatic halt: the start, or the last resume. */
  failuresCountedFrom: Date;
  /** When each started wave started, in order: wave i has started when i < length. */
  wavesStarted: Date[];
  startedAt: Date;
}

export interface AdmissionRecord {
  channel: string;
  serial: number;
  workerId: string;
  pool: string;
  /** The wave that admitted it (the newest started one), or -1 outside any wave (forced, or it already ran the release). */
  wave: number;
  /** `--force-update` on the worker: offered outside the rollout. */
  forced: boolean;
  admittedAt: Date;
}

/** A signed-in console page (docs/console.md): the cookie holds `id` and a secret whose SHA-256 is kept. */
export interface ConsoleSessionRecord {
  id: string;
  secretSha256: Buffer;
  /** The admin token the session was opened with; revoking it ends the session. */
  tokenId: string;
  createdAt: Date;
  expiresAt: Date;
  createdFrom: string | null;
  endedAt: Date | null;
}

/** The console's worker filters; every field narrows, all combined. */
export interface WorkerSearch {
  /** Worker ids starting with this. */
  idPrefix?: string;
  pool?: string;
  version?: string;
  channel?: string;
  state?: WorkerState;
  /** An update state, or `none` for workers with no update in progress or finished. */
  updateState?: UpdateState | 'none';
  /** Last seen at or after this. */
  seenSince?: Date;
  /** Last seen before this. */
  seenBefore?: Date;
  /** The cursor: only workers whose id sorts after it. */
  after?: string;
  limit: number;
}

export interface WorkerStateCount {
  channel: string | null;
  version: string;
  state: WorkerState;
  update_state: UpdateState | null;
  count: number;
}

export interface FailureGroup {
  event: 'failure' | 'rollback';
  reason: string | null;
  to_version: string;
  channel: string;
  reports: number;
  workers: number;
  /** Up to the number asked for, most recent first. */
  worker_ids: string[];
  last_at: string;
}
