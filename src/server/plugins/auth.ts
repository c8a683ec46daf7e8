import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpError } from '../http-error.js';
import { bearerToken, hashToken, secretKindOf, tokenIdOf, tokenMatches } from '../tokens.js';
import type { AuthContext } from '../types.js';

export interface AuthOptions {
  /** When set, GET /metrics needs `Authorization: Bearer <this>`. */
  metricsToken?: string | undefined;
  /** Refuse pool tokens on worker routes (401 `pool_token_refused`): every worker has its credential. */
  refusePoolTokens?: boolean;
}

/**
 * Bearer auth (docs/protocol.md, section 3). Each route names the role it admits in its config
 * (`config.auth`). The bearer is a token (`bbt_`) or a worker credential (`bbw_`); either is
 * looked up by its public id and its secret compared in constant time against the stored
 * SHA-256. 401 for a missing, malformed, unknown or revoked one; 403 for the wrong role. A
 * credential is a worker's, bound to its pool and its worker id. A pool's shared worker token
 * still works on worker routes (older workers) but is counted, logged once per token and process
 * as deprecated, and refused altogether with `refusePoolTokens`. Secrets are never logged (the
 * logger redacts the `authorization` header) and never echoed in an error.
 */
export const authPlugin = fp<AuthOptions>(
  async (app, options) => {
    app.decorateRequest('auth', null);
    const metricsTokenHash = options.metricsToken ? hashToken(options.metricsToken) : null;
    /** Pool tokens already logged as deprecated by this process: one line each, not one per request. */
    const poolTokensLogged = new Set<string>();

    async function authenticate(request: FastifyRequest): Promise<AuthContext> {
      const token = bearerToken(request.headers.authorization);
      if (token === null) throw new HttpError(401, 'unauthorized', 'an Authorization: Bearer token is required');
      if (secretKindOf(token) === 'credential') {
        const credential = await app.fleet.findCredential(tokenIdOf(token, 'credential')!);
        if (!credential || credential.revokedAt !== null || !tokenMatches(token, credential.secretSha256)) {
          throw new HttpError(401, 'invalid_token', 'the bearer token is unknown or revoked');
        }
        return { kind: 'credential', tokenId: credential.id, role: 'worker', pool: credential.pool, workerId: credential.workerId };
      }
      const id = tokenIdOf(token);
      const record = id === null ? null : await app.fleet.findToken(id);
      if (!record || record.revokedAt !== null || !tokenMatches(token, record.secretSha256)) {
        throw new HttpError(401, 'invalid_token', 'the bearer token is unknown or revoked');
      }
      return { kind: 'token', tokenId: record.id, role: record.role, pool: record.pool, workerId: null };
    }

    /** A worker route reached with a pool's shared token: counted, logged once, or refused. */
    function poolTokenUsed(request: FastifyRequest, auth: AuthContext): void {
      const pool = auth.pool ?? 'unknown';
      app.serverMetrics.countPoolTokenRequest(pool);
      if (!poolTokensLogged.has(auth.tokenId)) {
        poolTokensLogged.add(auth.tokenId);
        request.log.warn(
          { event: 'pool_token_deprecated', token_id: auth.tokenId, pool, refused: options.refusePoolTokens === true },
          'a worker authenticated with its pool token: give it a credential (enroll or claim)',
        );
      }
      if (options.refusePoolTokens) {
        throw new HttpError(401, 'pool_token_refused', 'this server takes worker credentials only, not pool tokens: enroll the worker');
      }
    }

    app.addHook('onRequest', async (request) => {
      const required = request.routeOptions.config.auth ?? 'none';
      // Console routes are the console guard's (the session cookie); they never take a bearer.
      if (required === 'none' || required === 'console') return;
      if (required === 'metrics') {
        if (metricsTokenHash === null) return;
        const token = bearerToken(request.headers.authorization);
        if (token === null) throw new HttpError(401, 'unauthorized', 'the metrics endpoint needs its bearer token');
        if (!timingSafeEqual(hashToken(token), metricsTokenHash)) {
          throw new HttpError(401, 'invalid_token', 'the metrics token is not valid');
        }
        return;
      }
      const auth = await authenticate(request);
      request.auth = auth;
      if (auth.role !== required) {
        throw new HttpError(403, 'forbidden', `this route needs a ${required} token, not a ${auth.role} token`);
      }
      if (auth.kind === 'token' && auth.role === 'worker') poolTokenUsed(request, auth);
    });
  },
  { name: 'bytebiota-auth' },
);

/** The caller's auth context on a route that required one (the hook guarantees it is set). */
export function requireAuth(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new HttpError(401, 'unauthorized', 'an Authorization: Bearer token is required');
  return request.auth;
}

/** Who did it, for an admin action's audit line: the token id and its label (the person or system it belongs to). */
export async function actor(app: { fleet: { findToken(id: string): Promise<{ label: string | null } | null> } }, request: FastifyRequest) {
  const auth = requireAuth(request);
  const token = await app.fleet.findToken(auth.tokenId);
  return { tokenId: auth.tokenId, label: token?.label ?? null };
}

/** The worker pool of the caller's worker token or credential. */
export function workerPool(request: FastifyRequest): string {
  const auth = requireAuth(request);
  if (auth.pool === null) throw new HttpError(403, 'forbidden', 'this route needs a worker token');
  return auth.pool;
}

/**
 * The caller's pool, once the worker id its request names (in the body or query; absent is
 * fine) is its own: a credential speaks only for its worker. Anything else is refused
 * `403 worker_id_mismatch`, logged with both ids and counted: a worker's credential used in
 * another's name is an attack or a copied install. A pool token names no worker, as before.
 */
export function workerPoolFor(request: FastifyRequest, workerId: string | undefined): string {
  const pool = workerPool(request);
  const auth = requireAuth(request);
  if (auth.workerId !== null && workerId !== undefined && workerId !== auth.workerId) {
    const route = request.routeOptions.url ?? 'unmatched';
    request.log.warn(
      { event: 'worker_id_mismatch', worker_id: workerId, credential_worker_id: auth.workerId, credential_id: auth.tokenId, pool, route, client_address: request.ip },
      'a worker credential was used in the name of another worker',
    );
    request.server.serverMetrics.workerIdMismatches.inc({ route });
    throw new HttpError(403, 'worker_id_mismatch', `this credential belongs to worker ${auth.workerId}, not ${workerId}`);
  }
  return pool;
}
