import type { Database } from 'better-sqlite3';

interface PendingWrite {
  apply: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for SQLite. Writes that arrive in the same turn of the event loop are applied in
 * one transaction, and each caller's promise resolves only after that transaction has committed
 * (and, with `synchronous=FULL`, been fsynced). One fsync then covers a whole batch, which is what
 * lets durable report ingestion keep up with a fleet. A write that fails is retried alone, so one
 * bad row never fails its neighbours.
 */
export class WriteBatcher {
  private queue: PendingWrite[] = [];
  private scheduled = false;
  private readonly maxBatch: number;

  constructor(
    private readonly db: Database,
    options: { maxBatch?: number } = {},
  ) {
    this.maxBatch = options.maxBatch ?? 1000;
  }

  write(apply: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ apply, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Apply everything queued now (also called on close). */
  flush(): void {
    this.scheduled = false;
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
