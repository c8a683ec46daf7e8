import type { PoolPolicy, UpdateState, WorkerState } from '../../protocol/messages.js';
import type { RolloutPlan } from '../../protocol/rollouts.js';
import type { TokenRole } from '../tokens.js';
import type {
  AdmissionRecord,
  ConsoleSessionRecord,
  CredentialRecord,
  EnrollmentTokenRecord,
  PendingCredentialRecord,
  RolloutRecord,
  RolloutState,
  TokenRecord,
  WorkerCount,
  WorkerView,
} from './fleet-store.js';

/*
 * The fleet tables' rows as both stores read them, and their mapping to records. The two schemas
 * keep the same column names and value forms (times as ISO-8601 UTC text, flags as 0 or 1, JSON
 * as text, hashes as bytes), so that one mapping serves both and rows copy across unchanged
 * (docs/schema.md).
 */

export interface WorkerRow {
  id: string;
  pool: string;
  channel: string | null;
  platform: string | null;
  version: string;
  state: WorkerState;
  update_to_version: string | null;
  update_state: UpdateState | null;
  update_download_percent: number | null;
  update_reason: string | null;
  update_at: string | null;
  registered_at: string;
  last_seen_at: string;
}

export interface TokenRow {
  id: string;
  role: TokenRole;
  pool: string | null;
  secret_sha256: Buffer;
  label: string | null;
  created_at: string;
  revoked_at: string | null;
}

export function tokenFromRow(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    role: row.role,
    pool: row.pool,
    secretSha256: row.secret_sha256,
    label: row.label,
    createdAt: new Date(row.created_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}

export interface EnrollmentTokenRow {
  id: string;
  pool: string;
  secret_sha256: Buffer;
  label: string | null;
  max_uses: number | null;
  uses: number;
  expires_at: string | null;
  created_at: string;
  created_by: string | null;
  revoked_at: string | null;
}

export function enrollmentTokenFromRow(row: EnrollmentTokenRow): EnrollmentTokenRecord {
  return {
    id: row.id,
    pool: row.pool,
    secretSha256: row.secret_sha256,
    label: row.label,
    maxUses: row.max_uses,
    uses: row.uses,
    expiresAt: row.expires_at === null ? null : new Date(row.expires_at),
    createdAt: new Date(row.created_at),
    createdBy: row.created_by,
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}

export interface CredentialRow {
  id: string;
  worker_id: string;
  pool: string;
  secret_sha256: Buffer;
  source: 'enroll' | 'claim';
  source_token_id: string;
  created_at: string;
  created_from: string | null;
  revoked_at: string | null;
  revoked_by: string | null;
}

export function credentialFromRow(row: CredentialRow): CredentialRecord {
  return {
    id: row.id,
    workerId: row.worker_id,
    pool: row.pool,
    secretSha256: row.secret_sha256,
    source: row.source,
    sourceTokenId: row.source_token_id,
    createdAt: new Date(row.created_at),
    createdFrom: row.created_from,
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
    revokedBy: row.revoked_by,
  };
}

export interface PendingCredentialRow {
  worker_id: string;
  id: string;
  pool: string;
  secret_sha256: Buffer;
  replaces_id: string;
  created_at: string;
  created_from: string | null;
}

export function pendingFromRow(row: PendingCredentialRow): PendingCredentialRecord {
  return {
    id: row.id,
    workerId: row.worker_id,
    pool: row.pool,
    secretSha256: row.secret_sha256,
    replacesId: row.replaces_id,
    createdAt: new Date(row.created_at),
    createdFrom: row.created_from,
  };
}

export function credentialRow(credential: CredentialRecord): CredentialRow {
  return {
    id: credential.id,
    worker_id: credential.workerId,
    pool: credential.pool,
    secret_sha256: credential.secretSha256,
    source: credential.source,
    source_token_id: credential.sourceTokenId,
    created_at: credential.createdAt.toISOString(),
    created_from: credential.createdFrom,
    revoked_at: credential.revokedAt?.toISOString() ?? null,
    revoked_by: credential.revokedBy,
  };
}

export interface ConsoleSessionRow {
  id: string;
  secret_sha256: Buffer;
  token_id: string;
  created_at: string;
  expires_at: string;
  created_from: string | null;
  ended_at: string | null;
}

export function consoleSessionFromRow(row: ConsoleSessionRow): ConsoleSessionRecord {
  return {
    id: row.id,
    secretSha256: row.secret_sha256,
    tokenId: row.token_id,
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
    createdFrom: row.created_from,
    endedAt: row.ended_at === null ? null : new Date(row.ended_at),
  };
}

export function workerFromRow(row: WorkerRow): WorkerView {
  const update =
    row.update_to_version !== null && row.update_state !== null
      ? {
          to_version: row.update_to_version,
          state: row.update_state,
          ...(row.update_download_percent !== null ? { download_percent: row.update_download_percent } : {}),
          ...(row.update_reason !== null ? { reason: row.update_reason as never } : {}),
          updated_at: row.update_at ?? row.last_seen_at,
        }
      : null;
  return {
    worker_id: row.id,
    pool: row.pool,
    channel: row.channel,
    platform: row.platform,
    version: row.version,
    state: row.state,
    update,
    registered_at: row.registered_at,
    last_seen_at: row.last_seen_at,
  };
}

export interface RolloutRow {
  channel: string;
  serial: number;
  version: string;
  manifest: Buffer;
  expires_at: string;
  urgent: number;
  plan: string;
  state: RolloutState;
  state_reason: string | null;
  state_changed_at: string;
  state_changed_by: string | null;
  failures_counted_from: string;
  waves_started: string;
  started_at: string;
}

export function rolloutFromRow(row: RolloutRow): RolloutRecord {
  return {
    channel: row.channel,
    serial: row.serial,
    version: row.version,
    manifest: row.manifest,
    expiresAt: new Date(row.expires_at),
    urgent: row.urgent === 1,
    plan: JSON.parse(row.plan) as RolloutPlan,
    state: row.state,
    stateReason: row.state_reason,
    stateChangedAt: new Date(row.state_changed_at),
    stateChangedBy: row.state_changed_by,
    failuresCountedFrom: new Date(row.failures_counted_from),
    wavesStarted: (JSON.parse(row.waves_started) as string[]).map((at) => new Date(at)),
    startedAt: new Date(row.started_at),
  };
}

export interface AdmissionRow {
  channel: string;
  serial: number;
  worker_id: string;
  pool: string;
  wave: number;
  forced: number;
  admitted_at: string;
}

export function admissionFromRow(row: AdmissionRow): AdmissionRecord {
  return {
    channel: row.channel,
    serial: row.serial,
    workerId: row.worker_id,
    pool: row.pool,
    wave: row.wave,
    forced: row.forced === 1,
    admittedAt: new Date(row.admitted_at),
  };
}

export function policyFromRow(row: { auto_update: number; maintenance_windows: string | null }): PoolPolicy {
  const windows = row.maintenance_windows === null ? [] : (JSON.parse(row.maintenance_windows) as string[]);
  return { auto_update: row.auto_update === 1, ...(windows.length > 0 ? { maintenance_windows: windows } : {}) };
}


/** A version sample's rows: the live workers counted by channel and version, pools added up. */
export function versionSampleRows(counts: readonly WorkerCount[]): Array<{ channel: string; version: string; count: number }> {
  const byVersion = new Map<string, { channel: string; version: string; count: number }>();
  for (const row of counts) {
    const channel = row.channel ?? 'unknown';
    const key = `${channel}\n${row.version}`;
    const entry = byVersion.get(key) ?? { channel, version: row.version, count: 0 };
    entry.count += row.count;
    byVersion.set(key, entry);
  }
  return [...byVersion.values()];
}
