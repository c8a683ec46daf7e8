import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ClaimRequest, CredentialResponse, EnrollRequest } from '../../protocol/messages.js';
import { enrollmentRefusal, type CredentialRecord, type EnrollmentRefusal } from '../fleet/fleet-store.js';
import { HttpError } from '../http-error.js';
import { addLogFields } from '../plugins/access-log.js';
import type { RateLimitSettings } from '../app.js';
import { requireAuth } from '../plugins/auth.js';
import { bearerToken, generateToken, hashToken, tokenIdOf, tokenMatches } from '../tokens.js';
import { bearerSecurity, errorResponses } from './schemas.js';

export interface WorkerIdentityOptions {
  /** Enrollments allowed per client address in each window: the route takes no bearer, so guessing is bounded here. */
  enrollRateLimit: RateLimitSettings;
}

const REFUSAL_MESSAGES: Record<EnrollmentRefusal, string> = {
  invalid_enrollment_token: 'the enrollment token is unknown or malformed',
  enrollment_token_revoked: 'the enrollment token was revoked',
  enrollment_token_expired: 'the enrollment token has expired',
  enrollment_token_used_up: 'the enrollment token has no uses left',
};

/**
 * Whether the caller's credential should be rotated: older than `--credential-max-age`, or an
 * admin asked (`rotationRequested` when the caller read it already). Only ever true for a worker that authenticated with a credential (a pool token
 * has nothing to rotate, and an older worker never sees the field it would not know).
 */
export async function credentialRotationDue(app: FastifyInstance, request: FastifyRequest, rotationRequested?: boolean): Promise<boolean> {
  const auth = request.auth;
  if (!auth || auth.kind !== 'credential' || auth.workerId === null) return false;
  const credential = await app.fleet.findCredential(auth.tokenId);
  if (!credential) return false;
  if (app.clock.now().getTime() - credential.createdAt.getTime() >= app.settings.credentialMaxAgeSeconds * 1000) return true;
  return rotationRequested ?? app.fleet.rotationRequested(auth.workerId);
}

const ConfirmResponse = Type.Object({
  worker_id: Type.String(),
  credential_id: Type.String(),
  status: Type.Union([Type.Literal('confirmed'), Type.Literal('already_confirmed')]),
});

/** A credential about to be issued for `workerId` in `pool`, and the secret shown once. */
function newCredential(
  request: FastifyRequest,
  fields: Pick<CredentialRecord, 'workerId' | 'pool' | 'source' | 'sourceTokenId' | 'createdAt'>,
): { record: CredentialRecord; credential: string } {
  const made = generateToken('credential');
  return {
    credential: made.token,
    record: { ...fields, id: made.id, secretSha256: made.secretSha256, createdFrom: request.ip, revokedAt: null, revokedBy: null },
  };
}

/**
 * Worker identity (docs/protocol.md, section 3): a worker gets its own credential, bound to its
 * worker id and a pool, by spending an enrollment token (enroll) or, once, by showing its pool
 * token (claim: the migration of a worker that has only the pool's token). Every issue and
 * every refusal is logged with the worker id and the client address, never a secret; a worker
 * id that already has a credential is a warning, because someone else may be using its name.
 */
export const workerIdentityRoutes: FastifyPluginAsyncTypebox<WorkerIdentityOptions> = async (app, options) => {
  app.post(
    '/api/workers/enroll',
    {
      config: {
        auth: 'none',
        rateLimit: { max: options.enrollRateLimit.max, timeWindow: options.enrollRateLimit.windowSeconds * 1000 },
      },
      schema: {
        tags: ['workers'],
        summary: "Spend an enrollment token for this worker's own credential (shown once)",
        body: EnrollRequest,
        response: { 200: CredentialResponse, ...errorResponses(400, 401, 409, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const body = request.body;
      const at = app.clock.now();
      const tokenId = tokenIdOf(body.enrollment_token, 'enrollment');
      addLogFields(request, {
        event: 'worker_enroll',
        worker_id: body.worker_id,
        client_address: request.ip,
        enrollment_token_id: tokenId ?? undefined,
        platform: body.platform,
        channel: body.channel,
      });
      const refuse = (code: EnrollmentRefusal): never => {
        addLogFields(request, { result: code });
        app.serverMetrics.enrollments.inc({ route: 'enroll', result: code });
        throw new HttpError(401, code, REFUSAL_MESSAGES[code]);
      };

      const token = tokenId === null ? null : await app.fleet.findEnrollmentToken(tokenId);
      if (!token || !tokenMatches(body.enrollment_token, token.secretSha256)) return refuse('invalid_enrollment_token');
      const refusal = enrollmentRefusal(token, at);
      if (refusal !== null) return refuse(refusal);

      const issued = newCredential(request, { workerId: body.worker_id, pool: token.pool, source: 'enroll', sourceTokenId: token.id, createdAt: at });
      // The token is checked again, and its use counted, in the transaction that stores the credential.
      const outcome = await app.fleet.enrollWorker(issued.record);
      if (outcome.kind === 'refused') return refuse(outcome.code);
      if (outcome.kind === 'already_enrolled') {
        addLogFields(request, { result: 'worker_already_enrolled' });
        app.serverMetrics.enrollments.inc({ route: 'enroll', result: 'worker_already_enrolled' });
        request.log.warn(
          {
            event: 'worker_already_enrolled',
            worker_id: body.worker_id,
            client_address: request.ip,
            enrollment_token_id: token.id,
            existing_credential_id: outcome.existing.id,
            existing_issued_to: outcome.existing.createdFrom,
          },
          'an enrollment named a worker id that already holds a live credential',
        );
        throw new HttpError(409, 'worker_already_enrolled', `worker ${body.worker_id} already has a credential; an admin can revoke it first`);
      }
      app.serverMetrics.enrollments.inc({ route: 'enroll', result: 'issued' });
      addLogFields(request, { result: 'issued', pool: token.pool, credential_id: issued.record.id });
      request.log.info(
        {
          event: 'worker_enrolled',
          worker_id: body.worker_id,
          pool: token.pool,
          credential_id: issued.record.id,
          enrollment_token_id: token.id,
          client_address: request.ip,
        },
        'worker enrolled',
      );
      return { worker_id: body.worker_id, pool: token.pool, credential: issued.credential };
    },
  );

  app.post(
    '/api/workers/claim',
    {
      config: { auth: 'worker' },
      schema: {
        tags: ['workers'],
        summary: 'A worker that has only its pool token claims its own credential, once per worker id',
        security: bearerSecurity,
        body: ClaimRequest,
        response: { 200: CredentialResponse, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const workerId = request.body.worker_id;
      const auth = requireAuth(request);
      addLogFields(request, { event: 'worker_claim', worker_id: workerId, client_address: request.ip });
      if (auth.kind === 'credential' || auth.pool === null) {
        throw new HttpError(403, 'forbidden', 'a claim takes a pool worker token; this caller already has a credential');
      }
      const worker = await app.fleet.getWorker(workerId);
      if (!worker) throw new HttpError(404, 'unknown_worker', `worker ${workerId} has not registered: register, then claim`);
      // A pool token speaks for its own pool's workers only.
      if (worker.pool !== auth.pool) throw new HttpError(403, 'forbidden', `worker ${workerId} is not in this token's pool`);

      const issued = newCredential(request, { workerId, pool: auth.pool, source: 'claim', sourceTokenId: auth.tokenId, createdAt: app.clock.now() });
      const claimKey = request.body.claim_key;
      const keySha256 = claimKey === undefined ? undefined : hashToken(claimKey);
      const outcome = await app.fleet.claimCredential(issued.record, keySha256);
      if (!outcome.claimed && keySha256 !== undefined) {
        // The same worker again, with the key of its first claim: that answer was lost on the way.
        const again = generateToken('credential', outcome.existing.id);
        if (await app.fleet.reissueClaimedCredential({ workerId, credentialId: outcome.existing.id, claimKeySha256: keySha256, secretSha256: again.secretSha256 })) {
          app.serverMetrics.enrollments.inc({ route: 'claim', result: 'reissued' });
          addLogFields(request, { result: 'reissued', pool: auth.pool, credential_id: outcome.existing.id });
          request.log.info(
            { event: 'worker_claim_repeated', worker_id: workerId, pool: auth.pool, credential_id: outcome.existing.id, token_id: auth.tokenId, client_address: request.ip },
            'a repeated claim with the first claim\'s key: the credential gets a new secret',
          );
          return { worker_id: workerId, pool: auth.pool, credential: again.token };
        }
      }
      if (!outcome.claimed) {
        addLogFields(request, { result: 'worker_already_enrolled' });
        app.serverMetrics.enrollments.inc({ route: 'claim', result: 'worker_already_enrolled' });
        request.log.warn(
          {
            event: 'worker_claim_refused',
            worker_id: workerId,
            pool: auth.pool,
            client_address: request.ip,
            first_claimed_from: outcome.existing.createdFrom,
            existing_credential_id: outcome.existing.id,
            existing_source: outcome.existing.source,
            token_id: auth.tokenId,
          },
          'a second claim for a worker id that already has (or had) a credential',
        );
        throw new HttpError(409, 'worker_already_enrolled', `worker ${workerId} has already claimed or enrolled`);
      }
      app.serverMetrics.enrollments.inc({ route: 'claim', result: 'issued' });
      addLogFields(request, { result: 'issued', pool: auth.pool, credential_id: issued.record.id });
      request.log.info(
        { event: 'worker_claimed', worker_id: workerId, pool: auth.pool, credential_id: issued.record.id, token_id: auth.tokenId, client_address: request.ip },
        'worker claimed its credential',
      );
      return { worker_id: workerId, pool: auth.pool, credential: issued.credential };
    },
  );

  app.post(
    '/api/workers/credential/rotate',
    {
      config: { auth: 'worker' },
      schema: {
        tags: ['workers'],
        summary: 'Rotation step 1: a new credential, pending next to the current one until confirmed with it (shown once)',
        security: bearerSecurity,
        response: { 200: CredentialResponse, ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const auth = requireAuth(request);
      if (auth.kind !== 'credential' || auth.workerId === null || auth.pool === null) {
        throw new HttpError(403, 'forbidden', 'rotation takes a worker credential; a pool token has nothing to rotate (claim first)');
      }
      const made = generateToken('credential');
      const at = app.clock.now();
      const started = await app.fleet.startRotation({
        id: made.id,
        workerId: auth.workerId,
        pool: auth.pool,
        secretSha256: made.secretSha256,
        replacesId: auth.tokenId,
        createdAt: at,
        createdFrom: request.ip,
      });
      // Revoked between auth and here: as if auth had failed.
      if (!started) throw new HttpError(401, 'invalid_token', 'the bearer token is unknown or revoked');
      addLogFields(request, { event: 'worker_credential_rotate', worker_id: auth.workerId, credential_id: auth.tokenId, pending_credential_id: made.id });
      request.log.info(
        { event: 'worker_credential_rotation_started', worker_id: auth.workerId, pool: auth.pool, credential_id: auth.tokenId, pending_credential_id: made.id, client_address: request.ip },
        'credential rotation started: the new one is pending until the worker confirms with it',
      );
      return { worker_id: auth.workerId, pool: auth.pool, credential: made.token };
    },
  );

  app.post(
    '/api/workers/credential/confirm',
    {
      // The bearer is the NEW credential, which auth does not know yet: checked here, limited per address.
      config: {
        auth: 'none',
        rateLimit: { max: options.enrollRateLimit.max, timeWindow: options.enrollRateLimit.windowSeconds * 1000 },
      },
      schema: {
        tags: ['workers'],
        summary: 'Rotation step 3, with the NEW credential as bearer: it becomes the only live one, the old one stops working',
        security: bearerSecurity,
        response: { 200: ConfirmResponse, ...errorResponses(400, 401, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const token = bearerToken(request.headers.authorization);
      if (token === null) throw new HttpError(401, 'unauthorized', 'an Authorization: Bearer credential is required');
      const id = tokenIdOf(token, 'credential');
      const unknown = (): never => {
        addLogFields(request, { event: 'worker_credential_confirm', result: 'invalid_token', credential_id: id ?? undefined });
        throw new HttpError(401, 'invalid_token', 'the credential is not pending confirmation (unknown, revoked, or never committed)');
      };
      if (id === null) return unknown();
      // Already live: the confirm committed and its answer was lost (a kill, a dropped connection). Idempotent.
      const live = await app.fleet.findCredential(id);
      if (live && live.revokedAt === null && tokenMatches(token, live.secretSha256)) {
        addLogFields(request, { event: 'worker_credential_confirm', result: 'already_confirmed', worker_id: live.workerId, credential_id: id });
        return { worker_id: live.workerId, credential_id: id, status: 'already_confirmed' as const };
      }
      const pending = await app.fleet.findPendingCredential(id);
      if (!pending || !tokenMatches(token, pending.secretSha256)) return unknown();
      const confirmed = await app.fleet.confirmRotation(id, app.clock.now());
      if (!confirmed) return unknown();
      addLogFields(request, { event: 'worker_credential_confirm', result: 'confirmed', worker_id: confirmed.workerId, credential_id: id });
      request.log.info(
        { event: 'worker_credential_rotated', worker_id: confirmed.workerId, pool: confirmed.pool, credential_id: id, previous_credential_id: pending.replacesId, client_address: request.ip },
        'credential rotated: the previous one no longer works',
      );
      return { worker_id: confirmed.workerId, credential_id: id, status: 'confirmed' as const };
    },
  );
};
