interface Pending<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

export interface StatementCoalescerOptions<T, R> {
  /** Write `items` in ONE statement (one transaction, one commit); the result of each, in order. */
  writeMany: (items: T[]) => Promise<R[]>;
  /** Most items in one statement. */
  maxBatch?: number;
  /** Statements in flight at once; later items queue and go together in the next one. */
  maxInFlight?: number;
}

/**
 * Group commit for PostgreSQL: the heartbeats (or reports) that arrive while a statement is in
 * flight are written together by the next one, so a busy replica sends one multi-row statement
 * per round trip instead of one per request, and each commit (a WAL flush) covers many writes.
 * An idle replica's single write goes at the end of the event-loop turn, without waiting.
 * Each caller's promise settles only after the statement that carried it committed.
 *
 * A statement that fails is retried once per item, so one bad row fails only its own request;
 * a deadlock or serialization failure (two replicas writing the same rows in another order) is
 * retried as a whole first, since it says nothing about the rows.
 */
export class StatementCoalescer<T, R> {
  private queue: Array<Pending<T, R>> = [];
  private scheduled = false;
  private inFlight = 0;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly options: StatementCoalescerOptions<T, R>) {
    this.maxBatch = options.maxBatch ?? 1000;
    this.maxInFlight = options.maxInFlight ?? 2;
  }

  write(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Resolves once nothing is queued or in flight (close). */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.send();
    });
  }

  private send(): void {
    while (this.queue.length > 0 && this.inFlight < this.maxInFlight) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight += 1;
      void this.commit(batch).finally(() => {
        this.inFlight -= 1;
        if (this.queue.length > 0) this.schedule();
        else if (this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      });
    }
  }

  private async commit(batch: Array<Pending<T, R>>): Promise<void> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const results = await this.options.writeMany(batch.map((pending) => pending.item));
        batch.forEach((pending, i) => pending.resolve(results[i]!));
        return;
      } catch (err) {
        if (isRetryableConflict(err) && attempt < 3) continue;
        if (batch.length === 1) {
          batch[0]!.reject(err);
          return;
        }
        break;
      }
    }
    // Isolate the failing item: each alone.
    await Promise.all(
      batch.map(async (pending) => {
        try {
          const [result] = await this.options.writeMany([pending.item]);
          pending.resolve(result!);
        } catch (err) {
          pending.reject(err);
        }
      }),
    );
  }
}

/** Deadlock detected, or a serialization failure: the same statement may succeed when run again. */
export function isRetryableConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}
