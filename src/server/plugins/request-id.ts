import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import fp from 'fastify-plugin';

/** A request id we accept from a client: short and printable, so it is safe in logs and headers. */
export const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The correlation id of a request (docs/protocol.md, section 3): the client's `X-Request-Id` when it is
 * safe to echo, else a new UUID. Fastify puts it on every log line of the request as
 * `correlation_id`; the plugin below returns it on every response.
 */
export function requestIdFrom(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
}

export const requestIdPlugin = fp(
  async (app) => {
    // onSend runs for every response, errors and 404s included. A callback hook, not an async
    // one: this runs on every request, and an async hook costs a promise and a microtask.
    app.addHook('onSend', (request, reply, payload, done) => {
      reply.header('x-request-id', request.id);
      done(null, payload);
    });
  },
  { name: 'bytebiota-request-id' },
);
