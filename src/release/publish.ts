import { artifactFileName } from '../protocol/platform.js';
import type { ArtifactEntry, SignedRelease } from '../protocol/manifest.js';
import { MANIFEST_SCHEMA_VERSION, MANIFEST_TYPE } from '../protocol/manifest.js';
import { compareVersions } from '../protocol/version.js';
import type { Clock } from '../shared/clock.js';
import { UsageError } from '../shared/errors.js';
import type { ReleaseStore } from '../store/release-store.js';
import type { PrivateKey } from '../trust/keys.js';
import { assertKnownPlatform, isServableUrl, storeArtifact, type ArtifactSource, type StoredArtifact } from './artifacts.js';
import {
  assertMayWriteChannel,
  assertNewerThanCurrent,
  assertValidChannel,
  assertValidVersion,
  readChannelState,
  writeChannelManifest,
} from './channel-state.js';
import { ensureChunkIndexes } from './chunk-index.js';
import { releaseTimes } from './duration.js';
import { ReleaseError } from './release-error.js';
import { signAndCheck } from './signing.js';

/** The manifest schema's limit on `notes`. */
const MAX_NOTES_LENGTH = 16 * 1024;

export interface PublishOptions {
  store: ReleaseStore;
  channel: string;
  version: string;
  artifacts: readonly ArtifactSource[];
  keys: readonly PrivateKey[];
  minimumVersion?: string;
  /** Defaults to the version published. */
  recommendedVersion?: string;
  expiresInMs: number;
  allowDowngrade: boolean;
  /** Artifact urls under this base instead of relative to the manifest. */
  baseUrl?: string;
  notes?: string;
  /** Publish even though none of the keys signed the channel's current manifest (key rotation). */
  allowNewKey: boolean;
  clock: Clock;
  /** Progress lines for the operator. */
  log: (line: string) => void;
}

export interface PublishResult {
  channel: string;
  serial: number;
  version: string;
  previousVersion?: string;
  artifacts: StoredArtifact[];
  keyIds: string[];
}

/** `--notes` of publish and rollback, refused before the store is touched. */
export function assertNotesWithinLimit(notes: string | undefined): void {
  if (notes !== undefined && notes.length > MAX_NOTES_LENGTH) {
    throw new UsageError(`--notes is ${notes.length} characters, over the ${MAX_NOTES_LENGTH}-character limit`);
  }
}

/** `--base-url`: https, or http only to a loopback host (docs/protocol.md, section 1). */
export function parseBaseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`invalid --base-url ${JSON.stringify(text)}: expected an absolute https:// URL`);
  }
  if (!isServableUrl(url)) {
    throw new UsageError(`invalid --base-url ${JSON.stringify(text)}: use https:// (http:// only for loopback hosts), without query or fragment`);
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

function artifactUrl(version: string, platform: string, baseUrl: URL | undefined): string {
  const relative = `artifacts/${version}/${artifactFileName(version, platform)}`;
  return baseUrl ? new URL(relative, baseUrl).href : relative;
}

/** Everything that can be refused without touching the store, so a typo costs no upload. */
function checkRequest(options: PublishOptions): URL | undefined {
  assertValidChannel(options.channel);
  assertValidVersion(options.version, '--version');
  for (const [flag, value] of [
    ['--minimum-version', options.minimumVersion],
    ['--recommended-version', options.recommendedVersion],
  ] as const) {
    if (value === undefined) continue;
    assertValidVersion(value, flag);
    if (compareVersions(value, options.version) > 0) {
      throw new ReleaseError('version_invalid', `${flag} ${value} is above the version being published, ${options.version}`);
    }
  }
  if (options.artifacts.length === 0) throw new UsageError('give at least one --artifact PLATFORM=FILE');
  const platforms = new Set<string>();
  for (const artifact of options.artifacts) {
    assertKnownPlatform(artifact.platform);
    if (platforms.has(artifact.platform)) throw new UsageError(`--artifact ${artifact.platform} is given twice`);
    platforms.add(artifact.platform);
  }
  assertNotesWithinLimit(options.notes);
  if (options.keys.length === 0) throw new UsageError('give at least one --key PRIVATE_KEY_FILE');
  return options.baseUrl === undefined ? undefined : parseBaseUrl(options.baseUrl);
}

/**
 * Publish a release to a channel (docs/protocol.md, sections 1 and 2; docs/release-tool.md):
 * 1. refuse what is wrong before any upload (flags, keys, the channel's current state);
 * 2. store every artifact and re-hash it from the store;
 * 3. build `signed` with serial = highest seen + 1, sign with every key, verify the result;
 * 4. cut and sign each artifact's chunk index (chunk-index.ts), for differential updates;
 * 5. write the history entry, then the channel's manifest last.
 * A crash at any point leaves the old manifest in place, or the new one with all its artifacts.
 */
export async function publishRelease(options: PublishOptions): Promise<PublishResult> {
  const baseUrl = checkRequest(options);
  const { store, channel, version, keys, clock, log } = options;

  const state = await readChannelState(store, channel, keys, clock.now());
  assertMayWriteChannel(state, store, options.allowNewKey);
  assertNewerThanCurrent(state, version, options.allowDowngrade);

  const stored: StoredArtifact[] = [];
  for (const source of options.artifacts) {
    log(`storing ${source.platform} artifact ${source.path}`);
    const artifact = await storeArtifact(store, version, source);
    log(`${artifact.reused ? 'reused' : 'stored and re-verified'} ${artifact.key} (${artifact.size} bytes, sha256 ${artifact.sha256})`);
    stored.push(artifact);
  }

  const now = clock.now();
  const artifacts: Record<string, ArtifactEntry> = {};
  for (const artifact of stored) {
    artifacts[artifact.platform] = { url: artifactUrl(version, artifact.platform, baseUrl), sha256: artifact.sha256, size: artifact.size };
  }
  const signed: SignedRelease = {
    _type: MANIFEST_TYPE,
    schema_version: MANIFEST_SCHEMA_VERSION,
    channel,
    serial: state.highestSerial + 1,
    version,
    ...releaseTimes(now, options.expiresInMs),
    ...(options.minimumVersion !== undefined ? { minimum_version: options.minimumVersion } : {}),
    recommended_version: options.recommendedVersion ?? version,
    allow_downgrade: options.allowDowngrade,
    artifacts,
    ...(options.notes !== undefined ? { notes: options.notes } : {}),
  };
  const manifest = signAndCheck(signed, keys, now);
  await ensureChunkIndexes(store, version, artifacts, keys, log, { required: true });
  await writeChannelManifest(store, manifest);
  log(`published ${channel} serial ${signed.serial}: ${version}`);

  const result: PublishResult = { channel, serial: signed.serial, version, artifacts: stored, keyIds: manifest.signatures.map((s) => s.keyid) };
  if (state.current) result.previousVersion = state.current.version;
  return result;
}
