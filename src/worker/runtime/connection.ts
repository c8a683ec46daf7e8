import { TypeCompiler } from '@sinclair/typebox/compiler';
import { request, type Dispatcher } from 'undici';
import {
  CredentialResponse,
  HeartbeatResponse,
  RegisterResponse,
  type EnrollRequest,
  type HeartbeatRequest,
  type RegisterRequest,
  type ServerAccepts,
  type UpdateReport,
} from '../../protocol/messages.js';
import { CodedError, errorMessage } from '../../shared/errors.js';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import { parseRetryAfter, sleep as defaultSleep, type Backoff, type Sleep } from './backoff.js';

/**
 * Why a call to the server failed. The first three are the network's or the server's trouble and
 * worth retrying; the rest will fail the same way again until someone changes something.
 * `credential_unusable`: credential.json is damaged, so nothing was sent (no fallback to the pool
 * token, which would undo a revocation).
 */
export type ConnectionErrorCode =
  | 'server_unreachable'
  | 'server_busy'
  | 'server_error'
  | 'auth_rejected'
  | 'credential_unusable'
  | 'request_rejected'
  | 'bad_response';

const RETRYABLE: ReadonlySet<ConnectionErrorCode> = new Set(['server_unreachable', 'server_busy', 'server_error']);

export class ConnectionError extends CodedError<ConnectionErrorCode> {
  readonly status: number | null;
  /** From Retry-After on 429/503, in ms from now; null when the server did not say. */
  readonly retryAfterMs: number | null;
  /** The server's own error code (`{"error": {"code"}}`), when it sent one. */
  readonly serverCode: string | null;

  constructor(
    code: ConnectionErrorCode,
    message: string,
    details: { status?: number; retryAfterMs?: number | null; serverCode?: string | null; cause?: unknown } = {},
  ) {
    super(code, message, { cause: details.cause });
    this.status = details.status ?? null;
    this.retryAfterMs = details.retryAfterMs ?? null;
    this.serverCode = details.serverCode ?? null;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

const registerResponseChecker = TypeCompiler.Compile(RegisterResponse);
const heartbeatResponseChecker = TypeCompiler.Compile(HeartbeatResponse);
const credentialResponseChecker = TypeCompiler.Compile(CredentialResponse);
const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * The bearer for the next request. A function, asked before every request, so that a credential
 * stored by one process (`run` rotating it) is what the other (the supervisor) sends next.
 */
export type BearerSource = (rejected?: string) => string | null | Promise<string | null>;

export interface ServerClientOptions {
  serverUrl: string;
  token: string | BearerSource;
  dispatcher: Dispatcher;
  clock: Clock;
  /** Whole request, headers and body. Default 30 s. */
  requestTimeoutMs?: number;
}

function errorCodeOf(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown } };
    return typeof parsed.error?.code === 'string' ? parsed.error.code : undefined;
  } catch {
    return undefined;
  }
}

/** The worker's calls to `bytebiota-server` (docs/protocol.md, section 3), each mapped to one error code. */
export class ServerClient {
  readonly serverUrl: string;
  readonly #bearer: BearerSource;
  readonly #dispatcher: Dispatcher;
  readonly #clock: Clock;
  readonly #requestTimeoutMs: number;

  constructor(options: ServerClientOptions) {
    this.serverUrl = options.serverUrl;
    const token = options.token;
    this.#bearer = typeof token === 'string' ? (rejected) => (rejected === undefined ? token : null) : token;
    this.#dispatcher = options.dispatcher;
    this.#clock = options.clock;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  /** The handshake (docs/protocol.md, section 3): who we are, and what the server expects of us. */
  async register(body: RegisterRequest, requestId?: string): Promise<RegisterResponse> {
    const response = await this.#postJson('/api/workers/register', body, 200, requestId);
    if (!registerResponseChecker.Check(response)) {
      throw new ConnectionError('bad_response', 'the register response does not match the handshake schema');
    }
    return response;
  }

  async heartbeat(body: HeartbeatRequest, requestId?: string): Promise<HeartbeatResponse> {
    const response = await this.#postJson('/api/workers/heartbeat', body, 200, requestId);
    if (!heartbeatResponseChecker.Check(response)) {
      throw new ConnectionError('bad_response', 'the heartbeat response does not match its schema');
    }
    return response;
  }

  /** One update event; the correlation id doubles as X-Request-Id so server logs carry it. */
  async postReport(report: UpdateReport, correlationId?: string): Promise<void> {
    await this.#postJson('/api/worker-updates/report', report, 202, correlationId);
  }

  /** The bearer this client sends next (for the update engine's manifest and artifact requests). */
  async bearer(): Promise<string | null> {
    return this.#bearer();
  }

  /** POST /api/workers/enroll: an enrollment token for this worker's own credential. Sends no bearer. */
  async enroll(body: EnrollRequest): Promise<CredentialResponse> {
    return this.#credentialAnswer(await this.#postJson('/api/workers/enroll', body, 200, undefined, null), 'enroll');
  }

  /** POST /api/workers/claim, with the pool token: the migration of a worker that has only that. */
  async claim(workerId: string, poolToken: string, claimKey: string): Promise<CredentialResponse> {
    const body = { worker_id: workerId, claim_key: claimKey };
    return this.#credentialAnswer(await this.#postJson('/api/workers/claim', body, 200, undefined, poolToken), 'claim');
  }

  /** POST /api/workers/credential/rotate, with the current credential: a new one, pending until confirmed. */
  async rotateCredential(current: string): Promise<CredentialResponse> {
    return this.#credentialAnswer(await this.#postJson('/api/workers/credential/rotate', {}, 200, undefined, current), 'rotate');
  }

  /** POST /api/workers/credential/confirm, with the NEW credential: it becomes the only live one. */
  async confirmCredential(next: string): Promise<void> {
    await this.#postJson('/api/workers/credential/confirm', {}, 200, undefined, next);
  }

  #credentialAnswer(response: unknown, route: string): CredentialResponse {
    if (!credentialResponseChecker.Check(response)) throw new ConnectionError('bad_response', `the ${route} response does not match its schema`);
    return response;
  }

  /** `bearer`: undefined for the client's own, null for none, or a given one. */
  async #postJson(path: string, body: unknown, expectedStatus: number, requestId?: string, bearer?: string | null): Promise<unknown> {
    const token = bearer === undefined ? await this.#bearer() : bearer;
    try {
      return await this.#postJsonAs(path, body, expectedStatus, requestId, token);
    } catch (err) {
      // A credential rotated by the other process in the meantime: ask the source once more.
      if (bearer !== undefined || token === null || !(err instanceof ConnectionError) || err.status !== 401) throw err;
      const fresh = await this.#bearer(token);
      if (fresh === null || fresh === token) throw err;
      return this.#postJsonAs(path, body, expectedStatus, requestId, fresh);
    }
  }

  async #postJsonAs(path: string, body: unknown, expectedStatus: number, requestId: string | undefined, token: string | null): Promise<unknown> {
    const url = new URL(path, this.serverUrl);
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method: 'POST',
        dispatcher: this.#dispatcher,
        headers: {
          'content-type': 'application/json',
          ...(token !== null ? { authorization: `Bearer ${token}` } : {}),
          ...(requestId ? { 'x-request-id': requestId } : {}),
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.#requestTimeoutMs),
      });
    } catch (err) {
      throw new ConnectionError('server_unreachable', `POST ${url.pathname} failed: ${errorMessage(err)}`, { cause: err });
    }
    const text = await readLimited(response.body, path);
    const status = response.statusCode;
    if (status === expectedStatus) {
      if (expectedStatus === 202) return undefined;
      try {
        return JSON.parse(text);
      } catch (err) {
        throw new ConnectionError('bad_response', `POST ${url.pathname} returned a body that is not JSON`, { status, cause: err });
      }
    }
    const serverCode = errorCodeOf(text);
    const described = `POST ${url.pathname} returned ${status}${serverCode ? ` (${serverCode})` : ''}`;
    if (status === 429 || status === 503) {
      const retryAfterMs = parseRetryAfter(response.headers['retry-after'], this.#clock.now());
      throw new ConnectionError('server_busy', described, { status, retryAfterMs, serverCode });
    }
    const details = { status, serverCode: serverCode ?? null };
    if (status === 401 || status === 403) throw new ConnectionError('auth_rejected', described, details);
    if (status >= 500) throw new ConnectionError('server_error', described, details);
    if (status >= 400) throw new ConnectionError('request_rejected', described, details);
    throw new ConnectionError('bad_response', described, details);
  }
}

async function readLimited(body: Dispatcher.ResponseData['body'], path: string): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      total += (chunk as Buffer).length;
      if (total > MAX_RESPONSE_BYTES) {
        body.destroy();
        throw new ConnectionError('bad_response', `the response to ${path} exceeds ${MAX_RESPONSE_BYTES} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof ConnectionError) throw err;
    throw new ConnectionError('server_unreachable', `reading the response to ${path} failed: ${errorMessage(err)}`, { cause: err });
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** What the server last told us: the handshake, refreshed by each heartbeat. */
export interface ServerPolicy {
  minimumVersion: string | null;
  recommendedVersion: string | null;
  latestVersion: string | null;
  poolAutoUpdate: boolean;
  heartbeatIntervalS: number;
  /**
   * What the server takes beyond the first protocol (report fields, reason codes), as its last
   * handshake or heartbeat said; null for a server that says nothing (an older one). A server
   * that sends it knows staged rollouts.
   */
  accepts: ServerAccepts | null;
  /** The server asks this worker to rotate its credential (docs/protocol.md, section 3). */
  rotateCredential: boolean;
}

export function policyFromRegister(response: RegisterResponse): ServerPolicy {
  return {
    minimumVersion: response.minimum_version,
    recommendedVersion: response.recommended_version,
    latestVersion: response.latest_version,
    poolAutoUpdate: response.auto_update,
    heartbeatIntervalS: response.heartbeat_interval_s,
    accepts: response.accepts ?? null,
    rotateCredential: response.rotate_credential === true,
  };
}

export type RegisterOutcome =
  | { kind: 'registered'; policy: ServerPolicy }
  | { kind: 'unreachable' | 'auth_rejected' | 'rejected'; error: ConnectionError };

/** Classify a first handshake attempt: the start-up policy depends on which way it went. */
export async function registerOnce(client: ServerClient, body: RegisterRequest): Promise<RegisterOutcome> {
  try {
    return { kind: 'registered', policy: policyFromRegister(await client.register(body)) };
  } catch (err) {
    if (!(err instanceof ConnectionError)) throw err;
    if (err.retryable) return { kind: 'unreachable', error: err };
    if (err.code === 'auth_rejected' || err.code === 'credential_unusable') return { kind: 'auth_rejected', error: err };
    return { kind: 'rejected', error: err };
  }
}

/** The server refused who we are, or we could not say it (a damaged credential.json). */
function isIdentityRefusal(err: unknown): err is ConnectionError {
  return err instanceof ConnectionError && (err.code === 'auth_rejected' || err.code === 'credential_unusable');
}

export interface ConnectionOptions {
  client: ServerClient;
  backoff: Backoff;
  log: Logger;
  sleep?: Sleep;
  registerBody(): RegisterRequest;
  heartbeatBody(): HeartbeatRequest;
  /** Called with each new view of the server's policy (handshake and every heartbeat). */
  onPolicy(policy: ServerPolicy): void;
  /** Called when the server refuses our credential or token (401/403), or credential.json is damaged; the loop goes on retrying. */
  onAuthRejected?(error: ConnectionError): void;
}

/**
 * Keeps the worker registered and heartbeating for as long as `signal` is not aborted. It
 * survives a server that is down, slow or busy: every failure waits by the backoff (and the
 * server's Retry-After), so there is never a tight loop; and it never throws.
 */
export async function maintainConnection(options: ConnectionOptions, signal: AbortSignal, registered?: ServerPolicy): Promise<void> {
  const wait = options.sleep ?? defaultSleep;
  let policy = registered ?? null;
  let failures = 0;
  while (!signal.aborted) {
    if (policy === null) {
      try {
        policy = policyFromRegister(await options.client.register(options.registerBody()));
        failures = 0;
        options.log.info({ event: 'worker_registered', minimum_version: policy.minimumVersion, auto_update: policy.poolAutoUpdate }, 'registered with the server');
        options.onPolicy(policy);
      } catch (err) {
        const retryAfterMs = err instanceof ConnectionError ? err.retryAfterMs : null;
        const delayMs = options.backoff.delayMs(failures, retryAfterMs);
        failures += 1;
        if (isIdentityRefusal(err)) options.onAuthRejected?.(err);
        options.log.warn({ event: 'worker_register_failed', code: (err as { code?: string }).code, error: errorMessage(err), retry_in_ms: delayMs }, 'registration failed; will retry');
        await wait(delayMs, signal);
      }
      continue;
    }
    await wait(policy.heartbeatIntervalS * 1000, signal);
    if (signal.aborted) break;
    try {
      const response = await options.client.heartbeat(options.heartbeatBody());
      failures = 0;
      policy = {
        ...policy,
        minimumVersion: response.minimum_version,
        latestVersion: response.latest_version,
        poolAutoUpdate: response.auto_update,
        heartbeatIntervalS: response.heartbeat_interval_s,
        ...(response.recommended_version !== undefined ? { recommendedVersion: response.recommended_version } : {}),
        // Each heartbeat says it again: a server replaced by an older one stops saying it.
        accepts: response.accepts ?? null,
        rotateCredential: response.rotate_credential === true,
      };
      options.onPolicy(policy);
    } catch (err) {
      const code = (err as { code?: string }).code;
      options.log.warn({ event: 'worker_heartbeat_failed', code, error: errorMessage(err) }, 'heartbeat failed');
      if (isIdentityRefusal(err)) options.onAuthRejected?.(err);
      // A server that forgot us (restarted with a new database, say) answers 4xx: register again.
      if (code === 'request_rejected') policy = null;
      else if (err instanceof ConnectionError && err.retryAfterMs !== null) await wait(options.backoff.delayMs(failures, err.retryAfterMs), signal);
      failures += 1;
    }
  }
}
