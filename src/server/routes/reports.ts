import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { UpdateReport } from '../../protocol/messages.js';
import { addLogFields } from '../plugins/access-log.js';
import { workerPool } from '../plugins/auth.js';
import { Accepted, bearerSecurity, errorResponses } from './schemas.js';

/**
 * POST /api/worker-updates/report: one update event. The 202 is sent only after the event is
 * durable in the fleet store, so a worker that got it never needs to send the report again.
 */
export const reportRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/api/worker-updates/report',
    {
      config: { auth: 'worker' },
      schema: {
        tags: ['worker-updates'],
        summary: 'Report one update event',
        security: bearerSecurity,
        body: UpdateReport,
        response: { 202: Accepted, ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const report = request.body;
      const pool = workerPool(request);
      addLogFields(request, {
        event: 'update_report',
        update_event: report.event,
        reason: report.reason,
        worker_id: report.worker_id,
        pool,
        channel: report.channel,
        platform: report.platform,
        from_version: report.from_version,
        to_version: report.to_version,
        update_duration_ms: report.duration_ms,
        report_correlation_id: report.correlation_id,
      });
      await app.fleet.recordReport({ ...report, pool, receivedAt: app.clock.now(), requestId: request.id });
      app.serverMetrics.recordReport(report);
      return reply.code(202).send({ status: 'accepted' as const });
    },
  );
};
