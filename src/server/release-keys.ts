import { UsageError } from '../shared/errors.js';
import { readFileHead } from '../shared/read-file-head.js';
import { KeyFormatError, type PublicKey } from '../trust/keys.js';
import { loadPublicKey } from '../trust/key-source.js';

/**
 * The release public keys from the configuration (docs/protocol.md, section 1): each is base64 of the raw
 * 32 bytes, or a path to a file holding a PEM key or that base64 (as `bytebiota-release keygen`
 * writes `<name>.pub`). Any key that does not load stops the server: fail closed.
 */
export async function loadReleaseKeys(values: readonly string[], threshold: number): Promise<PublicKey[]> {
  const keys: PublicKey[] = [];
  for (const value of values) {
    try {
      keys.push(await loadPublicKey(value, readFileHead));
    } catch (err) {
      if (err instanceof KeyFormatError) throw new UsageError(`release key ${err.message}`, { cause: err });
      throw err;
    }
  }
  const distinct = new Set(keys.map((key) => key.keyid)).size;
  if (threshold > distinct) {
    throw new UsageError(`--release-key-threshold ${threshold} is more than the ${distinct} distinct release key(s) given`);
  }
  return keys;
}
