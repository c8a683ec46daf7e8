import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApp, type AppDeps } from '../../src/server/app.js';
import { SqliteFleetStore, type SqliteFleetStoreOptions } from '../../src/server/fleet/sqlite-fleet-store.js';
import { generateToken, type TokenRole } from '../../src/server/tokens.js';
import { fixedClock } from '../../src/shared/clock.js';
import { createLogger } from '../../src/shared/logger.js';
import { FolderStore } from '../../src/store/folder-store.js';
import { SERVER_FIXTURE_NOW } from './server-fixtures.js';
import { makeKey, type TestKey } from './trust-fixtures.js';

/** A real app (real SQLite, real folder store, real logger) for `app.inject` and listening tests. */
export interface TestServer {
  app: FastifyInstance;
  dir: string;
  storeDir: string;
  dbPath: string;
  fleet: SqliteFleetStore;
  key: TestKey;
  clock: ReturnType<typeof fixedClock>;
  tokens: { canary: string; stable: string; admin: string; canaryId: string };
  /** Every log line written so far, parsed. */
  logs(): Array<Record<string, unknown>>;
  /** Make and store another token. */
  addToken(role: TokenRole, pool: string | null): Promise<{ id: string; token: string }>;
  /** Make and store an enrollment token for `pool` (unlimited and never expiring unless told). */
  addEnrollmentToken(pool: string, limits?: { maxUses?: number; expiresAt?: Date }): Promise<{ id: string; token: string }>;
  close(): Promise<void>;
}

export async function startTestServer(overrides: Partial<AppDeps> = {}, fleetOptions: SqliteFleetStoreOptions = {}): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-server-'));
  const storeDir = join(dir, 'store');
  await mkdir(storeDir);
  const dbPath = join(dir, 'fleet.sqlite');
  const fleet = new SqliteFleetStore(dbPath, fleetOptions);
  const key = makeKey();
  const clock = fixedClock(SERVER_FIXTURE_NOW);
  const lines: string[] = [];
  const logger = createLogger({ name: 'bytebiota-server', level: 'info', destination: { write: (line: string) => lines.push(line) } });

  const addToken = async (role: TokenRole, pool: string | null) => {
    const made = generateToken();
    await fleet.createToken({
      id: made.id,
      role,
      pool,
      secretSha256: made.secretSha256,
      label: null,
      createdAt: SERVER_FIXTURE_NOW,
      revokedAt: null,
    });
    return { id: made.id, token: made.token };
  };
  const addEnrollmentToken = async (pool: string, limits: { maxUses?: number; expiresAt?: Date } = {}) => {
    const made = generateToken('enrollment');
    await fleet.createEnrollmentToken({
      id: made.id,
      pool,
      secretSha256: made.secretSha256,
      label: null,
      maxUses: limits.maxUses ?? null,
      uses: 0,
      expiresAt: limits.expiresAt ?? null,
      createdAt: SERVER_FIXTURE_NOW,
      createdBy: null,
      revokedAt: null,
    });
    return { id: made.id, token: made.token };
  };
  const canary = await addToken('worker', 'canary');
  const stable = await addToken('worker', 'stable');
  const admin = await addToken('admin', null);

  const app = await buildApp({
    store: new FolderStore(storeDir),
    fleet,
    releaseKeys: [key.public],
    releaseKeyThreshold: 1,
    cacheTtlSeconds: 300,
    heartbeatIntervalSeconds: 30,
    clock,
    logger,
    rateLimit: { max: 100_000, windowSeconds: 60 },
    // Tests not about rollouts get each release at once, and evaluate only when they say so.
    rollouts: { defaultPlan: 'immediate', evaluateOnTimer: false },
    ...overrides,
  });
  return {
    app,
    dir,
    storeDir,
    dbPath,
    fleet,
    key,
    clock,
    tokens: { canary: canary.token, stable: stable.token, admin: admin.token, canaryId: canary.id },
    logs: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
    addToken,
    addEnrollmentToken,
    close: async () => {
      await app.close();
      await fleet.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}

/** A worker's register and heartbeat as `auth` (a pool token or a credential), at version 1.3.0 on linux-x64. */
export function registerAs(workerId: string, auth: string): InjectOptions {
  return {
    method: 'POST',
    url: '/api/workers/register',
    headers: bearer(auth),
    payload: { worker_id: workerId, current_version: '1.3.0', platform: 'linux-x64', channel: 'stable' },
  };
}

export function heartbeatAs(workerId: string, auth: string): InjectOptions {
  return { method: 'POST', url: '/api/workers/heartbeat', headers: bearer(auth), payload: { worker_id: workerId, current_version: '1.3.0', state: 'working' } };
}
