import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RolloutPlan, RolloutStatus } from '../../src/protocol/rollouts.js';
import type { WorkerCount } from '../../src/server/fleet/fleet-store.js';
import { SqliteFleetStore } from '../../src/server/fleet/sqlite-fleet-store.js';
import { generateToken, type TokenRole } from '../../src/server/tokens.js';
import { LightFleet, type LightWorker } from './rollout-fleet.js';
import { seededRandom } from './seeded-random.js';
import { publishRelease, releaseFor } from './server-fixtures.js';
import { startServerProcess, type RunningServer } from './server-process.js';
import { makeKey } from './trust-fixtures.js';
import { until } from './wait.js';

/**
 * A real server process with a fleet in the middle of a staged rollout, for the console's tests
 * and its screenshot script. Everything goes through the server's own HTTP API, as workers and
 * operators would: workers register, poll, heartbeat and report with their pool tokens; pools,
 * plan and controls go through the admin API. Only what cannot happen in a minute is written to
 * the database before the server starts: two workers last seen two hours ago (the "unseen"),
 * and past samples of the version chart.
 *
 * Channel `stable`: 1.0.0 (serial 1) everywhere, then 1.1.0 (serial 2) rolling out in three
 * waves (canary 100 %, stable 50 %, stable and edge 100 %). The canary wave is done (four
 * updated, one rolled back, one still downloading) and the stable wave is under way. Channel
 * `beta`: a small pool already on 1.1.0.
 */

export const CONSOLE_CHANNEL = 'stable';
export const BETA_CHANNEL = 'beta';
export const OLD_VERSION = '1.0.0';
export const NEW_VERSION = '1.1.0';
export const ADMIN_LABEL = 'alice';
/** The server's default heartbeat interval: workers stay live (10 intervals) for the whole test. */
const HEARTBEAT_INTERVAL_S = 30;
const SETTLE_TIMEOUT_MS = 30_000;
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;

const PLAN: RolloutPlan = {
  immediate: false,
  waves: [
    // A short soak, not none: a wave none of whose workers has polled yet needs no healthy
    // updates, so with no soak the server could start the next wave before the canaries poll.
    { pools: ['canary'], percent: 100, soak_s: 5, min_healthy: 3 },
    { pools: ['stable'], percent: 50, soak_s: 3600, min_healthy: 5 },
    { pools: ['stable', 'edge'], percent: 100, soak_s: 600, min_healthy: 5 },
  ],
};

/** Worker ids: `<pool>-NN`; `scale` multiplies every pool (the screenshot wants a fuller fleet). */
function layout(scale: number): Array<{ pool: string; channel: string; count: number; version: string }> {
  return [
    { pool: 'canary', channel: CONSOLE_CHANNEL, count: 6 * scale, version: OLD_VERSION },
    { pool: 'stable', channel: CONSOLE_CHANNEL, count: 20 * scale, version: OLD_VERSION },
    { pool: 'edge', channel: CONSOLE_CHANNEL, count: 6 * scale, version: OLD_VERSION },
    { pool: 'lab', channel: BETA_CHANNEL, count: 4 * scale, version: NEW_VERSION },
  ];
}

/** Workers the database says were last seen two hours ago: unseen now, not live. */
export const QUIET_WORKERS = ['stable-q1', 'stable-q2'] as const;

export interface FleetOutcome {
  /** Workers that reported a rollback of 1.1.0 (crashed_on_start). */
  rolledBack: string[];
  /** Workers that reported download_failed (twice each). */
  downloadFailed: string[];
  /** Offered 1.1.0 and updated. */
  updated: string[];
  /** Never offered 1.1.0: their maintenance window is closed (edge). */
  windowClosed: string[];
}

export interface ConsoleFleet {
  url: string;
  server: RunningServer;
  adminToken: string;
  workerTokens: Record<string, string>;
  seed: number;
  outcome: FleetOutcome;
  /** A call to the admin API with the bearer token. */
  admin<T = unknown>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<{ status: number; json: T }>;
  rollout(channel?: string): Promise<RolloutStatus>;
  close(): Promise<void>;
}

/** The day names for a window that opened at 00:00 UTC today and stays open for over 24 h, and one that is closed now and for a day. */
function windowDays(now: Date): { openNow: string; closedNow: string } {
  const day = (offset: number) => WEEKDAYS[(now.getUTCDay() + offset) % 7]!;
  return { openNow: `${day(0)},${day(1)} 00:00-24:00 UTC`, closedNow: `${day(3)} 02:00-03:00 UTC` };
}

/** Samples of the version chart for the last two hours, ending at the counts the fleet has now. */
function pastSamples(now: Date, scale: number): Array<{ slot: Date; counts: WorkerCount[] }> {
  const intervalMs = 300_000;
  const lastSlot = Math.floor(now.getTime() / intervalMs) * intervalMs - intervalMs;
  const total = 32 * scale;
  const samples: Array<{ slot: Date; counts: WorkerCount[] }> = [];
  for (let step = 23; step >= 0; step -= 1) {
    // 1.1.0 appears 50 minutes ago and climbs to what the two waves below update: the canaries
    // less two, half the stable pool less two.
    const minutesAgo = step * 5 + 5;
    const onNew = minutesAgo >= 50 ? 0 : Math.round(((50 - minutesAgo) / 45) * (16 * scale - 4));
    samples.push({
      slot: new Date(lastSlot - step * intervalMs),
      counts: [
        { channel: CONSOLE_CHANNEL, pool: 'all', version: OLD_VERSION, count: total - onNew },
        ...(onNew > 0 ? [{ channel: CONSOLE_CHANNEL, pool: 'all', version: NEW_VERSION, count: onNew }] : []),
        { channel: BETA_CHANNEL, pool: 'lab', version: NEW_VERSION, count: 4 * scale },
      ],
    });
  }
  return samples;
}

/** The database before the server starts: tokens, the two quiet workers, the chart's past. */
async function prepareDatabase(dbPath: string, now: Date, scale: number, withHistory: boolean): Promise<{ adminToken: string; workerTokens: Record<string, string> }> {
  const fleet = new SqliteFleetStore(dbPath);
  try {
    const token = async (role: TokenRole, pool: string | null, label: string | null) => {
      const made = generateToken();
      await fleet.createToken({ id: made.id, role, pool, secretSha256: made.secretSha256, label, createdAt: now, revokedAt: null });
      return made.token;
    };
    const adminToken = await token('admin', null, ADMIN_LABEL);
    const workerTokens: Record<string, string> = {};
    for (const { pool } of layout(1)) workerTokens[pool] = await token('worker', pool, null);
    const twoHoursAgo = new Date(now.getTime() - 2 * 3600_000);
    for (const workerId of QUIET_WORKERS) {
      await fleet.registerWorker({ workerId, pool: 'stable', channel: CONSOLE_CHANNEL, platform: 'linux-x64', version: OLD_VERSION, at: twoHoursAgo });
    }
    if (withHistory) {
      for (const { slot, counts } of pastSamples(now, scale)) await fleet.recordVersionSample(slot, counts, new Date(now.getTime() - 30 * 86_400_000));
    }
    return { adminToken, workerTokens };
  } finally {
    await fleet.close();
  }
}

/** Seeded picks: the same seed gives the same fleet. */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function workerState(random: () => number): 'working' | 'idle' | 'draining' {
  const roll = random();
  return roll < 0.8 ? 'working' : roll < 0.95 ? 'idle' : 'draining';
}

export interface ConsoleFleetOptions {
  seed: number;
  /** Pool sizes are multiplied by this (default 1: 36 workers). */
  scale?: number;
  /** Write two hours of past chart samples for `stable` (default true). */
  history?: boolean;
}

/**
 * Start the server and bring the fleet to the middle of the rollout. The console must have been
 * built (npm run build:console): the server reads dist/console/ once, at start.
 */
export async function startConsoleFleet(options: ConsoleFleetOptions): Promise<ConsoleFleet> {
  assert.ok(existsSync(join('dist', 'console', 'index.html')), 'the console is not built: run npm run build:console first');
  const scale = options.scale ?? 1;
  const random = seededRandom(options.seed);
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-console-'));
  const storeDir = join(dir, 'store');
  await mkdir(storeDir);
  const dbPath = join(dir, 'fleet.sqlite');
  const key = makeKey();
  const now = new Date();
  const { adminToken, workerTokens } = await prepareDatabase(dbPath, now, scale, options.history ?? true);

  const release = (channel: string, serial: number, version: string) =>
    releaseFor({
      channel,
      serial,
      version,
      minimum_version: OLD_VERSION,
      released_at: new Date(now.getTime() - 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      expires: new Date(now.getTime() + 30 * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    });
  await publishRelease(storeDir, release(CONSOLE_CHANNEL, 1, OLD_VERSION), [key]);
  await publishRelease(storeDir, release(BETA_CHANNEL, 1, NEW_VERSION), [key]);

  const server = await startServerProcess([
    '--store', storeDir,
    '--db', dbPath,
    '--release-key', key.publicKeyBase64,
    '--heartbeat-interval', String(HEARTBEAT_INTERVAL_S),
    // The server notices a new release and moves waves within a second or two.
    '--cache-ttl', '1',
    '--rollout-eval-interval', '1',
    // The one rollback among the canaries is shown against the threshold, not halted on.
    '--rollout-halt-percent', '50',
  ]);
  const url = server.url;
  const admin = async <T>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown) => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, json: (await response.json()) as T };
  };
  const rollout = async (channel = CONSOLE_CHANNEL) => {
    const { status, json } = await admin<{ rollouts: RolloutStatus[] }>('GET', `/api/admin/rollouts?channel=${channel}`);
    assert.equal(status, 200);
    return json.rollouts[0]!;
  };
  const fleets: LightFleet[] = [];
  const close = async () => {
    await Promise.allSettled(fleets.map((fleet) => fleet.close()));
    if (server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const windows = windowDays(now);
    const policies: Array<[string, string[]]> = [
      ['canary', [windows.openNow]],
      ['stable', []],
      ['edge', [windows.closedNow]],
      ['lab', []],
    ];
    for (const [pool, maintenance_windows] of policies) {
      const set = await admin('PUT', `/api/admin/pools/${pool}/policy`, { auto_update: true, maintenance_windows });
      assert.equal(set.status, 200, JSON.stringify(set.json));
    }
    const plan = await admin('PUT', `/api/admin/channels/${CONSOLE_CHANNEL}/plan`, PLAN);
    assert.equal(plan.status, 200, JSON.stringify(plan.json));

    const trusted = [key.public];
    const stable = new LightFleet(url, CONSOLE_CHANNEL, trusted, () => new Date());
    const beta = new LightFleet(url, BETA_CHANNEL, trusted, () => new Date());
    fleets.push(stable, beta);
    for (const group of layout(scale)) {
      const fleet = group.channel === CONSOLE_CHANNEL ? stable : beta;
      for (let n = 1; n <= group.count; n += 1) fleet.add(`${group.pool}-${String(n).padStart(2, '0')}`, group.pool, workerTokens[group.pool]!, group.version);
    }
    const states = new Map<string, 'working' | 'idle' | 'draining'>();
    for (const fleet of fleets) {
      await fleet.each(fleet.workers, (worker) => fleet.register(worker));
      await fleet.each(fleet.workers, (worker) => {
        states.set(worker.id, workerState(random));
        return fleet.heartbeat(worker, { state: states.get(worker.id)! });
      });
    }

    // 1.1.0 becomes serial 2: the server starts the staged rollout with the channel's plan.
    await publishRelease(storeDir, release(CONSOLE_CHANNEL, 2, NEW_VERSION), [key]);
    await until('the rollout of serial 2', async () => (await rollout()).serial === 2, SETTLE_TIMEOUT_MS, 200);

    const outcome: FleetOutcome = { rolledBack: [], downloadFailed: [], updated: [], windowClosed: stable.inPool('edge').map((w) => w.id) };
    const attempt = (worker: LightWorker) => stable.report(worker, { event: 'attempt', from_version: OLD_VERSION, to_version: NEW_VERSION, serial: 2 });
    const succeed = async (worker: LightWorker, index: number) => {
      await attempt(worker);
      await stable.report(worker, { event: 'success', from_version: OLD_VERSION, to_version: NEW_VERSION, serial: 2 });
      worker.version = NEW_VERSION;
      await stable.heartbeat(worker, { state: states.get(worker.id)!, ...(index % 3 === 0 ? { update: { to_version: NEW_VERSION, state: 'completed' } } : {}) });
      outcome.updated.push(worker.id);
    };
    const offered = async (pool: string) => {
      const polls = await stable.each(stable.inPool(pool), async (worker) => ({ worker, result: await stable.poll(worker) }));
      return polls.filter(({ result }) => result.serial === 2).map(({ worker }) => worker);
    };

    // Wave 1, every canary: four update, one rolls back, one is still downloading.
    const canaries = shuffled(await offered('canary'), random);
    assert.equal(canaries.length, 6 * scale, 'the canary wave offers 1.1.0 to every canary');
    assert.equal((await rollout()).waves[0]!.admitted, canaries.length, 'the canaries were admitted by the canary wave, before its soak ended');
    const [rolledBack, downloading, ...good] = canaries;
    await attempt(rolledBack!);
    await stable.report(rolledBack!, { event: 'rollback', from_version: OLD_VERSION, to_version: NEW_VERSION, serial: 2, reason: 'crashed_on_start' });
    await stable.heartbeat(rolledBack!, { state: 'working', update: { to_version: NEW_VERSION, state: 'rolled_back', reason: 'crashed_on_start' } });
    outcome.rolledBack.push(rolledBack!.id);
    await attempt(downloading!);
    await stable.heartbeat(downloading!, { state: 'working', update: { to_version: NEW_VERSION, state: 'downloading', download_percent: 42 } });
    for (const [index, worker] of good.entries()) await succeed(worker, index);

    // The canary wave has its healthy updates: after its soak the server starts the stable wave.
    await until('the stable wave', async () => (await rollout()).current_wave >= 2, SETTLE_TIMEOUT_MS, 200);
    const admitted = shuffled(await offered('stable'), random);
    assert.ok(admitted.length >= 4, `the stable wave admits half the stable pool, got ${admitted.length}`);
    const [failing, verifying, ...rest] = admitted;
    await attempt(failing!);
    for (let i = 0; i < 2; i += 1) await stable.report(failing!, { event: 'failure', from_version: OLD_VERSION, to_version: NEW_VERSION, serial: 2, reason: 'download_failed' });
    await stable.heartbeat(failing!, { state: 'working', update: { to_version: NEW_VERSION, state: 'failed', reason: 'download_failed' } });
    outcome.downloadFailed.push(failing!.id);
    await attempt(verifying!);
    await stable.heartbeat(verifying!, { state: 'working', update: { to_version: NEW_VERSION, state: 'verifying' } });
    for (const [index, worker] of rest.entries()) await succeed(worker, index);
    // The edge waits for wave 3 and its window; beta runs 1.1.0 already: both poll and get nothing.
    await offered('edge');
    await beta.each(beta.workers, (worker) => beta.poll(worker));

    return { url, server, adminToken, workerTokens, seed: options.seed, outcome, admin, rollout, close };
  } catch (err) {
    await close();
    throw err;
  }
}
