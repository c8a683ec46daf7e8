import { createHash } from 'node:crypto';
import type { ReleaseManifest, SignedRelease } from '../../protocol/manifest.js';
import type { FleetStore, RolloutRecord } from '../fleet/fleet-store.js';

/** A rollout with its manifest parsed once: what offers are made from. */
export interface CachedRollout {
  record: RolloutRecord;
  signed: SignedRelease;
  /** Quoted SHA-256 of the manifest bytes, as the `latest` route's ETag. */
  etag: string;
}

/** How many of a channel's newest rollouts are kept and considered for offers. */
export const ROLLOUTS_CONSIDERED = 20;

export function cachedRollout(record: RolloutRecord): CachedRollout {
  // The bytes were verified against the release keys when the rollout started (ManifestCache).
  const parsed = JSON.parse(record.manifest.toString('utf8')) as ReleaseManifest;
  return { record, signed: parsed.signed, etag: `"${createHash('sha256').update(record.manifest).digest('hex')}"` };
}

/**
 * A channel's rollouts in memory. Every change to any rollout, in this process or another,
 * moves the store's rollout epoch (a trigger), so one cheap read tells whether the copy is still
 * good; it is read at most once per `recheckMs`, which bounds how long a halt made by another
 * process goes unseen (1 ms by default, as for tokens).
 */
export class RolloutCache {
  private readonly channels = new Map<string, CachedRollout[]>();
  private epoch: number | null = null;
  private checkedAtMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly fleet: FleetStore,
    private readonly recheckMs = 1,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  async rollouts(channel: string): Promise<CachedRollout[]> {
    await this.dropIfStale();
    const cached = this.channels.get(channel);
    if (cached) return cached;
    const loaded = (await this.fleet.listRollouts(channel, ROLLOUTS_CONSIDERED)).map(cachedRollout);
    if (this.channels.size >= 1024) this.channels.clear();
    this.channels.set(channel, loaded);
    return loaded;
  }

  /** Forget everything: a rollout was just changed through this process. */
  invalidate(): void {
    this.channels.clear();
    this.checkedAtMs = Number.NEGATIVE_INFINITY;
  }

  private async dropIfStale(): Promise<void> {
    const nowMs = this.nowMs();
    if (nowMs - this.checkedAtMs < this.recheckMs) return;
    this.checkedAtMs = nowMs;
    const epoch = await this.fleet.rolloutEpoch();
    if (epoch !== this.epoch) {
      this.channels.clear();
      this.epoch = epoch;
    }
  }
}
