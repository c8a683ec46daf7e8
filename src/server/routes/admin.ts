import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { PoolName, PoolPolicy } from '../../protocol/messages.js';
import { isCodedError } from '../../shared/errors.js';
import { HttpError } from '../http-error.js';
import { formatMaintenanceWindow, parseMaintenanceWindow } from '../rollout/maintenance-window.js';
import { addLogFields } from '../plugins/access-log.js';
import { requireAuth } from '../plugins/auth.js';
import { bearerSecurity, errorResponses } from './schemas.js';

const COUNT = '^[0-9]{1,5}$';
const FleetQuery = Type.Object({
  limit: Type.Optional(Type.String({ pattern: COUNT, description: 'most workers to list (1-10000, default 500)' })),
  failures: Type.Optional(Type.String({ pattern: COUNT, description: 'most recent failures to list (0-1000, default 50)' })),
});

/** A whole number from a query string, `fallback` when absent; 400 `invalid_request` outside [min, max]. */
export function boundedCount(text: string | undefined, fallback: number, min: number, max: number, name: string): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (value < min || value > max) throw new HttpError(400, 'invalid_request', `${name} must be between ${min} and ${max}`);
  return value;
}

/** The operator's view of the fleet and the per-pool switch for self-update. */
export const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/admin/fleet',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Workers by channel, pool, version and state; update progress; recent failures',
        security: bearerSecurity,
        querystring: FleetQuery,
        response: { 200: Type.Unknown({ description: 'the fleet view (docs/server.md)' }), ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const workerLimit = boundedCount(request.query.limit, 500, 1, 10_000, 'limit');
      const failureLimit = boundedCount(request.query.failures, 50, 0, 1000, 'failures');
      const view = await app.fleet.fleetView({ workerLimit, failureLimit });
      addLogFields(request, { event: 'fleet_view', total_workers: view.total_workers });
      return { generated_at: app.clock.now().toISOString(), ...view };
    },
  );

  app.put(
    '/api/admin/pools/:pool/policy',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['admin'],
        summary: "Turn a pool's self-update on or off, and set its maintenance windows (replaced whole; none: always open)",
        security: bearerSecurity,
        params: Type.Object({ pool: PoolName }),
        body: PoolPolicy,
        response: {
          200: Type.Object({
            pool: Type.String(),
            auto_update: Type.Boolean(),
            maintenance_windows: Type.Array(Type.String()),
            updated_at: Type.String(),
          }),
          ...errorResponses(400, 401, 403, 413, 415, 429, 503),
        },
      },
    },
    async (request) => {
      const auth = requireAuth(request);
      const { pool } = request.params;
      const at = app.clock.now();
      // Kept in canonical form (`Mon-Thu 09:00-17:00 Europe/Berlin`), whatever spacing or case was typed.
      const windows = (request.body.maintenance_windows ?? []).map((text) => {
        try {
          return formatMaintenanceWindow(parseMaintenanceWindow(text));
        } catch (err) {
          if (isCodedError(err)) throw new HttpError(400, err.code, err.message);
          throw err;
        }
      });
      await app.fleet.setPoolPolicy(pool, { auto_update: request.body.auto_update, maintenance_windows: windows }, { at, byTokenId: auth.tokenId });
      // An audit line: who switched which pool, and to what.
      request.log.info(
        { event: 'pool_policy_changed', pool, auto_update: request.body.auto_update, maintenance_windows: windows, token_id: auth.tokenId },
        'pool policy changed',
      );
      addLogFields(request, { event: 'pool_policy_put', pool, auto_update: request.body.auto_update });
      return { pool, auto_update: request.body.auto_update, maintenance_windows: windows, updated_at: at.toISOString() };
    },
  );
};
