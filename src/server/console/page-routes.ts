import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { ifNoneMatchMatches } from '../http-conditional.js';
import { HttpError } from '../http-error.js';
import type { ConsoleAsset, ConsoleAssets } from './assets.js';

/** True for the console's page, files and API. */
export function isConsoleUrl(url: string): boolean {
  return url === '/console' || url.startsWith('/console/') || url.startsWith('/console?');
}

/**
 * No script but the console's own file, no inline script or style, nothing from elsewhere, and
 * never inside another site's frame. Sent with every /console response, API answers included.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function send(reply: FastifyReply, file: ConsoleAsset, ifNoneMatch: string | undefined) {
  // Names are not content-hashed: every load revalidates, and an unchanged file costs a 304.
  void reply.header('etag', file.etag).header('cache-control', 'no-cache');
  if (ifNoneMatchMatches(ifNoneMatch, file.etag)) return reply.code(304).send();
  return reply.type(file.contentType).send(file.body);
}

/** The page and its built files (scripts/build-console.mjs); 503 `console_not_built` when there are none. */
export const consolePageRoutes: FastifyPluginAsync<{ assets: ConsoleAssets | null }> = async (app, { assets }) => {
  const built = (): ConsoleAssets => {
    if (assets === null) throw new HttpError(503, 'console_not_built', 'the console was not built: run npm run build');
    return assets;
  };

  app.get('/console', { config: { auth: 'none' }, schema: { hide: true } }, async (_request, reply) => reply.redirect('/console/', 308));
  app.get('/console/', { config: { auth: 'none' }, schema: { hide: true } }, async (request, reply) => send(reply, built().index, request.headers['if-none-match']));
  app.get<{ Params: { file: string } }>('/console/assets/:file', { config: { auth: 'none' }, schema: { hide: true } }, async (request, reply) => {
    const name = request.params.file;
    const file = FILE_NAME.test(name) ? built().files.get(name) : undefined;
    if (file === undefined) throw new HttpError(404, 'not_found', `no console file ${name}`);
    return send(reply, file, request.headers['if-none-match']);
  });
};
