import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small update server on 127.0.0.1 for the engine's tests (and the download benchmark): the
 * latest-manifest route with ETag/304, and artifacts with Range and If-Range, plus knobs to
 * misbehave (drop the connection after N bytes, stall, send a wrong Content-Range, ignore Range).
 */
export interface ArtifactSource {
  bytes?: Buffer;
  /** Served from disk instead of memory (large artifacts). */
  filePath?: string;
  etag: string;
  /**
   * Send this many body bytes, then hold the response open until `dropHeld()` destroys its
   * socket (a connection dying mid-body), on the next response only. Tests call `dropHeld()`
   * once the client reports it has received the bytes, so the outcome does not depend on timing.
   */
  dropAfterBytes?: number;
  /** Stop sending (without closing) after this many body bytes, on the next response only. */
  stallAfterBytes?: number;
  /** Answer Range requests with a Content-Range that starts this many bytes off. */
  contentRangeSkewBytes?: number;
  /** Answer every request with the whole file (a server without range support). */
  ignoreRange?: boolean;
  /** Send no Content-Length (chunked), so only the client's own count can stop an overlong body. */
  chunked?: boolean;
  /** Flip one byte of every 206 body (a mirror that serves wrong bytes for ranges only). */
  corruptRanges?: boolean;
  /** Like `dropAfterBytes`, but on the `request`-th response for this artifact (1 is the first). */
  dropOnRequest?: { request: number; afterBytes: number };
  /** Answer every request with a Range header with this status and no body (a proxy that breaks ranges). */
  failRangeStatus?: number;
  /** Answer the `request`-th request for this artifact (1 is the first) with this status and no body. */
  failOnRequest?: { request: number; status: number; retryAfter?: string };
  /** Responses sent for this artifact so far (kept by the server). */
  served?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
}

export interface ManifestRoute {
  status: number;
  body?: Buffer | string;
  etag?: string;
  /** Full control over the response, for hangs and oddities. */
  handler?(req: IncomingMessage, res: ServerResponse): void;
}

export interface EngineUpdateServer {
  url: string;
  requests: RecordedRequest[];
  manifest: ManifestRoute;
  artifacts: Map<string, ArtifactSource>;
  /** Destroy the sockets of responses held by `dropAfterBytes`. */
  dropHeld(): void;
  close(): Promise<void>;
}

export const LATEST_PATH = '/api/worker-updates/latest';

function sendManifest(route: ManifestRoute, req: IncomingMessage, res: ServerResponse): void {
  if (route.handler) {
    route.handler(req, res);
    return;
  }
  if (route.etag !== undefined && req.headers['if-none-match'] === route.etag) {
    res.writeHead(304, { etag: route.etag }).end();
    return;
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (route.etag !== undefined) headers['etag'] = route.etag;
  res.writeHead(route.status, headers).end(route.body ?? '');
}

async function sizeOf(source: ArtifactSource): Promise<number> {
  if (source.bytes) return source.bytes.length;
  if (source.filePath) return (await stat(source.filePath)).size;
  throw new Error('artifact source has neither bytes nor filePath');
}

function bodyStream(source: ArtifactSource, start: number, endInclusive: number): NodeJS.ReadableStream | Buffer {
  if (source.bytes) return source.bytes.subarray(start, endInclusive + 1);
  return createReadStream(source.filePath as string, { start, end: endInclusive, highWaterMark: 1024 * 1024 });
}

async function sendArtifact(source: ArtifactSource, req: IncomingMessage, res: ServerResponse, held: Set<ServerResponse>): Promise<void> {
  const size = await sizeOf(source);
  const failure = source.failOnRequest ?? (source.failRangeStatus !== undefined && req.headers['range'] !== undefined ? { request: (source.served ?? 0) + 1, status: source.failRangeStatus } : undefined);
  if (failure && failure.request === (source.served ?? 0) + 1) {
    source.served = (source.served ?? 0) + 1;
    res.writeHead(failure.status, 'retryAfter' in failure && failure.retryAfter !== undefined ? { 'retry-after': failure.retryAfter } : {}).end();
    return;
  }
  let start = 0;
  let end = size - 1;
  let status = 200;
  // One range, open-ended (a resumed download) or closed (a differential one).
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers['range'] ?? '');
  const ifRange = req.headers['if-range'];
  if (range && !source.ignoreRange && (ifRange === undefined || ifRange === source.etag)) {
    start = Number(range[1]);
    if (range[2] !== '') end = Math.min(Number(range[2]), size - 1);
    if (start >= size || end < start) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    status = 206;
  }
  const headers: Record<string, string> = {
    'content-type': 'application/octet-stream',
    'accept-ranges': 'bytes',
    etag: source.etag,
  };
  if (!source.chunked) headers['content-length'] = String(end - start + 1);
  if (status === 206) headers['content-range'] = `bytes ${start + (source.contentRangeSkewBytes ?? 0)}-${end}/${size}`;
  res.writeHead(status, headers);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }

  source.served = (source.served ?? 0) + 1;
  if (source.dropOnRequest?.request === source.served) source.dropAfterBytes = source.dropOnRequest.afterBytes;
  const cutAt = source.dropAfterBytes ?? source.stallAfterBytes;
  if (cutAt !== undefined) {
    const drop = source.dropAfterBytes !== undefined;
    delete source.dropAfterBytes;
    delete source.stallAfterBytes;
    const slice = (source.bytes ?? Buffer.alloc(0)).subarray(start, Math.min(end + 1, start + cutAt));
    res.write(slice);
    if (drop) held.add(res);
    return;
  }
  const body = bodyStream(source, start, end);
  if (Buffer.isBuffer(body) && status === 206 && source.corruptRanges) {
    const wrong = Buffer.from(body);
    wrong[0] = (wrong[0] ?? 0) ^ 0xff;
    res.end(wrong);
  } else if (Buffer.isBuffer(body)) res.end(body);
  else body.pipe(res);
}

export async function startEngineUpdateServer(): Promise<EngineUpdateServer> {
  const requests: RecordedRequest[] = [];
  const held = new Set<ServerResponse>();
  const state = {
    manifest: { status: 404, body: JSON.stringify({ error: { code: 'no_release', message: 'none' } }) } as ManifestRoute,
    artifacts: new Map<string, ArtifactSource>(),
  };
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers });
    if (path === LATEST_PATH) {
      sendManifest(state.manifest, req, res);
      return;
    }
    const source = state.artifacts.get(path);
    if (!source) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'not_found', message: path } }));
      return;
    }
    sendArtifact(source, req, res, held).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get manifest() {
      return state.manifest;
    },
    set manifest(route: ManifestRoute) {
      state.manifest = route;
    },
    artifacts: state.artifacts,
    dropHeld: () => {
      for (const res of held) res.socket?.destroy();
      held.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
