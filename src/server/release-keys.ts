import { readFileSync } from 'node:fs';
import { UsageError, errorMessage } from '../shared/errors.js';
import { KeyFormatError, parsePublicKey, type PublicKey } from '../trust/keys.js';

/** Base64 of a raw 32-byte key: 44 characters ending in one `=`. */
const RAW_KEY_BASE64 = /^[A-Za-z0-9+/]{43}=$/;

/**
 * The release public keys from the configuration (docs/protocol.md, section 1): each is base64 of the raw
 * 32 bytes, or a path to a file holding a PEM key or that base64 (as `bytebiota-release keygen`
 * writes `<name>.pub`). Any key that does not parse stops the server: fail closed.
 */
export function loadReleaseKeys(values: readonly string[], threshold: number): PublicKey[] {
  const keys = values.map((value) => {
    let text = value;
    if (!RAW_KEY_BASE64.test(value.trim())) {
      try {
        text = readFileSync(value, 'utf8');
      } catch (err) {
        throw new UsageError(`release key ${JSON.stringify(value)} is neither base64 of a raw Ed25519 key nor a readable key file: ${errorMessage(err)}`);
      }
    }
    try {
      return parsePublicKey(text);
    } catch (err) {
      if (err instanceof KeyFormatError) throw new UsageError(`release key ${JSON.stringify(value)}: ${err.message}`);
      throw err;
    }
  });
  const distinct = new Set(keys.map((key) => key.keyid)).size;
  if (threshold > distinct) {
    throw new UsageError(`--release-key-threshold ${threshold} is more than the ${distinct} distinct release key(s) given`);
  }
  return keys;
}
