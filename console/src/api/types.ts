/**
 * The answers of the console's routes (docs/console.md), as the page reads them. The rollout and
 * worker types mirror src/protocol (rollouts.ts, messages.ts), the contract the server and the
 * admin CLI share; they are written out here because the protocol modules also hold Node code
 * the browser has no use for. test/console/contract-types.ts makes the type checker compare the
 * two, so they cannot drift apart unnoticed.
 */

export type WorkerState = 'starting' | 'working' | 'idle' | 'draining';
export type UpdateState = 'downloading' | 'verifying' | 'staging' | 'switching' | 'restarting' | 'watching' | 'completed' | 'failed' | 'rolled_back';
export type RolloutState = 'active' | 'paused' | 'halted' | 'aborted' | 'completed' | 'superseded';
export type RolloutAction = 'pause' | 'resume' | 'halt' | 'abort';

export interface Wave {
  pools: string[];
  percent: number;
  soak_s: number;
  min_healthy: number;
}

export interface WaveProgress extends Wave {
  index: number;
  started_at: string | null;
  admitted: number;
  live_admitted: number;
  updated: number;
  failed: number;
  healthy_needed: number;
  waiting_on: string[];
}

/** A rollout as GET /api/admin/rollouts and the console's routes report it. */
export interface RolloutStatus {
  channel: string;
  serial: number;
  version: string;
  state: RolloutState;
  urgent: boolean;
  started_at: string;
  state_reason: string | null;
  state_changed_at: string;
  /** An admin token's label or id, `automatic` (the failure rate) or `server`. */
  state_changed_by: string | null;
  expires_at: string;
  plan: { immediate: boolean; waves: Wave[] };
  /** How many waves have started (1 while the first runs). */
  current_wave: number;
  waves: WaveProgress[];
  pools_not_in_plan: string[];
  outside_waves: { already_running: number; forced: number };
  failure: { rate: number; failed_workers: number; sample_workers: number; min_sample: number; threshold: number; window_s: number };
}

/** GET/POST /console/api/session. */
export interface Session {
  token_id: string;
  label: string | null;
  expires_at: string;
  csrf_token: string;
}

export interface ChannelOverview {
  channel: string;
  rollout: RolloutStatus | null;
  workers: {
    live: number;
    by_version: Array<{ version: string; count: number }>;
    by_state: Array<{ state: WorkerState; count: number }>;
    by_update_state: Array<{ update_state: UpdateState | 'none'; count: number }>;
  };
}

/** GET /console/api/overview. */
export interface Overview {
  generated_at: string;
  heartbeat_interval_seconds: number;
  fleet: { live: number; unseen: number };
  channels: ChannelOverview[];
  failures: { since: string; total: number };
}

export interface VersionSample {
  at: string;
  versions: Record<string, number>;
}

/** GET /console/api/history. */
export interface VersionHistory {
  channel: string;
  resolution_seconds: number;
  samples: VersionSample[];
}

export interface PoolWindows {
  pool: string;
  auto_update: boolean;
  maintenance_windows: string[];
  window_open: boolean;
  window_changes_at: string | null;
  updated_at: string;
}

/** GET /console/api/rollouts. */
export interface Rollouts {
  generated_at: string;
  rollouts: RolloutStatus[];
  pools: PoolWindows[];
}

export interface WorkerUpdate {
  to_version: string;
  state: UpdateState;
  download_percent?: number;
  reason?: string;
  updated_at: string;
}

export interface WorkerRow {
  worker_id: string;
  pool: string;
  channel: string | null;
  platform: string | null;
  version: string;
  state: WorkerState;
  update: WorkerUpdate | null;
  registered_at: string;
  last_seen_at: string;
}

/** GET /console/api/workers. */
export interface WorkerPage {
  workers: WorkerRow[];
  next_cursor: string | null;
  total: number;
}

/** GET /console/api/workers/facets. */
export interface WorkerFacets {
  pools: string[];
  versions: string[];
  channels: string[];
}

export interface UpdateEventRow {
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

export interface OfferStep {
  serial: number | null;
  check: string;
  ok: boolean;
  detail: string;
}

/** What GET /api/admin/workers/:id/explain returns (and `bytebiota-admin worker explain`). */
export interface WorkerExplanation {
  worker_id: string;
  pool: string;
  channel: string | null;
  version: string;
  state: WorkerState;
  update: WorkerUpdate | null;
  last_seen_at: string;
  live: boolean;
  offer: { serial: number; version: string; state: RolloutState } | null;
  steps: OfferStep[];
}

/** GET /console/api/workers/:worker_id. */
export interface WorkerDetail {
  worker: WorkerRow;
  explanation: WorkerExplanation;
  events: UpdateEventRow[];
}

export interface FailureGroup {
  event: 'failure' | 'rollback';
  reason: string | null;
  to_version: string;
  channel: string;
  reports: number;
  workers: number;
  worker_ids: string[];
  last_at: string;
}

/** GET /console/api/failures. */
export interface Failures {
  since: string;
  groups: FailureGroup[];
}
