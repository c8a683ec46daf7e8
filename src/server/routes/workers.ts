import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse } from '../../protocol/messages.js';
import { addLogFields } from '../plugins/access-log.js';
import { workerPool } from '../plugins/auth.js';
import { bearerSecurity, errorResponses } from './schemas.js';

/**
 * The handshake and the heartbeat (plan B3.1). Both carry the pool's policy to the worker, which
 * enforces it itself (so a local --force-update still works); versions come from the channel's
 * current verified manifest and are null when the channel has none.
 */
export const workerRoutes: FastifyPluginAsyncTypebox = async (app) => {
  async function channelFacts(channel: string | null) {
    const manifest = channel === null ? null : await app.manifests.current(channel);
    return {
      minimum_version: manifest?.signed.minimum_version ?? null,
      recommended_version: manifest?.signed.recommended_version ?? null,
      latest_version: manifest?.signed.version ?? null,
    };
  }

  async function autoUpdateOf(pool: string): Promise<boolean> {
    return (await app.fleet.getPoolPolicy(pool))?.auto_update ?? false;
  }

  app.post(
    '/api/workers/register',
    {
      config: { auth: 'worker' },
      schema: {
        tags: ['workers'],
        summary: 'Handshake: the worker says what it runs; the server answers with policy',
        security: bearerSecurity,
        body: RegisterRequest,
        response: { 200: RegisterResponse, ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const body = request.body;
      const pool = workerPool(request);
      const now = app.clock.now();
      await app.fleet.registerWorker({
        workerId: body.worker_id,
        pool,
        channel: body.channel,
        platform: body.platform,
        version: body.current_version,
        at: now,
      });
      const facts = await channelFacts(body.channel);
      const autoUpdate = await autoUpdateOf(pool);
      addLogFields(request, {
        event: 'worker_registered',
        worker_id: body.worker_id,
        pool,
        channel: body.channel,
        platform: body.platform,
        current_version: body.current_version,
        auto_update: autoUpdate,
        minimum_version: facts.minimum_version,
      });
      return {
        ...facts,
        auto_update: autoUpdate,
        heartbeat_interval_s: app.settings.heartbeatIntervalSeconds,
        server_time: now.toISOString(),
      };
    },
  );

  app.post(
    '/api/workers/heartbeat',
    {
      config: { auth: 'worker' },
      schema: {
        tags: ['workers'],
        summary: 'Worker state and update progress',
        security: bearerSecurity,
        body: HeartbeatRequest,
        response: { 200: HeartbeatResponse, ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const body = request.body;
      const pool = workerPool(request);
      const { channel } = await app.fleet.recordHeartbeat({
        workerId: body.worker_id,
        pool,
        version: body.current_version,
        state: body.state,
        update: body.update ?? null,
        at: app.clock.now(),
      });
      const facts = await channelFacts(channel);
      const autoUpdate = await autoUpdateOf(pool);
      addLogFields(request, {
        event: 'worker_heartbeat',
        worker_id: body.worker_id,
        pool,
        state: body.state,
        current_version: body.current_version,
        update_state: body.update?.state,
        update_to_version: body.update?.to_version,
        reason: body.update?.reason,
      });
      return {
        auto_update: autoUpdate,
        minimum_version: facts.minimum_version,
        latest_version: facts.latest_version,
        heartbeat_interval_s: app.settings.heartbeatIntervalSeconds,
      };
    },
  );
};
