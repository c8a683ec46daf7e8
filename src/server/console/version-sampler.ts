import type { Clock } from '../../shared/clock.js';
import { errorMessage } from '../../shared/errors.js';
import type { FleetStore } from '../fleet/fleet-store.js';

export const DEFAULT_SAMPLE_INTERVAL_SECONDS = 300;
/** The history the console can show; older samples are deleted as new ones are written. */
export const SAMPLE_HISTORY_DAYS = 30;

export interface VersionSamplerOptions {
  fleet: FleetStore;
  clock: Clock;
  logger: { warn(fields: object, message: string): void };
  intervalSeconds: number;
  /** Live workers: seen since this. */
  liveSince: () => Date;
}

/**
 * Samples the fleet's version distribution for the console's chart. Samples sit on fixed slots
 * (multiples of the interval since the epoch), and the fleet store writes a slot only once: with
 * several replicas, whichever samples a slot first writes it and the rest find it taken, so the
 * history has one sample per interval, not one per replica.
 */
export class VersionSampler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private settledSlotMs: number | null = null;

  constructor(private readonly options: VersionSamplerOptions) {}

  /** The slot that `at` falls in. */
  slotOf(at: Date): Date {
    const intervalMs = this.options.intervalSeconds * 1000;
    return new Date(Math.floor(at.getTime() / intervalMs) * intervalMs);
  }

  /** Sample now unless this slot is already taken; true when this call wrote it. */
  async sample(): Promise<boolean> {
    const { fleet, clock } = this.options;
    const now = clock.now();
    const slot = this.slotOf(now);
    // A slot this process wrote or found taken needs no second count of the fleet.
    if (slot.getTime() === this.settledSlotMs) return false;
    const counts = await fleet.workerCounts(this.options.liveSince());
    const wrote = await fleet.recordVersionSample(slot, counts, new Date(now.getTime() - SAMPLE_HISTORY_DAYS * 86_400_000));
    this.settledSlotMs = slot.getTime();
    return wrote;
  }

  start(): void {
    const tick = () => {
      this.running ??= this.sample()
        .then(() => undefined)
        .catch((err: unknown) => this.options.logger.warn({ event: 'console_sample_failed', err: errorMessage(err) }, 'could not sample the version distribution'))
        .finally(() => {
          this.running = null;
        });
    };
    tick();
    // Ticking more often than the slots keeps a replica that starts mid-slot from missing one.
    this.timer = setInterval(tick, Math.max(1000, (this.options.intervalSeconds * 1000) / 4));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
