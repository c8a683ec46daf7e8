import { createHash } from 'node:crypto';
import type { UpdateState, WorkerState } from '../../protocol/messages.js';
import type { RolloutStatus } from '../../protocol/rollouts.js';
import type { Clock } from '../../shared/clock.js';
import type { FleetStore, WorkerStateCount } from '../fleet/fleet-store.js';
import { unseenWindow } from '../fleet/liveness.js';

/** How long one snapshot serves every open page: the console polls every 5 s. */
export const OVERVIEW_MAX_AGE_MS = 5000;
/**
 * A snapshot older than its age but younger than this is answered at once while the next is
 * built: a page never waits for a rebuild while pages are polling. Older than this (nobody has
 * looked for a minute), the request waits for fresh data.
 */
export const OVERVIEW_STALE_MS = 60_000;
const FAILURE_WINDOW_MS = 24 * 3600_000;

export interface OverviewOptions {
  fleet: FleetStore;
  clock: Clock;
  rollouts: { statuses(): Promise<RolloutStatus[]> };
  heartbeatIntervalSeconds: number;
  workerStaleAfterSeconds: number;
  maxAgeMs?: number;
}

export interface OverviewSnapshot {
  body: string;
  /** A strong validator of everything but `generated_at`: equal on every replica for equal data. */
  etag: string;
  builtAtMs: number;
}

interface Tally<K extends string> {
  key: K;
  count: number;
}

function tally<K extends string>(rows: readonly WorkerStateCount[], keyOf: (row: WorkerStateCount) => K): Array<Tally<K>> {
  const counts = new Map<K, number>();
  for (const row of rows) counts.set(keyOf(row), (counts.get(keyOf(row)) ?? 0) + row.count);
  return [...counts].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
}

/**
 * The console's overview (docs/console.md): one JSON snapshot built at most every
 * `maxAgeMs` and shared by every open page, which revalidate it by ETag. A hundred pages
 * polling cost one set of fleet queries per interval, not a hundred; concurrent requests share
 * one build, and while pages poll, the last snapshot is answered as the next is built. The ETag hashes the data without its timestamp, so replicas reading the
 * same database give the same validator and a page bounced between them still gets 304s.
 */
export class OverviewService {
  private current: OverviewSnapshot | null = null;
  private building: Promise<OverviewSnapshot> | null = null;
  private readonly maxAgeMs: number;

  constructor(private readonly options: OverviewOptions) {
    this.maxAgeMs = options.maxAgeMs ?? OVERVIEW_MAX_AGE_MS;
  }

  async snapshot(): Promise<OverviewSnapshot> {
    const current = this.current;
    const ageMs = current === null ? Infinity : this.options.clock.now().getTime() - current.builtAtMs;
    if (current !== null && ageMs < this.maxAgeMs) return current;
    const rebuilding = (this.building ??= this.build().finally(() => {
      this.building = null;
    }));
    if (current !== null && ageMs < OVERVIEW_STALE_MS) {
      // A failed rebuild leaves the last snapshot in place; the next request past its age tries again.
      rebuilding.catch(() => undefined);
      return current;
    }
    return rebuilding;
  }

  private async build(): Promise<OverviewSnapshot> {
    // The fleet store's reads run synchronously when called: start them after the answer that
    // got the last snapshot has been sent, not before it.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const { fleet, clock, rollouts, heartbeatIntervalSeconds, workerStaleAfterSeconds } = this.options;
    const now = clock.now();
    const unseen = unseenWindow(now, heartbeatIntervalSeconds);
    const failuresSince = new Date(now.getTime() - FAILURE_WINDOW_MS);
    const [counts, unseenCounts, statuses, failures] = await Promise.all([
      fleet.workerStateCounts(new Date(now.getTime() - workerStaleAfterSeconds * 1000)),
      fleet.unseenWorkerCounts(unseen.since, unseen.before),
      rollouts.statuses(),
      fleet.failureGroups(failuresSince, 0),
    ]);
    const channelNames = [...new Set([...counts.map((row) => row.channel ?? 'unknown'), ...statuses.map((status) => status.channel)])].sort();
    const channels = channelNames.map((channel) => {
      const rows = counts.filter((row) => (row.channel ?? 'unknown') === channel);
      return {
        channel,
        rollout: statuses.find((status) => status.channel === channel) ?? null,
        workers: {
          live: rows.reduce((sum, row) => sum + row.count, 0),
          by_version: tally(rows, (row) => row.version).map(({ key, count }) => ({ version: key, count })),
          by_state: tally<WorkerState>(rows, (row) => row.state).map(({ key, count }) => ({ state: key, count })),
          by_update_state: tally<UpdateState | 'none'>(rows, (row) => row.update_state ?? 'none').map(({ key, count }) => ({ update_state: key, count })),
        },
      };
    });
    const data = {
      heartbeat_interval_seconds: heartbeatIntervalSeconds,
      fleet: {
        live: counts.reduce((sum, row) => sum + row.count, 0),
        unseen: unseenCounts.reduce((sum, row) => sum + row.count, 0),
      },
      channels,
      failures: { since: failuresSince.toISOString(), total: failures.reduce((sum, group) => sum + group.reports, 0) },
    };
    // `failures.since` moves every request: leave it out of the validator, like generated_at.
    const validated = JSON.stringify({ ...data, failures: { total: data.failures.total } });
    const etag = `"${createHash('sha256').update(validated).digest('base64url').slice(0, 32)}"`;
    const snapshot = { body: JSON.stringify({ generated_at: now.toISOString(), ...data }), etag, builtAtMs: now.getTime() };
    this.current = snapshot;
    return snapshot;
  }
}
