import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpError } from '../http-error.js';
import { bearerToken, hashToken, tokenIdOf, tokenMatches } from '../tokens.js';
import type { AuthContext } from '../types.js';

export interface AuthOptions {
  /** When set, GET /metrics needs `Authorization: Bearer <this>`. */
  metricsToken?: string | undefined;
}

/**
 * Bearer-token auth (docs/protocol.md, section 3). Each route names the role it admits in its config
 * (`config.auth`); the token is looked up by its public id and its secret compared in constant
 * time against the stored SHA-256. 401 for a missing, malformed, unknown or revoked token; 403
 * for a valid token of the wrong role. The token itself is never logged (the logger redacts the
 * `authorization` header) and never echoed in an error.
 */
export const authPlugin = fp<AuthOptions>(
  async (app, options) => {
    app.decorateRequest('auth', null);
    const metricsTokenHash = options.metricsToken ? hashToken(options.metricsToken) : null;

    async function authenticate(request: FastifyRequest): Promise<AuthContext> {
      const token = bearerToken(request.headers.authorization);
      if (token === null) throw new HttpError(401, 'unauthorized', 'an Authorization: Bearer token is required');
      const id = tokenIdOf(token);
      const record = id === null ? null : await app.fleet.findToken(id);
      if (!record || record.revokedAt !== null || !tokenMatches(token, record.secretSha256)) {
        throw new HttpError(401, 'invalid_token', 'the bearer token is unknown or revoked');
      }
      return { tokenId: record.id, role: record.role, pool: record.pool };
    }

    app.addHook('onRequest', async (request) => {
      const required = request.routeOptions.config.auth ?? 'none';
      if (required === 'none') return;
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
    });
  },
  { name: 'bytebiota-auth' },
);

/** The caller's auth context on a route that required one (the hook guarantees it is set). */
export function requireAuth(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new HttpError(401, 'unauthorized', 'an Authorization: Bearer token is required');
  return request.auth;
}

/** The worker pool of the caller's worker token. */
export function workerPool(request: FastifyRequest): string {
  const auth = requireAuth(request);
  if (auth.pool === null) throw new HttpError(403, 'forbidden', 'this route needs a worker token');
  return auth.pool;
}
