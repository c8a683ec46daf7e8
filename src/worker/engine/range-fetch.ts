import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { DeltaFallback } from '../../protocol/chunk-index.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import type { Chunk } from '../../shared/chunker.js';
import { errorMessage } from '../../shared/errors.js';
import { getArtifact } from './artifact-get.js';
import { discardBody, headerValue, pumpBody } from './body-stream.js';
import { CONTENT_RANGE, type TransferOptions } from './download.js';
import { LocalWriteError, type HashingWriter } from './hashing-writer.js';

/** A 429 is waited out this often per range, for at most this long each time. */
const RATE_LIMIT_RETRIES = 3;
const MAX_RETRY_AFTER_MS = 30_000;

export interface RangeFetch extends TransferOptions {
  /** The artifact's URL. */
  url: string;
  /** The artifact's signed size: a Content-Range must name it. */
  size: number;
  /** The consecutive chunks of the new file the range covers, from the verified index. */
  chunks: readonly Chunk[];
  writer: HashingWriter;
  /** The whole differential download's deadline, and what to add to a message when it passed. */
  deadline: AbortSignal;
  overDeadline: () => string;
  onFetched: (bytes: number) => void;
}

/** Milliseconds a 429 asks to wait (Retry-After in seconds), bounded. */
function retryAfterMs(headers: Dispatcher.ResponseData['headers']): number {
  const seconds = Number(headerValue(headers, 'retry-after') ?? '1');
  return Math.min(Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : 1000, MAX_RETRY_AFTER_MS);
}

/**
 * GET one range covering `chunks` (docs/protocol.md, section 8) and append it to the writer,
 * checking each chunk's hash where it ends. Returns the bytes received (the range's length).
 * - 206 with exactly this Content-Range (and length): the bytes, hashed chunk by chunk;
 * - 429: waited out (Retry-After, bounded) and asked again, RATE_LIMIT_RETRIES times;
 * - 200 (the whole file), 416, another range, or any other 4xx: this server does not serve ranges
 *   to us, DeltaFallback `range_not_supported`;
 * - a 5xx, 408, a broken or short body: download_failed, for the next attempt to resume.
 */
export async function fetchRange(req: RangeFetch): Promise<number> {
  const { chunks, writer, deadline, overDeadline, onFetched } = req;
  const start = (chunks[0] as Chunk).offset;
  const last = chunks.at(-1) as Chunk;
  const end = last.offset + last.length - 1;
  const length = end - start + 1;
  const { size } = req;
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
    if (statusCode >= 400 && statusCode < 500 && statusCode !== 408 && statusCode !== 429) {
      // Refused for good (a proxy or CDN that will not serve ranges): the whole file may still come.
      discardBody(body);
      throw new DeltaFallback('range_not_supported', `${source} answered HTTP ${statusCode} to a range request`);
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
