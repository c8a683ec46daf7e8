import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Clock } from '../../shared/clock.js';
import { errorMessage } from '../../shared/errors.js';
import type { FleetStore } from './fleet-store.js';

export const LEADER_LEASE = 'fleet-leader';
export const DEFAULT_LEASE_TTL_MS = 30_000;

export interface LeaderLeaseOptions {
  fleet: FleetStore;
  clock: Clock;
  logger: { info(fields: object, message: string): void; warn(fields: object, message: string): void };
  /** This replica's name in the lease; default replicaId(). */
  holder?: string;
  ttlMs?: number;
}

/**
 * This process's name in the lease. On PostgreSQL, one no other replica shares: host, process id
 * and 4 random bytes. On SQLite (one server per database file) the host name alone, so that a
 * server restarted after a crash takes its own lease back at once instead of waiting out the TTL.
 */
export function replicaId(storeKind: string): string {
  return storeKind === 'sqlite' ? `${hostname()}:sqlite` : `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * Which replica does the fleet-wide work: the rollout evaluation (waves, automatic halts), the
 * fleet gauges, and retention. The leader renews its lease every third of its TTL; when it stops
 * it gives the lease up, and when it dies another replica takes over at most one TTL later
 * (30 s by default). A replica that cannot reach the database stops leading at once rather than
 * risk two leaders. On SQLite the one server is the leader, also right after a restart.
 */
export class LeaderLease {
  readonly holder: string;
  private isLeader = false;
  /** performance.now() of the last renewal that succeeded. */
  private renewedAtMs = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  private readonly ttlMs: number;

  constructor(private readonly options: LeaderLeaseOptions) {
    this.holder = options.holder ?? replicaId(options.fleet.kind);
    this.ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  }

  /**
   * True while this replica holds the lease: its last renewal said so and is younger than the
   * TTL. A renewal that hangs (the database cut off without a word) ends the lead when the lease
   * would have expired for the other replicas too, so two never lead at once.
   */
  get held(): boolean {
    return this.isLeader && performance.now() - this.renewedAtMs < this.ttlMs;
  }

  /** Try once now, then renew on a timer. */
  async start(): Promise<void> {
    await this.renew();
    this.timer = setInterval(() => void this.renew(), Math.max(100, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  /** Try to take or keep the lease now. */
  renew(): Promise<void> {
    this.renewing ??= this.tryOnce().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  private async tryOnce(): Promise<void> {
    const { fleet, clock, logger } = this.options;
    let held: boolean;
    const startedMs = performance.now();
    try {
      held = await fleet.tryLease(LEADER_LEASE, this.holder, clock.now(), this.ttlMs);
      if (held) this.renewedAtMs = startedMs;
    } catch (err) {
      held = false;
      logger.warn({ event: 'leader_lease_unavailable', replica: this.holder, err: errorMessage(err) }, 'could not renew the leader lease; not leading');
    }
    if (held !== this.isLeader) {
      logger.info({ event: held ? 'leader_lease_taken' : 'leader_lease_lost', replica: this.holder }, held ? 'this replica now does the fleet-wide work' : 'another replica does the fleet-wide work');
    }
    this.isLeader = held;
  }

  /** Stop renewing and give the lease up, so that another replica takes over at its next try. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.renewing;
    if (!this.isLeader) return;
    this.isLeader = false;
    try {
      await this.options.fleet.releaseLease(LEADER_LEASE, this.holder);
    } catch (err) {
      this.options.logger.warn({ event: 'leader_lease_unavailable', replica: this.holder, err: errorMessage(err) }, 'could not give the leader lease up; it expires on its own');
    }
  }
}
