import { verify } from 'node:crypto';
import { canonicalBytes } from '../protocol/canonical-json.js';
import {
  MAX_MANIFEST_BYTES,
  releaseManifestChecker,
  type ReleaseManifest,
  type Signature,
  type SignedRelease,
} from '../protocol/manifest.js';
import { UpdateError } from '../protocol/reason-codes.js';
import { compareVersions } from '../protocol/version.js';
import type { PublicKey } from './keys.js';

export interface VerifyOptions {
  /** The keys whose signatures count. */
  trustedKeys: readonly PublicKey[];
  /** How many distinct trusted keys must have signed; default 1. */
  threshold?: number;
  /** The channel the caller asked for; the manifest must name the same one. */
  channel: string;
  /** The highest serial already accepted for this channel; a lower one is a rollback attack. */
  highestSerial?: number;
  /** The version running now; an older release is refused unless it allows downgrade. */
  currentVersion?: string;
  /** The time to judge expiry by. Passed in: this module has no clock. */
  now: Date;
}

export interface VerifiedManifest {
  manifest: ReleaseManifest;
  signed: SignedRelease;
  /** Key ids of the trusted keys whose signatures verified. */
  signedBy: string[];
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function parseManifest(bytes: Uint8Array): ReleaseManifest {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new UpdateError('manifest_invalid', `manifest is ${bytes.byteLength} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`);
  }
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(bytes));
  } catch (err) {
    throw new UpdateError('manifest_invalid', 'manifest is not UTF-8 JSON', { cause: err });
  }
  // Published manifests are canonical JSON (RFC 8785) as a whole; any other byte form means the
  // bytes were altered after signing, even where the change would not alter the parsed value.
  let canonical: Buffer;
  try {
    canonical = canonicalBytes(value);
  } catch (err) {
    // e.g. a number that parses to Infinity: valid JSON text, but no JSON value RFC 8785 can write.
    throw new UpdateError('manifest_invalid', 'manifest holds a value that has no canonical JSON form', { cause: err });
  }
  if (!canonical.equals(bytes)) {
    throw new UpdateError('manifest_invalid', 'manifest is not in canonical JSON form (RFC 8785)');
  }
  if (!releaseManifestChecker.Check(value)) {
    const first = releaseManifestChecker.Errors(value).First();
    const where = first?.path || '/';
    throw new UpdateError('manifest_invalid', `manifest does not match the schema at ${where}: ${first?.message ?? 'invalid'}`);
  }
  return value;
}

/** Rules the schema cannot express: dates that parse, and versions that agree with each other. */
function checkSemantics(signed: SignedRelease): void {
  if (Number.isNaN(Date.parse(signed.released_at)) || Number.isNaN(Date.parse(signed.expires))) {
    throw new UpdateError('manifest_invalid', 'released_at and expires must be real dates');
  }
  if (Date.parse(signed.expires) <= Date.parse(signed.released_at)) {
    throw new UpdateError('manifest_invalid', 'expires must be after released_at');
  }
  for (const field of ['minimum_version', 'recommended_version'] as const) {
    const value = signed[field];
    if (value !== undefined && compareVersions(value, signed.version) > 0) {
      throw new UpdateError('manifest_invalid', `${field} ${value} is above the released version ${signed.version}`);
    }
  }
}

/**
 * Key ids of the distinct trusted keys with a valid signature over a signed document (a manifest,
 * a chunk index); one key counts once however often it signed.
 */
export function validSigners(document: { signed: unknown; signatures: readonly Signature[] }, trustedKeys: readonly PublicKey[]): string[] {
  const byKeyId = new Map(trustedKeys.map((key) => [key.keyid, key]));
  const message = canonicalBytes(document.signed);
  const signers = new Set<string>();
  // Each trusted key is tried once, at its first signature: 64 signatures naming one trusted key
  // cost one Ed25519 check, not 64 (a hostile mirror cannot buy CPU with copies).
  const tried = new Set<string>();
  for (const signature of document.signatures) {
    const key = byKeyId.get(signature.keyid);
    if (!key || tried.has(key.keyid)) continue;
    tried.add(key.keyid);
    const sig = Buffer.from(signature.sig, 'base64');
    // Base64 has spare bits in its last character that decoders ignore; only the canonical
    // encoding counts, so no two byte forms of one signature both verify.
    if (sig.toString('base64') !== signature.sig) continue;
    if (verify(null, message, key.key, sig)) signers.add(key.keyid);
  }
  return [...signers];
}

/**
 * Verify a fetched manifest and return it, or throw an UpdateError with exactly one reason code.
 * Pure: the bytes, the trust material and the time are all inputs (after TUF's client workflow,
 * where trust state is updated only from bytes that already passed these checks). The order is
 * fixed: nothing in the manifest is believed before its signatures pass.
 */
export function verifyManifest(bytes: Uint8Array, options: VerifyOptions): VerifiedManifest {
  const threshold = options.threshold ?? 1;
  const distinctTrusted = new Set(options.trustedKeys.map((key) => key.keyid)).size;
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > distinctTrusted) {
    // A configuration that no manifest could satisfy, or that any could: refuse to judge at all.
    throw new RangeError(`threshold ${threshold} needs between 1 and ${distinctTrusted} trusted keys`);
  }

  const manifest = parseManifest(bytes);
  if (manifest.signatures.length === 0) throw new UpdateError('signature_invalid', 'manifest has no signatures');
  const signedBy = validSigners(manifest, options.trustedKeys);
  if (signedBy.length < threshold) {
    throw new UpdateError(
      'signature_invalid',
      `manifest has ${signedBy.length} valid signature(s) from trusted keys; ${threshold} required`,
    );
  }

  const { signed } = manifest;
  checkSemantics(signed);
  if (options.now.getTime() >= Date.parse(signed.expires)) {
    throw new UpdateError('manifest_expired', `manifest expired at ${signed.expires}`);
  }
  if (signed.channel !== options.channel) {
    throw new UpdateError('channel_mismatch', `manifest is for channel ${signed.channel}, not ${options.channel}`);
  }
  if (options.highestSerial !== undefined && signed.serial < options.highestSerial) {
    throw new UpdateError(
      'manifest_rollback',
      `manifest serial ${signed.serial} is lower than ${options.highestSerial}, already accepted for ${signed.channel}`,
    );
  }
  if (
    options.currentVersion !== undefined &&
    compareVersions(signed.version, options.currentVersion) < 0 &&
    signed.allow_downgrade !== true
  ) {
    throw new UpdateError(
      'downgrade_refused',
      `release ${signed.version} is older than ${options.currentVersion} and does not allow downgrade`,
    );
  }
  return { manifest, signed, signedBy };
}
