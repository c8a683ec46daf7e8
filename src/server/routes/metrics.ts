import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

/** Prometheus text format; behind the metrics token when one is configured. */
export const metricsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/metrics', { config: { auth: 'metrics', rateLimit: false }, schema: { tags: ['metrics'] } }, async (_request, reply) => {
    const text = await app.serverMetrics.registry.metrics();
    return reply.type(app.serverMetrics.registry.contentType).send(text);
  });
};
