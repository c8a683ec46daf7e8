import { parsePrivateKey, KeyFormatError, type PrivateKey } from '../trust/keys.js';
import { MAX_KEY_FILE_BYTES } from '../trust/key-source.js';
import { errorMessage } from '../shared/errors.js';
import { readFileHead } from '../shared/read-file-head.js';
import { ReleaseError } from './release-error.js';

async function readPrivateKeyText(path: string): Promise<string> {
  let data: Buffer;
  try {
    data = await readFileHead(path, MAX_KEY_FILE_BYTES + 1);
  } catch (err) {
    throw new ReleaseError('key_unreadable', `cannot read private key file ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (data.length > MAX_KEY_FILE_BYTES) throw new KeyFormatError(`private key file ${path} is larger than ${MAX_KEY_FILE_BYTES} bytes; not a key file`);
  return data.toString('utf8');
}

/** A PKCS#8 PEM Ed25519 private key from a file (what `keygen` writes). The error names the file, never its content. */
export async function readPrivateKeyFile(path: string): Promise<PrivateKey> {
  const text = await readPrivateKeyText(path);
  try {
    return parsePrivateKey(text);
  } catch (err) {
    throw new KeyFormatError(`${path} is not an Ed25519 PKCS#8 PEM private key: ${errorMessage(err)}`, { cause: err });
  }
}

/** Every `--key`, in order; the same key given twice counts once. */
export async function readPrivateKeyFiles(paths: readonly string[]): Promise<PrivateKey[]> {
  const keys: PrivateKey[] = [];
  for (const path of paths) {
    const key = await readPrivateKeyFile(path);
    if (!keys.some((known) => known.keyid === key.keyid)) keys.push(key);
  }
  return keys;
}
