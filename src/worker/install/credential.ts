import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { CodedError, errorMessage, isErrnoCode } from '../../shared/errors.js';
import { WorkerId } from '../../protocol/messages.js';
import type { InstallLayout } from './install-layout.js';

/** `credential.json` in the install root (docs/protocol.md, section 4). */
export const CREDENTIAL_FILE = 'credential.json';

const Secret = Type.String({ minLength: 1, maxLength: 256 });

/**
 * The worker's own credential (docs/protocol.md, section 3), bound to its worker id and the
 * server that issued it. `next_credential` is a rotated credential stored before it is confirmed:
 * until the server confirms it, `credential` is the one that works (rotation step 2 of 3).
 */
export const WorkerCredentialFileSchema = Type.Object({
  worker_id: WorkerId,
  server_url: Type.String({ maxLength: 2048 }),
  credential: Secret,
  next_credential: Type.Optional(Secret),
});
export type WorkerCredentialFile = Static<typeof WorkerCredentialFileSchema>;

const checker = TypeCompiler.Compile(WorkerCredentialFileSchema);

/** credential.json exists but cannot be used: never silently replaced, since a lost credential means re-enrolling. */
export class CredentialFileError extends CodedError<'credential_corrupt'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('credential_corrupt', message, options);
  }
}

export function credentialPath(layout: InstallLayout): string {
  return join(layout.root, CREDENTIAL_FILE);
}

/**
 * The credential file as it is on disk, read afresh on every call: the supervisor and `run` both
 * read it, and only `run` (or `enroll`) writes it, so each sees what the other stored. Null when
 * missing. A file that cannot be read or does not match throws CredentialFileError; its message
 * never carries the file's content.
 */
export async function readCredential(layout: InstallLayout): Promise<WorkerCredentialFile | null> {
  const path = credentialPath(layout);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return null;
    throw new CredentialFileError(`credential file ${path} cannot be read: ${errorMessage(err)}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // The parser's message quotes the text: it may hold the secret.
    throw new CredentialFileError(`credential file ${path} is not valid JSON`);
  }
  if (!checker.Check(value)) {
    const first = checker.Errors(value).First();
    throw new CredentialFileError(`credential file ${path} does not match its schema at ${first?.path || '/'}`);
  }
  return value;
}

/**
 * Write credential.json atomically (temp file, fsync, rename, fsync the folder) with mode 0600:
 * after a crash at any instant the file holds either the old credential or the new one. On
 * Windows the mode is not enforced; the install root's ACL protects it (docs/runbooks/worker-identity.md).
 */
export async function writeCredential(layout: InstallLayout, file: WorkerCredentialFile): Promise<void> {
  if (!checker.Check(file)) throw new CodedError('credential_write_invalid', 'refusing to write an invalid credential file');
  await writeFileAtomic(credentialPath(layout), `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
}

/** The credential for `serverUrl`, or null when none is stored for that server. */
export function credentialFor(file: WorkerCredentialFile | null, serverUrl: string): WorkerCredentialFile | null {
  return file !== null && file.server_url === serverUrl ? file : null;
}
