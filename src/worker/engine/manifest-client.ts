import { request, type Dispatcher } from 'undici';
import { errorMessage } from '../../shared/errors.js';
import { MAX_MANIFEST_BYTES } from '../../protocol/manifest.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import { discardBody, headerValue } from './body-stream.js';
import { isLoopbackHost } from './redirects.js';

export interface ManifestRequest {
  serverUrl: string;
  token: string;
  channel: string;
  platform: string;
  workerId: string;
  currentVersion: string;
  /** The ETag of the last manifest fully handled; sent as If-None-Match. */
  etag?: string;
  dispatcher?: Dispatcher;
  /** The whole request, headers and body, must finish within this time. */
  timeoutMs?: number;
  /**
   * `--force-update`: ask the server to bypass its staged rollout for this request (header
   * FORCE_UPDATE_HEADER). An older server ignores the header.
   */
  force?: boolean;
}

/** Sent with `1` on a forced check: the server offers the release whatever its rollout says. */
export const FORCE_UPDATE_HEADER = 'x-bytebiota-force-update';

export type ManifestResponse =
  | { kind: 'not_modified' }
  | { kind: 'no_release' }
  | { kind: 'manifest'; bytes: Buffer; etag: string | null; url: string };

export const DEFAULT_MANIFEST_TIMEOUT_MS = 15_000;
/** An error body is read only this far: enough for `{"error": {...}}`. */
const MAX_ERROR_BODY_BYTES = 16 * 1024;

/** `<server>/api/worker-updates/latest?...`, keeping any path prefix the server URL has. */
export function latestManifestUrl(req: Pick<ManifestRequest, 'serverUrl' | 'channel' | 'platform' | 'workerId' | 'currentVersion'>): URL {
  const base = new URL(req.serverUrl);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const url = new URL('api/worker-updates/latest', base);
  url.searchParams.set('channel', req.channel);
  url.searchParams.set('platform', req.platform);
  url.searchParams.set('worker_id', req.workerId);
  url.searchParams.set('current_version', req.currentVersion);
  return url;
}

function fetchFailed(message: string, cause?: unknown): UpdateError {
  return new UpdateError('manifest_fetch_failed', message, cause === undefined ? undefined : { cause });
}

/** Read a body into memory, but never more than `maxBytes`: past it the stream is cut off. */
async function readLimited(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const bytes = chunk as Buffer;
    total += bytes.length;
    if (total > maxBytes) {
      discardBody(body);
      return null;
    }
    chunks.push(bytes);
  }
  return Buffer.concat(chunks, total);
}

async function errorCodeOf(body: Dispatcher.ResponseData['body']): Promise<string | null> {
  const bytes = await readLimited(body, MAX_ERROR_BODY_BYTES);
  if (!bytes) return null;
  try {
    const code = (JSON.parse(bytes.toString('utf8')) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null;
  }
}

/**
 * GET the channel's latest signed manifest for this worker (docs/protocol.md, section 3). The bytes are
 * returned unverified: the caller verifies them before believing anything in them. Outcomes:
 * 200 → the bytes (at most MAX_MANIFEST_BYTES, else manifest_invalid); 304 → not_modified;
 * 404 `no_release` → no_release; network errors, timeouts, other statuses → manifest_fetch_failed.
 */
export async function fetchLatestManifest(req: ManifestRequest): Promise<ManifestResponse> {
  const url = latestManifestUrl(req);
  const timeoutMs = req.timeoutMs ?? DEFAULT_MANIFEST_TIMEOUT_MS;
  const headers: Record<string, string> = { authorization: `Bearer ${req.token}`, accept: 'application/json' };
  if (req.etag !== undefined) headers['if-none-match'] = req.etag;
  if (req.force === true) headers[FORCE_UPDATE_HEADER] = '1';
  try {
    const response = await request(url, {
      method: 'GET',
      headers,
      dispatcher: req.dispatcher,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const { statusCode, body } = response;
    if (statusCode === 304) {
      discardBody(body);
      return { kind: 'not_modified' };
    }
    if (statusCode === 404) {
      const code = await errorCodeOf(body);
      if (code === 'no_release') return { kind: 'no_release' };
      throw fetchFailed(`${url.origin}${url.pathname} answered 404${code ? ` ${code}` : ''}`);
    }
    if (statusCode !== 200) {
      const code = await errorCodeOf(body).catch(() => null);
      throw fetchFailed(`${url.origin}${url.pathname} answered HTTP ${statusCode}${code ? ` ${code}` : ''}`);
    }
    const declared = headerValue(response.headers, 'content-length');
    if (declared !== undefined && Number(declared) > MAX_MANIFEST_BYTES) {
      discardBody(body);
      throw new UpdateError('manifest_invalid', `manifest is ${declared} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`);
    }
    const bytes = await readLimited(body, MAX_MANIFEST_BYTES);
    if (!bytes) throw new UpdateError('manifest_invalid', `manifest is over the ${MAX_MANIFEST_BYTES}-byte limit`);
    return { kind: 'manifest', bytes, etag: headerValue(response.headers, 'etag') ?? null, url: url.toString() };
  } catch (err) {
    if (err instanceof UpdateError) throw err;
    throw fetchFailed(`could not fetch the manifest from ${url.origin}: ${errorMessage(err)}`, err);
  }
}

/**
 * The artifact URL of a manifest entry (docs/protocol.md, section 1): absolute, or relative to the URL the
 * manifest was fetched from. Only https, or http to a loopback host; no credentials in the URL.
 * Anything else is download_failed before a connection is made.
 */
export function resolveArtifactUrl(entryUrl: string, manifestUrl: string): string {
  let url: URL;
  try {
    url = new URL(entryUrl, manifestUrl);
  } catch (err) {
    throw new UpdateError('download_failed', `artifact url ${JSON.stringify(entryUrl)} is not a URL`, { cause: err });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UpdateError('download_failed', `artifact url scheme ${url.protocol} is refused; only https (or http to loopback)`);
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new UpdateError('download_failed', `artifact url ${url.origin} is plain http to a non-loopback host; only https is allowed`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new UpdateError('download_failed', 'artifact url carries credentials; refused');
  }
  return url.toString();
}
