import { sign } from 'node:crypto';
import { canonicalBytes } from '../protocol/canonical-json.js';
import type { ReleaseManifest, Signature, SignedRelease } from '../protocol/manifest.js';
import type { PrivateKey } from './keys.js';

/** Ed25519 signature over the RFC 8785 bytes of a signed document (docs/protocol.md, sections 1 and 8). */
export function signCanonical(signed: unknown, key: PrivateKey): Signature {
  return { keyid: key.keyid, sig: sign(null, canonicalBytes(signed), key.key).toString('base64') };
}

/** A signed document's envelope, one signature per distinct key, in the order the keys were given. */
export function signDocument<T>(signed: T, keys: readonly PrivateKey[]): { signed: T; signatures: Signature[] } {
  const seen = new Set<string>();
  const signatures: Signature[] = [];
  for (const key of keys) {
    if (seen.has(key.keyid)) continue;
    seen.add(key.keyid);
    signatures.push(signCanonical(signed, key));
  }
  return { signed, signatures };
}

/** The signed manifest. */
export function signManifest(signed: SignedRelease, keys: readonly PrivateKey[]): ReleaseManifest {
  return signDocument(signed, keys);
}

/**
 * The bytes a manifest is published as: the RFC 8785 form of the whole envelope. One manifest has
 * exactly one byte form, so any changed byte is detected (verifyManifest refuses other forms) and
 * the ETag of a manifest never changes unless its content does.
 */
export function serializeManifest(manifest: ReleaseManifest): Buffer {
  return canonicalBytes(manifest);
}
