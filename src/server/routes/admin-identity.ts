import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { PoolName, WorkerId } from '../../protocol/messages.js';
import { enrollmentTokenView, type EnrollmentTokenRecord } from '../fleet/fleet-store.js';
import { HttpError } from '../http-error.js';
import { addLogFields } from '../plugins/access-log.js';
import { actor } from '../plugins/auth.js';
import { generateToken, TOKEN_ID_PATTERN } from '../tokens.js';
import { bearerSecurity, errorResponses } from './schemas.js';

/** Ten years, as `token create --expires-in` allows. */
const MAX_EXPIRES_IN_S = 3650 * 86_400;

const EnrollmentTokenView = Type.Object({
  id: Type.String(),
  pool: Type.String(),
  label: Type.Union([Type.String(), Type.Null()]),
  max_uses: Type.Union([Type.Integer(), Type.Null()]),
  uses: Type.Integer(),
  expires_at: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
  created_by: Type.Union([Type.String(), Type.Null()]),
  revoked_at: Type.Union([Type.String(), Type.Null()]),
});

/**
 * The operator's side of worker identity (docs/protocol.md, section 3): enrollment tokens
 * (create, list, revoke) and the revocation of one worker's credential. Every change is an
 * audit line with the admin token's id and label.
 */
export const adminIdentityRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/api/admin/enrollment-tokens',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Create an enrollment token for a pool; the token is in this answer only',
        security: bearerSecurity,
        body: Type.Object(
          {
            pool: PoolName,
            expires_in_s: Type.Optional(Type.Integer({ minimum: 60, maximum: MAX_EXPIRES_IN_S })),
            max_uses: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
            label: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Composite([EnrollmentTokenView, Type.Object({ token: Type.String() })]), ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const who = await actor(app, request);
      const body = request.body;
      const at = app.clock.now();
      const made = generateToken('enrollment');
      const record: EnrollmentTokenRecord = {
        id: made.id,
        pool: body.pool,
        secretSha256: made.secretSha256,
        label: body.label ?? null,
        maxUses: body.max_uses ?? null,
        uses: 0,
        expiresAt: body.expires_in_s === undefined ? null : new Date(at.getTime() + body.expires_in_s * 1000),
        createdAt: at,
        createdBy: who.tokenId,
        revokedAt: null,
      };
      await app.fleet.createEnrollmentToken(record);
      const view = enrollmentTokenView(record);
      request.log.info(
        { event: 'enrollment_token_created', enrollment_token_id: record.id, pool: record.pool, max_uses: view.max_uses, expires_at: view.expires_at, token_id: who.tokenId, token_label: who.label },
        'enrollment token created',
      );
      addLogFields(request, { event: 'enrollment_token_create', enrollment_token_id: record.id, pool: record.pool });
      return reply.code(201).send({ ...view, token: made.token });
    },
  );

  app.get(
    '/api/admin/enrollment-tokens',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Enrollment tokens with their pools, uses and expiry (never their secrets)',
        security: bearerSecurity,
        response: { 200: Type.Object({ enrollment_tokens: Type.Array(EnrollmentTokenView) }), ...errorResponses(401, 403, 429, 503) },
      },
    },
    async (request) => {
      const tokens = await app.fleet.listEnrollmentTokens();
      addLogFields(request, { event: 'enrollment_token_list', count: tokens.length });
      return { enrollment_tokens: tokens.map(enrollmentTokenView) };
    },
  );

  app.post(
    '/api/admin/enrollment-tokens/:id/revoke',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Revoke an enrollment token: it enrolls no more workers (those it enrolled keep their credentials)',
        security: bearerSecurity,
        params: Type.Object({ id: Type.String({ pattern: TOKEN_ID_PATTERN.source }) }),
        response: { 200: Type.Object({ id: Type.String(), revoked_at: Type.String() }), ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const who = await actor(app, request);
      const { id } = request.params;
      const at = app.clock.now();
      if (!(await app.fleet.revokeEnrollmentToken(id, at))) throw new HttpError(404, 'no_enrollment_token', `no live enrollment token with id ${id}`);
      request.log.info({ event: 'enrollment_token_revoked', enrollment_token_id: id, token_id: who.tokenId, token_label: who.label }, 'enrollment token revoked');
      addLogFields(request, { event: 'enrollment_token_revoke', enrollment_token_id: id });
      return { id, revoked_at: at.toISOString() };
    },
  );

  app.post(
    '/api/admin/workers/:worker_id/revoke',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['admin'],
        summary: "Revoke one worker's credential: its next request is refused, the rest of its pool carries on",
        security: bearerSecurity,
        params: Type.Object({ worker_id: WorkerId }),
        response: {
          200: Type.Object({ worker_id: Type.String(), credential_id: Type.String(), revoked_at: Type.String() }),
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request) => {
      const who = await actor(app, request);
      const workerId = request.params.worker_id;
      const at = app.clock.now();
      const revoked = await app.fleet.revokeWorkerCredential(workerId, { at, by: who.tokenId });
      if (!revoked) throw new HttpError(404, 'no_credential', `worker ${workerId} holds no live credential`);
      request.log.info(
        { event: 'worker_credential_revoked', worker_id: workerId, pool: revoked.pool, credential_id: revoked.id, token_id: who.tokenId, token_label: who.label },
        'worker credential revoked',
      );
      addLogFields(request, { event: 'worker_revoke', worker_id: workerId, credential_id: revoked.id });
      return { worker_id: workerId, credential_id: revoked.id, revoked_at: at.toISOString() };
    },
  );

  app.post(
    '/api/admin/workers/:worker_id/rotate',
    {
      config: { auth: 'admin' },
      schema: {
        tags: ['admin'],
        summary: "Ask a worker to rotate its credential at its next heartbeat",
        security: bearerSecurity,
        params: Type.Object({ worker_id: WorkerId }),
        response: {
          200: Type.Object({ worker_id: Type.String(), requested_at: Type.String() }),
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request) => {
      const who = await actor(app, request);
      const workerId = request.params.worker_id;
      const at = app.clock.now();
      if (!(await app.fleet.requestRotation(workerId, { at, by: who.tokenId }))) {
        throw new HttpError(404, 'no_credential', `worker ${workerId} holds no live credential`);
      }
      request.log.info({ event: 'worker_credential_rotation_requested', worker_id: workerId, token_id: who.tokenId, token_label: who.label }, 'credential rotation requested');
      addLogFields(request, { event: 'worker_rotate', worker_id: workerId });
      return { worker_id: workerId, requested_at: at.toISOString() };
    },
  );
};
