import { FleetStoreError } from '../fleet/fleet-store.js';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { StoreError } from '../../store/release-store.js';
import { WalSyncError } from '../fleet/wal-syncer.js';
import { HttpError } from '../http-error.js';
import { addLogFields } from './access-log.js';

interface ErrorBody {
  error: { code: string; message: string };
}

/** Fastify's own client errors, renamed to stable snake_case codes. */
const FRAMEWORK_ERRORS: Record<string, { status: number; code: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'body_too_large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'invalid_content_length' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'empty_body' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'invalid_json' },
  FST_ERR_BAD_URL: { status: 400, code: 'invalid_url' },
  FST_ERR_ASYNC_CONSTRAINT: { status: 400, code: 'invalid_request' },
};

/** The status and body for any error a request can end in; 5xx only for our own faults. */
export function describeError(error: unknown): { status: number; body: ErrorBody; internal: boolean } {
  const make = (status: number, code: string, message: string, internal = false) => ({
    status,
    body: { error: { code, message } },
    internal,
  });
  if (error instanceof HttpError) return make(error.statusCode, error.code, error.message);
  if (error instanceof WalSyncError) {
    return make(503, 'database_unavailable', 'the fleet database can no longer make writes durable; the server needs attention', true);
  }
  if (error instanceof FleetStoreError && error.code === 'database_unavailable') {
    return make(503, 'database_unavailable', 'the fleet database is not reachable', true);
  }
  if (error instanceof StoreError) {
    if (error.code === 'store_key_invalid') return make(400, 'invalid_path', error.message);
    return make(503, 'store_unavailable', 'the release store is not reachable', true);
  }
  const fastifyError = error as Partial<FastifyError> & { validationContext?: string };
  if (fastifyError.validation) {
    return make(400, 'invalid_request', fastifyError.message ?? 'the request does not match the schema');
  }
  const known = fastifyError.code ? FRAMEWORK_ERRORS[fastifyError.code] : undefined;
  if (known) return make(known.status, known.code, fastifyError.message ?? known.code);
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) return make(400, 'invalid_json', 'the body is not valid JSON');
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return make(status, 'bad_request', fastifyError.message ?? 'bad request');
  }
  return make(500, 'internal_error', 'internal server error', true);
}

/**
 * Every error leaves as `{"error": {"code", "message"}}` with a fitting status (docs/protocol.md,
 * section 3), including Fastify's own validation, not-found, body-size and content-type errors.
 * Internal errors are logged with their stack and answered without details.
 */
export const errorHandlerPlugin = fp(
  async (app) => {
    app.setErrorHandler(async (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
      const { status, body, internal } = describeError(error);
      addLogFields(request, { error_code: body.error.code, error_message: body.error.message });
      if (internal) request.log.error({ event: 'request_error', err: error }, 'request failed with an internal error');
      return reply.code(status).type('application/json; charset=utf-8').send(body);
    });
    app.setNotFoundHandler(async (request, reply) => {
      addLogFields(request, { error_code: 'not_found' });
      return reply
        .code(404)
        .type('application/json; charset=utf-8')
        .send({ error: { code: 'not_found', message: `no route ${request.method} ${(request.url.split('?')[0] ?? '').slice(0, 200)}` } });
    });
  },
  { name: 'bytebiota-error-handler' },
);
