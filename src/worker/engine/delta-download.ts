import { createHash } from 'node:crypto';
import { mkdir, open, readFile, stat, truncate, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DeltaFallback, type SignedChunkIndex } from '../../protocol/chunk-index.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import type { Chunk, ChunkedFile } from '../../shared/chunker.js';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { errorMessage, isNoSpace } from '../../shared/errors.js';
import { fileIdentity, type VerifiedFile } from '../install/file-receipt.js';
import { chunksFromLengths } from '../install/local-chunks.js';
import { bytesToFetch, localSpans, planPieces, type Piece } from './delta-plan.js';
import { defaultStatFs, ensureFreeSpace } from './disk-space.js';
import { DEFAULT_TOTAL_TIMEOUT_MS, discardPartial, sidecarPathOf, type TransferOptions } from './download.js';
import { HashingWriter, LocalWriteError, WRITE_BATCH_BYTES } from './hashing-writer.js';
import { fetchRange } from './range-fetch.js';

/**
 * After this many attempts in a row that failed without assembling anything more (a proxy that
 * breaks every range, a CDN that answers them 5xx), the whole file is tried instead
 * (`ranges_failing`): a worker must never be stuck on its way to a release.
 */
export const MAX_FAILED_DELTA_ATTEMPTS = 3;

export interface DeltaRequest extends TransferOptions {
  /** The artifact's URL: ranges of it are fetched. */
  url: string;
  /** Where the new file is assembled: `tmp/<version>-<platform>.delta.partial`. */
  partialPath: string;
  /** The verified chunk index of the new artifact; its SHA-256 and size are the manifest's. */
  index: SignedChunkIndex;
  /** The installed executable and its chunks, cut with the index's parameters. */
  local: { path: string; chunked: ChunkedFile };
  /** Bytes fetched over the network so far (resumed ones included), of all that must be. */
  onProgress?(fetchedBytes: number, bytesToFetch: number): void;
}

export interface DeltaResult {
  path: string;
  verified: VerifiedFile;
  /** Bytes fetched over the network by this call. */
  fetchedBytes: number;
  /** Bytes taken from the installed version. */
  reusedBytes: number;
  /** Bytes already assembled by an earlier attempt, and verified again chunk by chunk. */
  resumedFromBytes: number;
  /** Range requests made by this call. */
  ranges: number;
}

/**
 * Local chunks are copied in reads of up to this size: one full read is one write batch of the
 * HashingWriter, which the buffer reuse in `assemble` relies on.
 */
const LOCAL_READ_BYTES = WRITE_BATCH_BYTES;

/** What the sidecar `<partial>.json` remembers so that the next attempt resumes. */
interface DeltaSidecar {
  kind: 'delta';
  sha256: string;
  size: number;
  /** The assembled prefix; the next attempt keeps only the chunks of it that hash right. */
  assembled_bytes: number;
  /** Of it, how much came over the network. */
  fetched_bytes: number;
  /** Attempts in a row that failed without assembling more. */
  failed_attempts?: number;
}

async function readSidecar(partialPath: string, index: SignedChunkIndex): Promise<DeltaSidecar | null> {
  try {
    const value = JSON.parse(await readFile(sidecarPathOf(partialPath), 'utf8')) as Partial<DeltaSidecar>;
    const usable =
      value.kind === 'delta' &&
      value.sha256 === index.artifact_sha256 &&
      value.size === index.artifact_size &&
      Number.isInteger(value.assembled_bytes) &&
      Number.isInteger(value.fetched_bytes) &&
      (value.assembled_bytes ?? -1) >= 0 &&
      (value.assembled_bytes ?? 0) <= index.artifact_size &&
      (value.failed_attempts === undefined || Number.isInteger(value.failed_attempts));
    return usable ? (value as DeltaSidecar) : null;
  } catch {
    return null;
  }
}

/** One more failed attempt on the record, when there is a record (best effort: only a counter). */
async function countFailedAttempt(partialPath: string, index: SignedChunkIndex): Promise<void> {
  const sidecar = await readSidecar(partialPath, index);
  if (!sidecar) return;
  const next: DeltaSidecar = { ...sidecar, failed_attempts: (sidecar.failed_attempts ?? 0) + 1 };
  await writeFileAtomic(sidecarPathOf(partialPath), JSON.stringify(next)).catch(() => undefined);
}

/**
 * How much of a kept prefix to keep: the chunks from the start that are whole in the file and hash
 * to what the index signed, up to `claimed` bytes. A sidecar written before a power cut may claim
 * bytes that never reached the disk, or an index rewritten since may cut elsewhere; neither costs
 * more than fetching those chunks again.
 */
async function verifiedPrefixBytes(path: string, chunks: readonly Chunk[], claimed: number): Promise<number> {
  const file = await open(path, 'r');
  try {
    let kept = 0;
    for (const chunk of chunks) {
      if (chunk.offset + chunk.length > claimed) break;
      const bytes = Buffer.allocUnsafe(chunk.length);
      const { bytesRead } = await file.read(bytes, 0, chunk.length, chunk.offset);
      if (bytesRead !== chunk.length || createHash('sha256').update(bytes).digest('hex') !== chunk.sha256) break;
      kept = chunk.offset + chunk.length;
    }
    return kept;
  } finally {
    await file.close();
  }
}

/**
 * Assemble a new artifact from the installed version's chunks and byte ranges of the artifact URL
 * (docs/protocol.md, section 8), verified as strictly as a full download:
 * 1. plan (delta-plan.ts): chunks the installed file has are copied, the rest fetched as merged
 *    ranges; too much to fetch, or too many ranges, falls back (`delta_not_smaller`);
 * 2. resume: of an earlier attempt's assembled prefix (from the sidecar), the chunks that are whole
 *    on disk and still hash right are kept and re-hashed; anything after them is cut off. After
 *    MAX_FAILED_DELTA_ATTEMPTS attempts in a row without progress, fall back (`ranges_failing`);
 * 3. free space for the rest, as for a full download (disk_full);
 * 4. in file order, copy the local chunks (in large reads) or fetch each range (`Range: bytes=a-b`,
 *    one per request, redirects as for the artifact, the bearer to its origin only), hashing every
 *    fetched chunk as it lands against the signed index, and the whole file as it is written;
 * 5. compare the whole file's size and SHA-256 with the manifest's.
 * A fetched chunk that does not hash right, a server that ignores Range or answers another range,
 * or a whole file that does not match (an installed file that changed under its cache) throws
 * DeltaFallback and deletes what was assembled: the caller then downloads the whole artifact. A
 * dropped connection or a 5xx is download_failed, counted, and keeps the assembled prefix for the
 * next attempt; a full disk is disk_full.
 */
export async function downloadByChunks(req: DeltaRequest): Promise<DeltaResult> {
  const { index } = req;
  const pieces = planPieces(index, req.local.chunked);
  const toFetch = bytesToFetch(pieces);
  await mkdir(dirname(req.partialPath), { recursive: true });
  const sidecar = await readSidecar(req.partialPath, index);
  const onDisk = await stat(req.partialPath).then((info) => info.size, () => -1);
  const resume = sidecar !== null && onDisk >= 0 ? sidecar : null;
  if (!resume) await discardPartial(req.partialPath);
  if ((resume?.failed_attempts ?? 0) >= MAX_FAILED_DELTA_ATTEMPTS) {
    await discardPartial(req.partialPath);
    throw new DeltaFallback('ranges_failing', `the last ${MAX_FAILED_DELTA_ATTEMPTS} differential attempts failed without progress`);
  }

  const writer = new HashingWriter();
  const localFile = await open(req.local.path, 'r').catch((err: unknown) => {
    throw new DeltaFallback('local_unreadable', `cannot open the installed version ${req.local.path}: ${errorMessage(err)}`, { cause: err });
  });
  try {
    return await assemble(req, pieces, toFetch, resume, writer, localFile);
  } catch (err) {
    await writer.close();
    if (err instanceof DeltaFallback) await discardPartial(req.partialPath);
    if (err instanceof UpdateError && err.code === 'download_failed') await countFailedAttempt(req.partialPath, index);
    if (err instanceof LocalWriteError) {
      await discardPartial(req.partialPath);
      if (isNoSpace(err.cause)) throw new UpdateError('disk_full', `no space left writing ${req.partialPath}`, { cause: err.cause });
      throw new UpdateError('download_failed', `could not write ${req.partialPath}: ${errorMessage(err)}`, { cause: err });
    }
    throw err;
  } finally {
    await writer.close();
    await localFile.close().catch(() => undefined);
  }
}

async function assemble(
  req: DeltaRequest,
  pieces: readonly Piece[],
  toFetch: number,
  resume: DeltaSidecar | null,
  writer: HashingWriter,
  localFile: FileHandle,
): Promise<DeltaResult> {
  const { index } = req;
  const size = index.artifact_size;
  // Step 2: of the prefix an earlier attempt assembled, the chunks that still hash right.
  let assembled = 0;
  let fetched = resume?.fetched_bytes ?? 0;
  let failedAttempts = resume?.failed_attempts ?? 0;
  if (resume && resume.assembled_bytes > 0) {
    try {
      assembled = await verifiedPrefixBytes(req.partialPath, chunksFromLengths(index.chunk_lengths, index.chunk_sha256), resume.assembled_bytes);
      await truncate(req.partialPath, assembled);
      await writer.hashFilePrefix(req.partialPath, assembled);
    } catch (err) {
      await discardPartial(req.partialPath);
      throw new UpdateError('download_failed', `could not re-read the bytes kept in ${req.partialPath}: ${errorMessage(err)}`, { cause: err });
    }
  }
  const resumedFromBytes = assembled;
  // Step 3.
  await ensureFreeSpace(dirname(req.partialPath), size - assembled, size, req.statfs ?? defaultStatFs);
  await writer.openFile(req.partialPath, assembled > 0 ? 'a' : 'w', req.openPartialFile);

  const totalTimeoutMs = req.totalTimeoutMs ?? DEFAULT_TOTAL_TIMEOUT_MS;
  const deadline = AbortSignal.timeout(totalTimeoutMs);
  const overDeadline = (): string => (deadline.aborted ? ` (the download did not finish within ${totalTimeoutMs} ms)` : '');
  const progress = (): void => req.onProgress?.(fetched, toFetch);
  const saveProgress = async (): Promise<void> => {
    await writer.flush();
    const next: DeltaSidecar = {
      kind: 'delta',
      sha256: index.artifact_sha256,
      size,
      assembled_bytes: assembled,
      fetched_bytes: fetched,
      ...(failedAttempts > 0 ? { failed_attempts: failedAttempts } : {}),
    };
    await writeFileAtomic(sidecarPathOf(req.partialPath), JSON.stringify(next));
  };
  await saveProgress();
  progress();

  let reused = 0;
  let ranges = 0;
  const readBuffers = [Buffer.allocUnsafe(LOCAL_READ_BYTES), Buffer.allocUnsafe(LOCAL_READ_BYTES)];
  // Step 4, in file order.
  for (const piece of pieces) {
    if (piece.end <= assembled) continue;
    if (piece.kind === 'local') {
      // Copied in large reads of the runs that are contiguous in the installed file too. These
      // bytes are not hashed chunk by chunk: the installed version was verified when it was
      // staged, and the whole-file SHA-256 below catches any byte that changed since (then the
      // full download takes over, as for any mismatch).
      for (const span of localSpans(piece, assembled)) {
        for (let done = 0, turn = 0; done < span.length; turn += 1) {
          const readBytes = Math.min(LOCAL_READ_BYTES, span.length - done);
          // Two buffers in turn, not one per read (100 MB of garbage). A full buffer appended
          // starts its own write, and the next append resolves only once that write is done, so
          // a buffer is free again two reads later; the span's short last read is flushed below.
          const buffer = readBuffers[turn % 2] as Buffer;
          const { bytesRead } = await localFile.read(buffer, 0, readBytes, span.localOffset + done).catch((err: unknown) => {
            throw new DeltaFallback('local_unreadable', `cannot read the installed version ${req.local.path}: ${errorMessage(err)}`, { cause: err });
          });
          if (bytesRead !== readBytes) {
            throw new DeltaFallback('local_unreadable', `the installed version ${req.local.path} ended before byte ${span.localOffset + done + readBytes}`);
          }
          await writer.append(buffer.subarray(0, readBytes));
          done += readBytes;
        }
        await writer.flush();
        assembled += span.length;
        reused += span.length;
      }
    } else {
      // A range starts at a chunk boundary at or after the assembled prefix.
      const first = piece.chunks.findIndex((chunk) => chunk.offset >= assembled);
      const chunks = piece.chunks.slice(first);
      const received = await fetchRange({
        ...req,
        size,
        chunks,
        writer,
        deadline,
        overDeadline,
        onFetched: (bytes) => {
          fetched += bytes;
          progress();
        },
      });
      ranges += 1;
      assembled += received;
    }
    // Something more is assembled: the count of attempts that got nowhere starts again.
    failedAttempts = 0;
    await saveProgress();
  }

  // Step 5: the whole file, as for a full download.
  const digest = await writer.finish();
  if (assembled !== size || digest !== index.artifact_sha256) {
    throw new DeltaFallback(
      'chunk_mismatch',
      `the assembled file has ${assembled} bytes and SHA-256 ${digest}; the manifest signed ${size} bytes, ${index.artifact_sha256} (every fetched chunk matched: bytes copied from the installed version differ from its chunk cache)`,
    );
  }
  const identity = await fileIdentity(req.partialPath);
  if (identity.size !== BigInt(size)) {
    throw new DeltaFallback('chunk_mismatch', `${req.partialPath} is ${identity.size} bytes on disk; ${size} were written`);
  }
  return {
    path: req.partialPath,
    verified: { path: req.partialPath, sha256: digest, size, identity },
    fetchedBytes: fetched - (resume?.fetched_bytes ?? 0),
    reusedBytes: reused,
    resumedFromBytes,
    ranges,
  };
}
