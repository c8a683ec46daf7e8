import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { MAX_MANIFEST_BYTES, storeKeys, type SignedRelease } from '../protocol/manifest.js';
import { UpdateError } from '../protocol/reason-codes.js';
import type { Clock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import type { ReleaseStore } from '../store/release-store.js';
import type { PublicKey } from '../trust/keys.js';
import { verifyManifest } from '../trust/verify.js';
import type { FleetStore } from './fleet/fleet-store.js';

/** A manifest that passed verification, with the exact bytes it was published as. */
export interface ServedManifest {
  bytes: Buffer;
  /** Quoted SHA-256 hex of `bytes`: a strong validator for If-None-Match. */
  etag: string;
  signed: SignedRelease;
}

interface ChannelEntry {
  lastGood: ServedManifest | null;
  checkedAtMs: number;
  refreshing: Promise<void> | null;
}

export interface ManifestCacheOptions {
  store: ReleaseStore;
  trustedKeys: readonly PublicKey[];
  threshold: number;
  cacheTtlSeconds: number;
  clock: Clock;
  logger: Logger;
  /** Most channels kept; the least recently added is dropped beyond this. */
  maxChannels?: number;
  /** Where the highest serial served per channel is kept across restarts (the fleet store). */
  servedSerials?: ServedSerials;
}

/** The part of the fleet store that keeps the rollback floor. */
export type ServedSerials = Pick<FleetStore, 'highestServedSerial' | 'raiseServedSerial'>;

/**
 * The channel manifests, read from the release store at most once per TTL and verified against
 * the release keys before anything is served (docs/protocol.md, section 3). A manifest that fails
 * verification is never served: it is logged with its reason code, and the last good manifest of
 * that channel keeps being served until it expires. The serial may never go down: the highest
 * one served is kept in the fleet store, so a store that is rolled back to an old, validly signed
 * manifest is refused as well, after a restart or after the manifest was removed for a while.
 */
export class ManifestCache {
  private readonly entries = new Map<string, ChannelEntry>();
  private readonly maxChannels: number;

  constructor(private readonly options: ManifestCacheOptions) {
    this.maxChannels = options.maxChannels ?? 256;
  }

  /** The channel's current verified, unexpired manifest, or null when there is none. */
  async current(channel: string): Promise<ServedManifest | null> {
    const entry = this.entryFor(channel);
    const nowMs = this.options.clock.now().getTime();
    if (nowMs - entry.checkedAtMs >= this.options.cacheTtlSeconds * 1000) {
      entry.refreshing ??= this.refresh(channel, entry).finally(() => {
        entry.refreshing = null;
      });
      await entry.refreshing;
    }
    const good = entry.lastGood;
    if (good && this.options.clock.now().getTime() >= Date.parse(good.signed.expires)) {
      // Verified once, but stale now: an expired manifest is never served (a freeze attack).
      this.options.logger.warn(
        { event: 'manifest_rejected', channel, reason: 'manifest_expired', serial: good.signed.serial },
        'cached manifest has expired; not serving it',
      );
      return null;
    }
    return good;
  }

  /** Drop what is cached so that the next request reads the store (used by tests and admin). */
  invalidate(channel?: string): void {
    if (channel === undefined) this.entries.clear();
    else this.entries.delete(channel);
  }

  private entryFor(channel: string): ChannelEntry {
    let entry = this.entries.get(channel);
    if (!entry) {
      if (this.entries.size >= this.maxChannels) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.entries.delete(oldest);
      }
      entry = { lastGood: null, checkedAtMs: Number.NEGATIVE_INFINITY, refreshing: null };
      this.entries.set(channel, entry);
    }
    return entry;
  }

  private async refresh(channel: string, entry: ChannelEntry): Promise<void> {
    const { store, logger, clock } = this.options;
    const key = storeKeys.manifest(channel);
    let bytes: Buffer | null;
    try {
      bytes = await store.read(key, MAX_MANIFEST_BYTES);
    } catch (err) {
      // The store is unreachable or the object is oversized: keep serving what we had.
      logger.error(
        { event: 'manifest_rejected', channel, reason: 'manifest_fetch_failed', store: store.location, err: errorMessage(err) },
        'could not read the manifest from the release store',
      );
      entry.checkedAtMs = clock.now().getTime();
      return;
    }
    entry.checkedAtMs = clock.now().getTime();
    if (bytes === null) {
      if (entry.lastGood) logger.warn({ event: 'manifest_removed', channel }, 'the channel manifest is gone from the store');
      entry.lastGood = null;
      return;
    }
    const etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;
    if (entry.lastGood?.etag === etag) return;
    const floor = await this.servedFloor(channel);
    const highestSerial = Math.max(entry.lastGood?.signed.serial ?? 0, floor ?? 0);
    try {
      const verified = verifyManifest(bytes, {
        trustedKeys: this.options.trustedKeys,
        threshold: this.options.threshold,
        channel,
        highestSerial: highestSerial > 0 ? highestSerial : undefined,
        now: clock.now(),
      });
      if (floor === null || verified.signed.serial > floor) await this.raiseFloor(channel, verified.signed.serial);
      entry.lastGood = { bytes, etag, signed: verified.signed };
      logger.info(
        { event: 'manifest_loaded', channel, serial: verified.signed.serial, version: verified.signed.version, etag },
        'verified a new channel manifest',
      );
    } catch (err) {
      if (!(err instanceof UpdateError)) throw err;
      logger.error(
        {
          event: 'manifest_rejected',
          channel,
          reason: err.code,
          etag,
          still_serving_serial: entry.lastGood?.signed.serial ?? null,
          err: err.message,
        },
        'manifest in the store failed verification; not serving it',
      );
    }
  }

  /** The persisted floor; null when there is none or it cannot be read (logged: the floor in memory still holds). */
  private async servedFloor(channel: string): Promise<number | null> {
    const serials = this.options.servedSerials;
    if (!serials) return null;
    try {
      return await serials.highestServedSerial(channel);
    } catch (err) {
      this.options.logger.error(
        { event: 'served_serial_unreadable', channel, err: errorMessage(err) },
        'could not read the highest served serial; judging the manifest by the one in memory only',
      );
      return null;
    }
  }

  /** Persist a new floor before the manifest is served. A failure is logged, not fatal: serving goes on. */
  private async raiseFloor(channel: string, serial: number): Promise<void> {
    try {
      await this.options.servedSerials?.raiseServedSerial(channel, serial, this.options.clock.now());
    } catch (err) {
      this.options.logger.error(
        { event: 'served_serial_unwritable', channel, serial, err: errorMessage(err) },
        'could not record the highest served serial; it holds in memory until a restart',
      );
    }
  }
}
