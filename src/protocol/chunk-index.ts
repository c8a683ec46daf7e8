import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { CHUNKING_ALGORITHM, type ChunkingParams } from '../shared/chunker.js';
import { CodedError } from '../shared/errors.js';
import { MAX_ARTIFACT_BYTES, PlatformName, SHA256_HEX_PATTERN, Signature, Version } from './manifest.js';

/**
 * The chunk index of an artifact (docs/protocol.md, section 8): its content-defined chunks, signed
 * by the release keys as a document of its own, stored next to the artifact as
 * `<artifact file>.chunks.json`. The manifest does not change: a worker that predates differential
 * updates never sees the index, and one that knows it finds it by the artifact's own URL.
 */
export const CHUNK_INDEX_TYPE = 'worker-chunk-index';
export const CHUNK_INDEX_SCHEMA_VERSION = 1;
export const CHUNK_INDEX_SUFFIX = '.chunks.json';

/**
 * The cut the release tool makes: 4 / 16 / 64 KiB (docs/protocol.md, section 8, has the
 * measurements). On real worker builds, counting the index as fetched: a one-line patch fetches
 * 0.47 % of the 96 MiB artifact and a release with a changed module and a new dependency 0.84 %;
 * 32 KiB gives 0.40 % and 0.86 %, 8 KiB 0.74 % and 1.04 %, 64 KiB 0.53 % and 1.01 %. Smaller
 * chunks win as more of the bundle changes, a bigger index loses on the smallest patches.
 */
export const DEFAULT_CHUNKING: ChunkingParams = { minBytes: 4 * 1024, avgBytes: 16 * 1024, maxBytes: 64 * 1024 };

/** An index is refused unread above this: 16 KiB chunks of the largest artifact stay far below it. */
export const MAX_CHUNK_INDEX_BYTES = 64 * 1024 * 1024;
/** The smallest `min_bytes` an index may use: it bounds how many chunks, so bytes, an index may have. */
export const MIN_CHUNK_FLOOR_BYTES = 1024;
/** Room per chunk in an index (a 64-hex hash, a length, quotes and commas) and for the rest. */
const INDEX_BYTES_PER_CHUNK = 80;
const INDEX_FIXED_BYTES = 16 * 1024;

/**
 * The most bytes an index of an artifact of `artifactSize` bytes can take: chunks of at least
 * MIN_CHUNK_FLOOR_BYTES, signatures included. A worker reads no more than this before it checks a
 * signature, so a hostile mirror cannot make it parse tens of MB (about 7.8 MB for 95 MB; a
 * real index of it is 0.34 MB).
 */
export function maxChunkIndexBytes(artifactSize: number): number {
  return Math.min(MAX_CHUNK_INDEX_BYTES, INDEX_FIXED_BYTES + (Math.ceil(artifactSize / MIN_CHUNK_FLOOR_BYTES) + 1) * INDEX_BYTES_PER_CHUNK);
}
/** The most chunks one index may list, whatever the parameters. */
export const MAX_CHUNK_COUNT = 1_000_000;

export const ChunkingSchema = Type.Object(
  {
    algorithm: Type.Literal(CHUNKING_ALGORITHM),
    min_bytes: Type.Integer({ minimum: MIN_CHUNK_FLOOR_BYTES }),
    avg_bytes: Type.Integer({ minimum: 256 }),
    max_bytes: Type.Integer({ maximum: 16 * 1024 * 1024 }),
  },
  { additionalProperties: false },
);

/** The signed part. Offsets are implied: chunk i starts where chunk i-1 ended. */
export const SignedChunkIndex = Type.Object(
  {
    _type: Type.Literal(CHUNK_INDEX_TYPE),
    schema_version: Type.Literal(CHUNK_INDEX_SCHEMA_VERSION),
    version: Version,
    platform: PlatformName,
    artifact_sha256: Type.String({ pattern: SHA256_HEX_PATTERN }),
    artifact_size: Type.Integer({ minimum: 1, maximum: MAX_ARTIFACT_BYTES }),
    chunking: ChunkingSchema,
    chunk_lengths: Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1, maxItems: MAX_CHUNK_COUNT }),
    chunk_sha256: Type.Array(Type.String({ pattern: SHA256_HEX_PATTERN }), { minItems: 1, maxItems: MAX_CHUNK_COUNT }),
  },
  { additionalProperties: false },
);
export type SignedChunkIndex = Static<typeof SignedChunkIndex>;

export const ChunkIndexDocument = Type.Object(
  {
    signed: SignedChunkIndex,
    signatures: Type.Array(Signature, { maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type ChunkIndexDocument = Static<typeof ChunkIndexDocument>;

export const chunkIndexChecker = TypeCompiler.Compile(ChunkIndexDocument);

export function chunkingParamsOf(index: SignedChunkIndex): ChunkingParams {
  return { minBytes: index.chunking.min_bytes, avgBytes: index.chunking.avg_bytes, maxBytes: index.chunking.max_bytes };
}

export function chunkingSchemaOf(params: ChunkingParams): Static<typeof ChunkingSchema> {
  return { algorithm: CHUNKING_ALGORITHM, min_bytes: params.minBytes, avg_bytes: params.avgBytes, max_bytes: params.maxBytes };
}

/** Where the index of an artifact is: its store key or URL with the suffix. */
export function chunkIndexLocation(artifactKeyOrUrl: string): string {
  return `${artifactKeyOrUrl}${CHUNK_INDEX_SUFFIX}`;
}

/**
 * Why a worker took the full download instead of the differential one (the `delta_fallback` of a
 * success report, and the `reason` of the `worker_delta_fallback` log line). Stable strings.
 */
export const DELTA_FALLBACK_REASONS = [
  /** No index next to the artifact (a release published before differential updates, or a store without them). */
  'index_missing',
  /** The index could not be fetched (HTTP error, timeout, too large). */
  'index_unavailable',
  /** Signatures, schema, or the artifact it describes do not match what the manifest signed. */
  'index_invalid',
  /** The installed version could not be read or chunked. */
  'local_unreadable',
  /** So little is shared with the installed version that one plain download is cheaper. */
  'delta_not_smaller',
  /** The server answered a range request with something other than exactly that range. */
  'range_not_supported',
  /** A fetched chunk, or the assembled file, did not hash to what was signed. */
  'chunk_mismatch',
  /** Several differential attempts in a row failed without assembling more (ranges broken on the way). */
  'ranges_failing',
] as const;
export type DeltaFallbackReason = (typeof DELTA_FALLBACK_REASONS)[number];

export function isDeltaFallbackReason(value: string): value is DeltaFallbackReason {
  return (DELTA_FALLBACK_REASONS as readonly string[]).includes(value);
}

/** A differential download that cannot go on: the full download takes over (never a failed update). */
export class DeltaFallback extends CodedError<DeltaFallbackReason> {}
