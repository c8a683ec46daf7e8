import { setMaxListeners } from 'node:events';
import { Writable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import type { HeartbeatRequest, RegisterRequest } from '../../src/protocol/messages.js';
import { systemClock } from '../../src/shared/clock.js';
import { createLogger } from '../../src/shared/logger.js';
import { fullJitterBackoff, sleep } from '../../src/worker/runtime/backoff.js';
import { maintainConnection, ServerClient } from '../../src/worker/runtime/connection.js';
import { seededRandom } from './seeded-random.js';

export { seededRandom };

/**
 * Many workers in one process, each running the worker's own connection code: a ServerClient on
 * its own connection pool, and `maintainConnection` (the handshake, the heartbeat loop and its
 * retry schedule) with the same backoff settings as `run`. Only the work loop and the updater are
 * left out, so what a test measures is the real retry behaviour of a fleet, at the clients.
 */

/** The backoff `run` gives maintainConnection (src/worker/runtime/run.ts). */
const RUN_BACKOFF = { baseDelayMs: 1000, maxDelayMs: 300_000 } as const;


/** A connection pool that notes the time of every request it is asked to send, failed ones included. */
class CountingAgent extends Agent {
  constructor(private readonly onRequest: () => void) {
    super({ connections: 1 });
  }

  override dispatch(options: Agent.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.onRequest();
    return super.dispatch(options, handler);
  }
}

export interface SimulatedWorker {
  workerId: string;
  /** Times (ms since the epoch) the server's policy arrived: a handshake or a heartbeat that succeeded. */
  policyAtMs: number[];
  /** Handshakes tried (each call to /api/workers/register). */
  registerAttempts: number;
}

export interface FleetSimOptions {
  serverUrl: string;
  /** Worker tokens, handed out round-robin. */
  tokens: readonly string[];
  workerCount: number;
  /** Seeds the start offsets and every worker's backoff jitter. */
  seed: number;
  /** Workers start at uniformly random offsets within this span, as a real fleet does. */
  startSpreadMs: number;
  version?: string;
  platform?: string;
  channel?: string;
}

export class FleetSim {
  /** The send time (ms since the epoch) of every request of every simulated worker. */
  readonly requestTimesMs: number[] = [];
  readonly workers: SimulatedWorker[] = [];
  readonly #stop = new AbortController();
  readonly #running: Promise<void>[] = [];
  readonly #agents: Agent[] = [];
  readonly #options: FleetSimOptions;

  constructor(options: FleetSimOptions) {
    this.#options = options;
  }

  start(): void {
    const options = this.#options;
    // Every simulated worker waits on the one stop signal.
    setMaxListeners(options.workerCount * 2 + 10, this.#stop.signal);
    const startOffsets = seededRandom(options.seed);
    // Log lines are dropped: 200 workers retrying would drown the test output. The logger still
    // runs, with the worker's own redaction, as in production.
    const log = createLogger({ name: 'fleet-sim', level: 'warn', destination: new Writable({ write: (_chunk, _encoding, done) => done() }) });
    for (let index = 0; index < options.workerCount; index += 1) {
      const worker: SimulatedWorker = { workerId: `sim-${String(index).padStart(4, '0')}`, policyAtMs: [], registerAttempts: 0 };
      this.workers.push(worker);
      const agent = new CountingAgent(() => this.requestTimesMs.push(Date.now()));
      this.#agents.push(agent);
      const client = new ServerClient({
        serverUrl: options.serverUrl,
        token: options.tokens[index % options.tokens.length]!,
        dispatcher: agent,
        clock: systemClock,
      });
      const registerBody = (): RegisterRequest => {
        worker.registerAttempts += 1;
        return {
        worker_id: worker.workerId,
        current_version: options.version ?? '1.0.0',
        platform: options.platform ?? 'linux-x64',
        channel: options.channel ?? 'stable',
        };
      };
      const heartbeatBody = (): HeartbeatRequest => ({ worker_id: worker.workerId, current_version: options.version ?? '1.0.0', state: 'working' });
      const workerRandom = seededRandom(options.seed * 7919 + index + 1);
      const delayMs = Math.floor(startOffsets() * options.startSpreadMs);
      this.#running.push(
        (async () => {
          await sleep(delayMs, this.#stop.signal);
          await maintainConnection(
            {
              client,
              backoff: fullJitterBackoff({ ...RUN_BACKOFF, random: workerRandom }),
              log,
              registerBody,
              heartbeatBody,
              onPolicy: () => {
                worker.policyAtMs.push(Date.now());
              },
            },
            this.#stop.signal,
          );
        })(),
      );
    }
  }

  /** Requests sent in [fromMs, toMs), per second of wall time. */
  ratePerSecond(fromMs: number, toMs: number): number {
    return this.countBetween(fromMs, toMs) / ((toMs - fromMs) / 1000);
  }

  countBetween(fromMs: number, toMs: number): number {
    return this.requestTimesMs.filter((at) => at >= fromMs && at < toMs).length;
  }

  /** Requests per one-second bucket from fromMs, for `seconds` buckets. */
  bucketsPerSecond(fromMs: number, seconds: number): number[] {
    const buckets = new Array<number>(seconds).fill(0);
    for (const at of this.requestTimesMs) {
      const bucket = Math.floor((at - fromMs) / 1000);
      if (bucket >= 0 && bucket < seconds) buckets[bucket]! += 1;
    }
    return buckets;
  }

  /** Workers whose policy arrived (a successful heartbeat or handshake) at or after `sinceMs`. */
  workersHeardFromSince(sinceMs: number): number {
    return this.workers.filter((worker) => worker.policyAtMs.some((at) => at >= sinceMs)).length;
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled(this.#running);
    await Promise.allSettled(this.#agents.map((agent) => agent.destroy()));
  }
}
