import { createHash } from 'node:crypto';
import { mkdir, open, readFile, stat, truncate, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { DeltaFallback, type SignedChunkIndex } from '../../protocol/chunk-index.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import type { Chunk, ChunkedFile } from '../../shared/chunker.js';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { errorMessage, isNoSpace } from '../../shared/errors.js';
import { fileIdentity, type VerifiedFile } from '../install/file-receipt.js';
import { chunksFromLengths } from '../install/local-chunks.js';
import { getArtifact } from './artifact-get.js';
import { discardBody, headerValue, pumpBody } from './body-stream.js';
import { defaultStatFs, ensureFreeSpace } from './disk-space.js';
import { DEFAULT_TOTAL_TIMEOUT_MS, discardPartial, sidecarPathOf, type TransferOptions } from './download.js';
import { HashingWriter, LocalWriteError, WRITE_BATCH_BYTES } from './hashing-writer.js';

/** One request fetches at most this much, so a resumed download loses at most one range. */
export const MAX_RANGE_BYTES = 8 * 1024 * 1024;
/**
 * Above this share of the artifact to fetch, a differential download is not worth its requests
 * and its chunk checks: one plain download is cheaper (`delta_not_smaller`).
 */
export const MAX_DELTA_SHARE = 0.8;
/** A 429 is waited out this often per range, for at most this long each time. */
const RATE_LIMIT_RETRIES = 3;
const MAX_RETRY_AFTER_MS = 30_000;

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
  /** Bytes already assembled by an earlier attempt. */
  resumedFromBytes: number;
  /** Range requests made by this call. */
  ranges: number;
}

/** A run of consecutive chunks of the new file, taken from one place. */
interface Piece {
  kind: 'local' | 'remote';
  /** Chunks of the new file, in order. */
  chunks: Chunk[];
  /** For a local piece, where each chunk is in the installed file (same order). */
  localOffsets: number[];
  start: number;
  end: number;
}

/**
 * Local chunks are copied in reads of up to this size: one full read is one write batch of the
 * HashingWriter, which the buffer reuse in `assemble` relies on.
 */
const LOCAL_READ_BYTES = WRITE_BATCH_BYTES;

/**
 * The chunks of a local piece from `assembled` on, as spans that are contiguous both in the new
 * file and in the installed one (a patch release keeps long runs of the old file in order).
 */
function localSpans(piece: Piece, assembled: number): Array<{ localOffset: number; length: number }> {
  const spans: Array<{ localOffset: number; length: number }> = [];
  for (const [i, chunk] of piece.chunks.entries()) {
    if (chunk.offset < assembled) continue;
    const localOffset = piece.localOffsets[i] as number;
    const last = spans.at(-1);
    if (last && last.localOffset + last.length === localOffset) last.length += chunk.length;
    else spans.push({ localOffset, length: chunk.length });
  }
  return spans;
}

/** What the sidecar `<partial>.json` remembers so that the next attempt resumes. */
interface DeltaSidecar {
  kind: 'delta';
  sha256: string;
  size: number;
  /** The assembled prefix: always a chunk boundary, every chunk before it verified. */
  assembled_bytes: number;
  /** Of it, how much came over the network. */
  fetched_bytes: number;
}

/**
 * Plan the new file: each chunk from the installed version when it has one with the same hash,
 * else fetched; consecutive fetched chunks merged into one range of at most MAX_RANGE_BYTES.
 */
export function planPieces(index: SignedChunkIndex, local: ChunkedFile): Piece[] {
  const localByHash = new Map<string, Chunk>();
  for (const chunk of local.chunks) if (!localByHash.has(chunk.sha256)) localByHash.set(chunk.sha256, chunk);
  const pieces: Piece[] = [];
  for (const chunk of chunksFromLengths(index.chunk_lengths, index.chunk_sha256)) {
    const found = localByHash.get(chunk.sha256);
    const kind = found && found.length === chunk.length ? 'local' : 'remote';
    const last = pieces.at(-1);
    const joins = last !== undefined && last.kind === kind && (kind === 'local' || last.end - last.start + chunk.length <= MAX_RANGE_BYTES);
    const piece: Piece = joins ? last : { kind, chunks: [], localOffsets: [], start: chunk.offset, end: chunk.offset };
    if (!joins) pieces.push(piece);
    piece.chunks.push(chunk);
    if (kind === 'local' && found) piece.localOffsets.push(found.offset);
    piece.end = chunk.offset + chunk.length;
  }
  return pieces;
}

export function bytesToFetch(pieces: readonly Piece[]): number {
  return pieces.reduce((sum, piece) => sum + (piece.kind === 'remote' ? piece.end - piece.start : 0), 0);
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
      (value.assembled_bytes ?? 0) <= index.artifact_size;
    return usable ? (value as DeltaSidecar) : null;
  } catch {
    return null;
  }
}

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

/**
 * Assemble a new artifact from the installed version's chunks and byte ranges of the artifact URL
 * (docs/protocol.md, section 8), verified as strictly as a full download:
 * 1. plan: chunks the installed file has are copied, the rest fetched as merged ranges; when more
 *    than MAX_DELTA_SHARE would be fetched, fall back (`delta_not_smaller`);
 * 2. resume: an earlier attempt's assembled prefix (a chunk boundary, from the sidecar) is kept and
 *    re-hashed; anything after it is cut off;
 * 3. free space for the rest, as for a full download (disk_full);
 * 4. in file order, copy the local chunks (in large reads) or fetch each range (`Range: bytes=a-b`,
 *    one per request, redirects as for the artifact, the bearer to its origin only), hashing every
 *    fetched chunk as it lands against the signed index, and the whole file as it is written;
 * 5. compare the whole file's size and SHA-256 with the manifest's.
 * A fetched chunk that does not hash right, a server that ignores Range or answers another range,
 * or a whole file that does not match (an installed file that changed under its cache) throws
 * DeltaFallback and deletes what was assembled: the caller then downloads the whole artifact. A
 * dropped connection or an HTTP error is download_failed and keeps the assembled prefix for the
 * next attempt; a full disk is disk_full.
 */
export async function downloadByChunks(req: DeltaRequest): Promise<DeltaResult> {
  const { index } = req;
  const pieces = planPieces(index, req.local.chunked);
  const toFetch = bytesToFetch(pieces);
  if (toFetch > index.artifact_size * MAX_DELTA_SHARE) {
    throw new DeltaFallback(
      'delta_not_smaller',
      `${toFetch} of ${index.artifact_size} bytes differ from the installed version: one plain download is cheaper`,
    );
  }
  await mkdir(dirname(req.partialPath), { recursive: true });
  const sidecar = await readSidecar(req.partialPath, index);
  const onDisk = await stat(req.partialPath).then((info) => info.size, () => -1);
  const resume = sidecar !== null && onDisk >= sidecar.assembled_bytes ? sidecar : null;
  if (!resume) await discardPartial(req.partialPath);

  const writer = new HashingWriter();
  const localFile = await open(req.local.path, 'r').catch((err: unknown) => {
    throw new DeltaFallback('local_unreadable', `cannot open the installed version ${req.local.path}: ${errorMessage(err)}`, { cause: err });
  });
  try {
    return await assemble(req, pieces, toFetch, resume, writer, localFile);
  } catch (err) {
    await writer.close();
    if (err instanceof DeltaFallback) await discardPartial(req.partialPath);
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
  // Step 2: the prefix an earlier attempt assembled and verified.
  let assembled = resume?.assembled_bytes ?? 0;
  let fetched = resume?.fetched_bytes ?? 0;
  const resumedFromBytes = assembled;
  if (assembled > 0) {
    await truncate(req.partialPath, assembled);
    try {
      await writer.hashFilePrefix(req.partialPath, assembled);
    } catch (err) {
      await discardPartial(req.partialPath);
      throw new UpdateError('download_failed', `could not re-read the ${assembled} bytes kept in ${req.partialPath}: ${errorMessage(err)}`, { cause: err });
    }
  }
  // Step 3.
  await ensureFreeSpace(dirname(req.partialPath), size - assembled, size, req.statfs ?? defaultStatFs);
  await writer.openFile(req.partialPath, assembled > 0 ? 'a' : 'w', req.openPartialFile);

  const totalTimeoutMs = req.totalTimeoutMs ?? DEFAULT_TOTAL_TIMEOUT_MS;
  const deadline = AbortSignal.timeout(totalTimeoutMs);
  const overDeadline = (): string => (deadline.aborted ? ` (the download did not finish within ${totalTimeoutMs} ms)` : '');
  const progress = (): void => req.onProgress?.(fetched, toFetch);
  const saveProgress = async (): Promise<void> => {
    await writer.flush();
    const next: DeltaSidecar = { kind: 'delta', sha256: index.artifact_sha256, size, assembled_bytes: assembled, fetched_bytes: fetched };
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
          const { bytesRead } = await localFile.read(buffer, 0, readBytes, span.localOffset + done);
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
      const received = await fetchRange(req, chunks, writer, deadline, overDeadline, (bytes) => {
        fetched += bytes;
        progress();
      });
      ranges += 1;
      assembled += received;
    }
    await saveProgress();
  }

  // Step 5: the whole file, as for a full download.
  const digest = await writer.finish();
  if (assembled !== size || digest !== index.artifact_sha256) {
    throw new DeltaFallback(
      'chunk_mismatch',
      `the assembled file has ${assembled} bytes and SHA-256 ${digest}; the manifest signed ${size} bytes, ${index.artifact_sha256} (every fetched chunk matched: the installed version's bytes differ from its chunk cache)`,
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

/** Milliseconds a 429 asks to wait (Retry-After in seconds), bounded. */
function retryAfterMs(headers: Dispatcher.ResponseData['headers']): number {
  const seconds = Number(headerValue(headers, 'retry-after') ?? '1');
  return Math.min(Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000, MAX_RETRY_AFTER_MS);
}

/**
 * GET one range covering `chunks` (consecutive, in order) and append it, checking each chunk's
 * hash at its end. Returns the bytes received (the range's length).
 */
async function fetchRange(
  req: DeltaRequest,
  chunks: readonly Chunk[],
  writer: HashingWriter,
  deadline: AbortSignal,
  overDeadline: () => string,
  onFetched: (bytes: number) => void,
): Promise<number> {
  const start = (chunks[0] as Chunk).offset;
  const last = chunks.at(-1) as Chunk;
  const end = last.offset + last.length - 1;
  const length = end - start + 1;
  const size = req.index.artifact_size;
  let attempt = 0;
  for (;;) {
    const { response, source } = await getArtifact({
      url: req.url,
      callerHeaders: req.headers,
      protocolHeaders: { 'accept-encoding': 'identity', range: `bytes=${start}-${end}` },
      signal: deadline,
      describeAbort: overDeadline,
      dispatcher: req.dispatcher,
      headersTimeoutMs: req.headersTimeoutMs,
      bodyIdleTimeoutMs: req.bodyIdleTimeoutMs,
    });
    const { statusCode, body, headers } = response;
    if (statusCode === 429 && attempt < RATE_LIMIT_RETRIES) {
      // The server's rate limit: wait as it asks, then send the same range again.
      discardBody(body);
      attempt += 1;
      await sleep(retryAfterMs(headers), undefined, { signal: deadline }).catch(() => undefined);
      continue;
    }
    if (statusCode === 200) {
      discardBody(body);
      throw new DeltaFallback('range_not_supported', `${source} answered a range request with the whole file (200)`);
    }
    if (statusCode === 416) {
      discardBody(body);
      throw new DeltaFallback('range_not_supported', `${source} refused the range ${start}-${end} (416)`);
    }
    if (statusCode !== 206) {
      discardBody(body);
      throw new UpdateError('download_failed', `${source} answered HTTP ${statusCode} to a range request`);
    }
    const match = CONTENT_RANGE.exec(headerValue(headers, 'content-range') ?? '');
    const contentLength = headerValue(headers, 'content-length');
    if (
      !match ||
      Number(match[1]) !== start ||
      Number(match[2]) !== end ||
      (match[3] !== '*' && Number(match[3]) !== size) ||
      (contentLength !== undefined && Number(contentLength) !== length)
    ) {
      discardBody(body);
      throw new DeltaFallback(
        'range_not_supported',
        `${source} answered bytes ${start}-${end} with ${headerValue(headers, 'content-range') ?? 'no Content-Range'}`,
      );
    }
    return receiveChunks(body, chunks, length, writer, source, overDeadline, onFetched);
  }
}

async function receiveChunks(
  body: Dispatcher.ResponseData['body'],
  chunks: readonly Chunk[],
  length: number,
  writer: HashingWriter,
  source: string,
  overDeadline: () => string,
  onFetched: (bytes: number) => void,
): Promise<number> {
  let received = 0;
  let current = 0;
  let left = (chunks[0] as Chunk).length;
  let hash = createHash('sha256');
  try {
    await pumpBody(body, (piece) => {
      if (received + piece.length > length) {
        throw new DeltaFallback('range_not_supported', `${source} sent more than the ${length} bytes of the range`);
      }
      received += piece.length;
      // Hash chunk by chunk: a wrong chunk is caught where it ends, not only at the end of the file.
      for (let at = 0; at < piece.length; ) {
        const take = Math.min(left, piece.length - at);
        hash.update(piece.subarray(at, at + take));
        at += take;
        left -= take;
        if (left === 0) {
          const chunk = chunks[current] as Chunk;
          if (hash.digest('hex') !== chunk.sha256) {
            throw new DeltaFallback('chunk_mismatch', `${source} sent a chunk at byte ${chunk.offset} that does not hash to the index's ${chunk.sha256}`);
          }
          current += 1;
          left = chunks[current]?.length ?? 0;
          hash = createHash('sha256');
        }
      }
      onFetched(piece.length);
      return writer.append(piece);
    });
  } catch (err) {
    discardBody(body);
    if (err instanceof DeltaFallback || err instanceof LocalWriteError) throw err;
    throw new UpdateError('download_failed', `range of ${source} broke off after ${received} of ${length} bytes: ${errorMessage(err)}${overDeadline()}`, { cause: err });
  }
  if (received !== length) {
    throw new UpdateError('download_failed', `range of ${source} ended after ${received} of ${length} bytes`);
  }
  return received;
}
