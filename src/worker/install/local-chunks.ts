import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { SHA256_HEX_PATTERN } from '../../protocol/manifest.js';
import { chunkingSchemaOf, ChunkingSchema } from '../../protocol/chunk-index.js';
import { chunkFile, type Chunk, type ChunkedFile, type ChunkingParams } from '../../shared/chunker.js';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import type { InstallLayout } from './install-layout.js';

/**
 * `versions/<v>/.chunks.json`: the content-defined chunks of that version's executable, kept
 * when it was staged, so that a differential update (docs/protocol.md, section 8) need not read
 * the 95 MB it already has before it knows what to fetch. A cache, never trusted: the new file
 * is checked whole against its signed SHA-256, whatever was copied from the installed one.
 */
export const LOCAL_CHUNKS_FILE = '.chunks.json';

const LocalChunksSchema = Type.Object({
  chunking: ChunkingSchema,
  sha256: Type.String({ pattern: SHA256_HEX_PATTERN }),
  size: Type.Integer({ minimum: 0 }),
  chunk_lengths: Type.Array(Type.Integer({ minimum: 1 })),
  chunk_sha256: Type.Array(Type.String({ pattern: SHA256_HEX_PATTERN })),
});
type LocalChunksFile = Static<typeof LocalChunksSchema>;
const localChunksChecker = TypeCompiler.Compile(LocalChunksSchema);

function sameParams(file: LocalChunksFile, params: ChunkingParams): boolean {
  const wanted = chunkingSchemaOf(params);
  return (
    file.chunking.algorithm === wanted.algorithm &&
    file.chunking.min_bytes === wanted.min_bytes &&
    file.chunking.avg_bytes === wanted.avg_bytes &&
    file.chunking.max_bytes === wanted.max_bytes
  );
}

/** Offsets back from lengths: chunk i starts where chunk i-1 ended. */
export function chunksFromLengths(lengths: readonly number[], hashes: readonly string[]): Chunk[] {
  const chunks: Chunk[] = [];
  let offset = 0;
  for (const [i, length] of lengths.entries()) {
    chunks.push({ offset, length, sha256: hashes[i] as string });
    offset += length;
  }
  return chunks;
}

/** The cache file's text for a cut file. */
export function localChunksText(chunked: ChunkedFile, params: ChunkingParams): string {
  const file: LocalChunksFile = {
    chunking: chunkingSchemaOf(params),
    sha256: chunked.sha256,
    size: chunked.size,
    chunk_lengths: chunked.chunks.map((chunk) => chunk.length),
    chunk_sha256: chunked.chunks.map((chunk) => chunk.sha256),
  };
  return JSON.stringify(file);
}

/** Write the cache into a version (or staging) folder. */
export async function writeLocalChunks(versionDir: string, chunked: ChunkedFile, params: ChunkingParams): Promise<void> {
  await writeFileAtomic(join(versionDir, LOCAL_CHUNKS_FILE), localChunksText(chunked, params));
}

async function readCached(versionDir: string, params: ChunkingParams, sha256: string): Promise<ChunkedFile | null> {
  try {
    const value: unknown = JSON.parse(await readFile(join(versionDir, LOCAL_CHUNKS_FILE), 'utf8'));
    if (!localChunksChecker.Check(value) || !sameParams(value, params) || value.sha256 !== sha256) return null;
    if (value.chunk_lengths.length !== value.chunk_sha256.length) return null;
    return { chunks: chunksFromLengths(value.chunk_lengths, value.chunk_sha256), sha256: value.sha256, size: value.size };
  } catch {
    // Missing or damaged: cut again.
    return null;
  }
}

/**
 * The chunks of an installed version (its complete mark's SHA-256 given), cut with `params`: from
 * the cache when it was made with the same parameters for the same bytes, else cut now from the
 * executable and cached for the next time (a cache that cannot be written is only a cost).
 */
export async function installedChunks(
  layout: InstallLayout,
  version: string,
  sha256: string,
  params: ChunkingParams,
): Promise<{ chunked: ChunkedFile; cached: boolean }> {
  const dir = layout.versionDir(version);
  const cached = await readCached(dir, params, sha256);
  if (cached) return { chunked: cached, cached: true };
  const chunked = await chunkFile(layout.executablePath(version), params);
  if (chunked.sha256 !== sha256) {
    // Not the bytes that were installed: nothing assembled from them could pass the final check.
    throw new Error(`the executable of ${version} has SHA-256 ${chunked.sha256}, not ${sha256} as installed`);
  }
  await writeLocalChunks(dir, chunked, params).catch(() => undefined);
  return { chunked, cached: false };
}
