import { errorMessage } from '../shared/errors.js';
import { KeyFormatError, parsePublicKey, type PublicKey } from './keys.js';

/** A key file is a few hundred bytes; anything far larger is not a key, and is not read whole. */
export const MAX_KEY_FILE_BYTES = 64 * 1024;

/** Base64 of a raw 32-byte Ed25519 key is 44 characters ending in one `=`; anything else is a file path. */
const RAW_PUBLIC_KEY_BASE64 = /^[A-Za-z0-9+/]{43}=$/;

/** Reads at most `maxBytes` of a file. Passed in, so that this module does no I/O of its own. */
export type ReadFileHead = (path: string, maxBytes: number) => Promise<Uint8Array>;

/** Whether a trusted-key argument is the key itself (base64 of the raw 32 bytes) rather than a file path. */
export function isRawPublicKeyBase64(source: string): boolean {
  return RAW_PUBLIC_KEY_BASE64.test(source.trim());
}

/**
 * A trusted public key as an operator gives it (docs/protocol.md, section 1): base64 of the raw
 * 32 bytes, or the path of a file holding a PEM (SPKI) key or that base64 (the `.pub` file
 * `bytebiota-release keygen` writes). Every failure (unreadable, too large, not an Ed25519 key)
 * is a KeyFormatError (`key_invalid`) whose message names the source; each program says where
 * the source came from.
 */
export async function loadPublicKey(source: string, readFileHead: ReadFileHead): Promise<PublicKey> {
  const trimmed = source.trim();
  const quoted = JSON.stringify(trimmed);
  let text = trimmed;
  if (!isRawPublicKeyBase64(trimmed)) {
    let bytes: Uint8Array;
    try {
      bytes = await readFileHead(trimmed, MAX_KEY_FILE_BYTES + 1);
    } catch (err) {
      throw new KeyFormatError(`${quoted} is neither a base64 Ed25519 public key nor a readable PEM file: ${errorMessage(err)}`, { cause: err });
    }
    if (bytes.length > MAX_KEY_FILE_BYTES) {
      throw new KeyFormatError(`${quoted} is larger than ${MAX_KEY_FILE_BYTES} bytes: not a key file`);
    }
    text = Buffer.from(bytes).toString('utf8');
  }
  try {
    return parsePublicKey(text);
  } catch (err) {
    throw new KeyFormatError(`${quoted} is not a usable Ed25519 public key: ${errorMessage(err)}`, { cause: err });
  }
}
