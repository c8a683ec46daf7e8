import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Bearer tokens: `bbt_<id>_<secret>`. The id (16 hex) is public and names the token in logs,
 * rate limits and `token revoke`; the secret (32 random bytes, base64url) is shown once at
 * creation. Only the SHA-256 of the whole token is stored.
 */
export const TOKEN_ROLES = ['worker', 'admin'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

const TOKEN_PATTERN = /^bbt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
export const TOKEN_ID_PATTERN = /^[0-9a-f]{16}$/;

export interface NewToken {
  id: string;
  token: string;
  secretSha256: Buffer;
}

export function generateToken(): NewToken {
  const id = randomBytes(8).toString('hex');
  const token = `bbt_${id}_${randomBytes(32).toString('base64url')}`;
  return { id, token, secretSha256: hashToken(token) };
}

export function hashToken(token: string): Buffer {
  // One-shot hashing: this runs on every authenticated request, and a Hash object per call
  // costs several times more than the digest itself.
  return hash('sha256', token, 'buffer');
}

/** The id part of a well-formed token, or null: a malformed token is never looked up. */
export function tokenIdOf(token: string): string | null {
  const match = TOKEN_PATTERN.exec(token);
  return match ? match[1]! : null;
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
