import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { UpdateReport } from '../../protocol/messages.js';
import { addLogFields } from '../plugins/access-log.js';
import { workerPoolFor } from '../plugins/auth.js';
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
      const pool = workerPoolFor(request, report.worker_id);
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
        bytes_fetched: report.bytes_fetched,
        delta: report.delta,
        delta_fallback: report.delta_fallback,
      });
      const rolloutSerial = report.serial ?? (await rolloutSerialOf(app, report.worker_id, report.channel, report.to_version));
      if (rolloutSerial !== null) addLogFields(request, { serial: rolloutSerial });
      const stored = await app.fleet.recordReport({ ...report, pool, rolloutSerial, receivedAt: app.clock.now(), requestId: request.id });
      // A retry of a report already stored (its answer was lost) is acknowledged again, not counted again.
      if (stored) app.serverMetrics.recordReport(report);
      else addLogFields(request, { report_duplicate: true });
      return reply.code(202).send({ status: 'accepted' as const });
    },
  );
};

/**
 * The rollout a report from an older worker (no `serial`) is about: of the channel's rollouts of
 * its `to_version`, the newest the worker was admitted to, else the newest. Null when none is.
 */
async function rolloutSerialOf(app: FastifyInstance, workerId: string, channel: string, toVersion: string): Promise<number | null> {
  const candidates = (await app.rollouts.offers.rollouts(channel)).filter((r) => r.record.version === toVersion);
  if (candidates.length === 0) return null;
  if (candidates.length === 1) return candidates[0]!.record.serial;
  const admitted = new Set(await app.fleet.workerAdmittedSerials(workerId, channel));
  return (candidates.find((r) => admitted.has(r.record.serial)) ?? candidates[0]!).record.serial;
}
