import swagger from '@fastify/swagger';
import fp from 'fastify-plugin';

/**
 * The OpenAPI 3 document, generated from the routes' TypeBox schemas (one source for validation,
 * types and documentation) and served at GET /openapi.json. Registered before the routes so it
 * sees them all.
 */
export const openapiPlugin = fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'bytebiota-server',
          description: 'Signed worker releases, update reports, handshake, fleet view and pool policies',
          version: '1',
        },
        components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
      },
    });
    app.get('/openapi.json', { config: { auth: 'none' }, schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'bytebiota-openapi' },
);
