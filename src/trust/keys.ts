import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CodedError } from '../shared/errors.js';

/** A key that could not be read: wrong encoding, wrong algorithm or wrong length. */
export class KeyFormatError extends CodedError<'key_invalid'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('key_invalid', message, options);
  }
}

export interface PublicKey {
  /** Lowercase hex SHA-256 of the raw 32-byte key (docs/protocol.md, section 1). */
  keyid: string;
  raw: Buffer;
  key: KeyObject;
}

export interface PrivateKey {
  keyid: string;
  key: KeyObject;
  publicKey: PublicKey;
}

const ED25519_RAW_PUBLIC_KEY_BYTES = 32;
const BASE64_PATTERN = /^[A-Za-z0-9+/]+={0,2}$/;

export function keyIdOf(rawPublicKey: Uint8Array): string {
  return createHash('sha256').update(rawPublicKey).digest('hex');
}

function publicKeyFromKeyObject(key: KeyObject): PublicKey {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new KeyFormatError(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'an unknown key type'}`);
  }
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new KeyFormatError('Ed25519 public key has no x coordinate');
  const raw = Buffer.from(jwk.x, 'base64url');
  return { keyid: keyIdOf(raw), raw, key };
}

export function publicKeyFromRaw(raw: Uint8Array): PublicKey {
  if (raw.length !== ED25519_RAW_PUBLIC_KEY_BYTES) {
    throw new KeyFormatError(`an Ed25519 public key is ${ED25519_RAW_PUBLIC_KEY_BYTES} bytes, got ${raw.length}`);
  }
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
  return { keyid: keyIdOf(raw), raw: Buffer.from(raw), key };
}

/**
 * Parse a public key given as text: base64 of the raw 32 bytes, or a PEM (SPKI) document.
 * Reading a PEM *file* is the caller's job; this module does no I/O.
 */
export function parsePublicKey(text: string): PublicKey {
  const trimmed = text.trim();
  // A private key where a public one belongs: refused, so that nobody copies signing keys onto
  // workers or servers because it happened to work.
  if (/^-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(trimmed)) {
    throw new KeyFormatError('this is a private key; give the public key (`bytebiota-release keygen` writes it beside the private one)');
  }
  if (trimmed.startsWith('-----BEGIN')) {
    let key: KeyObject;
    try {
      key = createPublicKey(trimmed);
    } catch (err) {
      throw new KeyFormatError('not a readable PEM public key', { cause: err });
    }
    return publicKeyFromKeyObject(key);
  }
  if (!BASE64_PATTERN.test(trimmed)) {
    throw new KeyFormatError('a public key must be base64 of the raw 32 bytes, or a PEM document');
  }
  return publicKeyFromRaw(Buffer.from(trimmed, 'base64'));
}

/** Parse a PKCS#8 PEM Ed25519 private key, as `bytebiota-release keygen` writes it. */
export function parsePrivateKey(pem: string): PrivateKey {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new KeyFormatError('not a readable PEM private key', { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new KeyFormatError(`expected an Ed25519 private key, got ${key.asymmetricKeyType ?? 'an unknown key type'}`);
  }
  const publicKey = publicKeyFromKeyObject(createPublicKey(key));
  return { keyid: publicKey.keyid, key, publicKey };
}

export interface GeneratedKeyPair {
  privateKeyPem: string;
  publicKeyBase64: string;
  keyid: string;
}

export function generateSigningKeyPair(): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = publicKeyFromKeyObject(publicKey);
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyBase64: pub.raw.toString('base64'),
    keyid: pub.keyid,
  };
}
