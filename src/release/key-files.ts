import { readFile } from 'node:fs/promises';
import { parsePrivateKey, parsePublicKey, KeyFormatError, type PrivateKey, type PublicKey } from '../trust/keys.js';
import { errorMessage } from '../shared/errors.js';
import { ReleaseError } from './release-error.js';

/** A key file is a few hundred bytes; anything far larger is not a key. */
const MAX_KEY_FILE_BYTES = 64 * 1024;
/** Base64 of 32 raw bytes is 44 characters ending in `=`; file paths are told apart by that. */
const RAW_PUBLIC_KEY_BASE64 = /^[A-Za-z0-9+/]{43}=$/;

async function readKeyText(path: string, what: string): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    throw new ReleaseError('key_unreadable', `cannot read ${what} ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (data.length > MAX_KEY_FILE_BYTES) throw new KeyFormatError(`${what} ${path} is ${data.length} bytes; not a key file`);
  return data.toString('utf8');
}

/** A PKCS#8 PEM Ed25519 private key from a file (what `keygen` writes). The error names the file, never its content. */
export async function readPrivateKeyFile(path: string): Promise<PrivateKey> {
  const text = await readKeyText(path, 'private key file');
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

/**
 * A trusted public key as given on the command line (docs/protocol.md, section 1): base64 of the raw
 * 32 bytes, or the path of a file holding a PEM public key (or the base64 `.pub` keygen writes).
 */
export async function readTrustedKey(argument: string): Promise<PublicKey> {
  const trimmed = argument.trim();
  if (RAW_PUBLIC_KEY_BASE64.test(trimmed)) return parsePublicKey(trimmed);
  const text = await readKeyText(trimmed, 'public key file');
  try {
    return parsePublicKey(text);
  } catch (err) {
    throw new KeyFormatError(`${trimmed} holds no Ed25519 public key (base64 raw or PEM): ${errorMessage(err)}`, { cause: err });
  }
}
