import type { Logger } from '../../shared/logger.js';
import { errorMessage } from '../../shared/errors.js';
import type { InstallLayout } from '../install/install-layout.js';
import { CredentialFileError, credentialFor, readCredential, writeCredential, type WorkerCredentialFile } from '../install/credential.js';
import { claimKeyFor, forgetClaimKey } from '../install/claim-key.js';
import { ConnectionError, type BearerSource, type ServerClient } from './connection.js';

/**
 * The worker's side of worker identity (docs/protocol.md, section 3): which bearer it sends,
 * enrollment, the claim of a worker that has only its pool token, and rotation. The credential
 * lives in credential.json (install/credential.ts), read afresh before every request. Secrets are
 * never put in a log line or an error message; log lines name the credential's public id only.
 */

/** `bbw_<16 hex id>_<secret>`: the id part, safe to log. */
export function credentialIdOf(credential: string): string | null {
  return /^bbw_([0-9a-f]{16})_/.exec(credential)?.[1] ?? null;
}

/**
 * The bearer for requests to `serverUrl`: the stored credential when credential.json holds one
 * for this server, else the pool token. Once a worker holds a credential it never falls back to
 * the pool token, so that revoking it works. After a 401 (`rejected`), a credential rotated in
 * the meantime (`next_credential`, or a new `credential`) is offered once; null when nothing
 * else is there.
 */
export function credentialBearer(layout: InstallLayout, serverUrl: string, poolToken: string | null): BearerSource {
  return async (rejected) => {
    let stored: WorkerCredentialFile | null;
    try {
      stored = credentialFor(await readCredential(layout), serverUrl);
    } catch (err) {
      // Damaged: send nothing rather than the pool token. The worker works on offline and says so;
      // the file is read again before the next request, so a repair needs no restart.
      if (err instanceof CredentialFileError) throw new ConnectionError('credential_unusable', err.message, { cause: err });
      throw err;
    }
    if (rejected === undefined) {
      if (stored !== null) return stored.credential;
      return poolToken;
    }
    if (stored === null) return null;
    for (const candidate of [stored.credential, stored.next_credential]) {
      if (candidate !== undefined && candidate !== rejected) return candidate;
    }
    return null;
  };
}

export interface IdentityContext {
  client: ServerClient;
  layout: InstallLayout;
  serverUrl: string;
  workerId: string;
  log: Logger;
}

export type EnrollOutcome = { kind: 'enrolled'; credentialId: string | null } | { kind: 'present' };

/**
 * Spend the enrollment token for this worker's credential and store it (mode 0600). An existing
 * credential for this server is kept unless `replace` (the `enroll` command: the server issues a
 * credential only to an id without a live one, so the stored one is dead anyway). Throws the
 * ConnectionError of a refusal; its `serverCode` says why.
 */
export async function enroll(
  ctx: IdentityContext,
  request: { enrollmentToken: string; platform: string; channel: string; replace: boolean },
): Promise<EnrollOutcome> {
  if (!request.replace && credentialFor(await readCredential(ctx.layout), ctx.serverUrl) !== null) return { kind: 'present' };
  const answer = await ctx.client.enroll({ enrollment_token: request.enrollmentToken, worker_id: ctx.workerId, platform: request.platform, channel: request.channel });
  await writeCredential(ctx.layout, { worker_id: ctx.workerId, server_url: ctx.serverUrl, credential: answer.credential });
  const credentialId = credentialIdOf(answer.credential);
  ctx.log.info({ event: 'worker_enrolled', pool: answer.pool, credential_id: credentialId }, 'enrolled: credential stored');
  return { kind: 'enrolled', credentialId };
}

/** `retry`: no answer (network, server down or busy), so the claim may or may not have been committed. */
export type ClaimOutcome = 'claimed' | 'already_enrolled' | 'not_needed' | 'retry' | 'failed';

/**
 * The in-band migration (docs/protocol.md, section 3): a worker with only its pool token, talking
 * to a server that lists `claim` in `accepts.identity`, claims its credential once. The claim
 * carries a key stored before it is sent (install/claim-key.ts): repeated after a lost answer,
 * it gets this worker its credential. A 409 means this id already has (or had) a credential
 * claimed without that key: someone else's, and this worker keeps its pool token.
 */
export async function claimCredential(ctx: IdentityContext, poolToken: string): Promise<ClaimOutcome> {
  if (credentialFor(await readCredential(ctx.layout), ctx.serverUrl) !== null) return 'not_needed';
  try {
    const claimKey = await claimKeyFor(ctx.layout, ctx.workerId, ctx.serverUrl);
    const answer = await ctx.client.claim(ctx.workerId, poolToken, claimKey);
    await writeCredential(ctx.layout, { worker_id: ctx.workerId, server_url: ctx.serverUrl, credential: answer.credential });
    await forgetClaimKey(ctx.layout);
    ctx.log.info({ event: 'worker_credential_claimed', pool: answer.pool, credential_id: credentialIdOf(answer.credential) }, 'claimed this worker\'s own credential; the pool token is no longer used');
    return 'claimed';
  } catch (err) {
    if (err instanceof ConnectionError && err.serverCode === 'worker_already_enrolled') {
      await forgetClaimKey(ctx.layout);
      ctx.log.error(
        { event: 'worker_claim_refused', code: 'worker_already_enrolled' },
        `worker id ${ctx.workerId} already has (or had) a credential: another install claimed or enrolled this id. This worker keeps using the pool token; give it its own id, or have an admin revoke the other and enroll this one`,
      );
      return 'already_enrolled';
    }
    const retry = err instanceof ConnectionError && err.retryable;
    ctx.log.warn(
      { event: 'worker_claim_failed', code: (err as { code?: string }).code, server_code: (err as { serverCode?: string }).serverCode, error: errorMessage(err) },
      retry ? 'claim failed; the pool token stays in use, and the claim is repeated (same key) after a later heartbeat' : 'claim failed; the pool token stays in use',
    );
    return retry ? 'retry' : 'failed';
  }
}

export type ConfirmOutcome = 'none_pending' | 'confirmed' | 'abandoned' | 'retry';

/**
 * Rotation step 3: confirm a stored `next_credential` with the server. Confirmed (or already
 * confirmed): it becomes `credential`. Refused with a 401 (the server never committed the
 * rotation, or its database was restored from an older backup): the pending one is dropped and
 * the old one kept, to rotate again later. Anything else: kept as it is, to be tried again.
 */
export async function confirmPendingCredential(ctx: IdentityContext): Promise<ConfirmOutcome> {
  const file = credentialFor(await readCredential(ctx.layout), ctx.serverUrl);
  const next = file?.next_credential;
  if (file === null || next === undefined) return 'none_pending';
  try {
    await ctx.client.confirmCredential(next);
  } catch (err) {
    if (err instanceof ConnectionError && err.status === 401) {
      await writeCredential(ctx.layout, { worker_id: file.worker_id, server_url: file.server_url, credential: file.credential });
      ctx.log.warn(
        { event: 'worker_credential_rotation_abandoned', server_code: err.serverCode, credential_id: credentialIdOf(file.credential) },
        'the server does not know the rotated credential (never committed, or restored from a backup): keeping the current one',
      );
      return 'abandoned';
    }
    ctx.log.warn({ event: 'worker_credential_confirm_failed', code: (err as { code?: string }).code, error: errorMessage(err) }, 'could not confirm the rotated credential; will try again');
    return 'retry';
  }
  await writeCredential(ctx.layout, { worker_id: file.worker_id, server_url: file.server_url, credential: next });
  ctx.log.info({ event: 'worker_credential_rotated', credential_id: credentialIdOf(next), previous_credential_id: credentialIdOf(file.credential) }, 'credential rotated');
  return 'confirmed';
}

/**
 * Rotate this worker's credential without downtime (docs/protocol.md, section 3):
 * 1. ask the server for a new one (it keeps it pending next to the current one);
 * 2. store it as `next_credential`, atomically, BEFORE confirming, so a kill at any instant
 *    leaves a file that holds every credential the server may consider live;
 * 3. confirm with the new one; only then does the server stop taking the old one.
 * Only `run` rotates; the supervisor only reads the file.
 */
export async function rotateCredential(ctx: IdentityContext): Promise<ConfirmOutcome | 'no_credential' | 'failed'> {
  const pending = await confirmPendingCredential(ctx);
  if (pending !== 'none_pending') return pending;
  const file = credentialFor(await readCredential(ctx.layout), ctx.serverUrl);
  if (file === null) return 'no_credential';
  let next: string;
  try {
    next = (await ctx.client.rotateCredential(file.credential)).credential;
  } catch (err) {
    ctx.log.warn({ event: 'worker_credential_rotate_failed', code: (err as { code?: string }).code, error: errorMessage(err) }, 'could not rotate the credential; will try again');
    return 'failed';
  }
  await writeCredential(ctx.layout, { ...file, next_credential: next });
  ctx.log.info({ event: 'worker_credential_stored', credential_id: credentialIdOf(next) }, 'rotated credential stored; confirming');
  return confirmPendingCredential(ctx);
}
