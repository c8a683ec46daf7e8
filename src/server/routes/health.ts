import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorMessage } from '../../shared/errors.js';
import { HttpError } from '../http-error.js';

const Health = Type.Object({ status: Type.String() });

/** Liveness and readiness: `/readyz` answers 200 only when the store and the database respond. */
export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    { config: { auth: 'none', rateLimit: false }, schema: { tags: ['health'], response: { 200: Health } } },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      config: { auth: 'none', rateLimit: false },
      schema: { tags: ['health'], response: { 200: Type.Object({ status: Type.String(), store: Type.String(), database: Type.String() }) } },
    },
    async () => {
      const checks = await Promise.allSettled([app.releaseStore.ping(), app.fleet.ping()]);
      const [store, database] = checks;
      if (store?.status === 'rejected') {
        throw new HttpError(503, 'store_unavailable', `release store not reachable: ${errorMessage(store.reason)}`);
      }
      if (database?.status === 'rejected') {
        throw new HttpError(503, 'database_unavailable', `database not reachable: ${errorMessage(database.reason)}`);
      }
      return { status: 'ready', store: 'ok', database: app.fleet.kind };
    },
  );
};
