/**
 * `npm run bench:console`: what the fleet console (docs/console.md) costs on this machine, on the
 * real server process with the built page (dist/console/, `npm run build:console`) in Chromium.
 *
 * 1. Time to usable, for a fleet store of 10,000 and of 100,000 workers. Each size gets its own
 *    SQLite fleet database, created by SqliteFleetStore (so the migrations run) and then filled
 *    in one transaction: workers over 2 channels, 6 pools and 5 versions, in every state, most
 *    seen recently and some long ago; each channel with a rollout whose waves have admitted,
 *    updated and failed workers (staged plan: stable in its second wave, beta in its first);
 *    the update events those produce plus older failures and rollbacks over the last 24 hours;
 *    30 days of version samples at the default 5-minute resolution; and an admin token. The
 *    real server runs on it (`serve`, the signed manifests of both releases in a folder store).
 *    Each run opens a fresh browser context (a first visit: nothing cached), signs in with the
 *    admin token (POST /console/api/session with this server's Origin, as the form does; the
 *    cookie lands in the context) and times, in this process, from `page.goto` to the moment
 *    the page shows its data (the conditions are described at `overviewUsable` and
 *    `workersUsable`); the same moment in the page's own clock (performance.now(), from its
 *    navigation start) is reported beside it. One untimed run per page comes first.
 *    Then the server-side time of the API calls behind the pages: `duration_ms` of the server's
 *    own access-log line for each call (found by its x-request-id), and the round trip.
 * 2. Server CPU per open page per minute of live updates, on the 100,000-worker database: the
 *    server process's user + system CPU (/proc/<pid>/stat) over a window with no page open,
 *    then over the same window with BENCH_PAGES overview pages open (each polling on its own
 *    every 5 s, each its own browser context and session); (with - without) / pages / minute.
 *    The overview answers are counted as they came to the pages (200 or 304, on the wire) and as
 *    the server logged them. Through both windows a GET /healthz every 250 ms shows how long any
 *    other request (a worker's, say) waits behind the console's work: the fleet store answers
 *    synchronously, so a rebuild of the overview holds the server's event loop while it runs.
 *
 * The fleet holds still while measured: no worker sends heartbeats, so a fleet seeded "now"
 * would drift across the liveness windows (unseen after 90 s, not live after 300 s) during the
 * run and change the overview by itself. The recently seen workers are therefore seen a few
 * minutes ahead of the seeding time, which keeps them live and not unseen for longer than the
 * benchmark lasts; everything else is in the past. What still changes by itself is real: a
 * wave's soak ("8 min of 30 min") moves once a minute, and with it the overview's ETag.
 *
 * BENCH_RUNS: timed runs per page and size (default 5; median and max); BENCH_PAGES: pages open
 * in part 2 (default 10); BENCH_CPU_WINDOW_S: each CPU window in seconds (default 60);
 * BENCH_SIZES: fleet sizes, comma-separated (default 10000,100000; part 2 uses the largest).
 * Chromium is Debian's (/usr/bin/chromium, or BENCH_CHROMIUM); no browser is downloaded. The
 * load average is printed at the start and the end: on a shared machine it explains spread.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { chromium, type APIRequestContext, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { storeKeys, type SignedRelease } from '../src/protocol/manifest.js';
import type { UpdateState, WorkerState } from '../src/protocol/messages.js';
import type { RolloutPlan } from '../src/protocol/rollouts.js';
import { OVERVIEW_MAX_AGE_MS } from '../src/server/console/overview.js';
import { SqliteFleetStore } from '../src/server/fleet/sqlite-fleet-store.js';
import { DEFAULT_STAGED_PLAN } from '../src/server/rollout/plan.js';
import { generateToken } from '../src/server/tokens.js';
import { FolderStore } from '../src/store/folder-store.js';
import { generateSigningKeyPair, parsePrivateKey } from '../src/trust/keys.js';
import { serializeManifest, signManifest } from '../src/trust/sign.js';
import { ManagedProcess, repoRoot, sourceProgram } from '../scripts/lib/processes.js';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../test/helpers/browser.js';
import { processCpuSeconds } from './procs.js';
import { seededRandom } from '../test/helpers/seeded-random.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const PAGES = Number(process.env['BENCH_PAGES'] ?? 10);
const CPU_WINDOW_S = Number(process.env['BENCH_CPU_WINDOW_S'] ?? 60);
const SIZES = (process.env['BENCH_SIZES'] ?? '10000,100000').split(',').map(Number);
const CHROMIUM = process.env['BENCH_CHROMIUM'] ?? CHROMIUM_PATH;
const GOAL_MS = 1000;
const GOAL_SIZE = 100_000;
const API_RUNS = 5;
const LISTEN_TIMEOUT_MS = 120_000;
const PAGE_TIMEOUT_MS = 60_000;
/** Part 2 times a GET /healthz this often in both windows. */
const HEALTH_PROBE_MS = 250;
/** How long after opening its pages part 2 waits before measuring: their charts load, their first polls pass. */
const SETTLE_MS = 6_000;
/** The recently seen workers are seen this far ahead of the seeding (see the header). */
const FLEET_STILL_MS = 20 * 60_000;
const SAMPLE_INTERVAL_S = 300;
const SAMPLE_DAYS = 30;
const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const max = (values: readonly number[]) => Math.max(...values);
const percentile = (values: readonly number[], share: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * share))]!;
const load = () => loadavg().map((value) => value.toFixed(2)).join(' ');
const ms = (value: number) => `${Math.round(value).toLocaleString('en-US')} ms`;
const count = (value: number) => value.toLocaleString('en-US');
const iso = (atMs: number) => new Date(atMs).toISOString();

// ---------------------------------------------------------------------------------------------
// The fleet

/** Pick from `[value, weight]` pairs by a uniform draw in [0, 1). */
function pick<T>(draw: number, choices: ReadonlyArray<readonly [T, number]>): T {
  const total = choices.reduce((sum, [, weight]) => sum + weight, 0);
  let at = draw * total;
  for (const [value, weight] of choices) {
    if (at < weight) return value;
    at -= weight;
  }
  return choices.at(-1)![0];
}

interface ChannelShape {
  channel: string;
  share: number;
  /** The release before the rollout (serial 1, superseded by it) and the one rolling out (serial 2). */
  from: string;
  to: string;
  /** Older versions still running, with their share of the channel. */
  older: ReadonlyArray<readonly [string, number]>;
  /** When each started wave of the rollout started, minutes before the seeding. */
  wavesStartedMinutesAgo: readonly number[];
  /** Days before the seeding each version was released, oldest first, for the version history. */
  releasedDaysAgo: ReadonlyArray<readonly [string, number]>;
}

const CHANNELS: readonly ChannelShape[] = [
  {
    channel: 'stable',
    share: 0.7,
    from: '1.3.0',
    to: '1.4.0',
    older: [
      ['1.2.0', 0.1],
      ['1.1.0', 0.05],
    ],
    // Wave 2 (25 %) started 8 minutes ago: it soaks for 30, so no wave starts during the run. The
    // rollout started 45 minutes ago: its reports stay inside the halt's 1-hour window meanwhile.
    wavesStartedMinutesAgo: [45, 8],
    releasedDaysAgo: [
      ['1.1.0', 60],
      ['1.2.0', 28],
      ['1.3.0', 14],
      ['1.4.0', 45 / 1440],
    ],
  },
  {
    channel: 'beta',
    share: 0.3,
    from: '1.4.0',
    to: '1.5.0',
    older: [['1.3.0', 0.05]],
    wavesStartedMinutesAgo: [6],
    releasedDaysAgo: [
      ['1.3.0', 20],
      ['1.4.0', 9],
      ['1.5.0', 6 / 1440],
    ],
  },
];
const POOLS: ReadonlyArray<readonly [string, number]> = [
  ['eu-west', 0.3],
  ['us-east', 0.2],
  ['eu-central', 0.2],
  ['us-west', 0.15],
  ['ap-south', 0.1],
  ['lab', 0.05],
];
const BUSIEST_POOL = POOLS[0]![0];
const STATES: ReadonlyArray<readonly [WorkerState, number]> = [
  ['working', 0.7],
  ['idle', 0.2],
  ['starting', 0.05],
  ['draining', 0.05],
];

/** What a seeded fleet looks like from the page: what the conditions of "usable" wait for. */
interface SeededFleet {
  size: number;
  dbPath: string;
  storeDir: string;
  releaseKeyBase64: string;
  adminToken: string;
  /** Per channel, the versions its live workers run: the overview lists each. */
  channels: Array<{ channel: string; versions: string[] }>;
  firstWorkerId: string;
  events: number;
  admissions: number;
  samples: number;
}

function workerId(index: number): string {
  return `worker-${String(index).padStart(6, '0')}`;
}

const timestamp = (atMs: number) => iso(atMs).replace(/\.\d+Z$/, 'Z');

/** Both releases of a channel, signed, in the folder store (current manifest and history), and their bytes. */
async function publishReleases(storeDir: string, shape: ChannelShape, privateKeyPem: string, nowMs: number): Promise<Map<number, Buffer>> {
  const store = new FolderStore(storeDir);
  const key = parsePrivateKey(privateKeyPem);
  const bytes = new Map<number, Buffer>();
  for (const [serial, version] of [
    [1, shape.from],
    [2, shape.to],
  ] as const) {
    const signed: SignedRelease = {
      _type: 'worker-release',
      schema_version: 1,
      channel: shape.channel,
      serial,
      version,
      released_at: timestamp(nowMs - (serial === 1 ? 14 * DAY_MS : shape.wavesStartedMinutesAgo[0]! * MINUTE_MS)),
      expires: timestamp(nowMs + 30 * DAY_MS),
      minimum_version: '1.0.0',
      artifacts: Object.fromEntries(
        ['linux-x64', 'linux-arm64'].map((platform) => [
          platform,
          { url: `artifacts/${version}/bytebiota-worker-${version}-${platform}`, sha256: 'a'.repeat(64), size: 48_213_504 },
        ]),
      ),
    };
    const manifest = serializeManifest(signManifest(signed, [key]));
    await store.write(storeKeys.history(shape.channel, serial), manifest);
    await store.write(storeKeys.manifest(shape.channel), manifest);
    bytes.set(serial, manifest);
  }
  return bytes;
}

/** Of the workers a wave admitted, the share that has updated by now (the rest download, fail, or wait). */
const UPDATED_SHARE = 0.72;

/**
 * The share of a channel's live workers on each of its versions or a newer one, today: all of
 * them on the oldest, less the older versions' shares for each later one, and for the release
 * rolling out, the updated share of the waves started so far.
 */
function finalReach(shape: ChannelShape): number[] {
  const shareOf = new Map(shape.older);
  const newest = shape.releasedDaysAgo.length - 1;
  let below = 0;
  return shape.releasedDaysAgo.map(([version], index) => {
    if (index === newest) return (DEFAULT_STAGED_PLAN.waves[shape.wavesStartedMinutesAgo.length - 1]!.percent / 100) * UPDATED_SHARE;
    const reach = 1 - below;
    below += shareOf.get(version) ?? 0;
    return reach;
  });
}

/**
 * The share of a channel's live workers on its `index`th version or newer at `atMs`: each release
 * reaches its share of today over two days after it came out, the one rolling out since its start.
 */
function reachAt(shape: ChannelShape, finals: readonly number[], index: number, atMs: number, nowMs: number): number {
  const [, daysAgo] = shape.releasedDaysAgo[index]!;
  const rampMs = index === shape.releasedDaysAgo.length - 1 ? daysAgo * DAY_MS : 2 * DAY_MS;
  return finals[index]! * Math.min(1, Math.max(0, (atMs - (nowMs - daysAgo * DAY_MS)) / rampMs));
}

/** Seed a fleet database of `size` workers in `dir` (see the header). */
async function seedFleet(dir: string, size: number): Promise<SeededFleet> {
  const nowMs = Date.now();
  // Seeded by the size: every run seeds the same fleet.
  const random = seededRandom(size);
  const storeDir = join(dir, 'store');
  await mkdir(storeDir, { recursive: true });
  const pair = generateSigningKeyPair();
  const manifests = new Map<string, Map<number, Buffer>>();
  for (const shape of CHANNELS) manifests.set(shape.channel, await publishReleases(storeDir, shape, pair.privateKeyPem, nowMs));

  // Through the store: the migrations, the token, the pool policies and the rollouts, as the server writes them.
  const dbPath = join(dir, 'fleet.sqlite');
  const fleet = new SqliteFleetStore(dbPath);
  const admin = generateToken();
  const createdAt = new Date(nowMs - 30 * DAY_MS);
  await fleet.createToken({ id: admin.id, role: 'admin', pool: null, secretSha256: admin.secretSha256, label: 'bench', createdAt, revokedAt: null });
  for (const [pool] of POOLS) await fleet.setPoolPolicy(pool, { auto_update: true }, { at: createdAt, byTokenId: admin.id });
  const plan: RolloutPlan = DEFAULT_STAGED_PLAN;
  for (const shape of CHANNELS) {
    const bytes = manifests.get(shape.channel)!;
    const firstAt = new Date(nowMs - 14 * DAY_MS);
    await fleet.createRollout({
      channel: shape.channel,
      serial: 1,
      version: shape.from,
      manifest: bytes.get(1)!,
      expiresAt: new Date(nowMs + 30 * DAY_MS),
      urgent: false,
      plan,
      state: 'superseded',
      stateReason: `superseded by serial 2 (${shape.to})`,
      stateChangedAt: new Date(nowMs - shape.wavesStartedMinutesAgo[0]! * MINUTE_MS),
      stateChangedBy: 'server',
      failuresCountedFrom: firstAt,
      wavesStarted: plan.waves.map(() => firstAt),
      startedAt: firstAt,
    });
    const startedAt = new Date(nowMs - shape.wavesStartedMinutesAgo[0]! * MINUTE_MS);
    await fleet.createRollout({
      channel: shape.channel,
      serial: 2,
      version: shape.to,
      manifest: bytes.get(2)!,
      expiresAt: new Date(nowMs + 30 * DAY_MS),
      urgent: false,
      plan,
      state: 'active',
      stateReason: null,
      stateChangedAt: startedAt,
      stateChangedBy: 'server',
      failuresCountedFrom: startedAt,
      wavesStarted: shape.wavesStartedMinutesAgo.map((minutes) => new Date(nowMs - minutes * MINUTE_MS)),
      startedAt,
    });
  }
  await fleet.close();

  const db = new Database(dbPath);
  const insertWorker = db.prepare(`
    INSERT INTO workers (id, pool, channel, platform, version, state, update_to_version, update_state, update_download_percent,
      update_reason, update_at, registered_at, last_seen_at)
    VALUES (@id, @pool, @channel, @platform, @version, @state, @to_version, @update_state, @percent, @reason, @update_at, @registered_at, @last_seen_at)`);
  const insertEvent = db.prepare(`
    INSERT INTO update_events (received_at, request_id, worker_id, pool, event, channel, platform, from_version, to_version, reason, duration_ms, serial)
    VALUES (@received_at, @request_id, @worker_id, @pool, @event, @channel, @platform, @from_version, @to_version, @reason, @duration_ms, @serial)`);
  const insertAdmission = db.prepare(
    'INSERT INTO rollout_admissions (channel, serial, worker_id, pool, wave, forced, admitted_at) VALUES (?, ?, ?, ?, ?, 0, ?)',
  );
  const insertSlot = db.prepare('INSERT INTO fleet_sample_slots (sampled_at) VALUES (?)');
  const insertSample = db.prepare('INSERT INTO fleet_version_samples (sampled_at, channel, version, count) VALUES (?, ?, ?, ?)');

  const liveVersions = new Map<string, Set<string>>(CHANNELS.map((shape) => [shape.channel, new Set<string>()]));
  let events = 0;
  let admissions = 0;
  let samples = 0;
  const event = (fields: {
    atMs: number;
    worker: string;
    pool: string;
    event: 'success' | 'failure' | 'rollback';
    channel: string;
    platform: string;
    from: string;
    to: string;
    reason: string | null;
    serial: number;
  }) => {
    events += 1;
    insertEvent.run({
      received_at: iso(fields.atMs),
      request_id: `seed-${events}`,
      worker_id: fields.worker,
      pool: fields.pool,
      event: fields.event,
      channel: fields.channel,
      platform: fields.platform,
      from_version: fields.from,
      to_version: fields.to,
      reason: fields.reason,
      duration_ms: Math.round(20_000 + random() * 100_000),
      serial: fields.serial,
    });
  };

  db.transaction(() => {
    for (let index = 0; index < size; index += 1) {
      const id = workerId(index);
      const shape = random() < CHANNELS[0]!.share ? CHANNELS[0]! : CHANNELS[1]!;
      const pool = pick(random(), POOLS);
      const platform = random() < 0.85 ? 'linux-x64' : 'linux-arm64';
      const state = pick(random(), STATES);
      const seen = random();
      // 88 % recently seen (live), 7 % quiet for hours (unseen), 5 % gone for days.
      const recent = seen < 0.88;
      const lastSeenMs = recent
        ? nowMs + FLEET_STILL_MS - random() * 30_000
        : seen < 0.95
          ? nowMs - (2 + random() * 18) * 3600_000
          : nowMs - (2 + random() * 28) * DAY_MS;
      const baseline = pick(random(), [...shape.older, [shape.from, 1 - shape.older.reduce((sum, [, share]) => sum + share, 0)] as const]);
      const row = {
        id,
        pool,
        channel: shape.channel,
        platform,
        version: baseline,
        state,
        to_version: null as string | null,
        update_state: null as UpdateState | null,
        percent: null as number | null,
        reason: null as string | null,
        update_at: null as string | null,
        registered_at: iso(nowMs - (30 + random() * 300) * DAY_MS),
        last_seen_at: iso(lastSeenMs),
      };
      // Admitted by the rollout's started waves: 5 % of each pool's live workers, then 25 %.
      const bucket = random();
      const wave = DEFAULT_STAGED_PLAN.waves.findIndex((planned, at) => at < shape.wavesStartedMinutesAgo.length && bucket < planned.percent / 100);
      if (recent && wave >= 0) {
        const waveStartMs = nowMs - shape.wavesStartedMinutesAgo[wave]! * MINUTE_MS;
        const admittedMs = waveStartMs + random() * (nowMs - waveStartMs);
        const reportMs = admittedMs + random() * (nowMs - admittedMs);
        insertAdmission.run(shape.channel, 2, id, pool, wave, iso(admittedMs));
        admissions += 1;
        const outcome = random();
        const base = { atMs: reportMs, worker: id, pool, channel: shape.channel, platform, from: baseline, to: shape.to, serial: 2 };
        row.to_version = shape.to;
        row.update_at = iso(reportMs);
        if (outcome < UPDATED_SHARE) {
          row.version = shape.to;
          row.update_state = random() < 0.5 ? 'completed' : null;
          if (row.update_state === null) row.to_version = null;
          event({ ...base, event: 'success', reason: null });
        } else if (outcome < 0.82) {
          row.update_state = 'downloading';
          row.percent = Math.round(random() * 1000) / 10;
        } else if (outcome < 0.88) {
          row.update_state = pick(random(), [
            ['verifying', 1],
            ['staging', 1],
            ['watching', 2],
          ] as const);
        } else if (outcome < 0.93) {
          row.to_version = null;
          row.update_at = null;
        } else if (outcome < 0.95) {
          const reason = random() < 0.6 ? 'crashed_on_start' : 'health_check_failed';
          row.update_state = 'failed';
          row.reason = reason;
          event({ ...base, event: 'failure', reason });
        } else if (outcome < 0.96) {
          row.update_state = 'rolled_back';
          row.reason = 'crash_loop';
          event({ ...base, event: 'rollback', reason: 'crash_loop' });
        } else {
          // The machine's fault, not the release's: no evidence for the automatic halt.
          const reason = random() < 0.7 ? 'download_failed' : 'disk_full';
          row.update_state = 'failed';
          row.reason = reason;
          event({ ...base, event: 'failure', reason });
        }
      }
      if (recent) liveVersions.get(shape.channel)!.add(row.version);
      insertWorker.run(row);
    }
    // Older trouble over the last 24 hours, about earlier releases: what the failures page groups.
    const background = 1000 + Math.round(size * 0.01);
    for (let n = 0; n < background; n += 1) {
      const index = Math.floor(random() * size);
      const shape = random() < CHANNELS[0]!.share ? CHANNELS[0]! : CHANNELS[1]!;
      const kind = pick(random(), [
        ['failure', 6],
        ['rollback', 1],
        ['success', 3],
      ] as const);
      const reason = kind === 'success' ? null : kind === 'rollback' ? 'crash_loop' : pick(random(), [
        ['download_failed', 3],
        ['disk_full', 1],
        ['checksum_mismatch', 1],
        ['crashed_on_start', 2],
      ] as const);
      event({
        atMs: nowMs - 1.5 * 3600_000 - random() * 22 * 3600_000,
        worker: workerId(index),
        pool: pick(random(), POOLS),
        event: kind,
        channel: shape.channel,
        platform: 'linux-x64',
        from: shape.older[0]![0],
        to: shape.from,
        reason,
        serial: 1,
      });
    }
    // The version history: one slot per 5 minutes over 30 days, every slot before the current one
    // (the server's sampler writes that one when it starts), live workers by channel and version.
    const intervalMs = SAMPLE_INTERVAL_S * 1000;
    const currentSlotMs = Math.floor(nowMs / intervalMs) * intervalMs;
    for (let slotMs = currentSlotMs - SAMPLE_DAYS * DAY_MS; slotMs < currentSlotMs; slotMs += intervalMs) {
      const at = iso(slotMs);
      insertSlot.run(at);
      for (const shape of CHANNELS) {
        const finals = finalReach(shape);
        // A daily swing of a few percent in live workers, as machines come and go.
        const live = size * shape.share * 0.88 * (1 + 0.03 * Math.sin((2 * Math.PI * slotMs) / DAY_MS));
        shape.releasedDaysAgo.forEach(([version], index) => {
          const next = index + 1 < shape.releasedDaysAgo.length ? reachAt(shape, finals, index + 1, slotMs, nowMs) : 0;
          const workers = Math.round(live * (reachAt(shape, finals, index, slotMs, nowMs) - next));
          if (workers <= 0) return;
          insertSample.run(at, shape.channel, version, workers);
          samples += 1;
        });
      }
    }
  })();
  db.close();
  return {
    size,
    dbPath,
    storeDir,
    releaseKeyBase64: pair.publicKeyBase64,
    adminToken: admin.token,
    channels: CHANNELS.map((shape) => ({ channel: shape.channel, versions: [...liveVersions.get(shape.channel)!].sort() })),
    firstWorkerId: workerId(0),
    events,
    admissions,
    samples,
  };
}

// ---------------------------------------------------------------------------------------------
// The server

interface Server {
  process: ManagedProcess;
  url: string;
}

/** `bytebiota-server serve` from source on the seeded database, as an operator runs it; its JSON log lines are kept. */
async function startServer(fleet: SeededFleet): Promise<Server> {
  const program = sourceProgram('server');
  const server = new ManagedProcess('bytebiota-server', program.command, [
    ...program.args,
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--db',
    fleet.dbPath,
    '--store',
    fleet.storeDir,
    '--release-key',
    fleet.releaseKeyBase64,
  ]);
  const listening = await server.waitForEvent((line) => line.event === 'server_listening', LISTEN_TIMEOUT_MS);
  return { process: server, url: String(listening['url']) };
}

/** User plus system CPU milliseconds the process has used so far. */
function cpuMs(pid: number): number {
  const seconds = processCpuSeconds(pid);
  if (seconds === null) throw new Error(`cannot read the CPU time of process ${pid} (Linux /proc only)`);
  return seconds * 1000;
}

/** Sign in as the page does (the Origin names this server), through `request`, whose cookie jar keeps the session. */
async function signIn(request: APIRequestContext, url: string, adminToken: string): Promise<void> {
  const response = await request.post(`${url}/console/api/session`, { headers: { origin: url }, data: { token: adminToken } });
  if (response.status() !== 200) throw new Error(`sign-in answered ${response.status()}: ${await response.text()}`);
}

/** The session cookie for this process's own requests. */
async function sessionCookie(url: string, adminToken: string): Promise<string> {
  const response = await fetch(`${url}/console/api/session`, {
    method: 'POST',
    headers: { origin: url, 'content-type': 'application/json' },
    body: JSON.stringify({ token: adminToken }),
  });
  if (response.status !== 200) throw new Error(`sign-in answered ${response.status}: ${await response.text()}`);
  return response.headers.getSetCookie()[0]!.split(';')[0]!;
}

interface ApiTiming {
  serverMs: number;
  roundTripMs: number;
  bytes: number;
  status: number;
}

let requestNumber = 0;

/** One GET, with the server's own duration for it (its access-log line, found by the request id). */
async function timedGet(server: Server, cookie: string, path: string, headers: Record<string, string> = {}): Promise<ApiTiming> {
  requestNumber += 1;
  const id = `bench-console-${requestNumber}`;
  const from = server.process.events.length;
  const started = performance.now();
  const response = await fetch(`${server.url}${path}`, { headers: { cookie, 'x-request-id': id, ...headers } });
  const body = await response.arrayBuffer();
  const roundTripMs = performance.now() - started;
  if (response.status !== 200 && response.status !== 304) throw new Error(`GET ${path} answered ${response.status}`);
  const line = await server.process.waitForEvent((logged) => logged.event === 'http_request' && logged['correlation_id'] === id, 10_000, from);
  return { serverMs: Number(line['duration_ms']), roundTripMs, bytes: body.byteLength, status: response.status };
}

// ---------------------------------------------------------------------------------------------
// The page

/** The little of the DOM the conditions read: the project's type checking has no DOM library. */
interface PageElement {
  textContent: string | null;
  closest(selector: string): PageElement | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement>;
}
interface PageDocument {
  getElementById(id: string): PageElement | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement>;
}

type Channels = SeededFleet['channels'];

/**
 * Runs in the page, on every animation frame until it returns a number: the page's clock
 * (milliseconds since its navigation started) at the first frame where the overview is usable.
 * Usable means the overview's answer is on screen for every channel the fleet has: the fleet
 * summary (`.fleet-live`) is rendered, and each channel's section (`#channel-<name>`) shows its
 * rollout's wave table with rows and, among the row headings of its count tables, every version
 * its live workers run. Only structure and the seeded versions are read, no wording. The version
 * charts come from a separate request per channel and are timed apart (`chartsDrawn`).
 */
function overviewUsable(channels: Channels): number | false {
  const doc = (globalThis as unknown as { document: PageDocument }).document;
  if (doc.querySelector('.fleet-live') === null) return false;
  for (const { channel, versions } of channels) {
    const section = doc.getElementById(`channel-${channel}`)?.closest('section') ?? null;
    if (section === null || section.querySelector('table.waves tbody tr') === null) return false;
    const rows = Array.from(section.querySelectorAll('table.counts tbody th[scope="row"]'), (cell) => cell.textContent?.trim());
    if (!versions.every((version) => rows.includes(version))) return false;
  }
  return performance.now();
}

/** Runs in the page: as `overviewUsable`, once every channel's version chart is drawn (uPlot's canvas). */
function chartsDrawn(channels: Channels): number | false {
  const doc = (globalThis as unknown as { document: PageDocument }).document;
  for (const { channel } of channels) {
    const section = doc.getElementById(`channel-${channel}`)?.closest('section') ?? null;
    if (section === null || section.querySelector('.version-chart canvas') === null) return false;
  }
  return performance.now();
}

/**
 * Runs in the page: the first frame where the worker table is usable, unfiltered: the match count
 * (`p.match-count`) gives the whole fleet's size, and the table (`table.workers`) shows a full
 * first page of rows (50, the default page size), starting with the lowest worker id.
 */
function workersUsable(expected: { total: number; rows: number; firstWorkerId: string }): number | false {
  const doc = (globalThis as unknown as { document: PageDocument }).document;
  const matched = /\d[\d,.\s]*/.exec(doc.querySelector('p.match-count')?.textContent ?? '')?.[0] ?? '';
  if (Number(matched.replace(/\D/g, '')) !== expected.total) return false;
  const rows = doc.querySelectorAll('table.workers tbody tr');
  if (rows.length !== expected.rows) return false;
  if (rows[0]?.querySelector('th a')?.textContent?.trim() !== expected.firstWorkerId) return false;
  return performance.now();
}

/** Runs in the page: when each of its requests of interest ended (resource timing), in the page's clock. */
function requestEnds(names: string[]): Record<string, number | null> {
  const entries = performance.getEntriesByType('resource');
  const ends: Record<string, number | null> = {};
  for (const name of names) {
    const entry = entries.find((candidate) => candidate.name.includes(name));
    ends[name] = entry === undefined ? null : entry.startTime + entry.duration;
  }
  return ends;
}

const OVERVIEW_REQUESTS = ['/console/assets/app.js', '/console/api/session', '/console/api/overview', '/console/api/history'];
const WORKERS_REQUESTS = ['/console/assets/app.js', '/console/api/session', '/console/api/workers?', '/console/api/workers/facets'];

interface PageRun {
  /** From `page.goto` to usable, measured here. */
  benchMs: number;
  /** Navigation start to usable, in the page's clock. */
  pageMs: number;
  /** Overview only: to every chart drawn, measured here and in the page. */
  chartsBenchMs?: number;
  chartsPageMs?: number;
  requestEnds: Record<string, number | null>;
}

/** A fresh context (a first visit), signed in; the caller closes it. */
async function signedInPage(browser: Browser, url: string, adminToken: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  await signIn(context.request, url, adminToken);
  return { context, page: await context.newPage() };
}

async function timeOverview(browser: Browser, url: string, fleet: SeededFleet): Promise<PageRun> {
  const { context, page } = await signedInPage(browser, url, fleet.adminToken);
  try {
    const started = performance.now();
    // `commit`: the condition is watched from the new document's start, not after its load event.
    await page.goto(`${url}/console/#/`, { waitUntil: 'commit' });
    const usable = await page.waitForFunction(overviewUsable, fleet.channels, { polling: 'raf', timeout: PAGE_TIMEOUT_MS });
    const benchMs = performance.now() - started;
    const charts = await page.waitForFunction(chartsDrawn, fleet.channels, { polling: 'raf', timeout: PAGE_TIMEOUT_MS });
    const chartsBenchMs = performance.now() - started;
    return {
      benchMs,
      pageMs: (await usable.jsonValue()) as number,
      chartsBenchMs,
      chartsPageMs: (await charts.jsonValue()) as number,
      requestEnds: await page.evaluate(requestEnds, OVERVIEW_REQUESTS),
    };
  } finally {
    await context.close();
  }
}

async function timeWorkers(browser: Browser, url: string, fleet: SeededFleet): Promise<PageRun> {
  const { context, page } = await signedInPage(browser, url, fleet.adminToken);
  try {
    const started = performance.now();
    await page.goto(`${url}/console/#/workers`, { waitUntil: 'commit' });
    const usable = await page.waitForFunction(
      workersUsable,
      { total: fleet.size, rows: 50, firstWorkerId: fleet.firstWorkerId },
      { polling: 'raf', timeout: PAGE_TIMEOUT_MS },
    );
    const benchMs = performance.now() - started;
    return { benchMs, pageMs: (await usable.jsonValue()) as number, requestEnds: await page.evaluate(requestEnds, WORKERS_REQUESTS) };
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The runs

interface SizeResult {
  size: number;
  seedMs: number;
  /** The first overview load after the server started: no snapshot yet, so it waits for the first build. */
  coldOverview: PageRun;
  overview: PageRun[];
  workers: PageRun[];
  api: Array<{ name: string; timings: ApiTiming[] }>;
}

function pageLine(label: string, runs: readonly PageRun[], benchOf: (run: PageRun) => number | undefined, pageOf: (run: PageRun) => number | undefined): string {
  const bench = runs.map(benchOf).filter((value): value is number => value !== undefined);
  const inPage = runs.map(pageOf).filter((value): value is number => value !== undefined);
  return `  ${label.padEnd(34)} goto->usable median ${ms(median(bench)).padStart(9)}, max ${ms(max(bench)).padStart(9)}   in the page (navigation start->usable) median ${ms(median(inPage)).padStart(9)}, max ${ms(max(inPage)).padStart(9)}`;
}

function requestLine(runs: readonly PageRun[], names: readonly string[]): string {
  const parts = names.map((name) => {
    const ends = runs.map((run) => run.requestEnds[name]).filter((value): value is number => value !== null && value !== undefined);
    return `${name.replace('/console/', '')} ${ends.length > 0 ? ms(median(ends)) : 'n/a'}`;
  });
  return `  ${'requests done (page clock, median)'.padEnd(34)} ${parts.join(', ')}`;
}

/** The API calls behind the two pages, each API_RUNS times: the server's own duration, median. */
async function timeApi(server: Server, fleet: SeededFleet): Promise<SizeResult['api']> {
  const cookie = await sessionCookie(server.url, fleet.adminToken);
  const channel = fleet.channels[0]!.channel;
  const results: SizeResult['api'] = [];
  const measure = async (name: string, run: () => Promise<ApiTiming>, before: () => Promise<unknown> = async () => undefined) => {
    await run(); // untimed: a first call pays for JIT and cold pages
    const timings: ApiTiming[] = [];
    for (let n = 0; n < API_RUNS; n += 1) {
      await before();
      timings.push(await run());
    }
    results.push({ name, timings });
  };
  // The overview is one snapshot per process, rebuilt when older than OVERVIEW_MAX_AGE_MS; until
  // OVERVIEW_STALE_MS the old one is answered at once while the next is built behind it. After
  // waiting past the age, a call times that stale answer (and starts a rebuild); right after a
  // call, the next one times the shared snapshot. The build itself is what `rollouts` and the
  // cold page load show.
  // The ETag of the latest answer, as a page holds it (a wave's soak moves it once a minute).
  let etag = '';
  const fresh = async () => {
    const response = await fetch(`${server.url}/console/api/overview`, { headers: { cookie } });
    await response.arrayBuffer();
    etag = response.headers.get('etag') ?? '';
  };
  const stale = () => sleep(OVERVIEW_MAX_AGE_MS + 200);
  const overview = () => timedGet(server, cookie, '/console/api/overview');
  const revalidated = () => timedGet(server, cookie, '/console/api/overview', { 'if-none-match': etag });
  await measure('overview, past its age: last one, rebuilt behind', overview, stale);
  await measure('overview, snapshot fresh: shared', overview, fresh);
  await measure('overview If-None-Match, fresh: 304', revalidated, fresh);
  await measure('overview If-None-Match, past its age', revalidated, () => fresh().then(stale));
  await measure('history 7 days (the page asks)', () => timedGet(server, cookie, `/console/api/history?channel=${channel}&days=7`));
  await measure('history 30 days', () => timedGet(server, cookie, `/console/api/history?channel=${channel}&days=30`));
  await measure('session', () => timedGet(server, cookie, '/console/api/session'));
  await measure('workers?limit=50', () => timedGet(server, cookie, '/console/api/workers?limit=50'));
  await measure(`workers?pool=${BUSIEST_POOL}&limit=50`, () => timedGet(server, cookie, `/console/api/workers?pool=${BUSIEST_POOL}&limit=50`));
  await measure('workers?update_state=failed&limit=50', () => timedGet(server, cookie, '/console/api/workers?update_state=failed&limit=50'));
  await measure('workers?seen=unseen&limit=50', () => timedGet(server, cookie, '/console/api/workers?seen=unseen&limit=50'));
  await measure('workers/facets', () => timedGet(server, cookie, '/console/api/workers/facets'));
  await measure('failures (24 h)', () => timedGet(server, cookie, '/console/api/failures'));
  await measure('rollouts', () => timedGet(server, cookie, '/console/api/rollouts'));
  return results;
}

/** Each channel's rollout as the overview shows it: what the page's waves and banner were drawn from. */
async function rolloutSummary(server: Server, fleet: SeededFleet): Promise<string> {
  const cookie = await sessionCookie(server.url, fleet.adminToken);
  const overview = (await (await fetch(`${server.url}/console/api/overview`, { headers: { cookie } })).json()) as {
    channels: Array<{ channel: string; workers: { live: number }; rollout: { version: string; state: string; current_wave: number; waves: unknown[]; failure: { rate: number } } | null }>;
  };
  return overview.channels
    .map(({ channel, workers, rollout }) =>
      rollout === null
        ? `${channel}: no rollout`
        : `${channel} ${count(workers.live)} live, ${rollout.version} ${rollout.state} in wave ${rollout.current_wave} of ${rollout.waves.length}, failure rate ${(rollout.failure.rate * 100).toFixed(1)} %`,
    )
    .join('; ');
}

/** Latencies of GET /healthz, one every HEALTH_PROBE_MS while `running`: how long any request waits behind the console's work. */
async function probeLatency(url: string, running: () => boolean): Promise<number[]> {
  const latencies: number[] = [];
  while (running()) {
    const started = performance.now();
    await (await fetch(`${url}/healthz`)).arrayBuffer();
    latencies.push(performance.now() - started);
    await sleep(HEALTH_PROBE_MS);
  }
  return latencies;
}

interface CpuResult {
  size: number;
  windowS: number;
  baselineMs: number;
  withPagesMs: number;
  perPagePerMinuteMs: number;
  /** Overview answers in the window by status, as they came to the pages, and as the server logged them. */
  pageSide: Map<number, number>;
  serverSide: Map<number, number>;
  historyRequests: number;
  /** Server time of the overview polls in the window (from its access log). */
  overviewPollMs: number[];
  /** GET /healthz round trips during each window. */
  healthMs: { baseline: number[]; withPages: number[] };
}

/**
 * The status of each answer a page got while `counting`, as it came off the wire. Playwright's
 * `response` event cannot tell a 304: a revalidated answer reaches it, as it reaches the page's
 * fetch, as the 200 the browser makes of its cached copy. The DevTools protocol's
 * responseReceivedExtraInfo carries the status the server sent.
 */
async function watchWireStatuses(context: BrowserContext, page: Page, counting: () => boolean): Promise<(path: string) => number[]> {
  const session = await context.newCDPSession(page);
  await session.send('Network.enable');
  const urls = new Map<string, string>();
  const statuses = new Map<string, number>();
  session.on('Network.requestWillBeSent', (event) => {
    if (counting()) urls.set(event.requestId, event.request.url);
  });
  session.on('Network.responseReceivedExtraInfo', (event) => statuses.set(event.requestId, event.statusCode));
  return (path) => [...urls].filter(([, url]) => url.includes(path)).map(([id]) => statuses.get(id) ?? 0);
}

/** Part 2: the server's CPU over a window without pages, then with PAGES overview pages open. */
async function measureCpu(browser: Browser, server: Server, fleet: SeededFleet): Promise<CpuResult> {
  const pid = server.process.child.pid!;
  await sleep(3000);
  // The same light probe runs through both windows: its own cost cancels out of the difference.
  let probing = true;
  const baselineProbe = probeLatency(server.url, () => probing);
  const baselineStart = cpuMs(pid);
  await sleep(CPU_WINDOW_S * 1000);
  const baselineMs = cpuMs(pid) - baselineStart;
  probing = false;
  const baselineHealth = await baselineProbe;

  const contexts: BrowserContext[] = [];
  const answered: Array<(path: string) => number[]> = [];
  let counting = false;
  try {
    for (let n = 0; n < PAGES; n += 1) {
      const { context, page } = await signedInPage(browser, server.url, fleet.adminToken);
      contexts.push(context);
      answered.push(await watchWireStatuses(context, page, () => counting));
      await page.goto(`${server.url}/console/#/`, { waitUntil: 'commit' });
      await page.waitForFunction(chartsDrawn, fleet.channels, { polling: 'raf', timeout: PAGE_TIMEOUT_MS });
    }
    await sleep(SETTLE_MS);
    const from = server.process.events.length;
    counting = true;
    probing = true;
    const pagesProbe = probeLatency(server.url, () => probing);
    const start = cpuMs(pid);
    await sleep(CPU_WINDOW_S * 1000);
    const withPagesMs = cpuMs(pid) - start;
    counting = false;
    probing = false;
    const pagesHealth = await pagesProbe;
    const overviewPolls = server.process.events.slice(from).filter((line) => line.event === 'http_request' && line['route'] === '/console/api/overview');
    const tally = (statuses: readonly number[]) => {
      const counts = new Map<number, number>();
      for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1);
      return counts;
    };
    const serverSide = tally(overviewPolls.map((line) => Number(line['status'])));
    return {
      size: fleet.size,
      windowS: CPU_WINDOW_S,
      baselineMs,
      withPagesMs,
      perPagePerMinuteMs: (withPagesMs - baselineMs) / PAGES / (CPU_WINDOW_S / 60),
      pageSide: tally(answered.flatMap((statuses) => statuses('/console/api/overview'))),
      serverSide,
      historyRequests: answered.reduce((sum, statuses) => sum + statuses('/console/api/history').length, 0),
      overviewPollMs: overviewPolls.map((line) => Number(line['duration_ms'])),
      healthMs: { baseline: baselineHealth, withPages: pagesHealth },
    };
  } finally {
    for (const context of contexts) await context.close();
  }
}

const statusText = (counts: Map<number, number>) =>
  [...counts].sort(([a], [b]) => b - a).map(([status, n]) => `${n} x ${status}`).join(', ') || 'none';

/** Everything still running or on disk, undone in reverse order, on success, failure or Ctrl-C. */
const cleanups: Array<() => Promise<unknown>> = [];

async function cleanUp(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (err) {
      console.error(`cleanup: ${String(err)}`);
    }
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void cleanUp().finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  const consoleIndex = join(repoRoot, 'dist', 'console', 'index.html');
  if (!existsSync(consoleIndex)) throw new Error('the console is not built: run `npm run build:console` first');
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (BENCH_CHROMIUM names another)`);
  const startLoad = load();
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-bench-console-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  cleanups.push(() => browser.close());
  console.log(
    `bytebiota fleet console benchmark: Node ${process.version}, Chromium ${browser.version()}, ${RUNS} timed runs per page and size (fresh context each), load average ${startLoad}`,
  );

  const results: SizeResult[] = [];
  let cpu: CpuResult | null = null;
  const largest = Math.max(...SIZES);
  for (const size of SIZES) {
    const seedStarted = performance.now();
    const sizeDir = join(dir, String(size));
    const fleet = await seedFleet(sizeDir, size);
    const seedMs = performance.now() - seedStarted;
    console.log(
      `\n${count(size)} workers: seeded in ${ms(seedMs)} (${count(fleet.admissions)} rollout admissions, ${count(fleet.events)} update events, ${count(fleet.samples)} version samples); live versions ${fleet.channels.map((c) => `${c.channel} ${c.versions.join(' ')}`).join('; ')}`,
    );
    const server = await startServer(fleet);
    const stopServer = () => server.process.stop();
    cleanups.push(stopServer);

    // The first load after the start is cold: the server has no overview snapshot yet and the
    // page waits for its build (what a page opened after a minute nobody looked at pays too).
    const coldOverview = await timeOverview(browser, server.url, fleet);
    await timeWorkers(browser, server.url, fleet);
    const overview: PageRun[] = [];
    const workers: PageRun[] = [];
    // Alternate the two pages, so that load from elsewhere on the machine hits both alike.
    for (let run = 0; run < RUNS; run += 1) {
      overview.push(await timeOverview(browser, server.url, fleet));
      workers.push(await timeWorkers(browser, server.url, fleet));
    }
    console.log(pageLine('overview (#/), cold: first after start', [coldOverview], (run) => run.benchMs, (run) => run.pageMs));
    console.log(pageLine('overview (#/)', overview, (run) => run.benchMs, (run) => run.pageMs));
    console.log(requestLine(overview, OVERVIEW_REQUESTS));
    console.log(pageLine('overview with every chart drawn', overview, (run) => run.chartsBenchMs, (run) => run.chartsPageMs));
    console.log(pageLine('workers (#/workers)', workers, (run) => run.benchMs, (run) => run.pageMs));
    console.log(requestLine(workers, WORKERS_REQUESTS));

    const api = await timeApi(server, fleet);
    console.log(`  API calls, ${API_RUNS} each after one untimed: server time (its access log's duration_ms) median / max, round trip median, body`);
    for (const { name, timings } of api) {
      const serverMs = timings.map((timing) => timing.serverMs);
      console.log(
        `    ${name.padEnd(38)} ${ms(median(serverMs)).padStart(9)} / ${ms(max(serverMs)).padStart(9)}   round trip ${ms(median(timings.map((t) => t.roundTripMs))).padStart(9)}   ${count(timings[0]!.bytes).padStart(9)} bytes (${timings[0]!.status})`,
      );
    }
    console.log(`  rollouts at the end of these runs: ${await rolloutSummary(server, fleet)}`);
    results.push({ size, seedMs, coldOverview, overview, workers, api });

    if (size === largest) {
      console.log(`  server CPU: ${CPU_WINDOW_S} s with no page open, then ${CPU_WINDOW_S} s with ${PAGES} overview pages open (${SETTLE_MS / 1000} s after they loaded)...`);
      cpu = await measureCpu(browser, server, fleet);
    }
    await stopServer();
    cleanups.splice(cleanups.indexOf(stopServer), 1);
  }

  // -------------------------------------------------------------------------------------------
  console.log('\nSummary (goto->usable measured by the benchmark, fresh browser context each run)');
  console.log(`  ${'workers'.padEnd(9)} ${'page'.padEnd(32)} ${'median'.padStart(9)} ${'max'.padStart(9)}   ${'in page median'.padStart(14)}`);
  for (const result of results) {
    const rows: Array<[string, number[], number[]]> = [
      ['overview usable, cold (1 run)', [result.coldOverview.benchMs], [result.coldOverview.pageMs]],
      ['overview usable', result.overview.map((r) => r.benchMs), result.overview.map((r) => r.pageMs)],
      ['overview with charts', result.overview.map((r) => r.chartsBenchMs!), result.overview.map((r) => r.chartsPageMs!)],
      ['workers table usable', result.workers.map((r) => r.benchMs), result.workers.map((r) => r.pageMs)],
    ];
    for (const [label, bench, inPage] of rows) {
      console.log(`  ${count(result.size).padEnd(9)} ${label.padEnd(32)} ${ms(median(bench)).padStart(9)} ${ms(max(bench)).padStart(9)}   ${ms(median(inPage)).padStart(14)}`);
    }
  }
  console.log(`\n  Server time per API call (median ms, from its access log):`);
  console.log(`  ${'call'.padEnd(38)} ${results.map((result) => `${count(result.size)} workers`.padStart(16)).join('')}`);
  for (const [index, { name }] of results[0]!.api.entries()) {
    console.log(`  ${name.padEnd(38)} ${results.map((result) => ms(median(result.api[index]!.timings.map((t) => t.serverMs))).padStart(16)).join('')}`);
  }
  if (cpu !== null) {
    const scaled = CPU_WINDOW_S === 60 ? '' : ` (${CPU_WINDOW_S} s windows, scaled to a minute)`;
    console.log(`\n  Server CPU at ${count(cpu.size)} workers${scaled}:`);
    console.log(`    no page open          ${ms((cpu.baselineMs * 60) / cpu.windowS)} CPU per minute`);
    console.log(`    ${String(PAGES).padStart(2)} overview pages open ${ms((cpu.withPagesMs * 60) / cpu.windowS)} CPU per minute`);
    console.log(`    per open page         ${ms(cpu.perPagePerMinuteMs)} CPU per minute of live updates`);
    console.log(
      `    overview answers in the window: asked by the pages in it ${statusText(cpu.pageSide)} (status on the wire); logged by the server in it ${statusText(cpu.serverSide)}; history answers ${cpu.historyRequests}`,
    );
    console.log(
      `    overview polls' server time in the window: median ${ms(median(cpu.overviewPollMs))}, p90 ${ms(percentile(cpu.overviewPollMs, 0.9))}, max ${ms(max(cpu.overviewPollMs))} (a poll that finds the snapshot older than ${OVERVIEW_MAX_AGE_MS / 1000} s gets it at once and starts the rebuild; every page shares one)`,
    );
    const health = (values: number[]) => `median ${ms(median(values))}, p99 ${ms(percentile(values, 0.99))}, max ${ms(max(values))}`;
    console.log(`    GET /healthz every ${HEALTH_PROBE_MS} ms, round trip: no page open ${health(cpu.healthMs.baseline)}; ${PAGES} pages open ${health(cpu.healthMs.withPages)}`);
  }
  const goal = results.find((result) => result.size === GOAL_SIZE);
  if (goal !== undefined) {
    const overviewMs = median(goal.overview.map((r) => r.benchMs));
    const workersMs = median(goal.workers.map((r) => r.benchMs));
    const worst = Math.max(max(goal.overview.map((r) => r.benchMs)), max(goal.workers.map((r) => r.benchMs)));
    const met = overviewMs < GOAL_MS && workersMs < GOAL_MS;
    const coldMs = goal.coldOverview.benchMs;
    console.log(
      `\n  Goal: under 1 s to usable at ${count(GOAL_SIZE)} workers (median of goto->usable, overview and workers): ${met ? 'met' : 'MISSED'} (overview ${ms(overviewMs)}, workers ${ms(workersMs)}; slowest single run ${ms(worst)}, ${worst < GOAL_MS ? 'under as well' : 'over'}); cold overview ${ms(coldMs)}, ${coldMs < GOAL_MS ? 'under' : 'over'}`,
    );
  }
  console.log(`  load average: start ${startLoad}, end ${load()}; Node ${process.version}; Chromium ${browser.version()}`);
}

try {
  await main();
} finally {
  await cleanUp();
}
