/**
 * What bench/fleet.ts and its load processes (bench/fleet-load.ts) say to each other over IPC,
 * and the latency histogram they share: 1 %-wide logarithmic buckets of microseconds, so that a
 * window's p99 from several load processes is merged exactly (to 1 %) without shipping samples.
 */

export const REQUEST_KINDS = ['register', 'heartbeat', 'poll', 'report'] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

const GROWTH = Math.log(1.01);
/** 1.01^2100 µs is about 20 minutes: past any request timeout. */
const BUCKETS = 2100;

export class LatencyHistogram {
  readonly counts: Uint32Array;
  total = 0;

  constructor(counts?: readonly number[] | Uint32Array) {
    this.counts = new Uint32Array(BUCKETS);
    if (counts) this.counts.set(counts);
    for (const count of this.counts) this.total += count;
  }

  record(ms: number): void {
    const us = Math.max(1, ms * 1000);
    this.counts[Math.min(BUCKETS - 1, Math.ceil(Math.log(us) / GROWTH))]! += 1;
    this.total += 1;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < BUCKETS; i += 1) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
  }

  /** The latency (ms) below which `fraction` of the requests finished; the bucket's upper edge. */
  quantileMs(fraction: number): number {
    if (this.total === 0) return 0;
    const rank = Math.ceil(fraction * this.total);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i += 1) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.exp(i * GROWTH) / 1000;
    }
    return Number.POSITIVE_INFINITY;
  }

  /** Sparse form for IPC: [bucket, count] pairs. */
  toJSON(): Array<[number, number]> {
    const pairs: Array<[number, number]> = [];
    this.counts.forEach((count, index) => {
      if (count > 0) pairs.push([index, count]);
    });
    return pairs;
  }

  static fromJSON(pairs: Array<[number, number]>): LatencyHistogram {
    const histogram = new LatencyHistogram();
    for (const [index, count] of pairs) histogram.counts[index] = count;
    histogram.total = pairs.reduce((sum, [, count]) => sum + count, 0);
    return histogram;
  }
}

/** Per request kind over one window: answered (2xx/304), failed, and the latency of both. */
export interface KindStats {
  ok: number;
  errors: number;
  histogram: Array<[number, number]>;
}

export interface WindowStats {
  kinds: Record<RequestKind, KindStats>;
  /** A few error messages, for the printout. */
  errorSamples: string[];
  /** Simulated workers running in this process at the end of the window. */
  active: number;
  /** Event-loop delay of the load process (monitorEventLoopDelay, 10 ms resolution), p99 and max: its own saturation. */
  timerLagP99Ms: number;
  timerLagMaxMs: number;
  /** Lean transport: time requests waited in the Agent's queue for a free connection. */
  queueHistogram: Array<[number, number]>;
  /** Requests sent in each 100 ms of the window, in order. */
  sendsPer100Ms: number[];
}

export interface LoadInit {
  type: 'init';
  serverUrl: string;
  /** A JSON file: the credential (or pool token) of worker i at index i. */
  workersFile: string;
  /** This process simulates the workers whose index i has i % processes === processIndex. */
  processIndex: number;
  processes: number;
  /** Intervals are divided by this (and the fleet with it) to reach the same request rate. */
  timeScale: number;
  heartbeatIntervalS: number;
  checkIntervalS: number;
  reportsPerWorkerDay: number;
  /** `lean`: handshake, heartbeat and latest through a minimal undici handler (same bytes); `worker`: the worker's own client. */
  client: 'lean' | 'worker';
  /** undici connections to the server from this process (one shared, keep-alive Agent). */
  connections: number;
  seed: number;
  version: string;
  serial: number;
  /** The ETag of the manifest every simulated worker starts with (its current release). */
  etag: string;
  platform: string;
  channel: string;
  /** Virtual ms from a `latest` 200 to the restart on the new version, and from there to the success report. */
  installDelayS: number;
  healthWindowS: number;
}

export type ToLoad =
  | LoadInit
  /** Run the first `count` workers of the whole fleet (those of this process among them), starting new ones over `spreadMs`. */
  | { type: 'resize'; id: number; count: number; spreadMs: number }
  | { type: 'window-start'; id: number }
  | { type: 'window-end'; id: number }
  /** A release was published at `publishedAtMs`: note when each worker's poll first returns `version`. */
  | { type: 'watch'; id: number; version: string; publishedAtMs: number }
  | { type: 'seen'; id: number }
  | { type: 'stop'; id: number };

export type FromLoad =
  | { type: 'ready' }
  | { type: 'done'; id: number }
  | { type: 'window'; id: number; stats: WindowStats }
  /** ms after the publication at which each worker that has seen the release first saw it; `watched`: workers running at publication. */
  | { type: 'seen'; id: number; seenAfterMs: number[]; watched: number }
  | { type: 'failed'; message: string };
