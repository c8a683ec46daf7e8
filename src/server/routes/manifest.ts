import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Channel, PlatformName, Version } from '../../protocol/manifest.js';
import { WorkerId } from '../../protocol/messages.js';
import { HttpError } from '../http-error.js';
import { ifNoneMatchMatches } from '../http-conditional.js';
import { addLogFields } from '../plugins/access-log.js';
import { workerPool } from '../plugins/auth.js';
import { Binary, bearerSecurity, errorResponses, NotModified } from './schemas.js';

const LatestQuery = Type.Object({
  channel: Channel,
  platform: Type.Optional(PlatformName),
  worker_id: Type.Optional(WorkerId),
  current_version: Type.Optional(Version),
});

/**
 * GET /api/worker-updates/latest (plan B1.1, B1.3): the channel's current signed manifest, byte
 * for byte as published, after the server verified it. The worker verifies it again itself; the
 * server's check only keeps a bad manifest from ever reaching the fleet.
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
      const pool = workerPool(request);
      const policy = await app.fleet.getPoolPolicy(pool);
      const autoUpdate = policy?.auto_update ?? false;
      addLogFields(request, {
        event: 'manifest_fetch',
        channel,
        platform,
        worker_id: workerId,
        current_version: currentVersion,
        pool,
        auto_update: autoUpdate,
      });

      const manifest = await app.manifests.current(channel);
      if (!manifest) {
        addLogFields(request, { result: 'no_release' });
        throw new HttpError(404, 'no_release', `no verified release on channel ${channel}`);
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
