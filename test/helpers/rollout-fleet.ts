import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import type { HeartbeatRequest, HeartbeatResponse, RegisterResponse, UpdateReport } from '../../src/protocol/messages.js';
import { compareVersions } from '../../src/protocol/version.js';
import type { PublicKey } from '../../src/trust/keys.js';
import { verifyManifest } from '../../src/trust/verify.js';

/**
 * Lightweight workers for rollout tests: each keeps what a real worker keeps about a channel (the
 * highest serial it accepted, as state.json does) and talks to the real server over real HTTP.
 * Every manifest is verified with the worker's own verifier against that floor, so a server that
 * ever offered a lower serial fails the test exactly as it would make a real worker log
 * `manifest_rollback`.
 */
export interface LightWorker {
  id: string;
  pool: string;
  token: string;
  version: string;
  /** Highest serial accepted (the worker's rollback floor). */
  floor: number;
  /** Serial of each manifest it was served, in order. */
  served: number[];
}

export interface PollResult {
  status: number;
  serial: number | null;
  version: string | null;
}

export class LightFleet {
  readonly agent = new Agent({ connections: 32 });
  readonly workers: LightWorker[] = [];

  constructor(
    readonly baseUrl: string,
    readonly channel: string,
    private readonly trustedKeys: readonly PublicKey[],
    private readonly now: () => Date,
  ) {}

  add(id: string, pool: string, token: string, version: string): LightWorker {
    const worker: LightWorker = { id, pool, token, version, floor: 0, served: [] };
    this.workers.push(worker);
    return worker;
  }

  inPool(pool: string): LightWorker[] {
    return this.workers.filter((w) => w.pool === pool);
  }

  private async call(worker: LightWorker, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; text: string }> {
    const response = await request(`${this.baseUrl}${path}`, {
      method,
      dispatcher: this.agent,
      headers: { authorization: `Bearer ${worker.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.statusCode, text: await response.body.text() };
  }

  async register(worker: LightWorker): Promise<RegisterResponse> {
    const res = await this.call(worker, 'POST', '/api/workers/register', { worker_id: worker.id, current_version: worker.version, platform: 'linux-x64', channel: this.channel });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text) as RegisterResponse;
  }

  /** A heartbeat at the worker's version; `working` with no update unless told. */
  async heartbeat(worker: LightWorker, progress: Pick<HeartbeatRequest, 'state' | 'update'> = { state: 'working' }): Promise<HeartbeatResponse> {
    const res = await this.call(worker, 'POST', '/api/workers/heartbeat', { worker_id: worker.id, current_version: worker.version, ...progress });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text) as HeartbeatResponse;
  }

  /** An update report on this fleet's channel, as the worker's updater sends it. */
  async report(worker: LightWorker, report: Pick<UpdateReport, 'event' | 'from_version' | 'to_version'> & Partial<Pick<UpdateReport, 'reason' | 'serial'>>): Promise<void> {
    const res = await this.call(worker, 'POST', '/api/worker-updates/report', { worker_id: worker.id, channel: this.channel, platform: 'linux-x64', ...report });
    assert.equal(res.status, 202, res.text);
  }

  /** GET latest as the worker does, and verify what comes back as the worker would. */
  async poll(worker: LightWorker): Promise<PollResult> {
    const query = new URLSearchParams({ channel: this.channel, platform: 'linux-x64', worker_id: worker.id, current_version: worker.version });
    const res = await this.call(worker, 'GET', `/api/worker-updates/latest?${query}`);
    if (res.status === 404) {
      assert.equal((JSON.parse(res.text) as { error: { code: string } }).error.code, 'no_release', 'nothing new is always no_release, never another error');
      return { status: 404, serial: null, version: null };
    }
    assert.equal(res.status, 200, res.text);
    // Throws manifest_rollback if the server ever offered this worker a serial below its floor.
    const { signed } = verifyManifest(Buffer.from(res.text), {
      trustedKeys: this.trustedKeys,
      threshold: 1,
      channel: this.channel,
      highestSerial: worker.floor > 0 ? worker.floor : undefined,
      currentVersion: worker.version,
      now: this.now(),
    });
    worker.floor = Math.max(worker.floor, signed.serial);
    worker.served.push(signed.serial);
    return { status: 200, serial: signed.serial, version: signed.version };
  }

  /** Run `fn` over workers, `concurrency` at a time. */
  async each<T>(workers: readonly LightWorker[], fn: (worker: LightWorker) => Promise<T>, concurrency = 32): Promise<T[]> {
    const results: T[] = new Array(workers.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(concurrency, workers.length) }, async () => {
        while (next < workers.length) {
          const index = next;
          next += 1;
          results[index] = await fn(workers[index]!);
        }
      }),
    );
    return results;
  }

  /** Poll every worker; a worker offered a newer version than it runs "updates" to it when `update` says so. */
  async pollAll(update: (worker: LightWorker, result: PollResult) => boolean = () => false): Promise<Map<string, PollResult>> {
    const out = new Map<string, PollResult>();
    await this.each(this.workers, async (worker) => {
      const result = await this.poll(worker);
      out.set(worker.id, result);
      if (result.version !== null && compareVersions(result.version, worker.version) !== 0 && update(worker, result)) worker.version = result.version;
    });
    return out;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
