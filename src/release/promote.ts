import { MAX_MANIFEST_BYTES, storeKeys, type SignedRelease } from '../protocol/manifest.js';
import { UpdateError } from '../protocol/reason-codes.js';
import type { Clock } from '../shared/clock.js';
import { UsageError } from '../shared/errors.js';
import type { ReleaseStore } from '../store/release-store.js';
import type { PrivateKey } from '../trust/keys.js';
import { verifyManifest } from '../trust/verify.js';
import { assertStoredArtifactsIntact, checkStoredArtifacts } from './artifacts.js';
import {
  assertMayWriteChannel,
  assertNewerThanCurrent,
  assertValidChannel,
  readChannelState,
  writeChannelManifest,
} from './channel-state.js';
import { releaseTimes } from './duration.js';
import { ReleaseError } from './release-error.js';
import { ensureChunkIndexes } from './chunk-index.js';
import { signAndCheck } from './signing.js';

export interface PromoteOptions {
  store: ReleaseStore;
  fromChannel: string;
  toChannel: string;
  keys: readonly PrivateKey[];
  expiresInMs: number;
  allowDowngrade: boolean;
  allowNewKey: boolean;
  clock: Clock;
  log: (line: string) => void;
}

export interface PromoteResult {
  fromChannel: string;
  fromSerial: number;
  toChannel: string;
  serial: number;
  version: string;
  previousVersion?: string;
  keyIds: string[];
}

/** The source release, verified with the public halves of the signing keys; it must be current. */
async function readVerifiedSource(store: ReleaseStore, channel: string, keys: readonly PrivateKey[], now: Date): Promise<SignedRelease> {
  const key = storeKeys.manifest(channel);
  const bytes = await store.read(key, MAX_MANIFEST_BYTES);
  if (!bytes) throw new ReleaseError('source_manifest_missing', `channel ${channel} has no manifest in ${store.location} (${key})`);
  try {
    return verifyManifest(bytes, { trustedKeys: keys.map((k) => k.publicKey), channel, now }).signed;
  } catch (err) {
    if (!(err instanceof UpdateError)) throw err;
    if (err.code === 'manifest_expired') {
      throw new ReleaseError('source_manifest_expired', `the ${channel} manifest has expired (${err.message}); publish it again before promoting`, { cause: err });
    }
    throw new ReleaseError('source_manifest_invalid', `the ${channel} manifest in ${store.location} does not verify with the given keys (${err.code}): ${err.message}`, { cause: err });
  }
}

/**
 * Promote what a channel runs to another channel (docs/release-tool.md; docs/protocol.md, section 2): verify the source
 * manifest and its stored artifacts, then sign the same release (version, artifacts, urls,
 * hashes, sizes, minimum and recommended versions, notes) for the target channel with its
 * next serial and fresh times, and write it the way publish does: history, then manifest.
 */
export async function promoteRelease(options: PromoteOptions): Promise<PromoteResult> {
  const { store, fromChannel, toChannel, keys, clock, log } = options;
  assertValidChannel(fromChannel);
  assertValidChannel(toChannel);
  if (fromChannel === toChannel) throw new UsageError('--from and --to name the same channel');
  if (keys.length === 0) throw new UsageError('give at least one --key PRIVATE_KEY_FILE');

  const source = await readVerifiedSource(store, fromChannel, keys, clock.now());
  log(`verified ${fromChannel} serial ${source.serial}: ${source.version}`);
  assertStoredArtifactsIntact(store, await checkStoredArtifacts(store, source.version, source.artifacts));
  log(`artifacts of ${source.version} match the manifest`);

  const target = await readChannelState(store, toChannel, keys, clock.now());
  assertMayWriteChannel(target, store, options.allowNewKey);
  assertNewerThanCurrent(target, source.version, options.allowDowngrade);

  const now = clock.now();
  const signed: SignedRelease = {
    ...source,
    channel: toChannel,
    serial: target.highestSerial + 1,
    ...releaseTimes(now, options.expiresInMs),
    allow_downgrade: options.allowDowngrade || source.allow_downgrade === true,
  };
  const manifest = signAndCheck(signed, keys, now);
  // The index travels with the artifact; it is re-signed only if these keys did not sign it.
  await ensureChunkIndexes(store, signed.version, signed.artifacts, keys, log, { required: false });
  await writeChannelManifest(store, manifest);
  log(`promoted ${source.version} from ${fromChannel} to ${toChannel} serial ${signed.serial}`);

  const result: PromoteResult = {
    fromChannel,
    fromSerial: source.serial,
    toChannel,
    serial: signed.serial,
    version: source.version,
    keyIds: manifest.signatures.map((s) => s.keyid),
  };
  if (target.current) result.previousVersion = target.current.version;
  return result;
}
