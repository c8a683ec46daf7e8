import type { ReleaseManifest, SignedRelease } from '../protocol/manifest.js';
import { UpdateError } from '../protocol/reason-codes.js';
import type { PrivateKey } from '../trust/keys.js';
import { serializeManifest, signManifest } from '../trust/sign.js';
import { verifyManifest } from '../trust/verify.js';
import { ReleaseError } from './release-error.js';

/**
 * Sign with every key, then verify the result exactly as a worker will (all keys required)
 * before anything is written: a manifest the fleet would refuse never reaches the store.
 */
export function signAndCheck(signed: SignedRelease, keys: readonly PrivateKey[], now: Date): ReleaseManifest {
  const manifest = signManifest(signed, keys);
  try {
    verifyManifest(serializeManifest(manifest), {
      trustedKeys: keys.map((key) => key.publicKey),
      threshold: manifest.signatures.length,
      channel: signed.channel,
      now,
    });
  } catch (err) {
    if (err instanceof UpdateError) {
      throw new ReleaseError('manifest_invalid', `the manifest would not verify (${err.code}): ${err.message}`, { cause: err });
    }
    throw err;
  }
  return manifest;
}
