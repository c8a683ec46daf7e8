import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, type ServerAccepts } from '../../protocol/messages.js';
import { REASON_CODES } from '../../protocol/reason-codes.js';
import { HttpError } from '../http-error.js';
import { addLogFields } from '../plugins/access-log.js';
import { workerPoolFor } from '../plugins/auth.js';
import { bearerSecurity, errorResponses } from './schemas.js';
import { credentialRotationDue } from './worker-identity.js';

/** What this server takes from workers beyond the first protocol (a worker sends nothing else). */
export const SERVER_ACCEPTS: ServerAccepts = { report_fields: ['serial', 'bytes_fetched', 'delta', 'delta_fallback'], reasons: [...REASON_CODES], identity: ['enroll', 'claim', 'rotate'] };

/**
 * The handshake and the heartbeat (docs/protocol.md, section 3). Both carry the pool's policy to the worker, which
 * enforces it itself (so a local --force-update still works); versions come from the release the
 * worker is offered and are null when it is offered none.
 */
export const workerRoutes: FastifyPluginAsyncTypebox = async (app) => {
  /**
   * The versions a worker is told come from the release it is offered, never from the channel's
   * head: a new release that raises the minimum must not make workers it has not reached yet
   * refuse to start. A worker admitted meanwhile learns of its release here, at its next heartbeat.
   */
  async function offeredFacts(worker: { workerId: string; pool: string; channel: string | null; currentVersion: string; admittedSerials?: readonly number[] }) {
    const decision =
      worker.channel === null
        ? null
        : await app.rollouts.decide({
            workerId: worker.workerId,
            pool: worker.pool,
            channel: worker.channel,
            currentVersion: worker.currentVersion,
            ...(worker.admittedSerials ? { admittedSerials: worker.admittedSerials } : {}),
          });
    const signed = decision?.kind === 'offer' ? decision.rollout.signed : null;
    return {
      minimum_version: signed?.minimum_version ?? null,
      recommended_version: signed?.recommended_version ?? null,
      latest_version: signed?.version ?? null,
      serial: signed?.serial ?? null,
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
      const pool = workerPoolFor(request, body.worker_id);
      const now = app.clock.now();
      await app.fleet.registerWorker({
        workerId: body.worker_id,
        pool,
        channel: body.channel,
        platform: body.platform,
        version: body.current_version,
        at: now,
      });
      const facts = await offeredFacts({ workerId: body.worker_id, pool, channel: body.channel, currentVersion: body.current_version });
      const autoUpdate = await autoUpdateOf(pool);
      addLogFields(request, {
        event: 'worker_registered',
        offered_serial: facts.serial,
        worker_id: body.worker_id,
        pool,
        channel: body.channel,
        platform: body.platform,
        current_version: body.current_version,
        auto_update: autoUpdate,
        minimum_version: facts.minimum_version,
      });
      return {
        minimum_version: facts.minimum_version,
        recommended_version: facts.recommended_version,
        latest_version: facts.latest_version,
        auto_update: autoUpdate,
        heartbeat_interval_s: app.settings.heartbeatIntervalSeconds,
        server_time: now.toISOString(),
        accepts: SERVER_ACCEPTS,
        ...((await credentialRotationDue(app, request)) ? { rotate_credential: true } : {}),
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
        response: { 200: HeartbeatResponse, ...errorResponses(400, 401, 403, 404, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const body = request.body;
      const pool = workerPoolFor(request, body.worker_id);
      const recorded = await app.fleet.recordHeartbeat({
        workerId: body.worker_id,
        pool,
        version: body.current_version,
        state: body.state,
        update: body.update ?? null,
        at: app.clock.now(),
      });
      if (recorded === null) {
        addLogFields(request, { event: 'worker_heartbeat', worker_id: body.worker_id, pool, result: 'unknown_worker' });
        // Every worker version answers a 4xx to its heartbeat by registering again.
        throw new HttpError(404, 'unknown_worker', `worker ${body.worker_id} has not registered: register again`);
      }
      const { channel, admittedSerials } = recorded;
      const facts = await offeredFacts({ workerId: body.worker_id, pool, channel, currentVersion: body.current_version, admittedSerials });
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
        offered_serial: facts.serial,
      });
      return {
        auto_update: autoUpdate,
        minimum_version: facts.minimum_version,
        latest_version: facts.latest_version,
        recommended_version: facts.recommended_version,
        heartbeat_interval_s: app.settings.heartbeatIntervalSeconds,
        accepts: SERVER_ACCEPTS,
        ...((await credentialRotationDue(app, request, recorded.rotationRequested)) ? { rotate_credential: true } : {}),
      };
    },
  );
};
