import fp from 'fastify-plugin';

/**
 * One log line per request (docs/protocol.md, section 6), written when the response is done, carrying the
 * request's `correlation_id`, its status and duration, and whatever the route and error handler
 * added to `request.logFields`: channel, pool, policy and result for a manifest fetch; event,
 * reason and versions for a report; the error code for an error. Fastify's own two-line request
 * logging is off.
 */
export const accessLogPlugin = fp(
  async (app) => {
    app.decorateRequest('logFields', null);
    // A callback hook (no promise per request). The line is built once, in one object: the
    // route's fields are copied onto it rather than spread into a new one.
    app.addHook('onResponse', (request, reply, done) => {
      const line: Record<string, unknown> = {
        event: 'http_request',
        method: request.method,
        route: request.routeOptions.url ?? null,
        status: reply.statusCode,
        duration_ms: Math.round(reply.elapsedTime * 100) / 100,
        token_id: request.auth?.kind === 'token' ? request.auth.tokenId : undefined,
        credential_id: request.auth?.kind === 'credential' ? request.auth.tokenId : undefined,
      };
      if (request.logFields !== null) Object.assign(line, request.logFields);
      if (reply.statusCode >= 500) request.log.error(line, 'request failed');
      else request.log.info(line, 'request');
      done();
    });
  },
  { name: 'bytebiota-access-log' },
);

/**
 * Add fields to the request's log line (merging with what is already there). The first object
 * given is kept as the line's field set, not copied: pass a fresh literal.
 */
export function addLogFields(request: { logFields: Record<string, unknown> | null }, fields: Record<string, unknown>): void {
  if (request.logFields === null) request.logFields = fields;
  else Object.assign(request.logFields, fields);
}
