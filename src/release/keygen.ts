import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDirectory } from '../shared/atomic-file.js';
import { errorMessage, isErrnoCode, UsageError } from '../shared/errors.js';
import { generateSigningKeyPair } from '../trust/keys.js';
import { ReleaseError } from './release-error.js';
import { pathExists } from '../shared/path-exists.js';

export interface KeygenOptions {
  outDir: string;
  /** File stem: `<name>.key` and `<name>.pub`. */
  name: string;
}

export interface KeygenResult {
  keyid: string;
  publicKeyBase64: string;
  privateKeyPath: string;
  publicKeyPath: string;
}

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

async function assertAbsent(path: string): Promise<void> {
  if (!(await pathExists(path))) return;
  throw new ReleaseError('key_exists', `${path} already exists; a signing key is never overwritten: choose another --name or --out`);
}

/** Create a file that must not exist yet, write it and fsync it. */
async function writeNewFile(path: string, text: string, mode: number): Promise<void> {
  let handle;
  try {
    handle = await open(path, 'wx', mode);
  } catch (err) {
    if (isErrnoCode(err, 'EEXIST')) throw new ReleaseError('key_exists', `${path} already exists; a signing key is never overwritten`, { cause: err });
    throw new ReleaseError('key_unreadable', `cannot create ${path}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    await handle.writeFile(text);
    // The mode given to open() is filtered by the umask; the private key must end up 0600 whatever it is.
    await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * A new Ed25519 signing key pair: `<name>.key` (PKCS#8 PEM, mode 0600) and `<name>.pub` (base64
 * of the raw 32-byte public key, what workers and the server are configured with).
 */
export async function generateKeyFiles(options: KeygenOptions): Promise<KeygenResult> {
  if (!KEY_NAME.test(options.name)) throw new UsageError(`invalid --name ${JSON.stringify(options.name)}: use letters, digits, ".", "_" and "-"`);
  const privateKeyPath = join(options.outDir, `${options.name}.key`);
  const publicKeyPath = join(options.outDir, `${options.name}.pub`);
  try {
    await mkdir(options.outDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ReleaseError('key_unreadable', `cannot create ${options.outDir}: ${errorMessage(err)}`, { cause: err });
  }
  await assertAbsent(privateKeyPath);
  await assertAbsent(publicKeyPath);

  const pair = generateSigningKeyPair();
  await writeNewFile(privateKeyPath, pair.privateKeyPem, 0o600);
  await writeNewFile(publicKeyPath, `${pair.publicKeyBase64}\n`, 0o644);
  await fsyncDirectory(options.outDir);
  return { keyid: pair.keyid, publicKeyBase64: pair.publicKeyBase64, privateKeyPath, publicKeyPath };
}
