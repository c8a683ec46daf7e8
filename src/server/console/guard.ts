import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { HttpError } from '../http-error.js';
import { CONSOLE_COOKIE, CSRF_HEADER, type ConsoleSessions } from './sessions.js';

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * A state change must come from a page of this server: its Origin header (which browsers send
 * with every POST, PUT and DELETE and pages cannot forge) must name this server as the request
 * reached it. Behind a TLS-terminating proxy declared with `--trusted-proxy`, that is the
 * proxy's scheme and host (X-Forwarded-Proto and X-Forwarded-Host).
 */
export function assertSameOrigin(request: FastifyRequest): void {
  const origin = request.headers.origin;
  const expected = `${request.protocol}://${request.host}`;
  if (origin === undefined) throw new HttpError(403, 'origin_refused', 'a console change needs the Origin header of this server');
  if (origin !== expected) {
    throw new HttpError(
      403,
      'origin_refused',
      `Origin ${origin} is not this server as it was reached (${expected}); behind a TLS-terminating proxy, list the proxy with --trusted-proxy so that its X-Forwarded-Proto and X-Forwarded-Host are believed`,
    );
  }
}

/**
 * Admits the console's routes (`config.auth: 'console'`) by the session cookie alone: an
 * Authorization header is not looked at, and the bearer routes never look at the cookie. A
 * state change also needs this server's Origin and the session's CSRF token. The caller's auth
 * context is the admin token the session was opened with, so rate limits and the audit lines
 * of actions (`actor`) name it as they do for the admin API.
 */
export const consoleGuardPlugin = fp<{ sessions: ConsoleSessions }>(
  async (app, { sessions }) => {
    app.decorateRequest('consoleSession', null);
    app.addHook('onRequest', async (request) => {
      if (request.routeOptions.config.auth !== 'console') return;
      const cookie = request.cookies[CONSOLE_COOKIE];
      const resumed = cookie === undefined ? null : await sessions.resume(cookie);
      if (cookie === undefined || resumed === null) throw new HttpError(401, 'no_session', 'sign in to the console');
      if (!SAFE_METHODS.has(request.method)) {
        assertSameOrigin(request);
        const header = request.headers[CSRF_HEADER];
        if (!sessions.csrfMatches(cookie, typeof header === 'string' ? header : undefined)) {
          throw new HttpError(403, 'csrf_refused', `a console change needs the session's ${CSRF_HEADER} header`);
        }
      }
      request.consoleSession = { ...resumed, cookie };
      request.auth = { kind: 'token', tokenId: resumed.token.id, role: 'admin', pool: null, workerId: null };
    });
  },
  { name: 'bytebiota-console-guard', dependencies: ['@fastify/cookie'] },
);
