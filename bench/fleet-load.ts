import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { Agent } from 'undici';
import type { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, UpdateProgress, UpdateReport } from '../src/protocol/messages.js';
import { compareVersions } from '../src/protocol/version.js';
import { systemClock } from '../src/shared/clock.js';
import { errorMessage } from '../src/shared/errors.js';
import { createLogger } from '../src/shared/logger.js';
import { fetchLatestManifest, latestManifestUrl, type ManifestResponse } from '../src/worker/engine/manifest-client.js';
import { fullJitterBackoff, parseRetryAfter } from '../src/worker/runtime/backoff.js';
import { ConnectionError, maintainConnection, ServerClient, type ServerClientOptions, type ServerPolicy } from '../src/worker/runtime/connection.js';
import { UpdateSchedule, type CheckOutcome } from '../src/worker/runtime/update-schedule.js';
import { seededRandom } from '../test/helpers/seeded-random.js';
import { LatencyHistogram, REQUEST_KINDS, type FromLoad, type LoadInit, type RequestKind, type ToLoad, type WindowStats } from './fleet-stats.js';

/**
 * One load process of `npm run bench:fleet` (bench/fleet.ts starts it, pinned to its own core):
 * many simulated workers on one shared undici Agent (keep-alive, `connections` sockets), each
 * running the worker's own code for everything it says to the server:
 *
 * - the handshake and the heartbeat loop are `maintainConnection` with a `ServerClient`
 *   (src/worker/runtime/connection.ts), its retry backoff seeded per worker as in
 *   test/helpers/fleet-sim.ts; so register and heartbeat bodies, headers and error handling are
 *   the worker's;
 * - when to poll `latest` is the worker's `UpdateSchedule` (check interval ±20 %, and the nudge
 *   to within 30 s when a heartbeat announces another release), and the poll itself is the
 *   worker's `fetchLatestManifest` with If-None-Match;
 * - reports are `ServerClient.postReport` with the body `UpdateTelemetry.record` builds.
 *
 * With `client: 'lean'` (the default: the worker's own transport costs the load process more CPU
 * per request than the server spends answering it, about 260 µs against 170 µs, so one load core
 * could not load one server core; the lean one costs about 110 µs),
 * the handshake, heartbeat and `latest` requests go out through `agent.dispatch` with a minimal
 * handler instead of undici's `request()`: the same method, path, query, headers (same names,
 * values and order) and body bytes as ServerClient and fetchLatestManifest send, through the same
 * undici core, so the server sees byte-identical requests. The answers are mapped to the same
 * ConnectionError codes as ServerClient's (so maintainConnection retries and re-registers as it
 * would), but their schema is not checked and there is no per-request AbortSignal (undici's
 * headers and body timeouts, 30 s, stand in for the worker's 30 s request timeout).
 * `client: 'worker'` runs the worker's own ServerClient and fetchLatestManifest for everything.
 *
 * Left out: the work loop, the on-disk report queue (a report that fails is counted as an error,
 * not retried), artifact downloads and signature checks (the manifest's version and serial are
 * read, not verified), and credential claims and rotations (each worker starts with its own
 * credential, made by bench/fleet.ts through the store API).
 *
 * Time runs `timeScale` times faster than on a real worker: every wait the worker's code asks
 * for (heartbeat interval, backoff, check interval, nudge) is divided by it, through one virtual
 * clock, so a fleet `timeScale` times smaller sends the same requests per second.
 */

const RUN_BACKOFF = { baseDelayMs: 1000, maxDelayMs: 300_000 } as const;

let init: LoadInit;
let agent: Agent;
const startedAtMs = Date.now();
/** The virtual clock: default-interval time, `timeScale` times faster than the wall clock. */
const virtualNow = () => startedAtMs + (Date.now() - startedAtMs) * init.timeScale;

// Window statistics.
let histograms = new Map<RequestKind, LatencyHistogram>();
let counts = new Map<RequestKind, { ok: number; errors: number }>();
let errorSamples: string[] = [];
/** Requests sent per 100 ms of the window: how bunched the fleet's sends are. */
let sendBuckets = new Map<number, number>();
/** Lean transport only: how long requests waited for a free connection in the Agent. */
let queueHistogram = new LatencyHistogram();
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

function resetStats(): void {
  histograms = new Map(REQUEST_KINDS.map((kind) => [kind, new LatencyHistogram()]));
  counts = new Map(REQUEST_KINDS.map((kind) => [kind, { ok: 0, errors: 0 }]));
  errorSamples = [];
  queueHistogram = new LatencyHistogram();
  sendBuckets = new Map();
  loopDelay.reset();
}
resetStats();

async function timed<T>(kind: RequestKind, call: () => Promise<T>, isError?: (result: T) => string | null): Promise<T> {
  const began = performance.now();
  const bucket = Math.floor(began / 100);
  sendBuckets.set(bucket, (sendBuckets.get(bucket) ?? 0) + 1);
  try {
    const result = await call();
    histograms.get(kind)!.record(performance.now() - began);
    const problem = isError?.(result) ?? null;
    if (problem === null) counts.get(kind)!.ok += 1;
    else noteError(kind, problem);
    return result;
  } catch (err) {
    histograms.get(kind)!.record(performance.now() - began);
    noteError(kind, errorMessage(err));
    throw err;
  }
}

function noteError(kind: RequestKind, message: string): void {
  counts.get(kind)!.errors += 1;
  if (errorSamples.length < 5) errorSamples.push(`${kind}: ${message}`);
}

/** The worker's ServerClient, timing each call it makes. */
class TimedClient extends ServerClient {
  constructor(options: ServerClientOptions) {
    super(options);
  }

  override register(body: RegisterRequest, requestId?: string) {
    return timed('register', () => super.register(body, requestId));
  }

  override heartbeat(body: HeartbeatRequest, requestId?: string) {
    return timed('heartbeat', () => super.heartbeat(body, requestId));
  }

  override postReport(report: UpdateReport, correlationId?: string) {
    return timed('report', () => super.postReport(report, correlationId));
  }
}

/** One answer, read whole: what ServerClient and fetchLatestManifest read of it. */
interface RawResponse {
  status: number;
  /** Raw header names and values, alternating; looked up only when an answer needs one. */
  rawHeaders: Buffer[];
  body: Buffer;
}

function header(response: RawResponse, name: string): string | undefined {
  for (let i = 0; i + 1 < response.rawHeaders.length; i += 2) {
    if (response.rawHeaders[i]!.toString('latin1').toLowerCase() === name) return response.rawHeaders[i + 1]!.toString('latin1');
  }
  return undefined;
}

/**
 * The lean transport: one request through the shared Agent's undici core, with a minimal handler
 * (undici's raw handler interface: no response stream, no header object, no AbortSignal).
 */
function dispatch(method: 'GET' | 'POST', path: string, headers: Record<string, string>, body?: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let status = 0;
    let rawHeaders: Buffer[] = [];
    const queuedAt = performance.now();
    agent.dispatch(
      { origin: init.serverUrl, path, method, headers, ...(body !== undefined ? { body } : {}), headersTimeout: 30_000, bodyTimeout: 30_000 },
      {
        // Called as the request is written to a socket: the time before it is spent in the pool's queue.
        onConnect() {
          queueHistogram.record(performance.now() - queuedAt);
        },
        onHeaders(statusCode, received) {
          status = statusCode;
          rawHeaders = received;
          return true;
        },
        onData(chunk) {
          chunks.push(chunk);
          return true;
        },
        onComplete() {
          resolve({ status, rawHeaders, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
        },
        onError(err) {
          reject(err);
        },
      },
    );
  });
}

/**
 * The parsed 200 answer. Heartbeat answers are the same bytes for every worker until the policy
 * changes, so the last one parsed is handed out again: thousands of workers then hold one parsed
 * answer between their heartbeats instead of one each, which keeps the load process's garbage
 * collection pauses (and so its own share of the measured latency) small. Nothing mutates it.
 */
let lastAnswer: { text: string; parsed: unknown } | null = null;
function parsedAnswer(text: string): unknown {
  if (lastAnswer?.text !== text) lastAnswer = { text, parsed: JSON.parse(text) as unknown };
  return lastAnswer.parsed;
}

function serverCodeOf(body: Buffer): string | null {
  try {
    const code = (JSON.parse(body.toString('utf8')) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : null;
  } catch {
    return null;
  }
}

/**
 * ServerClient with the lean transport for the handshake and the heartbeat: the same request
 * bytes, and each answer mapped to the ConnectionError ServerClient would throw.
 */
class LeanClient extends TimedClient {
  constructor(
    options: ServerClientOptions,
    private readonly token: string,
  ) {
    super(options);
  }

  override register(body: RegisterRequest) {
    return timed('register', () => this.post('/api/workers/register', body) as Promise<RegisterResponse>);
  }

  override heartbeat(body: HeartbeatRequest) {
    return timed('heartbeat', () => this.post('/api/workers/heartbeat', body) as Promise<HeartbeatResponse>);
  }

  private async post(path: string, body: unknown): Promise<unknown> {
    let response: RawResponse;
    try {
      response = await dispatch('POST', path, { 'content-type': 'application/json', authorization: `Bearer ${this.token}` }, JSON.stringify(body));
    } catch (err) {
      throw new ConnectionError('server_unreachable', `POST ${path} failed: ${errorMessage(err)}`, { cause: err });
    }
    const { status } = response;
    if (status === 200) return parsedAnswer(response.body.toString('utf8'));
    const serverCode = serverCodeOf(response.body);
    const described = `POST ${path} returned ${status}${serverCode ? ` (${serverCode})` : ''}`;
    if (status === 429 || status === 503) {
      throw new ConnectionError('server_busy', described, { status, retryAfterMs: parseRetryAfter(header(response, 'retry-after'), new Date()), serverCode });
    }
    if (status === 401 || status === 403) throw new ConnectionError('auth_rejected', described, { status, serverCode });
    if (status >= 500) throw new ConnectionError('server_error', described, { status, serverCode });
    if (status >= 400) throw new ConnectionError('request_rejected', described, { status, serverCode });
    throw new ConnectionError('bad_response', described, { status, serverCode });
  }
}

/** fetchLatestManifest's request (URL, headers in its order) on the lean transport, with its outcomes. */
async function leanLatest(token: string, workerId: string, currentVersion: string, etag: string): Promise<ManifestResponse> {
  const url = latestManifestUrl({ serverUrl: init.serverUrl, channel: init.channel, platform: init.platform, workerId, currentVersion });
  const response = await dispatch('GET', `${url.pathname}${url.search}`, { authorization: `Bearer ${token}`, accept: 'application/json', 'if-none-match': etag });
  if (response.status === 304) return { kind: 'not_modified' };
  if (response.status === 404 && serverCodeOf(response.body) === 'no_release') return { kind: 'no_release' };
  if (response.status !== 200) throw new Error(`latest answered HTTP ${response.status}`);
  return { kind: 'manifest', bytes: response.body, etag: header(response, 'etag') ?? null, url: url.toString() };
}

/** Sleeps on the virtual clock; stopping a worker (aborting its signal) wakes its sleeps. */
const sleeping = new Map<AbortSignal, Set<() => void>>();
function virtualSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return realSleep(ms / init.timeScale, signal);
}
function realSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    let wakers = signal ? sleeping.get(signal) : undefined;
    if (signal && !wakers) {
      wakers = new Set();
      sleeping.set(signal, wakers);
    }
    const done = () => {
      clearTimeout(timer);
      wakers?.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    wakers?.add(done);
  });
}
function wake(signal: AbortSignal): void {
  for (const done of sleeping.get(signal) ?? []) done();
  sleeping.delete(signal);
}

const silentLog = createLogger({ name: 'fleet-load', level: 'silent', destination: new Writable({ write: (_chunk, _encoding, done) => done() }) });

let watch: { version: string; publishedAtMs: number } | null = null;

class SimWorker {
  readonly client: TimedClient;
  readonly random: () => number;
  version: string;
  etag: string;
  serial: number;
  policy: ServerPolicy | null = null;
  controller: AbortController | null = null;
  schedule: UpdateSchedule | null = null;
  checkTimer: NodeJS.Timeout | null = null;
  checking = false;
  updating = false;
  update: UpdateProgress | null = null;
  /** Wall-clock ms at which a `latest` poll first returned the watched release. */
  seenAtMs: number | null = null;

  constructor(
    readonly index: number,
    readonly workerId: string,
    readonly token: string,
  ) {
    this.random = seededRandom(init.seed * 7919 + index + 1);
    this.version = init.version;
    this.etag = init.etag;
    this.serial = init.serial;
    const options = { serverUrl: init.serverUrl, token, dispatcher: agent, clock: systemClock };
    this.client = init.client === 'lean' ? new LeanClient(options, token) : new TimedClient(options);
  }

  get running(): boolean {
    return this.controller !== null;
  }

  start(delayMs: number): void {
    const controller = new AbortController();
    if (this.controller === null) runningCount += 1;
    this.controller = controller;
    const signal = controller.signal;
    void (async () => {
      await realSleep(delayMs, signal);
      if (signal.aborted) return;
      this.schedule ??= this.steadySchedule();
      this.armCheck();
      await maintainConnection(
        {
          client: this.client,
          backoff: fullJitterBackoff({ ...RUN_BACKOFF, random: this.random }),
          log: silentLog,
          sleep: virtualSleep,
          registerBody: () => ({ worker_id: this.workerId, current_version: this.version, platform: init.platform, channel: init.channel }),
          heartbeatBody: () => ({ worker_id: this.workerId, current_version: this.version, state: 'working', ...(this.update ? { update: this.update } : {}) }),
          onPolicy: (policy) => this.onPolicy(policy),
        },
        signal,
        this.policy ?? undefined,
      );
    })();
  }

  stop(): void {
    const controller = this.controller;
    if (!controller) return;
    this.controller = null;
    runningCount -= 1;
    controller.abort();
    wake(controller.signal);
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.checkTimer = null;
  }

  /**
   * A worker that has been running a while: it last checked a uniformly random time within one
   * check interval ago, so a steady fleet's polls are spread evenly rather than all at start.
   */
  private steadySchedule(): UpdateSchedule {
    return new UpdateSchedule({
      checkIntervalS: init.checkIntervalS,
      currentVersion: this.version,
      random: this.random,
      nowMs: virtualNow() - this.random() * init.checkIntervalS * 1000,
      checkedAtStart: true,
      announcedLatest: this.version,
      minimumVersion: null,
    });
  }

  private onPolicy(policy: ServerPolicy): void {
    this.policy = policy;
    const effect = this.schedule?.onPolicy(virtualNow(), { latestVersion: policy.latestVersion, minimumVersion: policy.minimumVersion }, policy.poolAutoUpdate && !this.updating);
    if (effect !== undefined && effect !== 'none') this.armCheck();
  }

  private armCheck(minDelayMs = 0): void {
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.checkTimer = null;
    if (!this.running || !this.schedule || this.checking) return;
    const delayMs = Math.max(minDelayMs, (this.schedule.nextCheckAtMs - virtualNow()) / init.timeScale);
    this.checkTimer = setTimeout(() => void this.checkIfDue(), delayMs);
  }

  private async checkIfDue(): Promise<void> {
    this.checkTimer = null;
    const schedule = this.schedule;
    if (!this.running || !schedule) return;
    const step = schedule.nextStep(virtualNow(), { stopRequested: false, checksAllowed: !this.updating });
    if (step === 'check') {
      this.checking = true;
      schedule.checkStarted(virtualNow());
      const outcome = await this.check();
      schedule.checkFinished(virtualNow(), outcome);
      this.checking = false;
    }
    if (this.schedule !== schedule) return;
    // Not due, or not allowed while an update runs: look again a (real) second later at the earliest.
    if (step !== 'check' && schedule.nextCheckAtMs <= virtualNow()) this.armCheck(1000);
    else this.armCheck();
  }

  private poll(): Promise<ManifestResponse> {
    return timed(
      'poll',
      () =>
        init.client === 'lean'
          ? leanLatest(this.token, this.workerId, this.version, this.etag)
          : fetchLatestManifest({
              serverUrl: init.serverUrl,
              token: this.token,
              channel: init.channel,
              platform: init.platform,
              workerId: this.workerId,
              currentVersion: this.version,
              etag: this.etag,
              dispatcher: agent,
            }),
      (result) => (result.kind === 'no_release' ? 'latest answered 404 no_release' : null),
    );
  }

  private async check(): Promise<CheckOutcome> {
    let response: ManifestResponse;
    try {
      response = await this.poll();
    } catch (err) {
      return { kind: 'failed', reason: (err as { code?: string }).code === 'manifest_invalid' ? 'manifest_invalid' : 'manifest_fetch_failed' };
    }
    if (response.kind !== 'manifest') return { kind: 'done' };
    const signed = (JSON.parse(response.bytes.toString('utf8')) as { signed: { version: string; serial: number } }).signed;
    if (watch !== null && signed.version === watch.version && this.seenAtMs === null) this.seenAtMs = Date.now();
    if (compareVersions(signed.version, this.version) !== 0 && !this.updating) void this.runUpdate(signed, response.etag);
    else if (response.etag !== null) this.etag = response.etag;
    return { kind: 'done' };
  }

  /**
   * What a worker sends while it updates: the attempt report; heartbeats carrying the progress;
   * after the download and staging (`installDelayS`), a second `latest` (the recheck before the
   * switch); the restart on the new version, which registers again and checks at once; and
   * after the health window, the success report.
   */
  private async runUpdate(signed: { version: string; serial: number }, etag: string | null): Promise<void> {
    this.updating = true;
    const fromVersion = this.version;
    const correlationId = randomUUID();
    const startedMs = virtualNow();
    const report = (event: 'attempt' | 'success', extra: Partial<UpdateReport> = {}) =>
      this.client
        .postReport(
          {
            worker_id: this.workerId,
            event,
            from_version: fromVersion,
            to_version: signed.version,
            channel: init.channel,
            platform: init.platform,
            correlation_id: correlationId,
            serial: signed.serial,
            ...extra,
          },
          correlationId,
        )
        .catch(() => undefined);
    this.update = { to_version: signed.version, state: 'downloading' };
    await report('attempt');
    const generation = this.controller;
    await virtualSleep(init.installDelayS * 1000);
    if (this.controller !== generation || generation === null) {
      this.updating = false;
      return;
    }
    if (etag !== null) this.etag = etag;
    await this.poll().catch(() => undefined);
    // The restart: the new process registers with its new version and checks right away.
    this.stop();
    this.version = signed.version;
    this.serial = signed.serial;
    this.policy = null;
    this.update = { to_version: signed.version, state: 'watching' };
    this.schedule = new UpdateSchedule({
      checkIntervalS: init.checkIntervalS,
      currentVersion: this.version,
      random: this.random,
      nowMs: virtualNow(),
      checkedAtStart: false,
      announcedLatest: this.version,
      minimumVersion: null,
    });
    this.updating = false;
    this.start(0);
    await virtualSleep(init.healthWindowS * 1000);
    this.update = null;
    await report('success', { duration_ms: Math.round(virtualNow() - startedMs), bytes_fetched: 48_213_504, delta: false });
  }

  /** A background report pair (attempt, success) for the release it runs: the steady trickle of reports. */
  async backgroundReports(): Promise<void> {
    const correlationId = randomUUID();
    const base = { worker_id: this.workerId, from_version: '1.3.0', to_version: this.version, channel: init.channel, platform: init.platform, correlation_id: correlationId, serial: this.serial };
    await this.client.postReport({ ...base, event: 'attempt' }, correlationId).catch(() => undefined);
    await this.client.postReport({ ...base, event: 'success', duration_ms: 120_000, bytes_fetched: 48_213_504, delta: false }, correlationId).catch(() => undefined);
  }
}

const workers: SimWorker[] = [];
let runningCount = 0;
let fleet: Array<[string, string]> = [];
let resizes = 0;

function resize(count: number, spreadMs: number): void {
  resizes += 1;
  const random = seededRandom(init.seed + 1_000_003 * resizes + init.processIndex);
  for (let index = init.processIndex; index < Math.max(count, workers.length * init.processes); index += init.processes) {
    const slot = Math.floor(index / init.processes);
    if (index < count) {
      if (index >= fleet.length) throw new Error(`the fleet file has ${fleet.length} workers; ${count} asked for`);
      const [workerId, token] = fleet[index]!;
      const worker = (workers[slot] ??= new SimWorker(index, workerId, token));
      if (!worker.running) worker.start(random() * spreadMs);
    } else {
      workers[slot]?.stop();
    }
  }
}

/**
 * Background reports: `reportsPerWorkerDay` per running worker (in attempt+success pairs) in
 * virtual time, drawn every 100 ms from the running workers at random.
 */
function scheduleBackgroundReports(random: () => number): void {
  setInterval(() => {
    const pairs = (runningCount * init.reportsPerWorkerDay * init.timeScale * 0.1) / 86_400 / 2;
    let due = Math.floor(pairs) + (random() < pairs - Math.floor(pairs) ? 1 : 0);
    for (let tries = 0; due > 0 && tries < 100 && workers.length > 0; tries += 1) {
      const worker = workers[Math.floor(random() * workers.length)];
      if (!worker?.running) continue;
      void worker.backgroundReports();
      due -= 1;
    }
  }, 100).unref();
}

function windowStats(): WindowStats {
  const kinds = Object.fromEntries(
    REQUEST_KINDS.map((kind) => [kind, { ...counts.get(kind)!, histogram: histograms.get(kind)!.toJSON() }]),
  ) as WindowStats['kinds'];
  return {
    kinds,
    errorSamples,
    active: workers.filter((worker) => worker.running).length,
    timerLagP99Ms: loopDelay.percentile(99) / 1e6,
    timerLagMaxMs: loopDelay.max / 1e6,
    queueHistogram: queueHistogram.toJSON(),
    sendsPer100Ms: [...sendBuckets.entries()].sort((a, b) => a[0] - b[0]).map(([, count]) => count),
  };
}

function send(message: FromLoad): void {
  process.send!(message);
}

process.on('message', (message: ToLoad) => {
  void (async () => {
    try {
      switch (message.type) {
        case 'init':
          init = message;
          agent = new Agent({ connections: init.connections });
          fleet = JSON.parse(readFileSync(init.workersFile, 'utf8')) as Array<[string, string]>;
          scheduleBackgroundReports(seededRandom(init.seed * 31 + init.processIndex));
          send({ type: 'ready' });
          break;
        case 'resize':
          resize(message.count, message.spreadMs);
          send({ type: 'done', id: message.id });
          break;
        case 'window-start':
          resetStats();
          send({ type: 'done', id: message.id });
          break;
        case 'window-end':
          send({ type: 'window', id: message.id, stats: windowStats() });
          break;
        case 'watch':
          watch = { version: message.version, publishedAtMs: message.publishedAtMs };
          for (const worker of workers) worker.seenAtMs = null;
          send({ type: 'done', id: message.id });
          break;
        case 'seen': {
          const running = workers.filter((worker) => worker.running || worker.updating);
          const seenAfterMs = running.filter((worker) => worker.seenAtMs !== null).map((worker) => worker.seenAtMs! - watch!.publishedAtMs);
          send({ type: 'seen', id: message.id, seenAfterMs, watched: running.length });
          break;
        }
        case 'stop':
          for (const worker of workers) worker.stop();
          await agent.destroy().catch(() => undefined);
          send({ type: 'done', id: message.id });
          process.disconnect();
          break;
      }
    } catch (err) {
      send({ type: 'failed', message: errorMessage(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
