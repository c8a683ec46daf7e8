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
  /**
   * Resolves once the transactions committed so far are on stable storage (WalSyncer); a
   * writer's promise resolves only after it. Without it, a commit is its own durability point.
   */
  durable?: () => Promise<void>;
}

export const DEFAULT_MAX_BATCH_WAIT_MS = 2;

/**
 * Group commit for SQLite: many writes, one transaction, and each caller's promise resolves only
 * after that transaction has committed and, with `durable`, reached the disk (the WAL flush runs
 * off the event loop and covers every transaction committed before it started). A write that
 * fails is retried alone, so one bad row never fails its neighbours.
 *
 * When to commit. Clients answered together send their next writes together, a moment later.
 * Committing whatever is queued at the end of each event-loop turn would commit the first of
 * those alone and the rest in a second transaction. So a batch waits until it is as large as the
 * previous one (the concurrency the writers showed last time), or `maxWaitMs` at the most; an
 * idle server's single write (previous batch of 1) commits at the end of the turn, with no wait.
 * With `durable`, writes that arrive while a flush runs wait for its end and then commit in one
 * transaction, which the next flush covers: fewer, larger commits, and no later acknowledgement.
 */
export class WriteBatcher {
  private queue: PendingWrite[] = [];
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private expectedBatch = 1;
  private readonly maxBatch: number;
  private readonly maxWaitMs: number;
  private readonly durable: (() => Promise<void>) | undefined;
  /** Settles when the WAL flush covering the last commit has ended; null when none is running. */
  private flushing: Promise<void> | null = null;
  /** Writes are queued until `flushing` settles, and then commit together. */
  private waitingForFlush = false;

  constructor(
    private readonly db: Database,
    options: WriteBatcherOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 1000;
    this.maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_BATCH_WAIT_MS;
    this.durable = options.durable;
  }

  write(apply: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ apply, resolve, reject });
      if (this.immediate !== null || this.waitingForFlush) return;
      if (this.flushing) {
        // They could not be acknowledged before the next flush anyway: commit them all in one
        // transaction the moment the running flush ends, and that next flush covers them.
        this.waitingForFlush = true;
        void this.flushing.then(() => {
          this.waitingForFlush = false;
          this.flush();
        });
        return;
      }
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
    let committed = batch;
    try {
      this.db.transaction(() => {
        for (const write of batch) write.apply();
      })();
    } catch {
      committed = [];
      for (const write of batch) {
        try {
          this.db.transaction(write.apply)();
          committed.push(write);
        } catch (err) {
          write.reject(err);
        }
      }
    }
    if (committed.length === 0) return;
    if (!this.durable) {
      for (const write of committed) write.resolve();
      return;
    }
    const durable = this.durable();
    const settled = durable.then(
      () => {
        for (const write of committed) write.resolve();
      },
      (err: unknown) => {
        for (const write of committed) write.reject(err);
      },
    );
    this.flushing = settled;
    void settled.then(() => {
      if (this.flushing === settled) this.flushing = null;
    });
  }
}
