import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Dispatcher } from 'undici';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { errorMessage, isErrnoCode, isNoSpace } from '../../shared/errors.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import { defaultStatFs, ensureFreeSpace, type StatFs } from './disk-space.js';
import { HashingWriter, LocalWriteError, type OpenPartialFile } from './hashing-writer.js';
import { discardBody, headerValue, pumpBody } from './body-stream.js';
import { urlForMessages } from './redirects.js';
import { getArtifact } from './artifact-get.js';
import { fileIdentity, type VerifiedFile } from '../install/file-receipt.js';

/** What the sidecar `<partial>.json` remembers so that the next attempt can resume. */
interface PartialSidecar {
  url: string;
  sha256: string;
  size: number;
  /** A strong ETag or a Last-Modified date, sent back as If-Range; null when the server gave none. */
  validator: string | null;
}

/** How an artifact's bytes are fetched and written, whole or as chunks (delta-download.ts). */
export interface TransferOptions {
  /**
   * Extra request headers (the bearer token, only for the update server's own origin). They go
   * to `url`'s origin only: a redirect to another origin leaves them behind.
   */
  headers?: Record<string, string>;
  dispatcher?: Dispatcher;
  /** Time allowed until the response headers arrive. */
  headersTimeoutMs?: number;
  /** Time allowed between two body chunks; a stalled server fails the download, not the worker. */
  bodyIdleTimeoutMs?: number;
  /**
   * Time allowed for the whole download. The idle timeout alone cannot stop a server that drips
   * a byte now and then (TUF's slow-retrieval attack); this deadline does.
   */
  totalTimeoutMs?: number;
  statfs?: StatFs;
  /** Opens the partial file for writing; the default is fs/promises `open`. A test seam for write errors. */
  openPartialFile?: OpenPartialFile;
}

export interface DownloadRequest extends TransferOptions {
  /** The artifact URL; redirects are followed under the rules of docs/protocol.md, section 1. */
  url: string;
  /** Where the bytes go while they arrive: `tmp/<version>-<platform>.partial`. */
  partialPath: string;
  /** The signed SHA-256 (lowercase hex) and size of the artifact. */
  sha256: string;
  size: number;
  /** Called as bytes arrive, with the count so far (resumed bytes included) and the total. */
  onProgress?(receivedBytes: number, totalBytes: number): void;
}

export interface DownloadResult {
  /** The partial path, now holding exactly `size` bytes whose SHA-256 matched. */
  path: string;
  verified: VerifiedFile;
  /** Bytes that were already on disk from an earlier attempt and were not fetched again. */
  resumedFromBytes: number;
  /** Bytes fetched over the network by this call. */
  fetchedBytes: number;
}

export const DEFAULT_TOTAL_TIMEOUT_MS = 900_000;

export function sidecarPathOf(partialPath: string): string {
  return `${partialPath}.json`;
}

/** Remove a partial download and its sidecar (after a checksum failure, or once it is staged). */
export async function discardPartial(partialPath: string): Promise<void> {
  await rm(partialPath, { force: true });
  await rm(sidecarPathOf(partialPath), { force: true });
}

async function readSidecar(partialPath: string): Promise<PartialSidecar | null> {
  try {
    const value = JSON.parse(await readFile(sidecarPathOf(partialPath), 'utf8')) as Partial<PartialSidecar>;
    if (
      typeof value.url === 'string' &&
      typeof value.sha256 === 'string' &&
      typeof value.size === 'number' &&
      (typeof value.validator === 'string' || value.validator === null)
    ) {
      return value as PartialSidecar;
    }
    return null;
  } catch {
    // A missing or unreadable sidecar only costs a fresh download.
    return null;
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return 0;
    throw err;
  }
}

/**
 * How many bytes of an earlier attempt can be kept: only when the sidecar describes the same
 * artifact (same signed SHA-256 and size) and the bytes on disk are not longer than it.
 * Anything else is discarded here, before a request is made.
 */
async function resumableState(req: DownloadRequest): Promise<{ offset: number; validator: string | null }> {
  const sidecar = await readSidecar(req.partialPath);
  const onDisk = await fileSize(req.partialPath);
  const usable =
    sidecar !== null &&
    sidecar.sha256 === req.sha256 &&
    sidecar.size === req.size &&
    onDisk <= req.size &&
    (onDisk === req.size || sidecar.validator !== null);
  if (!usable) {
    await discardPartial(req.partialPath);
    return { offset: 0, validator: null };
  }
  return { offset: onDisk, validator: sidecar.validator };
}

/** If-Range needs a strong validator: a strong ETag, else Last-Modified. */
function validatorOf(headers: Dispatcher.ResponseData['headers']): string | null {
  const etag = headerValue(headers, 'etag');
  if (etag !== undefined && !etag.startsWith('W/')) return etag;
  return headerValue(headers, 'last-modified') ?? null;
}

/** `Content-Range: bytes <first>-<last>/<size or *>` of a 206 (differential downloads too). */
export const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

function failDownload(message: string, cause?: unknown): UpdateError {
  return new UpdateError('download_failed', message, cause === undefined ? undefined : { cause });
}

/**
 * Download one artifact to `partialPath`, resumably, and verify it against its signed size and
 * SHA-256. The steps (docs/protocol.md, section 4: "nothing enters versions/ before size and SHA-256 pass"):
 * 1. keep the bytes of an earlier attempt when the sidecar describes the same artifact, re-hashing them;
 * 2. check free space for the rest plus a reserve (disk_full before a byte is written);
 * 3. GET, with `Range: bytes=N-` and `If-Range` when resuming; a 200 means the file changed: start over.
 *    Redirects are followed by hand (redirects.ts, docs/protocol.md, section 1), with Range and
 *    If-Range on every hop and the caller's headers only on the original origin;
 * 4. stream to disk in large batched writes, hashing every byte as it passes (HashingWriter),
 *    never holding more than a few MiB of the body in memory, cut off past `size`;
 * 5. compare size and SHA-256; a mismatch deletes the partial.
 * A dropped connection keeps the partial and its sidecar for the next attempt (download_failed).
 */
export async function downloadArtifact(req: DownloadRequest): Promise<DownloadResult> {
  await mkdir(dirname(req.partialPath), { recursive: true });
  // Step 1: what can be kept from an earlier attempt.
  const resumable = await resumableState(req);
  // The writer owns the hash and the open partial file; it is closed on every path.
  const writer = new HashingWriter();
  try {
    return await downloadWith(writer, req, resumable);
  } finally {
    await writer.close();
  }
}

async function downloadWith(
  writer: HashingWriter,
  req: DownloadRequest,
  resumable: { offset: number; validator: string | null },
): Promise<DownloadResult> {
  let offset = resumable.offset;
  try {
    await writer.hashFilePrefix(req.partialPath, offset);
  } catch (err) {
    await discardPartial(req.partialPath);
    throw failDownload(`could not re-read the ${offset} bytes kept in ${req.partialPath}: ${errorMessage(err)}`, err);
  }
  if (offset === req.size) {
    const verified = await finish(req, await writer.finish(), offset);
    return { path: req.partialPath, verified, resumedFromBytes: offset, fetchedBytes: 0 };
  }

  // Step 2: room for the rest.
  await ensureFreeSpace(dirname(req.partialPath), req.size - offset, req.size, req.statfs ?? defaultStatFs);

  // Step 3: the request, and its redirects. The protocol's own headers go to every hop; the
  // caller's (the bearer token) only to the original origin.
  const protocolHeaders: Record<string, string> = { 'accept-encoding': 'identity' };
  if (offset > 0 && resumable.validator !== null) {
    protocolHeaders['range'] = `bytes=${offset}-`;
    protocolHeaders['if-range'] = resumable.validator;
  }
  const totalTimeoutMs = req.totalTimeoutMs ?? DEFAULT_TOTAL_TIMEOUT_MS;
  const deadline = AbortSignal.timeout(totalTimeoutMs);
  const overDeadline = (): string => (deadline.aborted ? ` (the download did not finish within ${totalTimeoutMs} ms)` : '');
  const { response, source } = await getArtifact({
    url: req.url,
    callerHeaders: req.headers,
    protocolHeaders,
    signal: deadline,
    describeAbort: overDeadline,
    dispatcher: req.dispatcher,
    headersTimeoutMs: req.headersTimeoutMs,
    bodyIdleTimeoutMs: req.bodyIdleTimeoutMs,
  });
  const { statusCode, body } = response;
  const responseHeaders = response.headers;
  const refuse = async (error: UpdateError, discard: boolean): Promise<never> => {
    discardBody(body);
    if (discard) await discardPartial(req.partialPath);
    throw error;
  };

  if (statusCode === 200 && offset > 0) {
    // The validator no longer matched (a new file under the same URL): the kept bytes are stale.
    offset = 0;
    writer.resetHash();
  } else if (statusCode === 206) {
    const match = CONTENT_RANGE.exec(headerValue(responseHeaders, 'content-range') ?? '');
    if (!match) return refuse(failDownload(`${source} answered 206 without a valid Content-Range`), true);
    const start = Number(match[1]);
    if (start !== offset) {
      return refuse(failDownload(`${source} answered a range starting at byte ${start}; asked for ${offset}`), true);
    }
    if (match[3] !== '*' && Number(match[3]) !== req.size) {
      return refuse(new UpdateError('size_mismatch', `${source} is ${match[3]} bytes; the manifest signed ${req.size}`), true);
    }
  } else if (statusCode !== 200) {
    return refuse(failDownload(`${source} answered HTTP ${statusCode}`), false);
  }
  const contentLength = headerValue(responseHeaders, 'content-length');
  if (contentLength !== undefined && offset + Number(contentLength) !== req.size) {
    return refuse(
      new UpdateError('size_mismatch', `${source} sends ${offset + Number(contentLength)} bytes; the manifest signed ${req.size}`),
      true,
    );
  }
  await writeFileAtomic(
    sidecarPathOf(req.partialPath),
    JSON.stringify({ url: req.url, sha256: req.sha256, size: req.size, validator: validatorOf(responseHeaders) } satisfies PartialSidecar),
  );

  // Step 4: stream, hash and count; never past the signed size. Written by hand rather than with
  // pipeline(), because on a dropped connection the bytes already received must still reach the
  // disk (pipeline would destroy the file and lose what was buffered).
  const resumedFromBytes = offset;
  let received = offset;
  /** The artifact is wrong, or a local write failed: what is on disk is not worth keeping. */
  const failAndDiscard = async (err: UpdateError | LocalWriteError): Promise<never> => {
    discardBody(body);
    await writer.close();
    await discardPartial(req.partialPath);
    if (err instanceof UpdateError) throw err;
    if (isNoSpace(err.cause)) {
      throw new UpdateError('disk_full', `no space left writing ${req.partialPath}`, { cause: err.cause });
    }
    throw failDownload(`could not write ${req.partialPath}: ${errorMessage(err)}`, err);
  };
  let digest: string;
  try {
    await writer.openFile(req.partialPath, offset > 0 ? 'a' : 'w', req.openPartialFile);
    await pumpBody(body, (chunk) => {
      received += chunk.length;
      if (received > req.size) {
        throw new UpdateError('size_mismatch', `${source} sent more than the ${req.size} bytes the manifest signed`);
      }
      const waiting = writer.append(chunk);
      req.onProgress?.(received, req.size);
      return waiting;
    });
    digest = await writer.finish();
  } catch (err) {
    if (err instanceof UpdateError || err instanceof LocalWriteError) return failAndDiscard(err);
    // The connection dropped or stalled: write out the bytes received so far (a prefix of the
    // artifact) and keep them with the sidecar for the next attempt.
    discardBody(body);
    try {
      await writer.flush();
    } catch (flushError) {
      if (flushError instanceof LocalWriteError) return failAndDiscard(flushError);
      throw flushError;
    }
    throw failDownload(`download of ${source} broke off after ${received} of ${req.size} bytes: ${errorMessage(err)}${overDeadline()}`, err);
  }

  // Step 5: size and hash.
  const verified = await finish(req, digest, received);
  return { path: req.partialPath, verified, resumedFromBytes, fetchedBytes: received - resumedFromBytes };
}
async function finish(req: DownloadRequest, digest: string, receivedBytes: number): Promise<VerifiedFile> {
  if (receivedBytes !== req.size) {
    await discardPartial(req.partialPath);
    throw new UpdateError('size_mismatch', `${urlForMessages(req.url)} ended after ${receivedBytes} bytes; the manifest signed ${req.size}`);
  }
  if (digest !== req.sha256) {
    await discardPartial(req.partialPath);
    throw new UpdateError('checksum_mismatch', `${urlForMessages(req.url)} has SHA-256 ${digest}; the manifest signed ${req.sha256}`);
  }
  const identity = await fileIdentity(req.partialPath);
  if (identity.size !== BigInt(req.size)) {
    await discardPartial(req.partialPath);
    throw new UpdateError('size_mismatch', `${req.partialPath} is ${identity.size} bytes on disk; ${req.size} were written`);
  }
  return { path: req.partialPath, sha256: digest, size: req.size, identity };
}
