import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { HttpError } from '../http-error.js';
import { addLogFields } from '../plugins/access-log.js';
import { errorResponses } from '../routes/schemas.js';
import { assertSameOrigin } from './guard.js';
import { CONSOLE_COOKIE, type ConsoleSessions } from './sessions.js';

const SessionResponse = Type.Object({
  token_id: Type.String(),
  label: Type.Union([Type.String(), Type.Null()]),
  expires_at: Type.String(),
  csrf_token: Type.String(),
});

const COOKIE_PATH = '/console';

/** HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure when the page came over TLS. */
function cookieOptions(request: FastifyRequest, expires: Date) {
  return { path: COOKIE_PATH, httpOnly: true, sameSite: 'strict' as const, secure: request.protocol === 'https', expires };
}

function clearCookie(request: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(CONSOLE_COOKIE, { path: COOKIE_PATH, httpOnly: true, sameSite: 'strict', secure: request.protocol === 'https' });
}

/** Sign-in, the session's own answer (its CSRF token for a reloaded page), and sign-out (docs/console.md). */
export const consoleSessionRoutes: FastifyPluginAsyncTypebox<{ sessions: ConsoleSessions }> = async (app, { sessions }) => {
  app.post(
    '/console/api/session',
    {
      config: { auth: 'none' },
      schema: {
        tags: ['console'],
        summary: 'Sign in: exchange an admin token for a console session cookie (Origin must be this server)',
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
        response: { 200: SessionResponse, ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      // A forged sign-in (login CSRF) would put the victim in the attacker's session: same rule as changes.
      assertSameOrigin(request);
      const opened = await sessions.open(request.body.token, request.ip);
      request.log.info(
        { event: 'console_signed_in', session_id: opened.session.id, token_id: opened.token.id, token_label: opened.token.label, client_address: request.ip, expires_at: opened.session.expiresAt.toISOString() },
        'console session opened',
      );
      addLogFields(request, { event: 'console_sign_in', token_id: opened.token.id });
      reply.setCookie(CONSOLE_COOKIE, opened.cookie, cookieOptions(request, opened.session.expiresAt));
      return { token_id: opened.token.id, label: opened.token.label, expires_at: opened.session.expiresAt.toISOString(), csrf_token: sessions.csrfToken(opened.cookie) };
    },
  );

  app.get(
    '/console/api/session',
    {
      config: { auth: 'console' },
      schema: { tags: ['console'], summary: "The signed-in session: who, until when, and its CSRF token", response: { 200: SessionResponse, ...errorResponses(401, 429, 503) } },
    },
    async (request) => {
      const current = request.consoleSession!;
      return { token_id: current.token.id, label: current.token.label, expires_at: current.session.expiresAt.toISOString(), csrf_token: sessions.csrfToken(current.cookie) };
    },
  );

  app.delete(
    '/console/api/session',
    {
      config: { auth: 'console' },
      schema: { tags: ['console'], summary: 'Sign out: the session ends on every replica', response: { 204: Type.Null(), ...errorResponses(401, 403, 429, 503) } },
    },
    async (request, reply) => {
      const current = request.consoleSession;
      if (!current) throw new HttpError(401, 'no_session', 'sign in to the console');
      await sessions.end(current.session);
      request.log.info({ event: 'console_signed_out', session_id: current.session.id, token_id: current.token.id, token_label: current.token.label }, 'console session ended');
      clearCookie(request, reply);
      return reply.code(204).send(null);
    },
  );
};
