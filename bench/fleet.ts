import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { request } from 'undici';
import type { FleetStore } from '../src/server/fleet/fleet-store.js';
import { SqliteFleetStore } from '../src/server/fleet/sqlite-fleet-store.js';
import { generateToken, tokenIdOf } from '../src/server/tokens.js';
import { DEFAULT_CHECK_INTERVAL_S, DEFAULT_HEALTH_WINDOW_S } from '../src/worker/config.js';
import { startPostgresCluster, type PostgresCluster } from '../test/helpers/postgres-cluster.js';
import { publishRelease, releaseFor } from '../test/helpers/server-fixtures.js';
import { makeKey, type TestKey } from '../test/helpers/trust-fixtures.js';
import { LatencyHistogram, REQUEST_KINDS, type FromLoad, type LoadInit, type RequestKind, type ToLoad, type WindowStats } from './fleet-stats.js';
import { coreSeconds, pin, pinTree, processCpuSeconds, treeCpuSeconds, writtenBytes } from './procs.js';
import { summarizeProfile } from './fleet-profile.js';
import { prepareServerBenchFixture, startBenchServer, stopChild, type ServerBenchFixture } from './server-fixture.js';

/**
 * `npm run bench:fleet`: how many workers one server core holds. The real server process
 * (src/server/main.ts serve, started as bench/server.ts starts it: JSON logs to a file, metrics,
 * auth, `--db-sync full`) runs pinned to core 0 (`taskset`), with its fleet database on SQLite
 * and then on a throwaway PostgreSQL cluster whose processes are pinned to core 0 as well. Load
 * processes (bench/fleet-load.ts, pinned to core 1) simulate the workers with the worker's own
 * connection code (its handshake and heartbeat loop, update schedule and report bodies; by
 * default its requests go out byte for byte through a leaner undici handler, see there): each registers, heartbeats every 30 s (the server's --heartbeat-interval, its
 * start spread uniformly over one interval, seeded), polls GET /api/worker-updates/latest with
 * If-None-Match every check interval (the worker's default, 3600 s ±20 %, phases spread as in a
 * fleet that has been running a while) and sooner when a heartbeat announces a new release
 * (within 30 s, the worker's UpdateSchedule), and sends update reports: attempt and success
 * once per release it takes, plus a background of BENCH_REPORTS_PER_WORKER_DAY reports per worker
 * per day (attempt+success pairs) standing for the rest (retries, failures, other channels).
 * Each worker has its own credential (`bbw_`, made through the store API, as a claim would),
 * unless BENCH_AUTH=pool (the pool's shared token, the deprecated way).
 *
 * Time compression. At the real intervals, loading one core takes ~10^5 workers, more than one
 * load process can hold on the other core; so every interval the worker waits (heartbeat, check,
 * nudge, backoff) and the server's manifest cache TTL run BENCH_TIME_SCALE times faster, with a
 * fleet that many times smaller: the same requests per second. Fleet sizes are printed as
 * "workers at the default intervals" = simulated workers x BENCH_TIME_SCALE (= heartbeats/s x
 * 30 s, printed beside it as a check), and release propagation times in default-interval time.
 *
 * Method, per store: step the fleet up (doubling from BENCH_START_WORKERS simulated workers),
 * then bisect between the largest size held and the smallest not held. A size is held when,
 * over a steady window of BENCH_WINDOW_S after the ramp (its new workers' start spread, one
 * heartbeat interval, BENCH_SETTLE_S), the client-side p99 of every request is under
 * BENCH_P99_MS, no request failed (anything but 2xx/304, or a network error or timeout), and the
 * heartbeats arrived at >= 95 % of the rate the fleet should send. After a size that was not held
 * the fleet is stopped until the server is idle again. At the largest size held, one more window
 * gives CPU per process (from /proc/PID/stat: the server; PostgreSQL's postmaster and all its
 * children; the load processes), database writes, the load average and how busy core 0 was;
 * then a new release is published to the store (the same signing and store write as
 * test/helpers/server-fixtures.ts; the channel's plan is the server's --default-rollout-plan
 * immediate, which offers it to every worker at once) and each worker notes when its `latest`
 * poll first returns it.
 *
 * Environment: BENCH_TIME_SCALE (default 10); BENCH_STORES (sqlite,postgres); BENCH_START_WORKERS
 * (simulated, default 3000); BENCH_MAX_WORKERS (simulated, default 30000: credentials made up
 * front); BENCH_FIXED_WORKERS (simulated: no search, measure this size only); BENCH_WINDOW_S
 * (15); BENCH_SETTLE_S (4); BENCH_BISECT_STEPS (3); BENCH_P99_MS (100); BENCH_LOAD_PROCESSES (1);
 * BENCH_CONNECTIONS (keep-alive sockets per load process, default 256); BENCH_REPORTS_PER_WORKER_DAY
 * (2); BENCH_CLIENT (lean | worker: see bench/fleet-load.ts; lean sends the worker's requests byte for
 * byte through a cheaper undici handler, so that one load core can load one server core);
 * BENCH_AUTH (credential | pool); BENCH_SEED (default random, printed); BENCH_PIN (1: taskset
 * server and database to core 0, load to core 1; 0: no pinning); BENCH_SERVER_PROFILE (1: run the
 * server with --cpu-prof and print its top functions; adds profiler overhead); BENCH_LOAD_PROFILE_DIR
 * (write --cpu-prof profiles of the load processes there); BENCH_LOAD_NODE_ARGS (more node flags for
 * the load processes, space-separated, e.g. --trace-gc); BENCH_SKIP_RELEASE (1: no release wave).
 */

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const timeScale = env('BENCH_TIME_SCALE', 10);
const stores = (process.env['BENCH_STORES'] ?? 'sqlite,postgres').split(',').map((s) => s.trim()) as Array<'sqlite' | 'postgres'>;
const startWorkers = env('BENCH_START_WORKERS', 3000);
const maxWorkers = env('BENCH_MAX_WORKERS', 30_000);
const fixedWorkers = process.env['BENCH_FIXED_WORKERS'] ? env('BENCH_FIXED_WORKERS', 0) : null;
const windowSeconds = env('BENCH_WINDOW_S', 15);
const settleSeconds = env('BENCH_SETTLE_S', 4);
const bisectSteps = env('BENCH_BISECT_STEPS', 3);
const p99LimitMs = env('BENCH_P99_MS', 100);
const loadProcesses = env('BENCH_LOAD_PROCESSES', 1);
const connections = env('BENCH_CONNECTIONS', 256);
const reportsPerWorkerDay = env('BENCH_REPORTS_PER_WORKER_DAY', 2);
const auth = process.env['BENCH_AUTH'] === 'pool' ? 'pool' : 'credential';
const client = process.env['BENCH_CLIENT'] === 'worker' ? 'worker' : 'lean';
const seed = process.env['BENCH_SEED'] ? env('BENCH_SEED', 0) : Math.floor(Math.random() * 2 ** 31);
const pinning = process.env['BENCH_PIN'] !== '0' && availableParallelism() >= 2;
const profile = process.env['BENCH_SERVER_PROFILE'] === '1';
const loadProfileDir = process.env['BENCH_LOAD_PROFILE_DIR'] ?? null;
const skipRelease = process.env['BENCH_SKIP_RELEASE'] === '1';

/** The server's defaults, which the fleet sees at default intervals. */
const HEARTBEAT_INTERVAL_S = 30;
const CACHE_TTL_S = 300;
const SERVER_CORE = 0;
const LOAD_CORE = 1;
const GOAL_WORKERS_PER_CORE = 250_000;
const GOAL_PG_RATIO = 1.5;
const POOL = 'bench';
const PLATFORM = 'linux-x64';
const CHANNEL = 'stable';
/** The release prepareServerBenchFixture publishes, which every simulated worker runs at start. */
const CURRENT = { version: '1.4.0', serial: 1 };
const NEXT = { version: '1.5.0', serial: 2 };

const heartbeatRealMs = (HEARTBEAT_INTERVAL_S * 1000) / timeScale;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const fixed = (n: number | null, digits = 1) => (n === null || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits));
const loadText = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

// ---------------------------------------------------------------------------------------------
// Load processes.

/** A message to a load process, without the id `ask` gives it. */
type LoadRequest = { [K in ToLoad['type']]: Omit<Extract<ToLoad, { type: K }>, 'id'> }[Exclude<ToLoad['type'], 'init'>];

class LoadProcess {
  readonly child: ChildProcess;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (message: FromLoad) => void; reject: (err: Error) => void }>();
  private readonly ready: Promise<void>;

  constructor(init: LoadInit) {
    const script = fileURLToPath(new URL('./fleet-load.ts', import.meta.url));
    const profiling = loadProfileDir ? ['--cpu-prof', '--cpu-prof-dir', loadProfileDir] : [];
    const extra = (process.env['BENCH_LOAD_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    const node = [process.execPath, '--max-old-space-size=4096', ...profiling, ...extra, '--import', 'tsx', script];
    const [command, ...args] = pinning ? ['taskset', '-c', String(LOAD_CORE), ...node] : node;
    this.child = spawn(command!, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.ready = new Promise((resolve, reject) => {
      // A failure or an exit fails whatever is waiting: the start, or the questions asked since.
      const fail = (err: Error) => {
        reject(err);
        for (const { reject: rejectAsk } of this.waiting.values()) rejectAsk(err);
        this.waiting.clear();
      };
      this.child.on('message', (message: FromLoad) => {
        if (message.type === 'ready') resolve();
        else if (message.type === 'failed') fail(new Error(`load process ${init.processIndex}: ${message.message}`));
        else this.waiting.get(message.id)?.resolve(message);
      });
      this.child.once('exit', (code) => fail(new Error(`load process ${init.processIndex} exited with ${code}`)));
    });
    this.ready.catch(() => undefined);
    this.child.send(init);
  }

  async start(): Promise<void> {
    await this.ready;
  }

  ask<T extends FromLoad>(message: LoadRequest): Promise<T> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        reject(new Error('the load process has exited'));
        return;
      }
      this.waiting.set(id, {
        resolve: (answer) => {
          this.waiting.delete(id);
          resolve(answer as T);
        },
        reject,
      });
      this.child.send({ ...message, id });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    await Promise.race([this.ask({ type: 'stop' }).then(() => exited, () => exited), sleep(10_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      await exited;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One store's run.

interface StoreSetup {
  kind: 'sqlite' | 'postgres';
  label: string;
  fixture: ServerBenchFixture;
  /** --db: the SQLite file or the postgres:// URL. */
  location: string;
  cluster: PostgresCluster | null;
  releaseKey: TestKey;
  /** [worker id, bearer] of every worker the search may run. */
  fleet: Array<[string, string]>;
}

interface Readings {
  atMs: number;
  server: number | null;
  db: number | null;
  loads: Array<number | null>;
  core: { busy: number; total: number } | null;
  serverWritten: number | null;
  logBytes: number;
  pg: { commits: number; tuples: number } | null;
}

interface WindowResult {
  simulated: number;
  equivalent: number;
  seconds: number;
  perKindPerSecond: Record<RequestKind, number>;
  requestsPerSecond: number;
  expectedHeartbeatsPerSecond: number;
  histogram: LatencyHistogram;
  /** The server's own duration_ms of the requests it logged in the window (its access log). */
  serverHistogram: LatencyHistogram;
  /** NaN for a kind with no request in the window (printed n/a). */
  kindP99: Record<RequestKind, number>;
  errors: number;
  errorSamples: string[];
  cpu: { server: number | null; db: number | null; loads: Array<number | null> };
  coreBusy: number | null;
  load: string;
  timerLagP99Ms: number;
  timerLagMaxMs: number;
  /** Time requests waited for a free connection in the load processes' Agents (lean client). */
  queueHistogram: LatencyHistogram;
  /** Requests sent in the busiest 100 ms over the mean 100 ms (1: perfectly even), all load processes together. */
  burstiness: number;
  writes: { ackedPerSecond: number; diskBytesPerSecond: number | null; pgCommitsPerSecond: number | null; pgTuplesPerSecond: number | null };
  held: boolean;
  why: string;
}

interface WaveResult {
  publishedAtIso: string;
  seen50Ms: number | null;
  seen99Ms: number | null;
  seenFraction: number;
  timeoutMs: number;
  stats: { p99: number; errors: number; requests: number; reports: number; errorSamples: string[] };
}

interface StoreResult {
  setup: StoreSetup;
  steps: WindowResult[];
  best: WindowResult | null;
  final: WindowResult | null;
  wave: WaveResult | null;
  profileLines: string[];
  error: string | null;
}

async function seedFleet(store: FleetStore, count: number, poolToken: string): Promise<Array<[string, string]>> {
  const sourceTokenId = tokenIdOf(poolToken)!;
  const fleet: Array<[string, string]> = [];
  const createdAt = new Date();
  for (let start = 0; start < count; start += 1000) {
    const claims: Promise<unknown>[] = [];
    for (let index = start; index < Math.min(count, start + 1000); index += 1) {
      const workerId = `fleet-${String(index).padStart(6, '0')}`;
      if (auth === 'pool') {
        fleet.push([workerId, poolToken]);
        continue;
      }
      const made = generateToken('credential');
      fleet.push([workerId, made.token]);
      claims.push(
        store.claimCredential({
          id: made.id,
          workerId,
          pool: POOL,
          secretSha256: made.secretSha256,
          source: 'claim',
          sourceTokenId,
          createdAt,
          createdFrom: null,
          revokedAt: null,
          revokedBy: null,
        }),
      );
    }
    await Promise.all(claims);
  }
  return fleet;
}

async function prepareStore(kind: 'sqlite' | 'postgres', dir: string, cluster: () => Promise<PostgresCluster>): Promise<StoreSetup> {
  const storeDir = join(dir, kind);
  await mkdir(storeDir, { recursive: true });
  // The release store, release key, SQLite fleet database, pool `bench` (auto-update on) and its
  // worker token, as bench:server has them.
  const fixture = await prepareServerBenchFixture(storeDir);
  const releaseKey = makeKey();
  const count = fixedWorkers ?? maxWorkers;
  if (kind === 'sqlite') {
    const store = new SqliteFleetStore(fixture.dbPath);
    try {
      const fleet = await seedFleet(store, count, fixture.workerToken);
      return { kind, label: 'SQLite (--db FILE)', fixture, location: fixture.dbPath, cluster: null, releaseKey, fleet };
    } finally {
      await store.close();
    }
  }
  const pgCluster = await cluster();
  const location = await pgCluster.createDatabase(`fleet_bench_${process.pid}`);
  // Loaded only here: the PostgreSQL store is optional for the SQLite half of the benchmark.
  const { openFleetStore } = await import('../src/server/fleet/open-fleet-store.js');
  const store = await openFleetStore(location);
  try {
    const token = generateToken();
    await store.createToken({ id: token.id, role: 'worker', pool: POOL, secretSha256: token.secretSha256, label: null, createdAt: new Date(), revokedAt: null });
    await store.setPoolPolicy(POOL, { auto_update: true }, { at: new Date(), byTokenId: token.id });
    const fleet = await seedFleet(store, count, token.token);
    return { kind, label: 'PostgreSQL (--db postgres://)', fixture: { ...fixture, workerToken: token.token }, location, cluster: pgCluster, releaseKey, fleet };
  } finally {
    await store.close();
  }
}

class StoreRun {
  server!: ChildProcess;
  url = '';
  loads: LoadProcess[] = [];
  pgClient: pg.Client | null = null;
  readonly logPath: string;
  readonly profileDir: string;

  constructor(
    readonly setup: StoreSetup,
    readonly dir: string,
  ) {
    this.logPath = join(dir, `${setup.kind}-server.log`);
    this.profileDir = join(dir, `${setup.kind}-profile`);
  }

  async start(): Promise<void> {
    const { setup } = this;
    const cacheTtl = Math.max(1, Math.round(CACHE_TTL_S / timeScale));
    const server = await startBenchServer(
      { ...setup.fixture, dbPath: setup.location },
      this.logPath,
      ['--release-key', setup.releaseKey.publicKeyBase64, '--cache-ttl', String(cacheTtl), '--heartbeat-interval', String(HEARTBEAT_INTERVAL_S)],
      profile ? ['--cpu-prof', '--cpu-prof-dir', this.profileDir] : [],
    );
    this.server = server.child;
    this.url = server.url;
    if (pinning && !pin(this.server.pid!, SERVER_CORE)) console.log('  (taskset failed: the server is not pinned)');
    if (setup.cluster) {
      this.pgClient = new pg.Client({ connectionString: setup.location });
      await this.pgClient.connect();
    }
    // The ETag of the release every simulated worker starts on: what a worker that took it holds.
    const [workerId, token] = setup.fleet[0]!;
    const first = await request(
      `${this.url}/api/worker-updates/latest?channel=${CHANNEL}&platform=${PLATFORM}&worker_id=${workerId}&current_version=${CURRENT.version}`,
      { headers: { authorization: `Bearer ${token}` } },
    );
    await first.body.dump();
    const etag = first.headers['etag'];
    if (first.statusCode !== 200 || typeof etag !== 'string') throw new Error(`latest answered ${first.statusCode} without an ETag`);

    const workersFile = join(this.dir, `${setup.kind}-workers.json`);
    await writeFile(workersFile, JSON.stringify(setup.fleet));
    for (let index = 0; index < loadProcesses; index += 1) {
      this.loads.push(
        new LoadProcess({
          type: 'init',
          serverUrl: this.url,
          workersFile,
          processIndex: index,
          processes: loadProcesses,
          timeScale,
          heartbeatIntervalS: HEARTBEAT_INTERVAL_S,
          checkIntervalS: DEFAULT_CHECK_INTERVAL_S,
          reportsPerWorkerDay,
          client,
          connections,
          seed,
          version: CURRENT.version,
          serial: CURRENT.serial,
          etag,
          platform: PLATFORM,
          channel: CHANNEL,
          installDelayS: 60,
          healthWindowS: DEFAULT_HEALTH_WINDOW_S,
        }),
      );
    }
    await Promise.all(this.loads.map((load) => load.start()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.loads.map((load) => load.stop().catch(() => undefined)));
    await this.pgClient?.end().catch(() => undefined);
    if (this.server) await stopChild(this.server);
  }

  async resize(count: number, spreadMs: number): Promise<void> {
    await Promise.all(this.loads.map((load) => load.ask({ type: 'resize', count, spreadMs })));
  }

  async read(): Promise<Readings> {
    let pgCounters: Readings['pg'] = null;
    if (this.pgClient) {
      const row = (
        await this.pgClient.query<{ commits: string; tuples: string }>(
          'SELECT xact_commit AS commits, tup_inserted + tup_updated AS tuples FROM pg_stat_database WHERE datname = current_database()',
        )
      ).rows[0]!;
      pgCounters = { commits: Number(row.commits), tuples: Number(row.tuples) };
    }
    return {
      atMs: Date.now(),
      server: processCpuSeconds(this.server.pid!),
      db: this.setup.cluster ? treeCpuSeconds(this.setup.cluster.pid) : null,
      loads: this.loads.map((load) => processCpuSeconds(load.child.pid!)),
      core: pinning ? coreSeconds(SERVER_CORE) : null,
      serverWritten: writtenBytes(this.server.pid!),
      logBytes: (await stat(this.logPath)).size,
      pg: pgCounters,
    };
  }

  /** Busy CPU of the server (and database) per second, over `ms`. */
  async serverBusy(ms = 1000): Promise<number> {
    const before = await this.read();
    await sleep(ms);
    const after = await this.read();
    const used = (after.server ?? 0) - (before.server ?? 0) + ((after.db ?? 0) - (before.db ?? 0));
    return used / ((after.atMs - before.atMs) / 1000);
  }

  async measure(simulated: number, seconds: number): Promise<WindowResult> {
    const before = await this.read();
    await Promise.all(this.loads.map((load) => load.ask({ type: 'window-start' })));
    const load = loadText();
    await sleep(seconds * 1000);
    const answers = await Promise.all(this.loads.map((l) => l.ask<{ type: 'window'; id: number; stats: WindowStats }>({ type: 'window-end' })));
    const after = await this.read();
    const result = summarize(simulated, before, after, answers.map((a) => a.stats), load);
    result.serverHistogram = await this.loggedDurations(before.logBytes, after.logBytes);
    return result;
  }

  /** duration_ms of the access-log lines the server wrote between two offsets of its log. */
  async loggedDurations(from: number, to: number): Promise<LatencyHistogram> {
    const histogram = new LatencyHistogram();
    const file = await open(this.logPath, 'r');
    try {
      const buffer = Buffer.alloc(Math.max(0, to - from));
      await file.read(buffer, 0, buffer.length, from);
      for (const match of buffer.toString('utf8').matchAll(/[{,]"duration_ms":([\d.]+)/g)) histogram.record(Number(match[1]));
    } finally {
      await file.close();
    }
    return histogram;
  }
}

function delta(after: number | null, before: number | null): number | null {
  return after === null || before === null ? null : after - before;
}

function summarize(simulated: number, before: Readings, after: Readings, stats: WindowStats[], load: string): WindowResult {
  const seconds = (after.atMs - before.atMs) / 1000;
  const histogram = new LatencyHistogram();
  const perKindPerSecond = {} as Record<RequestKind, number>;
  const kindP99 = {} as Record<RequestKind, number>;
  let errors = 0;
  let requests = 0;
  for (const kind of REQUEST_KINDS) {
    const kindHistogram = new LatencyHistogram();
    let kindCount = 0;
    for (const s of stats) {
      kindHistogram.merge(LatencyHistogram.fromJSON(s.kinds[kind].histogram));
      errors += s.kinds[kind].errors;
      kindCount += s.kinds[kind].ok + s.kinds[kind].errors;
    }
    requests += kindCount;
    perKindPerSecond[kind] = kindCount / seconds;
    kindP99[kind] = kindHistogram.total > 0 ? kindHistogram.quantileMs(0.99) : Number.NaN;
    histogram.merge(kindHistogram);
  }
  const acked = stats.reduce((sum, s) => sum + s.kinds.register.ok + s.kinds.heartbeat.ok + s.kinds.report.ok, 0);
  const written = delta(after.serverWritten, before.serverWritten);
  const coreBusy = after.core && before.core ? (after.core.busy - before.core.busy) / (after.core.total - before.core.total) : null;
  const expectedHeartbeatsPerSecond = (simulated * 1000) / heartbeatRealMs;
  const p99 = histogram.quantileMs(0.99);
  const reasons: string[] = [];
  if (errors > 0) reasons.push(`${errors} errors`);
  if (p99 >= p99LimitMs) reasons.push(`p99 ${p99.toFixed(0)} ms >= ${p99LimitMs} ms`);
  if (perKindPerSecond.heartbeat < 0.95 * expectedHeartbeatsPerSecond) {
    reasons.push(`heartbeats ${int(perKindPerSecond.heartbeat)}/s < 95 % of ${int(expectedHeartbeatsPerSecond)}/s`);
  }
  return {
    simulated,
    equivalent: simulated * timeScale,
    seconds,
    perKindPerSecond,
    requestsPerSecond: requests / seconds,
    expectedHeartbeatsPerSecond,
    histogram,
    serverHistogram: new LatencyHistogram(),
    kindP99,
    errors,
    errorSamples: stats.flatMap((s) => s.errorSamples).slice(0, 5),
    cpu: {
      server: delta(after.server, before.server),
      db: delta(after.db, before.db),
      loads: after.loads.map((value, index) => delta(value, before.loads[index] ?? null)),
    },
    coreBusy,
    load,
    timerLagP99Ms: Math.max(...stats.map((s) => s.timerLagP99Ms)),
    timerLagMaxMs: Math.max(...stats.map((s) => s.timerLagMaxMs)),
    queueHistogram: stats.reduce((all, s) => {
      all.merge(LatencyHistogram.fromJSON(s.queueHistogram));
      return all;
    }, new LatencyHistogram()),
    burstiness: burstiness(stats),
    writes: {
      ackedPerSecond: acked / seconds,
      diskBytesPerSecond: written === null ? null : (written - (after.logBytes - before.logBytes)) / seconds,
      pgCommitsPerSecond: after.pg && before.pg ? (after.pg.commits - before.pg.commits) / seconds : null,
      pgTuplesPerSecond: after.pg && before.pg ? (after.pg.tuples - before.pg.tuples) / seconds : null,
    },
    held: reasons.length === 0,
    why: reasons.join(', '),
  };
}

function burstiness(stats: WindowStats[]): number {
  // Buckets of different processes are not aligned in time: add them by position (close enough
  // with one load process, the default).
  const sums: number[] = [];
  for (const s of stats) s.sendsPer100Ms.forEach((count, index) => (sums[index] = (sums[index] ?? 0) + count));
  const inner = sums.slice(1, -1);
  if (inner.length === 0) return 1;
  const mean = inner.reduce((a, b) => a + b, 0) / inner.length;
  return mean === 0 ? 1 : Math.max(...inner) / mean;
}

function stepLine(r: WindowResult): string {
  const pct = (cpu: number | null) => (cpu === null ? 'n/a' : `${((100 * cpu) / r.seconds).toFixed(0)} %`);
  const k = r.perKindPerSecond;
  return [
    `  ${int(r.simulated).padStart(7)} simulated = ${int(r.equivalent).padStart(9)} workers at default intervals:`,
    `${int(r.requestsPerSecond)} req/s (heartbeat ${int(k.heartbeat)}, poll ${int(k.poll)}, register ${int(k.register)}, report ${int(k.report)}),`,
    `p50 ${fixed(r.histogram.quantileMs(0.5))} p99 ${fixed(r.histogram.quantileMs(0.99))} max ${fixed(r.histogram.quantileMs(1), 0)} ms (in the server: p50 ${fixed(r.serverHistogram.quantileMs(0.5))} p99 ${fixed(r.serverHistogram.quantileMs(0.99))}), ${r.errors} errors;`,
    `CPU server ${pct(r.cpu.server)}${r.cpu.db !== null ? `, postgres ${pct(r.cpu.db)}` : ''}, load ${r.cpu.loads.map(pct).join('+')}`,
    `(load event-loop delay p99 ${fixed(r.timerLagP99Ms, 0)} max ${fixed(r.timerLagMaxMs, 0)} ms${r.queueHistogram.total > 0 ? `, wait for a connection p99 ${fixed(r.queueHistogram.quantileMs(0.99))} ms` : ''}, busiest 100 ms ${fixed(r.burstiness)} x the mean); core ${SERVER_CORE} busy ${r.coreBusy === null ? 'n/a' : `${(100 * r.coreBusy).toFixed(0)} %`}; load avg ${r.load}`,
    `-> ${r.held ? 'held' : `NOT held (${r.why})`}`,
  ].join(' ');
}

/** Lower `n` to a round step: 2 significant figures. */
function round2(n: number): number {
  const unit = 10 ** Math.max(0, Math.floor(Math.log10(n)) - 1);
  return Math.max(unit, Math.round(n / unit) * unit);
}

async function settle(run: StoreRun): Promise<void> {
  // Until the server (and database) use under 10 % of a core, at most 30 s.
  for (let i = 0; i < 30; i += 1) if ((await run.serverBusy()) < 0.1) return;
}

async function step(run: StoreRun, simulated: number, afterFailure: boolean): Promise<WindowResult> {
  if (afterFailure) {
    await run.resize(0, 0);
    await settle(run);
  }
  await run.resize(simulated, heartbeatRealMs);
  // The new workers' start spread, then one heartbeat interval (resumed ones wait one before
  // their first heartbeat), then the settle time.
  await sleep(2 * heartbeatRealMs + settleSeconds * 1000);
  const result = await run.measure(simulated, windowSeconds);
  console.log(stepLine(result));
  if (!result.held && result.errorSamples.length > 0) console.log(`      errors, e.g.: ${result.errorSamples.slice(0, 3).join(' | ')}`);
  const busiestLoad = Math.max(...result.cpu.loads.map((cpu) => (cpu ?? 0) / result.seconds));
  if (busiestLoad > 0.9) console.log(`      (a load process used ${(100 * busiestLoad).toFixed(0)} % of its core: the client may be the limit here)`);
  return result;
}

async function search(run: StoreRun): Promise<{ steps: WindowResult[]; best: WindowResult | null; lastHeld: boolean }> {
  const steps: WindowResult[] = [];
  if (fixedWorkers !== null) {
    const result = await step(run, fixedWorkers, false);
    return { steps: [result], best: result.held ? result : null, lastHeld: result.held };
  }
  let best: WindowResult | null = null;
  let failedAt: number | null = null;
  let n = Math.min(startWorkers, maxWorkers);
  let afterFailure = false;
  let bisects = 0;
  for (;;) {
    const result = await step(run, n, afterFailure);
    steps.push(result);
    afterFailure = !result.held;
    if (result.held) best = result;
    else failedAt = n;
    if (failedAt === null) {
      if (n >= maxWorkers) {
        console.log(`  (held the largest fleet prepared, BENCH_MAX_WORKERS=${maxWorkers}: raise it to look further)`);
        break;
      }
      n = Math.min(maxWorkers, n * 2);
    } else if (best === null) {
      if (n <= 100) break;
      n = round2(n / 2);
    } else {
      if (bisects >= bisectSteps || failedAt - best.simulated <= best.simulated * 0.05) break;
      const next = round2((best.simulated + failedAt) / 2);
      if (next <= best.simulated || next >= failedAt) break;
      n = next;
      bisects += 1;
    }
  }
  return { steps, best, lastHeld: steps.at(-1)?.held ?? false };
}

async function releaseWave(run: StoreRun): Promise<WaveResult> {
  const now = Date.now();
  const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
  const publishedAtMs = Date.now();
  await publishRelease(
    run.setup.fixture.storeDir,
    releaseFor({ version: NEXT.version, serial: NEXT.serial, released_at: iso(now), expires: iso(now + 30 * 86_400_000) }),
    [run.setup.releaseKey],
  );
  await Promise.all(run.loads.map((load) => load.ask({ type: 'watch', version: NEXT.version, publishedAtMs })));
  await Promise.all(run.loads.map((load) => load.ask({ type: 'window-start' })));
  // Cache TTL, one heartbeat, the 30 s nudge spread, and a margin: in default-interval time.
  const timeoutMs = ((CACHE_TTL_S + 2 * HEARTBEAT_INTERVAL_S + 30 + 120) * 1000) / timeScale;
  let seen50Ms: number | null = null;
  let seen99Ms: number | null = null;
  let seenFraction = 0;
  while (Date.now() - publishedAtMs < timeoutMs && seen99Ms === null) {
    await sleep(250);
    const answers = await Promise.all(run.loads.map((load) => load.ask<{ type: 'seen'; id: number; seenAfterMs: number[]; watched: number }>({ type: 'seen' })));
    const watched = answers.reduce((sum, a) => sum + a.watched, 0);
    const seen = answers.flatMap((a) => a.seenAfterMs).sort((a, b) => a - b);
    seenFraction = watched === 0 ? 0 : seen.length / watched;
    const at = (fraction: number) => (seen.length >= Math.ceil(fraction * watched) && watched > 0 ? seen[Math.ceil(fraction * watched) - 1]! : null);
    seen50Ms ??= at(0.5);
    seen99Ms ??= at(0.99);
  }
  // Let the updates' restarts and reports run into the window for a little longer.
  await sleep(Math.min(10_000, (90 * 1000) / timeScale));
  const answers = await Promise.all(run.loads.map((l) => l.ask<{ type: 'window'; id: number; stats: WindowStats }>({ type: 'window-end' })));
  const histogram = new LatencyHistogram();
  let errors = 0;
  let requests = 0;
  let reports = 0;
  for (const { stats } of answers) {
    for (const kind of REQUEST_KINDS) {
      histogram.merge(LatencyHistogram.fromJSON(stats.kinds[kind].histogram));
      errors += stats.kinds[kind].errors;
      requests += stats.kinds[kind].ok + stats.kinds[kind].errors;
    }
    reports += stats.kinds.report.ok;
  }
  return {
    publishedAtIso: new Date(publishedAtMs).toISOString(),
    seen50Ms,
    seen99Ms,
    seenFraction,
    timeoutMs,
    stats: { p99: histogram.quantileMs(0.99), errors, requests, reports, errorSamples: answers.flatMap((a) => a.stats.errorSamples).slice(0, 3) },
  };
}

async function runStore(setup: StoreSetup, dir: string): Promise<StoreResult> {
  const run = new StoreRun(setup, dir);
  const result: StoreResult = { setup, steps: [], best: null, final: null, wave: null, profileLines: [], error: null };
  try {
    await run.start();
    console.log(`${setup.label}: server ${run.url} pid ${run.server.pid}${setup.cluster ? `, postgres pid ${setup.cluster.pid}` : ''}; ${int(setup.fleet.length)} workers prepared`);
    const searched = await search(run);
    result.steps = searched.steps;
    result.best = searched.best;
    if (searched.best) {
      // The figures at the largest size held: its search window when that was the last one;
      // otherwise one more window at that size. Then the release wave at that size.
      const size = searched.best.simulated;
      const last = searched.steps.at(-1);
      if (fixedWorkers !== null || (last?.held && last.simulated === size)) result.final = searched.best;
      else {
        console.log(`  back to the largest size held, ${int(size)} simulated, for its figures:`);
        result.final = await step(run, size, !searched.lastHeld);
      }
      if (!skipRelease) {
        console.log(`  publishing release ${NEXT.version} with ${int(size)} simulated workers running`);
        result.wave = await releaseWave(run);
      }
    }
  } catch (err) {
    result.error = (err as Error).message;
  } finally {
    await run.stop();
  }
  if (profile) result.profileLines = summarizeProfile(run.profileDir, 15, join(tmpdir(), `bytebiota-fleet-server-${setup.kind}.cpuprofile`));
  return result;
}

// ---------------------------------------------------------------------------------------------
// The report.

/** CPU seconds per 1,000 workers (at default intervals) per minute. */
function perThousandPerMinute(cpu: number | null, r: WindowResult): number | null {
  return cpu === null ? null : (cpu / r.seconds) * 60 / (r.equivalent / 1000);
}

function printStore(result: StoreResult): number | null {
  const { setup } = result;
  console.log(`\n=== ${setup.label} ===`);
  if (result.error) console.log(`  run failed: ${result.error}`);
  const r = result.final?.held ? result.final : result.best;
  if (!r) {
    console.log('  no fleet size was held');
    for (const line of result.profileLines) console.log(line);
    return null;
  }
  if (result.final && !result.final.held) console.log(`  (the confirming window at that size was not held: ${result.final.why}; figures from the search window)`);
  const hb = r.perKindPerSecond.heartbeat;
  console.log(
    `  largest fleet held: ${int(r.equivalent)} workers at default intervals (${int(r.simulated)} simulated workers, intervals / ${timeScale}); check: ${int(hb)} heartbeats/s x ${HEARTBEAT_INTERVAL_S} s = ${int(hb * HEARTBEAT_INTERVAL_S)}`,
  );
  console.log(
    `  at that size: ${int(r.requestsPerSecond)} req/s, p99 ${fixed(r.histogram.quantileMs(0.99))} ms (register ${fixed(r.kindP99.register)}, heartbeat ${fixed(r.kindP99.heartbeat)}, poll ${fixed(r.kindP99.poll)}, report ${fixed(r.kindP99.report)}), ${r.errors} errors, over ${r.seconds.toFixed(0)} s`,
  );
  const server = perThousandPerMinute(r.cpu.server, r);
  const db = perThousandPerMinute(r.cpu.db, r);
  const loads = r.cpu.loads.map((cpu) => perThousandPerMinute(cpu, r));
  console.log(
    `  CPU seconds per 1,000 workers per minute: server ${fixed(server, 3)}${r.cpu.db !== null ? `, PostgreSQL (postmaster + all backends) ${fixed(db, 3)}, server + PostgreSQL ${fixed((server ?? 0) + (db ?? 0), 3)}` : ''}, load processes ${loads.map((l) => fixed(l, 3)).join(' + ')} (${loads.length} process${loads.length === 1 ? '' : 'es'})`,
  );
  const w = r.writes;
  if (setup.kind === 'sqlite') {
    console.log(
      `  database writes/s: ${int(w.ackedPerSecond)} acknowledged (registrations + heartbeats + reports, each durable before its answer, group-committed); the server wrote ${w.diskBytesPerSecond === null ? 'n/a' : `${(w.diskBytesPerSecond / 1e6).toFixed(2)} MB/s`} to disk (WAL and checkpoints; its log file left out)`,
    );
  } else {
    console.log(
      `  database writes/s: ${int(w.ackedPerSecond)} acknowledged (registrations + heartbeats + reports); pg_stat_database: ${fixed(w.pgCommitsPerSecond, 0)} commits/s, ${fixed(w.pgTuplesPerSecond, 0)} rows inserted+updated/s`,
    );
  }
  const wave = result.wave;
  if (wave) {
    const virtual = (ms: number | null) => (ms === null ? null : (ms * timeScale) / 1000);
    const seen99 = virtual(wave.seen99Ms);
    console.log(
      `  new release ${NEXT.version} (plan: --default-rollout-plan immediate, offered to every worker at once): seen by 99 % of the fleet after ${seen99 === null ? `more than ${fixed((wave.timeoutMs * timeScale) / 1000, 0)} s (${(100 * wave.seenFraction).toFixed(1)} % by then)` : `${seen99.toFixed(0)} s`} at default intervals (50 %: ${fixed(virtual(wave.seen50Ms), 0)} s; ${fixed(wave.seen99Ms === null ? null : wave.seen99Ms / 1000)} s of this run x ${timeScale}); the bound is the manifest cache TTL (${CACHE_TTL_S} s) + one heartbeat (${HEARTBEAT_INTERVAL_S} s) + the worker's nudge spread (30 s)`,
    );
    console.log(
      `  during the wave: ${int(wave.stats.requests)} requests, ${int(wave.stats.reports)} reports, p99 ${fixed(wave.stats.p99)} ms, ${wave.stats.errors} errors${wave.stats.errorSamples.length ? ` (e.g. ${wave.stats.errorSamples.join(' | ')})` : ''}`,
    );
  }
  console.log(
    `  load average during the window: ${r.load}; core ${SERVER_CORE} busy ${r.coreBusy === null ? 'n/a' : `${(100 * r.coreBusy).toFixed(0)} %`} (server ${fixed((100 * (r.cpu.server ?? 0)) / r.seconds, 0)} %${r.cpu.db !== null ? `, postgres ${fixed((100 * r.cpu.db) / r.seconds, 0)} %` : ''}${r.coreBusy !== null ? `, anything else ${fixed(100 * r.coreBusy - (100 * ((r.cpu.server ?? 0) + (r.cpu.db ?? 0))) / r.seconds, 0)} %` : ''}); ${loadProcesses} load process${loadProcesses === 1 ? '' : 'es'} on core ${LOAD_CORE}`,
  );
  for (const line of result.profileLines) console.log(line);
  return r.cpu.server === null ? null : (server ?? 0) + (db ?? 0);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-fleet-bench-'));
  if (pinning) pin(process.pid, LOAD_CORE);
  console.log(
    `bytebiota fleet capacity benchmark: seed ${seed}; time scale ${timeScale} (intervals / ${timeScale}, fleet sizes x ${timeScale} = workers at default intervals: heartbeat ${HEARTBEAT_INTERVAL_S} s, check ${DEFAULT_CHECK_INTERVAL_S} s ±20 %, manifest cache TTL ${CACHE_TTL_S} s)`,
  );
  console.log(
    `  ${pinning ? `server and PostgreSQL pinned to core ${SERVER_CORE}, ${loadProcesses} load process(es) to core ${LOAD_CORE}` : 'no pinning'}; ${connections} keep-alive connections per load process; client: ${client === 'lean' ? "lean (the worker's requests byte for byte, minimal undici handler)" : "the worker's own ServerClient and fetchLatestManifest"}; auth: ${auth === 'credential' ? 'a credential per worker' : 'the pool token'}; ${reportsPerWorkerDay} background reports per worker per day; held = p99 < ${p99LimitMs} ms, no errors, heartbeats at >= 95 % of their rate over ${windowSeconds} s; load avg at start ${loadText()}`,
  );
  console.log(
    `  time compression keeps the request rate, not the number of distinct workers: the server's per-worker state (rows, credentials, its auth cache of ${int(10_000)} entries) sees ${timeScale} times fewer workers than the fleet it stands for`,
  );
  let cluster: Promise<PostgresCluster> | null = null;
  const startCluster = () => {
    cluster ??= startPostgresCluster({ settings: { fsync: 'on', full_page_writes: 'on' } }).then((c) => {
      if (pinning) pinTree(c.pid, SERVER_CORE);
      return c;
    });
    return cluster;
  };
  const results: StoreResult[] = [];
  try {
    for (const kind of stores) {
      const began = Date.now();
      console.log(`\n${kind}: preparing ${int(fixedWorkers ?? maxWorkers)} workers`);
      let setup: StoreSetup;
      try {
        setup = await prepareStore(kind, dir, startCluster);
        console.log(`  (prepared in ${((Date.now() - began) / 1000).toFixed(0)} s)`);
      } catch (err) {
        console.log(`  ${kind}: could not prepare the store: ${(err as Error).message}`);
        results.push({
          setup: { kind, label: kind === 'sqlite' ? 'SQLite (--db FILE)' : 'PostgreSQL (--db postgres://)' } as StoreSetup,
          steps: [],
          best: null,
          final: null,
          wave: null,
          profileLines: [],
          error: (err as Error).message,
        });
        continue;
      }
      results.push(await runStore(setup, dir));
      console.log(`  (${kind} took ${((Date.now() - began) / 1000).toFixed(0)} s)`);
    }
  } finally {
    if (cluster) await (await (cluster as Promise<PostgresCluster>)).stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }

  const perWorker = new Map<string, number | null>();
  for (const result of results) perWorker.set(result.setup.kind, printStore(result));
  console.log('');
  const sqlite = results.find((r) => r.setup.kind === 'sqlite');
  const held = sqlite?.final?.held ? sqlite.final : sqlite?.best;
  console.log(
    `goal: ${int(GOAL_WORKERS_PER_CORE)} workers per server core on SQLite at default intervals: ${held ? `${int(held.equivalent)} held, ${held.equivalent >= GOAL_WORKERS_PER_CORE ? 'met' : 'MISSED'}` : 'not measured'}`,
  );
  const sqliteCpu = perWorker.get('sqlite') ?? null;
  const pgCpu = perWorker.get('postgres') ?? null;
  console.log(
    `PostgreSQL (server + database CPU per worker) / SQLite (server CPU per worker), each at its largest fleet held: ${
      sqliteCpu && pgCpu ? `${(pgCpu / sqliteCpu).toFixed(2)} (goal <= ${GOAL_PG_RATIO}) ${pgCpu / sqliteCpu <= GOAL_PG_RATIO ? 'met' : 'MISSED'}` : 'n/a (a store was not measured)'
    }`,
  );
  console.log(`load average at the end: ${loadText()}`);
}

await main();
