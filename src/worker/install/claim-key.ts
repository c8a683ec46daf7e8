import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { isErrnoCode } from '../../shared/errors.js';
import { WorkerId } from '../../protocol/messages.js';
import type { InstallLayout } from './install-layout.js';

/**
 * `claim.json` in the install root: the key of a claim in progress (docs/protocol.md, section 3).
 * Stored, mode 0600, before the claim is sent, so that a claim whose answer is lost (network,
 * server crash, kill -9 of the worker) is repeated with the same key and gets this worker its
 * credential, instead of the refusal meant for a second machine with the same id. Removed once
 * the credential is stored, or the claim refused.
 */
export const CLAIM_KEY_FILE = 'claim.json';

const ClaimKeyFileSchema = Type.Object({
  worker_id: WorkerId,
  server_url: Type.String({ maxLength: 2048 }),
  claim_key: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
});
const checker = TypeCompiler.Compile(ClaimKeyFileSchema);

function claimKeyPath(layout: InstallLayout): string {
  return join(layout.root, CLAIM_KEY_FILE);
}

/**
 * The key of this worker's claim to `serverUrl`: the stored one, or a new one stored first. A
 * file for another id or server, or one that is damaged, is replaced: no claim was made with it
 * that this claim could repeat.
 */
export async function claimKeyFor(layout: InstallLayout, workerId: string, serverUrl: string): Promise<string> {
  try {
    const stored: unknown = JSON.parse(await readFile(claimKeyPath(layout), 'utf8'));
    if (checker.Check(stored) && stored.worker_id === workerId && stored.server_url === serverUrl) return stored.claim_key;
  } catch (err) {
    if (!isErrnoCode(err, 'ENOENT') && !(err instanceof SyntaxError)) throw err;
  }
  const claimKey = randomBytes(32).toString('base64url');
  await writeFileAtomic(claimKeyPath(layout), `${JSON.stringify({ worker_id: workerId, server_url: serverUrl, claim_key: claimKey })}\n`, { mode: 0o600 });
  return claimKey;
}

/** The claim is over (credential stored, or refused): its key is of no more use. */
export async function forgetClaimKey(layout: InstallLayout): Promise<void> {
  await rm(claimKeyPath(layout), { force: true });
}
