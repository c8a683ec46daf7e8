import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { storeKeys, Version } from '../../protocol/manifest.js';
import { HttpError } from '../http-error.js';
import { ifNoneMatchMatches, ifRangeAllows, parseRange } from '../http-conditional.js';
import { addLogFields } from '../plugins/access-log.js';
import { workerPool } from '../plugins/auth.js';
import { Binary, bearerSecurity, errorResponses, NotModified } from './schemas.js';

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value;
}

const ArtifactParams = Type.Object({
  version: Version,
  file: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$' }),
});

/**
 * GET /api/worker-updates/artifacts/<version>/<file>: the executable, streamed from the store
 * (never held in memory), with one byte range for resumed downloads. If-Range with a stale or
 * weak validator gets the whole file, so a resumed download never splices two different builds.
 */
export const artifactRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/worker-updates/artifacts/:version/:file',
    {
      config: { auth: 'worker' },
      schema: {
        tags: ['worker-updates'],
        summary: 'An artifact, with Range support',
        security: bearerSecurity,
        params: ArtifactParams,
        response: { 200: Binary, 304: NotModified, 206: Binary, ...errorResponses(400, 401, 403, 404, 409, 416, 429, 503) },
      },
    },
    async (request, reply) => {
      const { version, file } = request.params;
      const pool = workerPool(request);
      const policy = await app.fleet.getPoolPolicy(pool);
      addLogFields(request, { event: 'artifact_download', version, file, pool, auto_update: policy?.auto_update ?? false });

      const key = storeKeys.artifact(version, file);
      const info = await app.releaseStore.stat(key);
      if (!info) throw new HttpError(404, 'artifact_not_found', `no artifact ${version}/${file}`);
      reply.header('accept-ranges', 'bytes').header('etag', info.etag).header('cache-control', 'no-cache');
      if (ifNoneMatchMatches(singleHeader(request.headers['if-none-match']), info.etag)) {
        addLogFields(request, { result: 'not_modified' });
        return reply.code(304).send(undefined);
      }

      const range = ifRangeAllows(singleHeader(request.headers['if-range']), info.etag)
        ? parseRange(singleHeader(request.headers.range), info.size)
        : ({ kind: 'none' } as const);
      if (range.kind === 'unsatisfiable') {
        reply.header('content-range', `bytes */${info.size}`);
        throw new HttpError(416, 'range_not_satisfiable', `the range ${request.headers.range ?? ''} is outside the ${info.size}-byte artifact`);
      }
      const opened = await app.releaseStore.openRead(key, range.kind === 'range' ? range.range : undefined);
      if (!opened) throw new HttpError(404, 'artifact_not_found', `no artifact ${version}/${file}`);
      if (opened.etag !== info.etag) {
        // Replaced between stat and open: the headers computed above would describe other bytes.
        opened.stream.destroy();
        throw new HttpError(409, 'artifact_changed', 'the artifact changed while it was being opened; retry');
      }
      reply.type('application/octet-stream');
      if (range.kind === 'range') {
        const { start, end } = range.range;
        addLogFields(request, { result: 'partial', range_start: start, range_end: end });
        reply
          .code(206)
          .header('content-range', `bytes ${start}-${end}/${info.size}`)
          .header('content-length', String(end - start + 1));
      } else {
        addLogFields(request, { result: 'served', size: info.size });
        reply.header('content-length', String(info.size));
      }
      return reply.send(opened.stream);
    },
  );
};
