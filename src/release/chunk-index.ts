import { canonicalBytes } from '../protocol/canonical-json.js';
import {
  CHUNK_INDEX_SCHEMA_VERSION,
  CHUNK_INDEX_TYPE,
  chunkIndexLocation,
  chunkingSchemaOf,
  DEFAULT_CHUNKING,
  DeltaFallback,
  MAX_CHUNK_INDEX_BYTES,
  type SignedChunkIndex,
} from '../protocol/chunk-index.js';
import type { ArtifactEntry } from '../protocol/manifest.js';
import { chunkStream } from '../shared/chunker.js';
import { errorMessage } from '../shared/errors.js';
import { StoreError, type ReleaseStore } from '../store/release-store.js';
import type { PrivateKey, PublicKey } from '../trust/keys.js';
import { signDocument } from '../trust/sign.js';
import { verifyChunkIndex } from '../trust/verify-chunk-index.js';
import { artifactStoreKey } from './artifacts.js';
import { ReleaseError } from './release-error.js';
import { storeWrite } from './store-writes.js';

export type ChunkIndexOutcome = 'written' | 'kept' | 'skipped';

/** A stored index: its bytes, none, or more than an index may have (never read whole). */
type StoredIndex = Buffer | 'missing' | 'too_large';

async function readIndex(store: ReleaseStore, key: string): Promise<StoredIndex> {
  try {
    return (await store.read(key, MAX_CHUNK_INDEX_BYTES)) ?? 'missing';
  } catch (err) {
    if (err instanceof StoreError && err.code === 'store_object_too_large') return 'too_large';
    throw err;
  }
}

/** What a worker with these trust settings would make of a stored index for this artifact. */
function judgeIndex(
  stored: Buffer | 'too_large',
  trust: { trustedKeys: readonly PublicKey[]; threshold: number },
  version: string,
  platform: string,
  entry: ArtifactEntry,
): { ok: true } | { ok: false; detail: string } {
  if (stored === 'too_large') return { ok: false, detail: `over the ${MAX_CHUNK_INDEX_BYTES}-byte limit of an index` };
  try {
    verifyChunkIndex(stored, { ...trust, version, platform, sha256: entry.sha256, size: entry.size });
    return { ok: true };
  } catch (err) {
    if (err instanceof DeltaFallback) return { ok: false, detail: err.message };
    throw err;
  }
}

/** Would a worker trusting exactly these keys (all of them required) accept this stored index for this artifact? */
function acceptedBy(stored: Buffer | 'too_large', keys: readonly PrivateKey[], version: string, platform: string, entry: ArtifactEntry): boolean {
  const trust = { trustedKeys: keys.map((key) => key.publicKey), threshold: new Set(keys.map((key) => key.keyid)).size };
  return judgeIndex(stored, trust, version, platform, entry).ok;
}

export interface ChunkIndexCheck {
  platform: string;
  /** The index's store key; null when the artifact's url names none (hosted outside the store). */
  key: string | null;
  /** `missing`: workers download this artifact whole. `invalid`: they refuse it (and download whole). */
  status: 'ok' | 'missing' | 'invalid' | 'none';
  detail?: string;
}

/**
 * `verify --store`: each artifact's chunk index judged exactly as a worker with these trust
 * settings would judge it. Nothing is written.
 */
export async function checkChunkIndexes(
  store: ReleaseStore,
  version: string,
  artifacts: Record<string, ArtifactEntry>,
  trust: { trustedKeys: readonly PublicKey[]; threshold: number },
): Promise<ChunkIndexCheck[]> {
  const checks: ChunkIndexCheck[] = [];
  for (const [platform, entry] of Object.entries(artifacts)) {
    const artifactKey = artifactStoreKey(version, platform, entry.url);
    if (!artifactKey) {
      checks.push({ platform, key: null, status: 'none' });
      continue;
    }
    const key = chunkIndexLocation(artifactKey);
    const stored = await readIndex(store, key);
    if (stored === 'missing') {
      checks.push({ platform, key, status: 'missing' });
      continue;
    }
    const judged = judgeIndex(stored, trust, version, platform, entry);
    checks.push(judged.ok ? { platform, key, status: 'ok' } : { platform, key, status: 'invalid', detail: judged.detail });
  }
  return checks;
}

/** Refuse (`chunk_index_invalid`) when a stored index would be refused by workers. */
export function assertChunkIndexesUsable(store: ReleaseStore, checks: readonly ChunkIndexCheck[]): void {
  const invalid = checks.find((check) => check.status === 'invalid');
  if (!invalid) return;
  throw new ReleaseError(
    'chunk_index_invalid',
    `the chunk index ${invalid.key ?? ''} in ${store.location} would be refused by workers (${invalid.detail ?? ''}); they fall back to whole downloads. Remove it, or let the next promote or rollback of this version write a new one`,
  );
}

/**
 * Make sure one artifact has a chunk index the given keys signed (docs/protocol.md, section 8),
 * cut from the bytes the store holds, so the index describes what workers will download:
 * 1. an index already there that these keys signed for this exact artifact is kept (a re-publish,
 *    a promote or a rollback with the same keys costs nothing);
 * 2. otherwise the artifact is streamed from the store and cut (DEFAULT_CHUNKING), and the chunks
 *    must add up to the manifest's SHA-256 and size, or nothing is written;
 * 3. the index is signed with every key and verified as a worker will before it is written.
 * Written before the manifest that names the artifact, so a worker never sees a release whose
 * index is still on its way. An artifact whose url names no store key (hosted elsewhere) gets none.
 */
export async function ensureChunkIndex(
  store: ReleaseStore,
  version: string,
  platform: string,
  entry: ArtifactEntry,
  keys: readonly PrivateKey[],
  log: (line: string) => void,
): Promise<ChunkIndexOutcome> {
  const artifactKey = artifactStoreKey(version, platform, entry.url);
  if (!artifactKey) {
    log(`no chunk index for ${platform}: its url ${entry.url} is outside the store, so workers download it whole`);
    return 'skipped';
  }
  const key = chunkIndexLocation(artifactKey);
  const existing = await readIndex(store, key);
  if (existing !== 'missing' && acceptedBy(existing, keys, version, platform, entry)) return 'kept';

  const opened = await store.openRead(artifactKey);
  if (!opened) throw new ReleaseError('artifact_missing', `${artifactKey} is missing from ${store.location}`);
  const cut = await chunkStream(opened.stream, DEFAULT_CHUNKING);
  if (cut.sha256 !== entry.sha256 || cut.size !== entry.size) {
    throw new ReleaseError(
      'artifact_corrupted',
      `${artifactKey} in ${store.location} is ${cut.size} bytes with sha256 ${cut.sha256} while it was cut into chunks; the manifest says ${entry.size} bytes, ${entry.sha256}`,
    );
  }
  const signed: SignedChunkIndex = {
    _type: CHUNK_INDEX_TYPE,
    schema_version: CHUNK_INDEX_SCHEMA_VERSION,
    version,
    platform,
    artifact_sha256: entry.sha256,
    artifact_size: entry.size,
    chunking: chunkingSchemaOf(DEFAULT_CHUNKING),
    chunk_lengths: cut.chunks.map((chunk) => chunk.length),
    chunk_sha256: cut.chunks.map((chunk) => chunk.sha256),
  };
  const bytes = canonicalBytes(signDocument(signed, keys));
  if (!acceptedBy(bytes, keys, version, platform, entry)) {
    throw new ReleaseError('manifest_invalid', `the chunk index of ${artifactKey} would not verify`);
  }
  await storeWrite(store, key, () => store.write(key, bytes));
  log(`chunk index ${key}: ${cut.chunks.length} chunks, ${bytes.length} bytes`);
  return 'written';
}

/**
 * ensureChunkIndex for every artifact of a release. `required` (publish) makes a failure fail the
 * command; otherwise (promote, rollback: a rollback may be an emergency) it is only logged, since
 * without an index workers download the artifacts whole, as before.
 */
export async function ensureChunkIndexes(
  store: ReleaseStore,
  version: string,
  artifacts: Record<string, ArtifactEntry>,
  keys: readonly PrivateKey[],
  log: (line: string) => void,
  options: { required: boolean },
): Promise<void> {
  for (const [platform, entry] of Object.entries(artifacts)) {
    try {
      await ensureChunkIndex(store, version, platform, entry, keys, log);
    } catch (err) {
      if (options.required) throw err;
      log(`warning: no chunk index for ${platform} (${errorMessage(err)}); workers download it whole`);
    }
  }
}
