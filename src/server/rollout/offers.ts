import type { Logger } from 'pino';
import type { SignedRelease } from '../../protocol/manifest.js';
import type { PoolPolicy } from '../../protocol/messages.js';
import { compareVersions } from '../../protocol/version.js';
import type { Clock } from '../../shared/clock.js';
import type { FleetStore } from '../fleet/fleet-store.js';
import type { ManifestCache } from '../manifest-cache.js';
import { rolloutRank, shareCutoff, withinCutoff, type RankedWorker } from './bucket.js';
import { type CachedRollout, RolloutCache } from './rollout-cache.js';
import { isWithinWindows, parseMaintenanceWindow, type MaintenanceWindow } from './maintenance-window.js';
import type { RolloutPlan } from '../../protocol/rollouts.js';
import { admittedPercent, IMMEDIATE_PLAN } from './plan.js';

/** Who is asking: what the worker's token and its row say. */
export interface OfferRequest {
  workerId: string;
  /** The pool of the worker's token (never self-declared). */
  pool: string;
  channel: string;
  currentVersion: string;
  /** `--force-update` on the worker: the channel's newest release, outside the rollout. */
  force?: boolean;
  /** Decide without recording an admission (`worker explain`). */
  dryRun?: boolean;
  /** The worker's admitted serials on the channel, highest first, when the caller read them already (a heartbeat); else read here. */
  admittedSerials?: readonly number[];
}

/** One step of the decision, for `worker explain`. */
export interface OfferStep {
  serial: number | null;
  check: string;
  ok: boolean;
  detail: string;
}

export type OfferDecision = { kind: 'offer'; rollout: CachedRollout; steps: OfferStep[] } | { kind: 'nothing'; steps: OfferStep[] };

export interface OfferServiceOptions {
  fleet: FleetStore;
  manifests: ManifestCache;
  clock: Clock;
  logger: Logger;
  /** The plan of a channel that has none of its own. */
  defaultPlan: RolloutPlan;
  /** Workers seen within this long are live: the shares count them. */
  workerStaleAfterSeconds: number;
  /** How long a computed share cutoff is used before it is computed again. */
  cutoffTtlSeconds: number;
}

interface CutoffEntry {
  cutoff: RankedWorker | null;
  computedAtMs: number;
}

/**
 * What each worker is offered (docs/runbooks/rollout.md, "What a worker is told"). A worker is
 * offered the newest release it is admitted to; it is admitted when it asks and a started wave
 * covers its pool with a share that reaches its rank and its pool is inside a maintenance
 * window. The pool's auto_update policy is the worker's to enforce (it is told it with every
 * answer), as before rollouts: a pool with it off is offered releases and takes none, and its
 * workers are not waited for by a wave. Halted and aborted releases are never offered; paused and
 * superseded ones only to workers already admitted; an expired one never. A worker is never
 * offered a serial below one it was offered before: then it is told nothing new.
 */
export class OfferService {
  readonly cache: RolloutCache;
  private readonly cutoffs = new Map<string, CutoffEntry>();
  private readonly windows = new Map<string, MaintenanceWindow>();
  private readonly starting = new Map<string, Promise<void>>();

  constructor(private readonly options: OfferServiceOptions) {
    this.cache = new RolloutCache(options.fleet);
  }

  get defaultPlan(): RolloutPlan {
    return this.options.defaultPlan;
  }

  /** The channel's rollouts, newest first, after starting one for a new verified manifest. */
  async rollouts(channel: string): Promise<CachedRollout[]> {
    const head = await this.options.manifests.current(channel);
    let rollouts = await this.cache.rollouts(channel);
    if (head && (rollouts[0]?.record.serial ?? 0) < head.signed.serial) {
      await this.startRollout(channel, head.bytes, head.signed);
      rollouts = await this.cache.rollouts(channel);
    }
    return rollouts;
  }

  private startRollout(channel: string, bytes: Buffer, signed: SignedRelease): Promise<void> {
    const key = `${channel}/${signed.serial}`;
    let pending = this.starting.get(key);
    if (!pending) {
      pending = this.createRollout(channel, bytes, signed).finally(() => this.starting.delete(key));
      this.starting.set(key, pending);
    }
    return pending;
  }

  /**
   * A new verified manifest on the channel starts its rollout, exactly once (the store refuses a
   * second row for the same channel and serial). The first release a server sees on a channel
   * is taken as already rolled out: it is what an older server gave every worker, or there is
   * nothing older to protect. A rollback release (allow_downgrade, older than the release before
   * it) is urgent: every worker is offered it at once.
   */
  private async createRollout(channel: string, bytes: Buffer, signed: SignedRelease): Promise<void> {
    const { fleet, clock, logger } = this.options;
    const existing = await fleet.listRollouts(channel, ROLLBACK_LOOKBACK);
    if (existing.some((r) => r.serial >= signed.serial)) return;
    const previous = existing[0] ?? null;
    const now = clock.now();
    const first = previous === null;
    const urgent = !first && signed.allow_downgrade === true && compareVersions(signed.version, previous.version) < 0;
    const plan = first || urgent ? IMMEDIATE_PLAN : ((await fleet.getChannelPlan(channel)) ?? this.options.defaultPlan);
    const created = await fleet.createRollout({
      channel,
      serial: signed.serial,
      version: signed.version,
      manifest: bytes,
      expiresAt: new Date(signed.expires),
      urgent,
      plan,
      state: first ? 'completed' : 'active',
      stateReason: first ? 'the first release this server saw on the channel: taken as rolled out' : null,
      stateChangedAt: now,
      stateChangedBy: 'server',
      failuresCountedFrom: now,
      wavesStarted: first ? plan.waves.map(() => now) : [now],
      startedAt: now,
    });
    if (!created) return;
    for (const older of existing) {
      await fleet.setRolloutState(channel, older.serial, ['active', 'paused'], {
        state: 'superseded',
        reason: `superseded by serial ${signed.serial} (${signed.version})`,
        by: 'server',
        at: now,
      });
    }
    this.cache.invalidate();
    logger.info(
      {
        event: 'rollout_started',
        channel,
        serial: signed.serial,
        version: signed.version,
        urgent,
        adopted: first,
        waves: plan.waves.map((wave) => `${wave.pools.join(',')}=${wave.percent}`),
      },
      urgent ? `rollback release ${signed.version} offered to every worker at once` : `rollout of ${signed.version} started`,
    );
  }

  /** The decision for one worker; records the admission it makes before answering. */
  async decide(request: OfferRequest): Promise<OfferDecision> {
    const { fleet, clock, logger } = this.options;
    const steps: OfferStep[] = [];
    const rollouts = await this.rollouts(request.channel);
    if (rollouts.length === 0) {
      steps.push({ serial: null, check: 'release', ok: false, detail: `no verified release on channel ${request.channel}` });
      return { kind: 'nothing', steps };
    }
    const now = clock.now();
    const admittedSerials = request.admittedSerials ?? (await fleet.workerAdmittedSerials(request.workerId, request.channel));
    const admitted = new Set(admittedSerials);
    const floor = admittedSerials[0] ?? 0;

    if (request.force) {
      // Forcing skips waves, shares, windows and pauses, never a halt: a halted release is known bad.
      const head = rollouts.find((r) => r.record.state !== 'halted' && r.record.state !== 'aborted' && r.record.expiresAt.getTime() > now.getTime());
      if (!head || head.record.serial < floor) {
        steps.push({ serial: null, check: 'force', ok: false, detail: 'no release that is not halted, aborted or expired, at or above the serial this worker was offered' });
        return { kind: 'nothing', steps };
      }
      await this.admit(head, request, -1, true, admitted.has(head.record.serial));
      if (!request.dryRun) logger.warn(
        { event: 'rollout_bypassed', worker_id: request.workerId, pool: request.pool, channel: request.channel, serial: head.record.serial, version: head.record.version, rollout_state: head.record.state },
        'a worker forced an update: offered the newest release outside its rollout',
      );
      steps.push({ serial: head.record.serial, check: 'force', ok: true, detail: '--force-update: the newest release, outside the rollout' });
      return { kind: 'offer', rollout: head, steps };
    }

    const policy = await fleet.getPoolPolicy(request.pool);
    const windowOpen = this.windowOpen(policy, now);
    for (const rollout of rollouts) {
      const { record } = rollout;
      const serial = record.serial;
      if (serial < floor) {
        steps.push({ serial, check: 'floor', ok: false, detail: `serial ${floor} was offered to this worker before; nothing lower is offered` });
        return { kind: 'nothing', steps };
      }
      if (record.expiresAt.getTime() <= now.getTime()) {
        steps.push({ serial, check: 'expiry', ok: false, detail: `${record.version} expired at ${record.expiresAt.toISOString()}` });
        continue;
      }
      if (record.state === 'halted' || record.state === 'aborted') {
        steps.push({ serial, check: 'state', ok: false, detail: `${record.version} is ${record.state}${record.stateReason ? `: ${record.stateReason}` : ''}` });
        continue;
      }
      const runsIt = compareVersions(request.currentVersion, record.version) === 0;
      if (admitted.has(serial)) {
        if (!runsIt && !record.urgent && !windowOpen) {
          steps.push({ serial, check: 'window', ok: false, detail: `admitted to ${record.version}, but pool ${request.pool} is outside its maintenance windows` });
          return { kind: 'nothing', steps };
        }
        steps.push({ serial, check: 'admitted', ok: true, detail: `admitted to ${record.version}` });
        return { kind: 'offer', rollout, steps };
      }
      if (record.state === 'paused' || record.state === 'superseded') {
        steps.push({ serial, check: 'state', ok: false, detail: `${record.version} is ${record.state}: no new workers are admitted` });
        continue;
      }
      const eligible = await this.eligible(rollout, request, windowOpen, runsIt, steps);
      if (!eligible) continue;
      // A worker that already runs the release is recorded (its floor) but belongs to no wave.
      await this.admit(rollout, request, runsIt && !record.urgent ? -1 : record.wavesStarted.length - 1, false, false);
      return { kind: 'offer', rollout, steps };
    }
    return { kind: 'nothing', steps };
  }

  private async eligible(
    rollout: CachedRollout,
    request: OfferRequest,
    windowOpen: boolean,
    runsIt: boolean,
    steps: OfferStep[],
  ): Promise<boolean> {
    const { record } = rollout;
    const serial = record.serial;
    if (record.urgent) {
      steps.push({ serial, check: 'urgent', ok: true, detail: `${record.version} is a rollback release: offered to every worker at once` });
      return true;
    }
    if (runsIt) {
      steps.push({ serial, check: 'version', ok: true, detail: `already runs ${record.version}` });
      return true;
    }
    if (!windowOpen) {
      steps.push({ serial, check: 'window', ok: false, detail: `pool ${request.pool} is outside its maintenance windows` });
      return false;
    }
    const lastWave = record.wavesStarted.length - 1;
    const percent = admittedPercent(record.plan, lastWave, request.pool);
    if (percent === 0) {
      steps.push({ serial, check: 'wave', ok: false, detail: `no started wave of ${record.version} covers pool ${request.pool} (wave ${lastWave + 1} of ${record.plan.waves.length} started)` });
      return false;
    }
    if (percent >= 100) {
      steps.push({ serial, check: 'share', ok: true, detail: `wave ${lastWave + 1} admits all of pool ${request.pool}` });
      return true;
    }
    const me: RankedWorker = { id: request.workerId, rank: rolloutRank(record.channel, serial, request.workerId) };
    const cutoff = await this.cutoff(rollout, request.pool, percent);
    const inside = withinCutoff(me, cutoff);
    steps.push({
      serial,
      check: 'share',
      ok: inside,
      detail: `wave ${lastWave + 1} admits ${percent} % of pool ${request.pool}; this worker's rank ${me.rank} is ${inside ? 'within' : 'outside'} the cutoff ${cutoff ? cutoff.rank : 'none'}`,
    });
    return inside;
  }

  private async admit(rollout: CachedRollout, request: OfferRequest, wave: number, forced: boolean, alreadyAdmitted: boolean): Promise<void> {
    if (alreadyAdmitted || request.dryRun) return;
    // Durable before the answer: the worker raises its serial floor as soon as the manifest
    // verifies, so a server that forgot this offer could later offer it a lower serial.
    await this.options.fleet.admitWorker({
      channel: rollout.record.channel,
      serial: rollout.record.serial,
      workerId: request.workerId,
      pool: request.pool,
      wave,
      forced,
      admittedAt: this.options.clock.now(),
    });
  }

  /** The share's cutoff over the pool's live workers, computed again at most once per TTL. */
  async cutoff(rollout: CachedRollout, pool: string, percent: number): Promise<RankedWorker | null> {
    const { record } = rollout;
    const key = `${record.channel}/${record.serial}/${pool}/${percent}`;
    const nowMs = this.options.clock.now().getTime();
    const cached = this.cutoffs.get(key);
    if (cached && nowMs - cached.computedAtMs < this.options.cutoffTtlSeconds * 1000) return cached.cutoff;
    const live = await this.liveRanked(record.channel, record.serial, pool);
    const cutoff = shareCutoff(live, percent);
    if (this.cutoffs.size >= 4096) this.cutoffs.clear();
    this.cutoffs.set(key, { cutoff, computedAtMs: nowMs });
    return cutoff;
  }

  /** Drop computed cutoffs (a wave started; the fleet changed a lot). */
  forgetCutoffs(): void {
    this.cutoffs.clear();
  }

  private async liveRanked(channel: string, serial: number, pool: string): Promise<RankedWorker[]> {
    const seenSince = new Date(this.options.clock.now().getTime() - this.options.workerStaleAfterSeconds * 1000);
    const live = await this.options.fleet.liveWorkers(channel, seenSince);
    return live.filter((w) => w.pool === pool).map((w) => ({ id: w.id, rank: rolloutRank(channel, serial, w.id) }));
  }

  /** Whether the pool may start updates now: no windows means always. A window that no longer parses closes the pool. */
  windowOpen(policy: PoolPolicy | null, now: Date): boolean {
    const texts = policy?.maintenance_windows ?? [];
    if (texts.length === 0) return true;
    try {
      return isWithinWindows(texts.map((text) => this.parsedWindow(text)), now);
    } catch {
      return false;
    }
  }

  parsedWindow(text: string): MaintenanceWindow {
    let parsed = this.windows.get(text);
    if (!parsed) {
      parsed = parseMaintenanceWindow(text);
      this.windows.set(text, parsed);
    }
    return parsed;
  }
}

/** Rollouts read when a new one starts: the newest is the one a rollback is measured against. */
const ROLLBACK_LOOKBACK = 50;
