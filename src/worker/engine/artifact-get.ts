import { request, type Dispatcher } from 'undici';
import { UpdateError } from '../../protocol/reason-codes.js';
import { errorMessage } from '../../shared/errors.js';
import { followRedirects, urlForMessages } from './redirects.js';

export const DEFAULT_HEADERS_TIMEOUT_MS = 30_000;
export const DEFAULT_BODY_IDLE_TIMEOUT_MS = 60_000;

/**
 * Spread into every request: a dispatcher composed with undici's redirect interceptor would follow
 * redirects past the checks of followRedirects; 0 turns it off for the request.
 */
const NO_REDIRECT_INTERCEPTOR = { maxRedirections: 0 };

export interface ArtifactGet {
  url: string;
  /** The caller's headers (the bearer token): only to `url`'s origin. */
  callerHeaders?: Record<string, string>;
  /** The protocol's own headers (Range, If-Range, Accept-Encoding): to every hop. */
  protocolHeaders: Record<string, string>;
  /** The whole transfer's deadline. */
  signal: AbortSignal;
  /** Appended to a failure message, e.g. that the deadline passed. */
  describeAbort?(): string;
  dispatcher?: Dispatcher;
  headersTimeoutMs?: number;
  bodyIdleTimeoutMs?: number;
}

/**
 * One GET of an artifact or of something stored beside it (its chunk index, a byte range of it),
 * redirects followed by hand under the rules of docs/protocol.md, section 1 (redirects.ts). A
 * failure to connect or to get headers is download_failed, naming the origin and path only.
 * Returns the first response that is not a redirect and where it came from, for messages.
 */
export async function getArtifact(get: ArtifactGet): Promise<{ response: Dispatcher.ResponseData; source: string }> {
  const why = (): string => get.describeAbort?.() ?? '';
  const sendHop = async (hopUrl: URL, withCallerHeaders: boolean): Promise<Dispatcher.ResponseData> => {
    try {
      return await request(hopUrl, {
        method: 'GET',
        headers: withCallerHeaders ? { ...get.callerHeaders, ...get.protocolHeaders } : get.protocolHeaders,
        signal: get.signal,
        dispatcher: get.dispatcher,
        headersTimeout: get.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
        bodyTimeout: get.bodyIdleTimeoutMs ?? DEFAULT_BODY_IDLE_TIMEOUT_MS,
        ...NO_REDIRECT_INTERCEPTOR,
      });
    } catch (err) {
      throw new UpdateError('download_failed', `could not fetch ${urlForMessages(hopUrl)}: ${errorMessage(err)}${why()}`, { cause: err });
    }
  };
  try {
    const followed = await followRedirects(new URL(get.url), sendHop);
    return { response: followed.response, source: urlForMessages(followed.url) };
  } catch (err) {
    if (err instanceof UpdateError) throw err;
    throw new UpdateError('download_failed', `could not fetch ${urlForMessages(get.url)}: ${errorMessage(err)}`, { cause: err });
  }
}
