import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Secrets the server hands out, all `<prefix>_<id>_<secret>`: the id (16 hex) is public and
 * names the secret in logs, rate limits and revocations; the secret (32 random bytes, base64url)
 * is shown once at creation. Only the SHA-256 of the whole string is stored.
 *
 * - `bbt_`: a bearer token (a pool's worker token, or an admin's);
 * - `bbe_`: an enrollment token, exchanged at `POST /api/workers/enroll` for a credential;
 * - `bbw_`: a worker credential, bound to one worker id and one pool (docs/protocol.md, section 3);
 * - `bbs_`: a console session, the value of the console's cookie (docs/console.md).
 */
export const TOKEN_ROLES = ['worker', 'admin'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

export const SECRET_PREFIXES = { token: 'bbt', enrollment: 'bbe', credential: 'bbw', session: 'bbs' } as const;
export type SecretKind = keyof typeof SECRET_PREFIXES;

const SECRET_PATTERN = /^(bbt|bbe|bbw|bbs)_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
export const TOKEN_ID_PATTERN = /^[0-9a-f]{16}$/;

export interface NewToken {
  id: string;
  token: string;
  secretSha256: Buffer;
}

/** A new secret of `kind` (a bearer token unless told); with `id`, a new secret for that existing id (a repeated claim). */
export function generateToken(kind: SecretKind = 'token', id: string = randomBytes(8).toString('hex')): NewToken {
  const token = `${SECRET_PREFIXES[kind]}_${id}_${randomBytes(32).toString('base64url')}`;
  return { id, token, secretSha256: hashToken(token) };
}

export function hashToken(token: string): Buffer {
  // One-shot hashing: this runs on every authenticated request, and a Hash object per call
  // costs several times more than the digest itself.
  return hash('sha256', token, 'buffer');
}

/** The id part of a well-formed secret of that kind, or null: a malformed one is never looked up. */
export function tokenIdOf(token: string, kind: SecretKind = 'token'): string | null {
  const match = SECRET_PATTERN.exec(token);
  return match && match[1] === SECRET_PREFIXES[kind] ? match[2]! : null;
}

/** Which kind of secret a well-formed string is, or null. */
export function secretKindOf(token: string): SecretKind | null {
  const prefix = SECRET_PATTERN.exec(token)?.[1];
  if (prefix === undefined) return null;
  return (Object.keys(SECRET_PREFIXES) as SecretKind[]).find((kind) => SECRET_PREFIXES[kind] === prefix) ?? null;
}

/** Constant-time comparison of a presented token with the stored hash. */
export function tokenMatches(token: string, storedSha256: Uint8Array): boolean {
  const presented = hashToken(token);
  return presented.length === storedSha256.length && timingSafeEqual(presented, storedSha256);
}

/** The token from an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : null;
}
