import { parseDurationMs } from '../../shared/duration.js';
import { UsageError } from '../../shared/errors.js';
import { enrollmentTokenView, type FleetStore } from '../fleet/fleet-store.js';
import { openFleetStore } from '../fleet/open-fleet-store.js';
import { generateToken, secretKindOf, TOKEN_ID_PATTERN, TOKEN_ROLES, tokenIdOf } from '../tokens.js';

/** What `token create --role` takes: the bearer roles, and `enroll` for an enrollment token. */
const CREATE_ROLES = [...TOKEN_ROLES, 'enroll'] as const;
const MAX_USES_PATTERN = /^[1-9][0-9]{0,6}$/;

const POOL_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

function dbLocation(db: string | undefined, env: Record<string, string | undefined>): string {
  const location = db ?? env['BYTEBIOTA_DB'];
  if (!location) throw new UsageError('--db is required (or BYTEBIOTA_DB)');
  return location;
}

async function withFleet<T>(location: string, work: (fleet: FleetStore) => Promise<T>): Promise<T> {
  const fleet = await openFleetStore(location);
  try {
    return await work(fleet);
  } finally {
    await fleet.close();
  }
}

/** `token create`: prints a summary, then the token itself alone on the last line (shown once). */
export async function createTokenCommand(
  options: { db?: string; role?: string; pool?: string; label?: string; expiresIn?: string; maxUses?: string },
  env: Record<string, string | undefined>,
  print: (line: string) => void,
): Promise<void> {
  const role = options.role as (typeof CREATE_ROLES)[number] | undefined;
  if (!role || !CREATE_ROLES.includes(role)) throw new UsageError(`--role must be one of ${CREATE_ROLES.join(', ')}`);
  if (role !== 'admin' && (!options.pool || !POOL_PATTERN.test(options.pool))) {
    throw new UsageError(`a ${role} token needs --pool NAME (lowercase letters, digits, - and _, up to 64)`);
  }
  if (role === 'admin' && options.pool !== undefined) throw new UsageError('admin tokens belong to no pool; drop --pool');
  if (role !== 'enroll' && (options.expiresIn !== undefined || options.maxUses !== undefined)) {
    throw new UsageError('--expires-in and --max-uses are for enrollment tokens (--role enroll)');
  }
  if (options.label !== undefined && options.label.length > 200) throw new UsageError('--label is at most 200 characters');
  if (role === 'enroll') {
    await createEnrollmentToken({ ...options, pool: options.pool! }, env, print);
    return;
  }
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

/** `token create --role enroll`: a worker spends it at POST /api/workers/enroll for its own credential. */
async function createEnrollmentToken(
  options: { db?: string; pool: string; label?: string; expiresIn?: string; maxUses?: string },
  env: Record<string, string | undefined>,
  print: (line: string) => void,
): Promise<void> {
  if (options.maxUses !== undefined && !MAX_USES_PATTERN.test(options.maxUses)) {
    throw new UsageError(`--max-uses must be a whole number from 1 to 9999999, got ${JSON.stringify(options.maxUses)}`);
  }
  const now = new Date();
  const expiresAt = options.expiresIn === undefined ? null : new Date(now.getTime() + parseDurationMs(options.expiresIn));
  const created = generateToken('enrollment');
  await withFleet(dbLocation(options.db, env), (fleet) =>
    fleet.createEnrollmentToken({
      id: created.id,
      pool: options.pool,
      secretSha256: created.secretSha256,
      label: options.label ?? null,
      maxUses: options.maxUses === undefined ? null : Number(options.maxUses),
      uses: 0,
      expiresAt,
      createdAt: now,
      createdBy: null,
      revokedAt: null,
    }),
  );
  const limits = [
    options.maxUses === undefined ? 'any number of uses' : `${options.maxUses} use${options.maxUses === '1' ? '' : 's'}`,
    expiresAt === null ? 'no expiry' : `expires ${expiresAt.toISOString()}`,
  ].join(', ');
  print(`created enrollment token ${created.id} for pool ${options.pool} (${limits}); it is shown only once:`);
  print(created.token);
}

/** `token revoke TOKEN_ID` (the id, or the whole token). Exit 2 when there is no such live token. */
export async function revokeTokenCommand(
  idOrToken: string,
  options: { db?: string },
  env: Record<string, string | undefined>,
  print: (line: string) => void,
): Promise<void> {
  const kind = secretKindOf(idOrToken);
  const id = TOKEN_ID_PATTERN.test(idOrToken) ? idOrToken : kind === 'token' || kind === 'enrollment' ? tokenIdOf(idOrToken, kind) : null;
  if (id === null) throw new UsageError('TOKEN_ID must be the 16-hex-digit id of a token or enrollment token (or the token itself)');
  // Ids are random across both tables: the one that has it is the one meant.
  const revoked = await withFleet(dbLocation(options.db, env), async (fleet) => {
    const at = new Date();
    if (kind !== 'enrollment' && (await fleet.revokeToken(id, at))) return 'token';
    if (kind !== 'token' && (await fleet.revokeEnrollmentToken(id, at))) return 'enrollment token';
    return null;
  });
  if (revoked === null) throw new UsageError(`no live token with id ${id}`);
  print(`revoked ${revoked} ${id}`);
}

/** `token list`: one line per token (never the secret, which is not stored). */
export async function listTokensCommand(
  options: { db?: string; json?: boolean },
  env: Record<string, string | undefined>,
  print: (line: string) => void,
): Promise<void> {
  const { tokens, enrollmentTokens } = await withFleet(dbLocation(options.db, env), async (fleet) => ({
    tokens: await fleet.listTokens(),
    enrollmentTokens: await fleet.listEnrollmentTokens(),
  }));
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
  for (const token of enrollmentTokens) {
    const view = enrollmentTokenView(token);
    const row = { ...view, role: 'enroll' };
    if (options.json) print(JSON.stringify(row));
    else {
      const uses = `uses ${view.uses}/${view.max_uses ?? 'unlimited'}`;
      const state = view.revoked_at ? `revoked ${view.revoked_at}` : view.expires_at ? `expires ${view.expires_at}` : 'active';
      print([view.id, 'enroll', view.pool, state, view.created_at, `${uses} ${view.label ?? ''}`.trim()].join('\t'));
    }
  }
}
