import { UsageError } from '../../shared/errors.js';
import type { FleetStore } from '../fleet/fleet-store.js';
import { openFleetStore } from '../fleet/open-fleet-store.js';
import { generateToken, TOKEN_ID_PATTERN, TOKEN_ROLES, tokenIdOf, type TokenRole } from '../tokens.js';

const POOL_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

function dbLocation(db: string | undefined, env: Record<string, string | undefined>): string {
  const location = db ?? env['BYTEBIOTA_DB'];
  if (!location) throw new UsageError('--db is required (or BYTEBIOTA_DB)');
  return location;
}

async function withFleet<T>(location: string, work: (fleet: FleetStore) => Promise<T>): Promise<T> {
  const fleet = openFleetStore(location);
  try {
    return await work(fleet);
  } finally {
    await fleet.close();
  }
}

/** `token create`: prints a summary, then the token itself alone on the last line (shown once). */
export async function createTokenCommand(
  options: { db?: string; role?: string; pool?: string; label?: string },
  env: Record<string, string | undefined>,
  print: (line: string) => void,
): Promise<void> {
  const role = options.role as TokenRole | undefined;
  if (!role || !TOKEN_ROLES.includes(role)) throw new UsageError(`--role must be one of ${TOKEN_ROLES.join(', ')}`);
  if (role === 'worker' && (!options.pool || !POOL_PATTERN.test(options.pool))) {
    throw new UsageError('a worker token needs --pool NAME (lowercase letters, digits, - and _, up to 64)');
  }
  if (role === 'admin' && options.pool !== undefined) throw new UsageError('admin tokens belong to no pool; drop --pool');
  if (options.label !== undefined && options.label.length > 200) throw new UsageError('--label is at most 200 characters');
  const created = generateToken();
  await withFleet(dbLocation(options.db, env), (fleet) =>
    fleet.createToken({
      id: created.id,
      role,
      pool: role === 'worker' ? options.pool! : null,
      secretSha256: created.secretSha256,
      label: options.label ?? null,
      createdAt: new Date(),
      revokedAt: null,
    }),
  );
  print(`created ${role} token ${created.id}${role === 'worker' ? ` for pool ${options.pool}` : ''}; it is shown only once:`);
  print(created.token);
}

/** `token revoke TOKEN_ID` (the id, or the whole token). Exit 2 when there is no such live token. */
export async function revokeTokenCommand(
  idOrToken: string,
  options: { db?: string },
  env: Record<string, string | undefined>,
  print: (line: string) => void,
): Promise<void> {
  const id = TOKEN_ID_PATTERN.test(idOrToken) ? idOrToken : tokenIdOf(idOrToken);
  if (id === null) throw new UsageError('TOKEN_ID must be the 16-hex-digit id of a token (or the token itself)');
  const revoked = await withFleet(dbLocation(options.db, env), (fleet) => fleet.revokeToken(id, new Date()));
  if (!revoked) throw new UsageError(`no live token with id ${id}`);
  print(`revoked token ${id}`);
}

/** `token list`: one line per token (never the secret, which is not stored). */
export async function listTokensCommand(
  options: { db?: string; json?: boolean },
  env: Record<string, string | undefined>,
  print: (line: string) => void,
): Promise<void> {
  const tokens = await withFleet(dbLocation(options.db, env), (fleet) => fleet.listTokens());
  for (const token of tokens) {
    const row = {
      id: token.id,
      role: token.role,
      pool: token.pool,
      label: token.label,
      created_at: token.createdAt.toISOString(),
      revoked_at: token.revokedAt?.toISOString() ?? null,
    };
    if (options.json) print(JSON.stringify(row));
    else
      print(
        [row.id, row.role, row.pool ?? '-', row.revoked_at ? `revoked ${row.revoked_at}` : 'active', row.created_at, row.label ?? ''].join('\t'),
      );
  }
}
