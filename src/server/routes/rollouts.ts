import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Channel } from '../../protocol/manifest.js';
import { WorkerId } from '../../protocol/messages.js';
import { isCodedError } from '../../shared/errors.js';
import { HttpError } from '../http-error.js';
import { addLogFields } from '../plugins/access-log.js';
import { actor } from '../plugins/auth.js';
import { ROLLOUT_ACTIONS, RolloutPlanSchema } from '../../protocol/rollouts.js';
import { validatePlan } from '../rollout/plan.js';
import { RolloutError } from '../rollout/rollout-service.js';
import { bearerSecurity, errorResponses } from './schemas.js';

const RolloutStatusResponse = Type.Unknown({ description: 'a rollout: release, state, waves with counts, failure rate (docs/runbooks/rollout.md)' });

/** A rollout service refusal as its HTTP answer: 404 `no_rollout`, 409 for a transition that does not apply, 400 `invalid_plan`. */
export function asHttpError(err: unknown): never {
  if (err instanceof RolloutError) throw new HttpError(err.code === 'no_rollout' ? 404 : 409, err.code, err.message);
  if (isCodedError(err) && err.code === 'invalid_plan') throw new HttpError(400, err.code, err.message);
  throw err;
}

/** The operator's rollout controls (docs/runbooks/rollout.md), all admin-only. */
export const rolloutRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/admin/rollouts',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['rollouts'],
        summary: "Each channel's newest rollout: release, state, waves with counts, failure rate against the halt threshold",
        security: bearerSecurity,
        querystring: Type.Object(
          { channel: Type.Optional(Channel), serial: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'one rollout of the channel, by serial' })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ generated_at: Type.String(), rollouts: Type.Array(RolloutStatusResponse) }), ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { channel, serial } = request.query;
      if (serial !== undefined && channel === undefined) throw new HttpError(400, 'invalid_request', 'serial names a rollout of one channel: add channel=C to the query');
      let rollouts;
      try {
        rollouts = serial !== undefined && channel !== undefined ? [await app.rollouts.status(channel, Number(serial))] : await app.rollouts.statuses(channel);
      } catch (err) {
        return asHttpError(err);
      }
      addLogFields(request, { event: 'rollout_status', channel: request.query.channel, rollouts: rollouts.length });
      return { generated_at: app.clock.now().toISOString(), rollouts };
    },
  );

  app.post(
    '/api/admin/rollouts/:channel/:action',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['rollouts'],
        summary: 'pause (hold: no new admissions), resume, halt (stop offering it, with a reason), abort (end it)',
        security: bearerSecurity,
        params: Type.Object({ channel: Channel, action: Type.Union(ROLLOUT_ACTIONS.map((a) => Type.Literal(a))) }),
        body: Type.Object(
          {
            reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
            serial: Type.Optional(Type.Integer({ minimum: 1, description: "the rollout's serial; default the channel's newest" })),
          },
          { additionalProperties: false },
        ),
        response: { 200: RolloutStatusResponse, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const { channel, action } = request.params;
      const who = await actor(app, request);
      addLogFields(request, { event: 'rollout_control', channel, action, serial: request.body.serial });
      try {
        return await app.rollouts.control(channel, action, who, request.body.reason ?? null, request.body.serial);
      } catch (err) {
        return asHttpError(err);
      }
    },
  );

  app.get(
    '/api/admin/channels/:channel/plan',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['rollouts'],
        summary: "The plan the channel's next rollouts start with",
        security: bearerSecurity,
        params: Type.Object({ channel: Channel }),
        response: {
          200: Type.Object({ channel: Type.String(), source: Type.Union([Type.Literal('channel'), Type.Literal('default')]), plan: RolloutPlanSchema }),
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const { channel } = request.params;
      const own = await app.fleet.getChannelPlan(channel);
      return { channel, source: own ? ('channel' as const) : ('default' as const), plan: own ?? app.rollouts.offers.defaultPlan };
    },
  );

  app.put(
    '/api/admin/channels/:channel/plan',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['rollouts'],
        summary: "Set the plan the channel's next rollouts start with (a running rollout keeps its own)",
        security: bearerSecurity,
        params: Type.Object({ channel: Channel }),
        body: RolloutPlanSchema,
        response: { 200: Type.Object({ channel: Type.String(), source: Type.Literal('channel'), plan: RolloutPlanSchema }), ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const { channel } = request.params;
      let plan;
      try {
        plan = validatePlan(request.body);
      } catch (err) {
        return asHttpError(err);
      }
      const who = await actor(app, request);
      await app.fleet.setChannelPlan(channel, plan, { at: app.clock.now(), byTokenId: who.tokenId });
      request.log.info(
        { event: 'rollout_plan_changed', channel, waves: plan.waves, immediate: plan.immediate, token_id: who.tokenId, token_label: who.label },
        'rollout plan changed',
      );
      addLogFields(request, { event: 'rollout_plan_put', channel });
      return { channel, source: 'channel' as const, plan };
    },
  );

  app.get(
    '/api/admin/pools',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['rollouts'],
        summary: 'Pools with their policy and maintenance windows (open now, next change)',
        security: bearerSecurity,
        response: { 200: Type.Object({ generated_at: Type.String(), pools: Type.Array(Type.Unknown()) }), ...errorResponses(401, 403, 429, 503) },
      },
    },
    async () => ({ generated_at: app.clock.now().toISOString(), pools: await app.rollouts.pools() }),
  );

  app.get(
    '/api/admin/workers/:worker_id/explain',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['rollouts'],
        summary: 'Why this worker is or is not offered a version: policy, window, wave, share and rank, halt, floor, local rollback',
        security: bearerSecurity,
        params: Type.Object({ worker_id: WorkerId }),
        response: { 200: Type.Unknown(), ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const explanation = await app.rollouts.explain(request.params.worker_id);
      if (!explanation) throw new HttpError(404, 'unknown_worker', `no worker ${request.params.worker_id} has registered`);
      return explanation;
    },
  );
};
