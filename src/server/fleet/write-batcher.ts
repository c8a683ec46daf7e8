import type { Database } from 'better-sqlite3';

interface PendingWrite {
  apply: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface WriteBatcherOptions {
  /** Most writes in one transaction. */
  maxBatch?: number;
  /** Longest a write waits for companions before its batch commits anyway. */
  maxWaitMs?: number;
}

export const DEFAULT_MAX_BATCH_WAIT_MS = 2;

/**
 * Group commit for SQLite: many writes, one transaction, one fsync (with `synchronous=FULL`),
 * and each caller's promise resolves only after that transaction has committed. A write that
 * fails is retried alone, so one bad row never fails its neighbours.
 *
 * When to commit. better-sqlite3 commits on this thread, so while one commit waits for its fsync
 * nothing else runs, and the clients it answers send their next writes just after it. Committing
 * whatever is queued at the end of each event-loop turn would then commit the first of those
 * alone and fsync once more for the rest: two fsyncs per round instead of one. So a batch waits
 * until it is as large as the previous one (the concurrency the writers showed last time), or
 * `maxWaitMs` at the most; an idle server's single write (previous batch of 1) commits at the
 * end of the turn, with no wait.
 */
export class WriteBatcher {
  private queue: PendingWrite[] = [];
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private expectedBatch = 1;
  private readonly maxBatch: number;
  private readonly maxWaitMs: number;

  constructor(
    private readonly db: Database,
    options: WriteBatcherOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 1000;
    this.maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_BATCH_WAIT_MS;
  }

  write(apply: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ apply, resolve, reject });
      if (this.immediate !== null) return;
      if (this.queue.length >= Math.min(this.expectedBatch, this.maxBatch)) {
        // Commit at the end of this turn, after the rest of the requests that are already here.
        this.immediate = setImmediate(() => this.flush());
      } else {
        this.timer ??= setTimeout(() => this.flush(), this.maxWaitMs);
      }
    });
  }

  /** Apply everything queued now (also called on close). */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    if (this.queue.length === 0) return;
    this.expectedBatch = this.queue.length;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.commit(batch);
    }
  }

  private commit(batch: PendingWrite[]): void {
    try {
      this.db.transaction(() => {
        for (const write of batch) write.apply();
      })();
    } catch {
      for (const write of batch) {
        try {
          this.db.transaction(write.apply)();
          write.resolve();
        } catch (err) {
          write.reject(err);
        }
      }
      return;
    }
    for (const write of batch) write.resolve();
  }
}
