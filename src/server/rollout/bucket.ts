import { createHash } from 'node:crypto';

/**
 * Where a worker stands in a release's queue: a hash of the worker id with the channel and the
 * serial. Each release orders the fleet afresh, so the early workers of one release are not the
 * early workers of the next (Ubuntu's phased updates do the same; electron-updater's fixed
 * per-install bucket does not). 48 bits: no ties in practice, and exact in a double.
 */
export function rolloutRank(channel: string, serial: number, workerId: string): number {
  const digest = createHash('sha256').update(`${channel}\n${serial}\n${workerId}`).digest();
  return digest.readUIntBE(0, 6);
}

export interface RankedWorker {
  id: string;
  rank: number;
}

/** Order by rank, then id (a total order even if two ranks were equal). */
export function compareRanked(a: RankedWorker, b: RankedWorker): number {
  return a.rank - b.rank || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * The last worker a share admits: of the pool's live workers ordered by rank, the first
 * ceil(percent × n / 100). A worker is admitted when it orders at or before this cutoff, so the
 * share is exact over the live workers, not a matter of luck. Null when the share admits nobody.
 */
export function shareCutoff(workers: readonly RankedWorker[], percent: number): RankedWorker | null {
  const count = Math.ceil((percent * workers.length) / 100);
  if (count === 0) return null;
  const sorted = [...workers].sort(compareRanked);
  return sorted[count - 1]!;
}

export function withinCutoff(worker: RankedWorker, cutoff: RankedWorker | null): boolean {
  return cutoff !== null && compareRanked(worker, cutoff) <= 0;
}
