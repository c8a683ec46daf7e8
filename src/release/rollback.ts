import { MANIFEST_SCHEMA_VERSION, MANIFEST_TYPE, MAX_MANIFEST_BYTES, storeKeys, type ArtifactEntry, type SignedRelease } from '../protocol/manifest.js';
import { artifactFileName } from '../protocol/platform.js';
import { compareVersions } from '../protocol/version.js';
import type { Clock } from '../shared/clock.js';
import { UsageError } from '../shared/errors.js';
import type { ReleaseStore } from '../store/release-store.js';
import type { PrivateKey } from '../trust/keys.js';
import { checkStoredArtifacts } from './artifacts.js';
import {
  assertMayWriteChannel,
  assertValidChannel,
  assertValidVersion,
  historySerials,
  parseUnverifiedManifest,
  readChannelState,
  writeChannelManifest,
} from './channel-state.js';
import { releaseTimes } from './duration.js';
import { assertNotesWithinLimit } from './publish.js';
import { ReleaseError } from './release-error.js';
import { ensureChunkIndexes } from './chunk-index.js';
import { signAndCheck } from './signing.js';

export interface RollbackOptions {
  store: ReleaseStore;
  channel: string;
  /** The earlier version to release again (`--to`). */
  version: string;
  keys: readonly PrivateKey[];
  expiresInMs: number;
  notes?: string;
  /** Roll back although none of the keys signed the channel's current manifest (key rotation). */
  allowNewKey: boolean;
  clock: Clock;
  /** Progress lines for the operator. */
  log: (line: string) => void;
}

export interface RolledBackArtifact {
  platform: string;
  /** The store key the bytes were hashed from, `artifacts/<version>/<file>`. */
  key: string;
  url: string;
  sha256: string;
  size: number;
}

export interface RollbackResult {
  channel: string;
  serial: number;
  version: string;
  previousVersion: string;
  /** The history entry that said which artifacts the version had. */
  historySerial: number;
  artifacts: RolledBackArtifact[];
  keyIds: string[];
}

interface EarlierRelease {
  serial: number;
  key: string;
  signed: SignedRelease;
}

/** Everything that can be refused without touching the store. */
function checkRequest(options: RollbackOptions): void {
  assertValidChannel(options.channel);
  assertValidVersion(options.version, '--to');
  assertNotesWithinLimit(options.notes);
  if (options.keys.length === 0) throw new UsageError('give at least one --key PRIVATE_KEY_FILE');
}

/**
 * The channel's newest history entry for `version`, read for what it says and not verified:
 * keys may have been rotated since, and nothing in it is signed again unmeasured. An unreadable
 * entry newer than the one found is refused, since it may have been the newest release of it.
 */
async function findEarlierRelease(store: ReleaseStore, channel: string, version: string): Promise<EarlierRelease> {
  for (const serial of await historySerials(store, channel)) {
    const key = storeKeys.history(channel, serial);
    const bytes = await store.read(key, MAX_MANIFEST_BYTES);
    // Listed a moment ago and gone now: nothing there to read, so nothing to go by.
    if (!bytes) continue;
    const signed = parseUnverifiedManifest(bytes)?.signed;
    if (!signed || signed.channel !== channel) {
      throw new ReleaseError('store_manifest_invalid', `${key} in ${store.location} is not a manifest of channel ${channel}, so it cannot tell whether it released ${version}: repair or remove it`);
    }
    if (signed.version === version) return { serial, key, signed };
  }
  throw new ReleaseError('version_never_released', `version ${version} was never released on channel ${channel}: no manifest in ${storeKeys.historyPrefix(channel)} of ${store.location} names it`);
}

/**
 * Re-hash, from the store, every artifact the earlier release named: the history says which
 * files to read, the store's bytes as measured now are what gets signed.
 */
async function measureArtifacts(store: ReleaseStore, earlier: EarlierRelease, log: (line: string) => void): Promise<RolledBackArtifact[]> {
  const { version } = earlier.signed;
  const measured: RolledBackArtifact[] = [];
  for (const check of await checkStoredArtifacts(store, version, earlier.signed.artifacts, log)) {
    const { platform, entry, key, found } = check;
    if (!key) {
      throw new ReleaseError(
        'store_manifest_invalid',
        `${earlier.key} in ${store.location} names ${entry.url} for ${platform}; ${version} for ${platform} is stored as ${storeKeys.artifact(version, artifactFileName(version, platform))}`,
      );
    }
    if (!found) throw new ReleaseError('artifact_missing', `${platform} artifact ${key} is missing from ${store.location}: ${version} cannot be released again without it`);
    if (check.status === 'corrupted') {
      // A released version's bytes never change. Either the artifact or the history entry was
      // altered in the store; signing whichever is there now would hand it to the whole fleet at once.
      throw new ReleaseError(
        'artifact_corrupted',
        `${key} is not what ${earlier.key} recorded (${entry.size} bytes, sha256 ${entry.sha256}; the store holds ${found?.sizeBytes ?? '?'} bytes, sha256 ${found?.sha256 ?? '?'}): refusing to sign it; check the store with bytebiota-release verify --store`,
      );
    }
    log(`measured ${key} (${found.sizeBytes} bytes, sha256 ${found.sha256})`);
    measured.push({ platform, key, url: entry.url, sha256: found.sha256, size: found.sizeBytes });
  }
  return measured;
}

/**
 * Roll a channel back to a version it released before (docs/release-tool.md; docs/protocol.md, section 2):
 * 1. refuse what is wrong before reading the store (flags, keys);
 * 2. read the channel's state as publish does; the version must be older than the current one;
 * 3. find the newest history entry of that version, and re-hash each artifact it names from the store;
 * 4. sign the version with serial = highest seen + 1, `allow_downgrade`, the measured hashes and a
 *    `minimum_version` no higher than the version, verify the result, and write history then manifest.
 */
export async function rollbackRelease(options: RollbackOptions): Promise<RollbackResult> {
  checkRequest(options);
  const { store, channel, version, keys, clock, log } = options;

  const state = await readChannelState(store, channel, keys, clock.now());
  assertMayWriteChannel(state, store, options.allowNewKey);
  const current = state.current;
  if (!current) throw new ReleaseError('source_manifest_missing', `channel ${channel} has no manifest in ${store.location}: there is nothing to roll back`);
  if (compareVersions(version, current.version) >= 0) {
    throw new ReleaseError(
      'version_not_older',
      `${version} is not older than ${current.version}, current on channel ${channel}: that is not a rollback; publish or promote it instead`,
    );
  }

  const earlier = await findEarlierRelease(store, channel, version);
  log(`${channel} runs ${current.version} (serial ${current.serial}); rolling back to ${version} as ${earlier.key} released it`);
  const measured = await measureArtifacts(store, earlier, log);

  // The floor in force stays unless it would shut out the version rolled back to.
  const floor = current.minimum_version;
  const keepFloor = floor !== undefined && compareVersions(floor, version) <= 0;
  if (floor !== undefined && !keepFloor) log(`dropped minimum_version ${floor}: it is above ${version}`);

  const now = clock.now();
  const artifacts: Record<string, ArtifactEntry> = {};
  for (const artifact of measured) artifacts[artifact.platform] = { url: artifact.url, sha256: artifact.sha256, size: artifact.size };
  const signed: SignedRelease = {
    _type: MANIFEST_TYPE,
    schema_version: MANIFEST_SCHEMA_VERSION,
    channel,
    serial: state.highestSerial + 1,
    version,
    ...releaseTimes(now, options.expiresInMs),
    ...(keepFloor ? { minimum_version: floor } : {}),
    recommended_version: version,
    allow_downgrade: true,
    artifacts,
    ...(options.notes !== undefined ? { notes: options.notes } : {}),
  };
  const manifest = signAndCheck(signed, keys, now);
  // A version from before differential updates gets its index now; an existing one is kept.
  await ensureChunkIndexes(store, version, artifacts, keys, log, { required: false });
  await writeChannelManifest(store, manifest);
  log(`rolled back ${channel} from ${current.version} to ${version} at serial ${signed.serial}`);

  return {
    channel,
    serial: signed.serial,
    version,
    previousVersion: current.version,
    historySerial: earlier.serial,
    artifacts: measured,
    keyIds: manifest.signatures.map((s) => s.keyid),
  };
}
