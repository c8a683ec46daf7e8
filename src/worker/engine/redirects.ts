import type { Dispatcher } from 'undici';
import { UpdateError } from '../../protocol/reason-codes.js';
import { discardBody, headerValue } from './body-stream.js';

/**
 * Redirects of an artifact download (docs/protocol.md, section 1). They are followed here, hop by
 * hop, rather than by an undici interceptor, so that every hop passes the same checks as the
 * artifact URL itself.
 */

/** The statuses that send the download elsewhere. 300, 304 and 305 are not followed. */
const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/** Redirects followed per download; the one after the last is refused. */
export const MAX_REDIRECTS = 5;

/** 127.0.0.0/8, ::1 and localhost: the only hosts plain http may reach. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * A URL as it may appear in a message or a log: origin and path, never the query string (a
 * signed CDN URL carries its secret there) nor credentials.
 */
export function urlForMessages(url: URL | string): string {
  const parsed = typeof url === 'string' ? parseUrl(url) : url;
  if (parsed === null) return '(an invalid URL)';
  return parsed.origin === 'null' ? `a ${parsed.protocol} URL` : `${parsed.origin}${parsed.pathname}`;
}

/** `new URL`, or null for text that is not a URL. */
function parseUrl(text: string, base?: URL): URL | null {
  try {
    return new URL(text, base);
  } catch {
    return null;
  }
}

function refused(message: string, cause?: unknown): UpdateError {
  return new UpdateError('download_failed', message, cause === undefined ? undefined : { cause });
}

/**
 * Where a redirect from `from` may lead: the `Location` resolved against `from`, when it is https,
 * or http to a loopback host from a hop that was itself http to loopback, and carries no credentials. Anything else (another scheme, plain
 * http to any other host, an https origin sent down to such http) is download_failed. Messages
 * name the target's origin only.
 */
export function redirectTarget(from: URL, statusCode: number, location: string | undefined): URL {
  if (location === undefined || location === '') {
    throw refused(`${urlForMessages(from)} answered ${statusCode} without a Location`);
  }
  const target = parseUrl(location, from);
  if (target === null) throw refused(`${urlForMessages(from)} answered ${statusCode} with a Location that is not a URL`);
  if (target.protocol !== 'https:' && target.protocol !== 'http:') {
    throw refused(`redirect from ${from.origin} to a ${target.protocol} URL is refused; only https (or http to loopback)`);
  }
  if (target.protocol === 'http:' && !isLoopbackHost(target.hostname)) {
    throw refused(`redirect from ${from.origin} to ${target.origin} is refused: plain http to a non-loopback host; only https is allowed`);
  }
  // Plain http to loopback only from a hop that was already plain http to loopback (a local
  // test or mirror): an https server (a CDN) must not steer the worker to services on its own machine.
  if (target.protocol === 'http:' && !(from.protocol === 'http:' && isLoopbackHost(from.hostname))) {
    throw refused(`redirect from ${from.origin} to ${target.origin} is refused: an https download is never sent to plain http`);
  }
  if (target.username !== '' || target.password !== '') {
    throw refused(`redirect from ${from.origin} to ${target.origin} carries credentials in the URL; refused`);
  }
  return target;
}

/**
 * Sends one hop. `withCallerHeaders` is false once the download has left the original URL's
 * origin: the caller's headers (the bearer token) must then stay behind.
 */
export type SendHop = (url: URL, withCallerHeaders: boolean) => Promise<Dispatcher.ResponseData>;

/**
 * GET `url`, following up to MAX_REDIRECTS redirects (docs/protocol.md, section 1):
 * 1. every hop's target must pass `redirectTarget`;
 * 2. the caller's headers go only to the original origin (scheme, host and port); once a hop
 *    leaves it they are not sent again, even if a later hop comes back;
 * 3. every intermediate response body is discarded.
 * Returns the first response that is not a redirect, and the URL that gave it.
 */
export async function followRedirects(url: URL, send: SendHop): Promise<{ response: Dispatcher.ResponseData; url: URL }> {
  let current = url;
  let withCallerHeaders = true;
  for (let redirects = 0; ; redirects += 1) {
    const response = await send(current, withCallerHeaders);
    if (!REDIRECT_STATUSES.has(response.statusCode)) return { response, url: current };
    discardBody(response.body);
    const target = redirectTarget(current, response.statusCode, headerValue(response.headers, 'location'));
    if (redirects === MAX_REDIRECTS) {
      throw refused(`more than ${MAX_REDIRECTS} redirects: the next, from ${current.origin} to ${target.origin}, is refused`);
    }
    if (target.origin !== url.origin) withCallerHeaders = false;
    current = target;
  }
}
