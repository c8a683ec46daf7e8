import { request, type Dispatcher } from 'undici';
import type { RolloutAction, RolloutPlan, RolloutState, RolloutStatus, Wave, WaveProgress } from '../protocol/rollouts.js';
import { CodedError, errorMessage } from '../shared/errors.js';

/*
 * The server's admin API as bytebiota-admin reads it (src/server/routes/rollouts.ts and admin.ts).
 * The programs never import each other: rollout shapes come from the shared contract
 * (src/protocol/rollouts.ts), the rest are written out here; a newer server may add fields.
 */

export type { RolloutAction, RolloutPlan, RolloutState, RolloutStatus, Wave };
export type WaveStatus = WaveProgress;

export interface RolloutStatuses {
  generated_at: string;
  rollouts: RolloutStatus[];
}

export interface ChannelPlan {
  channel: string;
  source: 'channel' | 'default';
  plan: RolloutPlan;
}

export interface PoolPolicy {
  auto_update: boolean;
  maintenance_windows: string[];
}

export interface PoolStatus extends PoolPolicy {
  pool: string;
  window_open: boolean;
  window_changes_at: string | null;
  updated_at: string;
}

export interface PoolList {
  generated_at: string;
  pools: PoolStatus[];
}

export interface PoolPolicySet extends PoolPolicy {
  pool: string;
  updated_at: string;
}

export interface FleetGroup {
  channel: string | null;
  pool: string;
  version: string;
  state: string;
  count: number;
}

export interface FleetFailure {
  worker_id: string;
  pool: string;
  event: string;
  channel: string;
  platform: string;
  from_version: string;
  to_version: string;
  reason: string | null;
  correlation_id: string | null;
  received_at: string;
}

export interface FleetView {
  generated_at: string;
  total_workers: number;
  groups: FleetGroup[];
  workers: unknown[];
  recent_failures: FleetFailure[];
  pools: Array<{ pool: string; auto_update: boolean; updated_at: string }>;
}

export interface ExplainStep {
  serial: number | null;
  check: string;
  ok: boolean;
  detail: string;
}

export interface WorkerExplanation {
  worker_id: string;
  pool: string;
  channel: string | null;
  version: string;
  state: string;
  last_seen_at: string;
  live: boolean;
  offer: { serial: number; version: string; state: RolloutState } | null;
  steps: ExplainStep[];
}

/** An enrollment token as the server lists it (never its secret). */
export interface EnrollmentTokenView {
  id: string;
  pool: string;
  label: string | null;
  max_uses: number | null;
  uses: number;
  expires_at: string | null;
  created_at: string;
  created_by: string | null;
  revoked_at: string | null;
}

/**
 * Why a call to the server did not give its answer. `code` is the server's own error code
 * (`rollout_state_conflict`, `invalid_token`, ...) when it refused; `server_unreachable` when no
 * HTTP answer came; `unexpected_response` when the answer was not the server's JSON (a proxy's
 * error page, a redirect). `status` is the HTTP status, null when there was none.
 */
export class AdminError extends CodedError<string> {
  readonly status: number | null;

  constructor(code: string, message: string, status: number | null, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

export interface AdminClientOptions {
  /** The server's base URL; a path is kept (a server behind a reverse proxy at /updates/). */
  serverUrl: URL;
  /** The admin bearer token: sent in the Authorization header and nowhere else. */
  token: string;
  /** undici's global dispatcher when not given. */
  dispatcher?: Dispatcher;
}

const MAX_ERROR_BODY_CHARS = 200;

function errorBody(value: unknown): { code: string; message: string } | null {
  if (typeof value !== 'object' || value === null) return null;
  const error = (value as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return null;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return typeof code === 'string' && typeof message === 'string' ? { code, message } : null;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The network error's own code (ECONNREFUSED, UND_ERR_CONNECT_TIMEOUT, ...) next to its message. */
function networkCause(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = errorMessage(err);
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
}

/** One method per admin route; each returns the server's JSON as it came. */
export class AdminClient {
  constructor(private readonly options: AdminClientOptions) {}

  rolloutStatuses(channel?: string): Promise<RolloutStatuses> {
    return this.call('GET', 'api/admin/rollouts', { query: channel === undefined ? undefined : { channel } });
  }

  controlRollout(channel: string, action: RolloutAction, body: { reason?: string; serial?: number }): Promise<RolloutStatus> {
    return this.call('POST', `api/admin/rollouts/${encodeURIComponent(channel)}/${action}`, { body });
  }

  channelPlan(channel: string): Promise<ChannelPlan> {
    return this.call('GET', `api/admin/channels/${encodeURIComponent(channel)}/plan`);
  }

  setChannelPlan(channel: string, plan: RolloutPlan): Promise<ChannelPlan> {
    return this.call('PUT', `api/admin/channels/${encodeURIComponent(channel)}/plan`, { body: plan });
  }

  pools(): Promise<PoolList> {
    return this.call('GET', 'api/admin/pools');
  }

  setPoolPolicy(pool: string, policy: PoolPolicy): Promise<PoolPolicySet> {
    return this.call('PUT', `api/admin/pools/${encodeURIComponent(pool)}/policy`, { body: policy });
  }

  fleet(limit?: number): Promise<FleetView> {
    return this.call('GET', 'api/admin/fleet', { query: limit === undefined ? undefined : { limit: String(limit) } });
  }

  explainWorker(workerId: string): Promise<WorkerExplanation> {
    return this.call('GET', `api/admin/workers/${encodeURIComponent(workerId)}/explain`);
  }

  revokeWorker(workerId: string): Promise<{ worker_id: string; credential_id: string; revoked_at: string }> {
    return this.call('POST', `api/admin/workers/${encodeURIComponent(workerId)}/revoke`);
  }

  rotateWorker(workerId: string): Promise<{ worker_id: string; requested_at: string }> {
    return this.call('POST', `api/admin/workers/${encodeURIComponent(workerId)}/rotate`);
  }

  /** The answer holds the token itself, shown this once. */
  createEnrollmentToken(body: { pool: string; expires_in_s?: number; max_uses?: number; label?: string }): Promise<EnrollmentTokenView & { token: string }> {
    return this.call('POST', 'api/admin/enrollment-tokens', { body });
  }

  enrollmentTokens(): Promise<{ enrollment_tokens: EnrollmentTokenView[] }> {
    return this.call('GET', 'api/admin/enrollment-tokens');
  }

  revokeEnrollmentToken(id: string): Promise<{ id: string; revoked_at: string }> {
    return this.call('POST', `api/admin/enrollment-tokens/${encodeURIComponent(id)}/revoke`);
  }

  private url(path: string, query: Record<string, string> | undefined): URL {
    const base = new URL(this.options.serverUrl);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    base.search = '';
    base.hash = '';
    const url = new URL(path, base);
    for (const [name, value] of Object.entries(query ?? {})) url.searchParams.set(name, value);
    return url;
  }

  private async call<T>(method: 'GET' | 'PUT' | 'POST', path: string, extra: { query?: Record<string, string> | undefined; body?: unknown } = {}): Promise<T> {
    const url = this.url(path, extra.query);
    const headers: Record<string, string> = { authorization: `Bearer ${this.options.token}`, accept: 'application/json' };
    if (extra.body !== undefined) headers['content-type'] = 'application/json';
    let statusCode: number;
    let text: string;
    try {
      const response = await request(url, {
        method,
        headers,
        body: extra.body === undefined ? undefined : JSON.stringify(extra.body),
        ...(this.options.dispatcher ? { dispatcher: this.options.dispatcher } : {}),
      });
      statusCode = response.statusCode;
      text = await response.body.text();
    } catch (err) {
      throw new AdminError('server_unreachable', `no answer from ${url.origin}: ${networkCause(err)}`, null, { cause: err });
    }
    const parsed = parseJson(text);
    if (statusCode >= 200 && statusCode < 300) {
      if (typeof parsed !== 'object' || parsed === null) {
        throw new AdminError('unexpected_response', `${method} ${url.pathname} answered ${statusCode} without a JSON object`, statusCode);
      }
      return parsed as T;
    }
    const refusal = errorBody(parsed);
    if (refusal) throw new AdminError(refusal.code, refusal.message, statusCode);
    const excerpt = text.replace(/\s+/g, ' ').trim().slice(0, MAX_ERROR_BODY_CHARS);
    throw new AdminError('unexpected_response', `${method} ${url.pathname} answered HTTP ${statusCode}${excerpt ? `: ${excerpt}` : ''}`, statusCode);
  }
}
