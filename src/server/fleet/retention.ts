import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Clock } from '../../shared/clock.js';
import { errorMessage } from '../../shared/errors.js';
import type { FleetStore } from './fleet-store.js';

export const DEFAULT_EVENT_RETENTION = '90d';
export const DEFAULT_WORKER_RETENTION = '30d';
/** Rows per DELETE: small enough that no statement holds the database for long. */
export const RETENTION_BATCH = 1000;
/** How often the leader prunes. */
export const RETENTION_INTERVAL_MS = 10 * 60_000;

export interface RetentionOptions {
  fleet: FleetStore;
  clock: Clock;
  logger: { info(fields: object, message: string): void; error(fields: object, message: string): void };
  eventRetentionMs: number;
  workerRetentionMs: number;
  /** Only the leader prunes (LeaderLease); the others skip their turn. */
  isLeader: () => boolean;
  /** Called with the rows each pass deleted (the retention metric). */
  onPruned?: (deleted: { events: number; workers: number }) => void;
  intervalMs?: number;
  batch?: number;
}

/**
 * Deletes update events older than the event retention and workers unseen for longer than the
 * worker retention, in batches of RETENTION_BATCH with a turn of the event loop between batches,
 * off the request path (docs/server.md, "Retention"). A worker's rollout admissions (its serial
 * floor) and its credentials are never deleted with it: if it comes back it registers again and
 * is still never offered a lower serial than it was.
 */
export class Retention {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<{ events: number; workers: number }> | null = null;
  private stopped = false;

  constructor(private readonly options: RetentionOptions) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.options.isLeader()) void this.prune();
    }, this.options.intervalMs ?? RETENTION_INTERVAL_MS);
    this.timer.unref();
  }

  /** One full pass now; resolves with the rows deleted. Never throws (a failure is logged). */
  prune(): Promise<{ events: number; workers: number }> {
    this.running ??= this.pass().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async pass(): Promise<{ events: number; workers: number }> {
    const { fleet, clock, logger } = this.options;
    const batch = this.options.batch ?? RETENTION_BATCH;
    const now = clock.now().getTime();
    const deleted = { events: 0, workers: 0 };
    try {
      for (const [kind, cutoff, prune] of [
        ['events', new Date(now - this.options.eventRetentionMs), (before: Date) => fleet.pruneEvents(before, batch)],
        ['workers', new Date(now - this.options.workerRetentionMs), (before: Date) => fleet.pruneWorkers(before, batch)],
      ] as const) {
        for (;;) {
          if (this.stopped) return deleted;
          const n = await prune(cutoff);
          deleted[kind] += n;
          if (n < batch) break;
          // Let requests in between batches.
          await nextTurn();
        }
      }
    } catch (err) {
      logger.error({ event: 'retention_failed', err: errorMessage(err), ...deleted }, 'retention pass failed; tried again next interval');
    }
    if (deleted.events > 0 || deleted.workers > 0) {
      logger.info({ event: 'retention_pruned', events: deleted.events, workers: deleted.workers }, 'deleted old update events and long-unseen workers');
    }
    this.options.onPruned?.(deleted);
    return deleted;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
