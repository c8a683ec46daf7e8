import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Channel, Version } from '../../protocol/manifest.js';
import { PoolName, UPDATE_STATES, WORKER_STATES, WorkerId } from '../../protocol/messages.js';
import { ROLLOUT_ACTIONS } from '../../protocol/rollouts.js';
import { ifNoneMatchMatches } from '../http-conditional.js';
import { HttpError } from '../http-error.js';
import { addLogFields } from '../plugins/access-log.js';
import { actor } from '../plugins/auth.js';
import { boundedCount } from '../routes/admin.js';
import { asHttpError } from '../routes/rollouts.js';
import { errorResponses, NotModified } from '../routes/schemas.js';
import { unseenWindow } from '../fleet/liveness.js';
import type { OverviewService } from './overview.js';
import type { WorkerSearch } from '../fleet/fleet-store.js';
import { SAMPLE_HISTORY_DAYS } from './version-sampler.js';

const Anything = Type.Unknown();
const PAGE_DEFAULT = 50;
const PAGE_MAX = 200;
const WORKER_EVENTS = 50;
const FAILURE_WORKER_IDS = 20;

const WorkersQuery = Type.Object(
  {
    q: Type.Optional(Type.String({ maxLength: 128, pattern: '^[A-Za-z0-9._:-]*$', description: 'worker id prefix' })),
    pool: Type.Optional(PoolName),
    version: Type.Optional(Version),
    channel: Type.Optional(Channel),
    state: Type.Optional(Type.Union(WORKER_STATES.map((state) => Type.Literal(state)))),
    update_state: Type.Optional(Type.Union([...UPDATE_STATES, 'none' as const].map((state) => Type.Literal(state)))),
    seen: Type.Optional(Type.Union([Type.Literal('live'), Type.Literal('unseen')])),
    after: Type.Optional(WorkerId),
    limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,2}$' })),
  },
  { additionalProperties: false },
);

/**
 * What the console page reads and the rollout actions it takes (docs/console.md). Every route
 * needs the console session (`auth: 'console'`); the actions call the same rollout service as
 * the admin API and are logged with the admin token's label.
 */
export const consoleDataRoutes: FastifyPluginAsyncTypebox<{ overview: OverviewService; sampleIntervalSeconds: number }> = async (app, { overview, sampleIntervalSeconds }) => {
  const tagged = { tags: ['console'] };

  app.get(
    '/console/api/overview',
    { config: { auth: 'console' }, schema: { ...tagged, summary: 'Per channel: rollout, waves, failure rate, workers by version and state (ETag)', response: { 200: Anything, 304: NotModified, ...errorResponses(401, 429, 503) } } },
    async (request, reply) => {
      const snapshot = await overview.snapshot();
      void reply.header('etag', snapshot.etag).header('cache-control', 'no-cache');
      if (ifNoneMatchMatches(request.headers['if-none-match'], snapshot.etag)) return reply.code(304).send();
      return reply.type('application/json; charset=utf-8').send(snapshot.body);
    },
  );

  app.get(
    '/console/api/history',
    {
      config: { auth: 'console' },
      schema: {
        ...tagged,
        summary: "A channel's version distribution over time, one sample per interval",
        querystring: Type.Object({ channel: Channel, days: Type.Optional(Type.String({ pattern: '^[1-9][0-9]?$' })) }, { additionalProperties: false }),
        response: { 200: Anything, ...errorResponses(400, 401, 429, 503) },
      },
    },
    async (request) => {
      const days = boundedCount(request.query.days, 7, 1, SAMPLE_HISTORY_DAYS, 'days');
      const since = new Date(app.clock.now().getTime() - days * 86_400_000);
      const rows = await app.fleet.versionSamples(request.query.channel, since);
      const samples: Array<{ at: string; versions: Record<string, number> }> = [];
      for (const row of rows) {
        if (samples.at(-1)?.at !== row.sampled_at) samples.push({ at: row.sampled_at, versions: {} });
        samples.at(-1)!.versions[row.version] = row.count;
      }
      return { channel: request.query.channel, resolution_seconds: sampleIntervalSeconds, samples };
    },
  );

  app.get(
    '/console/api/rollouts',
    {
      config: { auth: 'console' },
      schema: {
        ...tagged,
        summary: "Rollouts (a channel's newest, or each channel's) and pools with their maintenance windows",
        querystring: Type.Object({ channel: Type.Optional(Channel) }, { additionalProperties: false }),
        response: { 200: Anything, ...errorResponses(400, 401, 429, 503) },
      },
    },
    async (request) => ({
      generated_at: app.clock.now().toISOString(),
      rollouts: await app.rollouts.statuses(request.query.channel),
      pools: await app.rollouts.pools(),
    }),
  );

  app.post(
    '/console/api/rollouts/:channel/:action',
    {
      config: { auth: 'console' },
      schema: {
        ...tagged,
        summary: 'pause, resume, halt or abort a rollout (CSRF header)',
        params: Type.Object({ channel: Channel, action: Type.Union(ROLLOUT_ACTIONS.map((action) => Type.Literal(action))) }),
        body: Type.Object(
          { reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })), serial: Type.Optional(Type.Integer({ minimum: 1 })) },
          { additionalProperties: false },
        ),
        response: { 200: Anything, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const { channel, action } = request.params;
      const who = await actor(app, request);
      addLogFields(request, { event: 'rollout_control', channel, action, serial: request.body.serial, via: 'console', session_id: request.consoleSession?.session.id });
      try {
        return await app.rollouts.control(channel, action, who, request.body.reason ?? null, request.body.serial);
      } catch (err) {
        return asHttpError(err);
      }
    },
  );

  app.get(
    '/console/api/workers',
    {
      config: { auth: 'console' },
      schema: { ...tagged, summary: 'Workers matching the filters, a page at a time by worker id (keyset)', querystring: WorkersQuery, response: { 200: Anything, ...errorResponses(400, 401, 429, 503) } },
    },
    async (request) => {
      const query = request.query;
      const limit = boundedCount(query.limit, PAGE_DEFAULT, 1, PAGE_MAX, 'limit');
      const now = app.clock.now();
      const search: WorkerSearch = { limit: limit + 1 };
      if (query.q !== undefined) search.idPrefix = query.q;
      if (query.pool !== undefined) search.pool = query.pool;
      if (query.version !== undefined) search.version = query.version;
      if (query.channel !== undefined) search.channel = query.channel;
      if (query.state !== undefined) search.state = query.state;
      if (query.update_state !== undefined) search.updateState = query.update_state;
      if (query.after !== undefined) search.after = query.after;
      if (query.seen === 'live') search.seenSince = new Date(now.getTime() - app.settings.workerStaleAfterSeconds * 1000);
      if (query.seen === 'unseen') {
        const window = unseenWindow(now, app.settings.heartbeatIntervalSeconds);
        search.seenSince = window.since;
        search.seenBefore = window.before;
      }
      // One more than the page tells whether a next page exists without a second query.
      const { workers, total } = await app.fleet.searchWorkers(search);
      const page = workers.slice(0, limit);
      return { workers: page, next_cursor: workers.length > limit ? page.at(-1)!.worker_id : null, total };
    },
  );

  app.get(
    '/console/api/workers/facets',
    { config: { auth: 'console' }, schema: { ...tagged, summary: "The worker filters' choices: pools, versions, channels", response: { 200: Anything, ...errorResponses(401, 429, 503) } } },
    async () => app.fleet.workerFacets(),
  );

  app.get(
    '/console/api/workers/:worker_id',
    {
      config: { auth: 'console' },
      schema: {
        ...tagged,
        summary: 'A worker, why it is or is not offered a version, and its recent update events',
        params: Type.Object({ worker_id: WorkerId }),
        response: { 200: Anything, ...errorResponses(400, 401, 404, 429, 503) },
      },
    },
    async (request) => {
      const workerId = request.params.worker_id;
      const [worker, explanation, events] = await Promise.all([app.fleet.getWorker(workerId), app.rollouts.explain(workerId), app.fleet.workerEvents(workerId, WORKER_EVENTS)]);
      if (!worker || !explanation) throw new HttpError(404, 'unknown_worker', `no worker ${workerId} has registered`);
      return { worker, explanation, events };
    },
  );

  app.get(
    '/console/api/failures',
    {
      config: { auth: 'console' },
      schema: {
        ...tagged,
        summary: 'Failure and rollback reports by reason and version, with the workers that sent them',
        querystring: Type.Object({ hours: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,2}$' })) }, { additionalProperties: false }),
        response: { 200: Anything, ...errorResponses(400, 401, 429, 503) },
      },
    },
    async (request) => {
      const hours = boundedCount(request.query.hours, 24, 1, 720, 'hours');
      const since = new Date(app.clock.now().getTime() - hours * 3600_000);
      return { since: since.toISOString(), groups: await app.fleet.failureGroups(since, FAILURE_WORKER_IDS) };
    },
  );
};
