import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { UpdateReport } from '../../protocol/messages.js';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import type { Clock } from '../../shared/clock.js';
import { errorMessage, isErrnoCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { isProcessAlive } from '../../shared/process-alive.js';
import { sleep as defaultSleep, type Backoff, type Sleep } from '../runtime/backoff.js';
import { ConnectionError } from '../runtime/connection.js';

/** One queued report file: the body as sent, and the correlation id for X-Request-Id. */
export interface QueuedReport {
  report: UpdateReport;
  correlation_id?: string;
  queued_at: string;
}

export type SendReport = (report: UpdateReport, correlationId?: string) => Promise<void>;

export interface ReportQueueOptions {
  dir: string;
  send: SendReport;
  backoff: Backoff;
  log: Logger;
  clock: Clock;
  sleep?: Sleep;
  /** Tells whether a process id is alive; injectable for tests of stale claims. */
  isProcessAlive?: (pid: number) => boolean;
}

export interface DrainResult {
  sent: number;
  dropped: number;
  /** Files still queued because sending failed in a way worth retrying. */
  pending: number;
  retryAfterMs: number | null;
}

const QUEUED_SUFFIX = '.json';
const CLAIM_MARK = '.sending-';

/**
 * Update reports are queued on disk first, then sent; a file is deleted only after the server's
 * 202, so no report is lost while the server is down or the worker restarts. The supervisor and
 * the worker share the folder: a sender claims a file by renaming it (atomic) before sending, so
 * no report goes out twice, and a claim left by a dead process is released at start.
 */
export class ReportQueue {
  readonly #options: ReportQueueOptions;
  readonly #sleep: Sleep;
  #wake: (() => void) | null = null;
  #wakePending = false;
  #sequence = 0;

  constructor(options: ReportQueueOptions) {
    this.#options = options;
    this.#sleep = options.sleep ?? defaultSleep;
  }

  /** Write the report to the queue durably; the background sender picks it up. */
  async enqueue(report: UpdateReport, correlationId?: string): Promise<string> {
    const now = this.#options.clock.now();
    // Names sort by time, then by a per-process sequence, so reports go out in the order they happened.
    this.#sequence += 1;
    const name = `${now.toISOString().replace(/[:.]/g, '-')}-${String(this.#sequence).padStart(8, '0')}-${process.pid}-${randomBytes(4).toString('hex')}${QUEUED_SUFFIX}`;
    const body: QueuedReport = { report, ...(correlationId ? { correlation_id: correlationId } : {}), queued_at: now.toISOString() };
    await writeFileAtomic(join(this.#options.dir, name), `${JSON.stringify(body)}\n`);
    this.#wakePending = true;
    this.#wake?.();
    return name;
  }

  /** Put back files claimed by processes that died mid-send. */
  async releaseStaleClaims(): Promise<number> {
    const isAlive = this.#options.isProcessAlive ?? isProcessAlive;
    let released = 0;
    for (const name of await this.#list()) {
      const at = name.indexOf(CLAIM_MARK);
      if (at < 0) continue;
      const pid = Number(name.slice(at + CLAIM_MARK.length));
      if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) continue;
      await rename(join(this.#options.dir, name), join(this.#options.dir, name.slice(0, at))).catch(() => undefined);
      released += 1;
    }
    return released;
  }

  async pendingCount(): Promise<number> {
    return (await this.#list()).filter((name) => name.endsWith(QUEUED_SUFFIX)).length;
  }

  /** Send every queued report in order; stop at the first failure worth retrying. */
  async drainOnce(): Promise<DrainResult> {
    const result: DrainResult = { sent: 0, dropped: 0, pending: 0, retryAfterMs: null };
    const queued = (await this.#list()).filter((name) => name.endsWith(QUEUED_SUFFIX)).sort();
    for (const [index, name] of queued.entries()) {
      const path = join(this.#options.dir, name);
      const claimed = `${path}${CLAIM_MARK}${process.pid}`;
      try {
        await rename(path, claimed);
      } catch (err) {
        if (isErrnoCode(err, 'ENOENT')) continue; // another sender has it
        throw err;
      }
      let item: QueuedReport;
      try {
        item = JSON.parse(await readFile(claimed, 'utf8')) as QueuedReport;
      } catch (err) {
        this.#options.log.error({ event: 'worker_report_dropped', file: name, error: errorMessage(err) }, 'unreadable queued report dropped');
        await rm(claimed, { force: true });
        result.dropped += 1;
        continue;
      }
      try {
        await this.#options.send(item.report, item.correlation_id);
        await rm(claimed, { force: true });
        result.sent += 1;
      } catch (err) {
        // A request the server rejects as invalid will never succeed: keeping it would block the
        // queue forever. Auth failures are kept: the operator fixes the token, the report survives.
        if (err instanceof ConnectionError && err.code === 'request_rejected') {
          this.#options.log.error(
            { event: 'worker_report_dropped', correlation_id: item.correlation_id, status: err.status, error: err.message },
            'the server rejected an update report; dropped',
          );
          await rm(claimed, { force: true });
          result.dropped += 1;
          continue;
        }
        await rename(claimed, path);
        result.pending = queued.length - index;
        result.retryAfterMs = err instanceof ConnectionError ? err.retryAfterMs : null;
        this.#options.log.warn(
          { event: 'worker_report_deferred', correlation_id: item.correlation_id, code: (err as { code?: string }).code, error: errorMessage(err) },
          'could not send an update report; it stays queued',
        );
        return result;
      }
    }
    return result;
  }

  /** Send in the background until `signal` aborts: drain, back off on failure, sleep until woken. */
  async runSender(signal: AbortSignal, idleCheckMs = 60_000): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      this.#wakePending = false;
      // The other process sharing the folder may have died mid-send since the last round.
      await this.releaseStaleClaims().catch(() => 0);
      let delayMs = idleCheckMs;
      try {
        const result = await this.drainOnce();
        if (result.pending > 0) {
          delayMs = this.#options.backoff.delayMs(failures, result.retryAfterMs);
          failures += 1;
        } else {
          failures = 0;
        }
      } catch (err) {
        this.#options.log.error({ event: 'worker_report_queue_error', error: errorMessage(err) }, 'report queue error');
        delayMs = this.#options.backoff.delayMs(failures);
        failures += 1;
      }
      if (this.#wakePending && failures === 0) continue;
      await this.#waitForWork(delayMs, signal, failures === 0);
    }
  }

  async #waitForWork(delayMs: number, signal: AbortSignal, wakeOnEnqueue: boolean): Promise<void> {
    // Aborted while the last drain ran: an 'abort' listener added now would never fire.
    if (signal.aborted) return;
    const inner = new AbortController();
    const onAbort = (): void => inner.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    if (wakeOnEnqueue) this.#wake = onAbort;
    try {
      await this.#sleep(delayMs, inner.signal);
    } finally {
      this.#wake = null;
      signal.removeEventListener('abort', onAbort);
    }
  }

  async #list(): Promise<string[]> {
    try {
      return await readdir(this.#options.dir);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) {
        await mkdir(this.#options.dir, { recursive: true });
        return [];
      }
      throw err;
    }
  }
}
