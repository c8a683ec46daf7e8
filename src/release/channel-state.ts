import { CHANNEL_PATTERN, MAX_MANIFEST_BYTES, releaseManifestChecker, storeKeys, type ReleaseManifest, type SignedRelease } from '../protocol/manifest.js';
import { UpdateError } from '../protocol/reason-codes.js';
import { compareVersions, isValidVersion } from '../protocol/version.js';
import { serializeManifest } from '../trust/sign.js';
import { verifyManifest } from '../trust/verify.js';
import type { PrivateKey } from '../trust/keys.js';
import type { ReleaseStore } from '../store/release-store.js';
import { ReleaseError } from './release-error.js';
import { storeWrite } from './store-writes.js';

const channelRegExp = new RegExp(CHANNEL_PATTERN);

export function assertValidChannel(channel: string): void {
  if (!channelRegExp.test(channel)) {
    throw new ReleaseError('channel_invalid', `invalid channel ${JSON.stringify(channel)}: expected ${CHANNEL_PATTERN}`);
  }
}

export function assertValidVersion(version: string, flag: string): void {
  if (!isValidVersion(version)) {
    throw new ReleaseError('version_invalid', `invalid ${flag} ${JSON.stringify(version)}: expected SemVer 2.0.0 such as 1.4.0 or 1.5.0-rc.1, without a leading "v"`);
  }
}

/** The serials of a channel's history entries (`history/<serial>.json`), newest first. */
export async function historySerials(store: ReleaseStore, channel: string): Promise<number[]> {
  const serials: number[] = [];
  for (const key of await store.list(storeKeys.historyPrefix(channel))) {
    const match = /\/history\/(\d{1,15})\.json$/.exec(key);
    if (match) serials.push(Number(match[1]));
  }
  return serials.sort((a, b) => b - a);
}

export interface ChannelState {
  channel: string;
  /** The channel's current manifest, when it has one. */
  current?: SignedRelease;
  /** Whether one of the given keys signed the current manifest (always true when there is none). */
  currentSignedByGivenKey: boolean;
  /** The highest serial in the current manifest and the history; 0 for a new channel. */
  highestSerial: number;
}

/**
 * A manifest read for what it says, without checking who signed it: its JSON and schema only.
 * Null when it is neither. Never a source of trust, only of where to look.
 */
export function parseUnverifiedManifest(bytes: Buffer): ReleaseManifest | null {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    return null;
  }
  return releaseManifestChecker.Check(value) ? value : null;
}

/**
 * What a channel holds now. The current manifest is checked against the signer's own keys:
 * if none of them signed it, the operator is most likely pointing at the wrong store or
 * holding the wrong key, and only `--new-key` (a deliberate rotation) may proceed.
 */
export async function readChannelState(store: ReleaseStore, channel: string, keys: readonly PrivateKey[], now: Date): Promise<ChannelState> {
  const manifestKey = storeKeys.manifest(channel);
  const bytes = await store.read(manifestKey, MAX_MANIFEST_BYTES);
  let current: SignedRelease | undefined;
  let currentSignedByGivenKey = true;
  if (bytes) {
    try {
      current = verifyManifest(bytes, { trustedKeys: keys.map((key) => key.publicKey), channel, now }).signed;
    } catch (err) {
      if (!(err instanceof UpdateError)) throw err;
      // verifyManifest checks the schema, then signatures, then expiry: an expired manifest
      // passed both, and one signed by other keys passed the schema, so both parse safely.
      if (err.code === 'manifest_expired' || err.code === 'signature_invalid') {
        const parsed = parseUnverifiedManifest(bytes);
        if (!parsed) throw err;
        current = parsed.signed;
        currentSignedByGivenKey = err.code === 'manifest_expired';
      } else {
        throw new ReleaseError('store_manifest_invalid', `${manifestKey} in ${store.location} is not a valid manifest for channel ${channel} (${err.code}): ${err.message}`, { cause: err });
      }
    }
  }
  const highestSerial = Math.max(current?.serial ?? 0, (await historySerials(store, channel))[0] ?? 0);
  const state: ChannelState = { channel, currentSignedByGivenKey, highestSerial };
  if (current) state.current = current;
  return state;
}

/** Refuse to publish into a channel the given keys do not already sign for, unless rotating keys. */
export function assertMayWriteChannel(state: ChannelState, store: ReleaseStore, allowNewKey: boolean): void {
  if (!state.currentSignedByGivenKey && !allowNewKey) {
    throw new ReleaseError(
      'store_key_mismatch',
      `channel ${state.channel} in ${store.location} holds a manifest that none of the given keys signed: check --store and --key, or pass --new-key to rotate to these keys`,
    );
  }
}

/** A new release must be newer than the channel's current one, unless the operator signs a downgrade. */
export function assertNewerThanCurrent(state: ChannelState, version: string, allowDowngrade: boolean): void {
  if (state.current && compareVersions(version, state.current.version) <= 0 && !allowDowngrade) {
    throw new ReleaseError(
      'version_not_newer',
      `version ${version} is not newer than ${state.current.version}, current on channel ${state.channel}; pass --allow-downgrade to roll the channel back to it`,
    );
  }
}

/**
 * The last publish steps (docs/protocol.md, section 2): the history entry, then the channel's current
 * manifest, last of all, so that a reader never sees a manifest before everything it names.
 */
export async function writeChannelManifest(store: ReleaseStore, manifest: ReleaseManifest): Promise<void> {
  const { channel, serial } = manifest.signed;
  const historyKey = storeKeys.history(channel, serial);
  if (await store.stat(historyKey)) {
    throw new ReleaseError('serial_conflict', `${historyKey} already exists in ${store.location}: another publish to ${channel} ran at the same time; run again`);
  }
  const bytes = serializeManifest(manifest);
  await storeWrite(store, historyKey, () => store.write(historyKey, bytes));
  const manifestKey = storeKeys.manifest(channel);
  await storeWrite(store, manifestKey, () => store.write(manifestKey, bytes));
}
