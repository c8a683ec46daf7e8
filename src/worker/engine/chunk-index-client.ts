import type { Dispatcher } from 'undici';
import { chunkIndexLocation, DeltaFallback } from '../../protocol/chunk-index.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import { errorMessage } from '../../shared/errors.js';
import { getArtifact } from './artifact-get.js';
import { discardBody, headerValue, pumpBody } from './body-stream.js';

export interface ChunkIndexFetch {
  /** The artifact's URL; the index is at the same URL with `.chunks.json` appended. */
  artifactUrl: string;
  callerHeaders?: Record<string, string>;
  dispatcher?: Dispatcher;
  timeoutMs: number;
  /** More is refused before it is parsed: maxChunkIndexBytes of the artifact's signed size. */
  maxBytes: number;
}

/**
 * Fetch the chunk index of an artifact whose manifest already verified (docs/protocol.md,
 * section 8), as bytes: verifyChunkIndex judges them. Every way it can fail is a DeltaFallback:
 * `index_missing` (404: a release or store from before differential updates), `index_unavailable`
 * (any other failure to get the bytes, or more bytes than an index may have).
 */
export async function fetchChunkIndex(req: ChunkIndexFetch): Promise<Buffer> {
  const signal = AbortSignal.timeout(req.timeoutMs);
  let fetched;
  try {
    fetched = await getArtifact({
      url: chunkIndexLocation(req.artifactUrl),
      callerHeaders: req.callerHeaders,
      protocolHeaders: { 'accept-encoding': 'identity' },
      signal,
      dispatcher: req.dispatcher,
      headersTimeoutMs: req.timeoutMs,
      bodyIdleTimeoutMs: req.timeoutMs,
    });
  } catch (err) {
    if (err instanceof UpdateError) throw new DeltaFallback('index_unavailable', err.message, { cause: err });
    throw err;
  }
  const { response, source } = fetched;
  if (response.statusCode === 404) {
    discardBody(response.body);
    throw new DeltaFallback('index_missing', `${source} has no chunk index (404)`);
  }
  if (response.statusCode !== 200) {
    discardBody(response.body);
    throw new DeltaFallback('index_unavailable', `${source} answered HTTP ${response.statusCode}`);
  }
  const declared = Number(headerValue(response.headers, 'content-length') ?? '0');
  if (declared > req.maxBytes) {
    discardBody(response.body);
    throw new DeltaFallback('index_unavailable', `${source} is ${declared} bytes, over the ${req.maxBytes}-byte limit of an index of this artifact`);
  }
  const pieces: Buffer[] = [];
  let received = 0;
  try {
    await pumpBody(response.body, (piece) => {
      received += piece.length;
      if (received > req.maxBytes) throw new Error(`more than the ${req.maxBytes}-byte limit of an index of this artifact`);
      pieces.push(piece);
      return undefined;
    });
  } catch (err) {
    discardBody(response.body);
    throw new DeltaFallback('index_unavailable', `reading ${source}: ${errorMessage(err)}`, { cause: err });
  }
  return Buffer.concat(pieces);
}
