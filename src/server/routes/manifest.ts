import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Channel, PlatformName, Version, type SignedRelease } from '../../protocol/manifest.js';
import { WorkerId } from '../../protocol/messages.js';
import { HttpError } from '../http-error.js';
import { ifNoneMatchMatches } from '../http-conditional.js';
import { addLogFields } from '../plugins/access-log.js';
import { admitsEveryone } from '../rollout/plan.js';
import { workerPoolFor } from '../plugins/auth.js';
import { Binary, bearerSecurity, errorResponses, NotModified } from './schemas.js';

const LatestQuery = Type.Object({
  channel: Channel,
  platform: Type.Optional(PlatformName),
  worker_id: Type.Optional(WorkerId),
  current_version: Type.Optional(Version),
});

/** `--force-update` on the worker: the newest release, outside the rollout (logged as rollout_bypassed). */
export const FORCE_UPDATE_HEADER = 'x-bytebiota-force-update';

/**
 * GET /api/worker-updates/latest (docs/protocol.md, section 3): the signed manifest this worker is offered,
 * byte for byte as published, after the server verified it. The worker verifies it again itself;
 * the server's check only keeps a bad manifest from ever reaching the fleet. `404 no_release`
 * means nothing new for this worker: no release, none it is admitted to yet, or its pool is
 * outside its maintenance windows; every worker takes it as a harmless answer.
 */
export const manifestRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/worker-updates/latest',
    {
      config: { auth: 'worker' },
      schema: {
        tags: ['worker-updates'],
        summary: 'The signed release manifest of a channel',
        security: bearerSecurity,
        querystring: LatestQuery,
        response: { 200: Binary, 304: NotModified, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      const { channel, platform, worker_id: workerId, current_version: currentVersion } = request.query;
      const pool = workerPoolFor(request, workerId);
      const force = request.headers[FORCE_UPDATE_HEADER] === '1';
      const autoUpdate = (await app.fleet.getPoolPolicy(pool))?.auto_update ?? false;
      addLogFields(request, {
        event: 'manifest_fetch',
        channel,
        platform,
        worker_id: workerId,
        current_version: currentVersion,
        pool,
        auto_update: autoUpdate,
        ...(force ? { forced: true } : {}),
      });

      const manifest = await offeredManifest(app, { channel, pool, workerId, currentVersion, force });
      if (!manifest) {
        addLogFields(request, { result: 'no_release' });
        throw new HttpError(404, 'no_release', `nothing is offered to this worker on channel ${channel}`);
      }
      if (platform !== undefined && manifest.signed.artifacts[platform] === undefined) {
        addLogFields(request, { result: 'no_release', version: manifest.signed.version });
        throw new HttpError(404, 'no_release', `release ${manifest.signed.version} on ${channel} has no artifact for ${platform}`);
      }
      reply.header('etag', manifest.etag).header('cache-control', 'no-cache');
      if (ifNoneMatchMatches(request.headers['if-none-match'], manifest.etag)) {
        addLogFields(request, { result: 'not_modified', version: manifest.signed.version, serial: manifest.signed.serial });
        // No body and no Content-Length: a 304 may only carry the length the 200 would have had
        // (RFC 9110 8.6), and sending none is simplest. Nothing is serialized on this path.
        return reply.code(304).send(undefined);
      }
      addLogFields(request, { result: 'served', version: manifest.signed.version, serial: manifest.signed.serial });
      return reply.type('application/json').send(manifest.bytes);
    },
  );
};

/**
 * The manifest this worker is offered: the newest release its rollout admits it to, kept as
 * verified when the rollout started (docs/runbooks/rollout.md). A request without a worker id
 * or version (not one our workers send) gets only a release offered to every worker.
 */
async function offeredManifest(
  app: FastifyInstance,
  request: { channel: string; pool: string; workerId: string | undefined; currentVersion: string | undefined; force: boolean },
): Promise<{ bytes: Buffer; etag: string; signed: SignedRelease } | null> {
  if (request.workerId === undefined || request.currentVersion === undefined) {
    const now = app.clock.now().getTime();
    const done = (await app.rollouts.offers.rollouts(request.channel)).find((r) => admitsEveryone(r.record) && r.record.expiresAt.getTime() > now);
    return done ? { bytes: done.record.manifest, etag: done.etag, signed: done.signed } : null;
  }
  const decision = await app.rollouts.decide({
    workerId: request.workerId,
    pool: request.pool,
    channel: request.channel,
    currentVersion: request.currentVersion,
    force: request.force,
  });
  if (decision.kind !== 'offer') return null;
  const { rollout } = decision;
  return { bytes: rollout.record.manifest, etag: rollout.etag, signed: rollout.signed };
}
