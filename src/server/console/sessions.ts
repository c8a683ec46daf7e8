import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../../shared/clock.js';
import type { ConsoleSessionRecord, FleetStore, TokenRecord } from '../fleet/fleet-store.js';
import { HttpError } from '../http-error.js';
import { generateToken, tokenIdOf, tokenMatches } from '../tokens.js';

/** The console's cookie: `bbs_<session id>_<secret>` (docs/console.md). */
export const CONSOLE_COOKIE = 'bytebiota_console';
/** The header every state-changing console request carries: the session's CSRF token. */
export const CSRF_HEADER = 'x-csrf-token';
export const DEFAULT_CONSOLE_SESSION_SECONDS = 8 * 3600;
/** Expired sessions are kept this long (for the audit trail) before sign-outs delete them. */
const EXPIRED_SESSION_KEEP_MS = 7 * 86_400_000;

export interface OpenedSession {
  /** The cookie's value; never logged. */
  cookie: string;
  session: ConsoleSessionRecord;
  token: TokenRecord;
}

export interface ResumedSession {
  session: ConsoleSessionRecord;
  token: TokenRecord;
}

/**
 * Console sessions: an admin token exchanged once for a cookie, so the page never holds the
 * token. Only the SHA-256 of the cookie's secret is stored, in the fleet store, so a session
 * works on every replica and survives restarts. A session ends at its expiry, at sign-out, and
 * as soon as the admin token it was opened with is revoked (checked on every request, through
 * the same cache as bearer tokens).
 *
 * The CSRF token is derived from the cookie (an HMAC keyed by it), not stored: only a page that
 * can read the session's own answers (same origin) learns it, and it changes with the session.
 */
export class ConsoleSessions {
  constructor(
    private readonly fleet: FleetStore,
    private readonly clock: Clock,
    readonly ttlSeconds: number,
  ) {}

  /** Exchange an admin token for a session: 401 `invalid_token` for an unknown or revoked one, 403 `forbidden` for a worker token. */
  async open(adminToken: string, createdFrom: string | null): Promise<OpenedSession> {
    const id = tokenIdOf(adminToken);
    const token = id === null ? null : await this.fleet.findToken(id);
    if (!token || token.revokedAt !== null || !tokenMatches(adminToken, token.secretSha256)) {
      throw new HttpError(401, 'invalid_token', 'the token is unknown or revoked');
    }
    if (token.role !== 'admin') throw new HttpError(403, 'forbidden', 'the console needs an admin token');
    const secret = generateToken('session');
    const now = this.clock.now();
    const session: ConsoleSessionRecord = {
      id: secret.id,
      secretSha256: secret.secretSha256,
      tokenId: token.id,
      createdAt: now,
      expiresAt: new Date(now.getTime() + this.ttlSeconds * 1000),
      createdFrom,
      endedAt: null,
    };
    await this.fleet.createConsoleSession(session);
    return { cookie: secret.token, session, token };
  }

  /** The live session a cookie stands for, or null (malformed, unknown, wrong secret, ended, expired, token revoked). */
  async resume(cookie: string): Promise<ResumedSession | null> {
    const id = tokenIdOf(cookie, 'session');
    if (id === null) return null;
    const session = await this.fleet.findConsoleSession(id);
    if (!session || !tokenMatches(cookie, session.secretSha256)) return null;
    if (session.endedAt !== null || session.expiresAt.getTime() <= this.clock.now().getTime()) return null;
    const token = await this.fleet.findToken(session.tokenId);
    if (!token || token.revokedAt !== null || token.role !== 'admin') return null;
    return { session, token };
  }

  /** Sign-out: the session ends on every replica at once. */
  async end(session: ConsoleSessionRecord): Promise<void> {
    const now = this.clock.now();
    await this.fleet.endConsoleSession(session.id, now, new Date(now.getTime() - EXPIRED_SESSION_KEEP_MS));
  }

  csrfToken(cookie: string): string {
    return createHmac('sha256', cookie).update('bytebiota-console-csrf').digest('base64url');
  }

  /** Constant-time check of a presented CSRF header against the session's. */
  csrfMatches(cookie: string, presented: string | undefined): boolean {
    if (presented === undefined) return false;
    const expected = Buffer.from(this.csrfToken(cookie));
    const given = Buffer.from(presented);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
