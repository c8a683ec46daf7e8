import type { Logger } from 'pino';
import type { Clock } from '../../shared/clock.js';
import { CodedError, errorMessage } from '../../shared/errors.js';
import type { RolloutAction, RolloutPlan, RolloutState, RolloutStatus } from '../../protocol/rollouts.js';
import type { FleetStore, RolloutRecord } from '../fleet/fleet-store.js';
import type { ManifestCache } from '../manifest-cache.js';
import { DEFAULT_HALT_SETTINGS, type HaltSettings } from './failure-rate.js';
import { OfferService, type OfferDecision, type OfferRequest, type OfferStep } from './offers.js';
import { nextWindowChange } from './maintenance-window.js';
import { rolloutProgress, type RolloutProgress } from './progress.js';
import type { CachedRollout } from './rollout-cache.js';
import { postWebhook } from './webhook.js';

export const DEFAULT_EVAL_INTERVAL_SECONDS = 30;

/** What each operator action may change, and into what (docs/runbooks/rollout.md, "Controls"). */
const TRANSITIONS: Record<RolloutAction, { from: readonly RolloutState[]; to: RolloutState }> = {
  pause: { from: ['active'], to: 'paused' },
  resume: { from: ['paused', 'halted'], to: 'active' },
  halt: { from: ['active', 'paused', 'completed'], to: 'halted' },
  abort: { from: ['active', 'paused', 'halted', 'completed', 'superseded'], to: 'aborted' },
};

export class RolloutError extends CodedError<'no_rollout' | 'rollout_state_conflict'> {}

export interface HaltEvent {
  channel: string;
  serial: number;
  version: string;
  reason: string;
  trigger: 'automatic' | 'operator';
}

export interface RolloutServiceOptions {
  fleet: FleetStore;
  manifests: ManifestCache;
  clock: Clock;
  logger: Logger;
  defaultPlan: RolloutPlan;
  workerStaleAfterSeconds: number;
  evalIntervalSeconds?: number;
  halt?: HaltSettings;
  /** A URL that gets a JSON POST when a rollout halts. */
  webhookUrl?: string | undefined;
  /** Delays between webhook attempts; the default is in webhook.ts. */
  webhookRetryDelaysMs?: readonly number[];
  /** Called on every halt, automatic or not (metrics). */
  onHalt?(event: HaltEvent): void;
}

/**
 * Staged rollouts: offers to workers (OfferService), the evaluation that advances waves and
 * halts bad releases on its own, and the operator's controls. The evaluation runs every
 * `evalIntervalSeconds` on a timer; `evaluate()` runs it once (tests drive it with their clock).
 */
export class RolloutService {
  readonly offers: OfferService;
  readonly halt: HaltSettings;
  readonly evalIntervalSeconds: number;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly webhooks = new Set<Promise<unknown>>();
  private readonly stopping = new AbortController();

  constructor(private readonly options: RolloutServiceOptions) {
    this.halt = options.halt ?? DEFAULT_HALT_SETTINGS;
    this.evalIntervalSeconds = options.evalIntervalSeconds ?? DEFAULT_EVAL_INTERVAL_SECONDS;
    this.offers = new OfferService({
      fleet: options.fleet,
      manifests: options.manifests,
      clock: options.clock,
      logger: options.logger,
      defaultPlan: options.defaultPlan,
      workerStaleAfterSeconds: options.workerStaleAfterSeconds,
      cutoffTtlSeconds: this.evalIntervalSeconds,
    });
  }

  decide(request: OfferRequest): Promise<OfferDecision> {
    return this.offers.decide(request);
  }

  /**
   * Start evaluating on a timer, on the ticks where `isLeader()` says this replica does the
   * fleet-wide work: with several replicas, one evaluation per interval, not one per replica.
   */
  start(isLeader: () => boolean = () => true): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (isLeader()) void this.evaluate();
    }, this.evalIntervalSeconds * 1000);
    this.timer.unref();
  }

  /** Stop the timer and wait for a running evaluation and pending webhooks. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
    this.stopping.abort();
    await Promise.allSettled([...this.webhooks]);
  }

  /** One evaluation of every channel; never throws (a failure is logged and the next tick tries again). */
  evaluate(): Promise<void> {
    this.running ??= this.evaluateAll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async evaluateAll(): Promise<void> {
    const { fleet, logger } = this.options;
    let channels: string[];
    try {
      channels = [...new Set([...(await fleet.rolloutChannels(['active', 'paused', 'completed'])), ...(await fleet.workerChannels())])].sort();
    } catch (err) {
      logger.error({ event: 'rollout_evaluation_failed', err: errorMessage(err) }, 'could not list channels to evaluate');
      return;
    }
    for (const channel of channels) {
      try {
        await this.evaluateChannel(channel);
      } catch (err) {
        logger.error({ event: 'rollout_evaluation_failed', channel, err: errorMessage(err) }, 'rollout evaluation failed; retried next interval');
      }
    }
  }

  private async evaluateChannel(channel: string): Promise<void> {
    const rollouts = await this.offers.rollouts(channel);
    const newest = rollouts[0];
    if (!newest) return;
    // Only the newest release is judged: older ones are superseded, halted or ended.
    const { record } = newest;
    if (record.state !== 'active' && record.state !== 'paused' && record.state !== 'completed') return;
    const progress = await this.progressOf(newest);
    if (progress.failure.halt) {
      const f = progress.failure;
      const reason = `automatic: ${f.failedWorkers} of ${f.sampleWorkers} workers failed with the release's fault in the last ${Math.round(f.windowSeconds / 60)} min (${(f.rate * 100).toFixed(1)} % > ${(f.threshold * 100).toFixed(1)} %, minimum sample ${f.minSample})`;
      await this.haltRollout(record, reason, 'automatic', progress);
      return;
    }
    if (record.state !== 'active' || !progress.currentWaveDone) return;
    const now = this.options.clock.now();
    const next = record.wavesStarted.length;
    if (next < record.plan.waves.length) {
      if (!progress.nextWaveMayStart) return;
      if (await this.options.fleet.startRolloutWave(channel, record.serial, next, now)) {
        this.offers.cache.invalidate();
        this.offers.forgetCutoffs();
        const wave = record.plan.waves[next]!;
        this.options.logger.info(
          { event: 'rollout_wave_started', channel, serial: record.serial, version: record.version, wave: next + 1, pools: wave.pools, percent: wave.percent },
          `wave ${next + 1} of ${record.version} started`,
        );
      }
      return;
    }
    if (await this.options.fleet.setRolloutState(channel, record.serial, ['active'], { state: 'completed', reason: 'every wave soaked', by: 'server', at: now })) {
      this.offers.cache.invalidate();
      this.options.logger.info({ event: 'rollout_completed', channel, serial: record.serial, version: record.version }, `rollout of ${record.version} completed`);
    }
  }

  private async haltRollout(record: RolloutRecord, reason: string, trigger: 'automatic' | 'operator', progress: RolloutProgress | null, by = 'automatic'): Promise<boolean> {
    const { fleet, clock, logger } = this.options;
    const at = clock.now();
    const changed = await fleet.setRolloutState(record.channel, record.serial, TRANSITIONS.halt.from, { state: 'halted', reason, by, at });
    if (!changed) return false;
    this.offers.cache.invalidate();
    const numbers = progress
      ? {
          failed_workers: progress.failure.failedWorkers,
          sample_workers: progress.failure.sampleWorkers,
          failure_rate: progress.failure.rate,
          threshold: progress.failure.threshold,
          min_sample: progress.failure.minSample,
          window_s: progress.failure.windowSeconds,
          wave: record.wavesStarted.length,
        }
      : {};
    logger.warn({ event: 'rollout_halted', channel: record.channel, serial: record.serial, version: record.version, trigger, by, reason, ...numbers }, `rollout of ${record.version} halted`);
    this.options.onHalt?.({ channel: record.channel, serial: record.serial, version: record.version, reason, trigger });
    if (this.options.webhookUrl) {
      const delivery = postWebhook(
        { url: this.options.webhookUrl, logger, signal: this.stopping.signal, ...(this.options.webhookRetryDelaysMs ? { retryDelaysMs: this.options.webhookRetryDelaysMs } : {}) },
        { event: 'rollout_halted', channel: record.channel, serial: record.serial, version: record.version, trigger, reason, at: at.toISOString(), ...numbers },
      );
      this.webhooks.add(delivery);
      void delivery.finally(() => this.webhooks.delete(delivery));
    }
    return true;
  }

  /** An operator's pause, resume, halt or abort of the channel's newest rollout (or `serial`). */
  async control(channel: string, action: RolloutAction, who: { tokenId: string; label: string | null }, reason: string | null, serial?: number): Promise<RolloutStatus> {
    const { fleet, clock, logger } = this.options;
    const rollouts = await this.offers.rollouts(channel);
    const target = serial === undefined ? rollouts[0] : rollouts.find((r) => r.record.serial === serial);
    if (!target) throw new RolloutError('no_rollout', `no rollout${serial === undefined ? '' : ` with serial ${serial}`} on channel ${channel}`);
    const { record } = target;
    const transition = TRANSITIONS[action];
    if (!transition.from.includes(record.state)) {
      throw new RolloutError('rollout_state_conflict', `cannot ${action} the rollout of ${record.version} (serial ${record.serial}): it is ${record.state}`);
    }
    const text = reason ?? `${action} by ${who.label ?? who.tokenId}`;
    if (action === 'halt') {
      if (!(await this.haltRollout(record, text, 'operator', null, who.tokenId))) {
        throw new RolloutError('rollout_state_conflict', `the rollout of ${record.version} changed meanwhile; read its status again`);
      }
    } else if (
      !(await fleet.setRolloutState(channel, record.serial, transition.from, { state: transition.to, reason: text, by: who.tokenId, at: clock.now(), restartFailureCount: action === 'resume' }))
    ) {
      throw new RolloutError('rollout_state_conflict', `the rollout of ${record.version} changed meanwhile; read its status again`);
    }
    this.offers.cache.invalidate();
    logger.info(
      { event: 'rollout_state_changed', channel, serial: record.serial, version: record.version, action, from: record.state, to: transition.to, reason: text, token_id: who.tokenId, token_label: who.label },
      `rollout of ${record.version}: ${action}`,
    );
    return this.status(channel, record.serial);
  }

  /** The channel's newest rollout (or the one with `serial`) with its waves, counts and failure rate. */
  async status(channel: string, serial?: number): Promise<RolloutStatus> {
    const rollouts = await this.offers.rollouts(channel);
    const target = serial === undefined ? rollouts[0] : rollouts.find((r) => r.record.serial === serial);
    if (!target) throw new RolloutError('no_rollout', `no rollout${serial === undefined ? '' : ` with serial ${serial}`} on channel ${channel}`);
    const progress = await this.progressOf(target);
    const { record } = target;
    return {
      channel,
      serial: record.serial,
      version: record.version,
      state: record.state,
      urgent: record.urgent,
      started_at: record.startedAt.toISOString(),
      state_reason: record.stateReason,
      state_changed_at: record.stateChangedAt.toISOString(),
      state_changed_by: record.stateChangedBy,
      expires_at: record.expiresAt.toISOString(),
      plan: record.plan,
      current_wave: record.wavesStarted.length,
      waves: progress.waves,
      pools_not_in_plan: progress.notInPlan,
      outside_waves: progress.outsideWaves,
      failure: {
        rate: progress.failure.rate,
        failed_workers: progress.failure.failedWorkers,
        sample_workers: progress.failure.sampleWorkers,
        min_sample: progress.failure.minSample,
        threshold: progress.failure.threshold,
        window_s: progress.failure.windowSeconds,
      },
    };
  }

  /** Every channel with a rollout: the newest rollout of each. */
  async statuses(channel?: string): Promise<RolloutStatus[]> {
    const channels = channel !== undefined ? [channel] : await this.options.fleet.rolloutChannels(['active', 'paused', 'halted', 'aborted', 'completed', 'superseded']);
    const out: RolloutStatus[] = [];
    for (const name of channels) {
      const rollouts = await this.offers.rollouts(name);
      if (rollouts.length > 0) out.push(await this.status(name));
    }
    return out;
  }

  private async progressOf(rollout: CachedRollout): Promise<RolloutProgress> {
    const { fleet, clock } = this.options;
    const { record } = rollout;
    const now = clock.now();
    const seenSince = new Date(now.getTime() - this.options.workerStaleAfterSeconds * 1000);
    // The live admitted workers and the live pools, not every live worker of the channel: at
    // 100,000 workers, reading those rows was most of the cost of a rollout's status.
    const [admissions, reports, liveAdmitted, livePools] = await Promise.all([
      fleet.rolloutAdmissions(record.channel, record.serial),
      fleet.rolloutReports(record.channel, record.serial, record.startedAt),
      fleet.liveAdmittedWorkers(record.channel, record.serial, seenSince),
      fleet.livePools(record.channel, seenSince),
    ]);
    const pools = await this.poolFacts(livePools, now);
    return rolloutProgress({
      record,
      now,
      admissions,
      reports,
      liveAdmitted: new Set(liveAdmitted),
      livePools,
      halt: this.halt,
      poolOpen: (pool) => pools.get(pool)?.open ?? true,
      poolAutoUpdate: (pool) => pools.get(pool)?.autoUpdate ?? false,
    });
  }

  private async poolFacts(livePools: readonly string[], now: Date): Promise<Map<string, { open: boolean; autoUpdate: boolean }>> {
    const facts = new Map<string, { open: boolean; autoUpdate: boolean }>();
    for (const pool of new Set(livePools)) {
      const policy = await this.options.fleet.getPoolPolicy(pool);
      facts.set(pool, { open: this.offers.windowOpen(policy, now), autoUpdate: policy?.auto_update ?? false });
    }
    return facts;
  }

  /**
   * Why this worker is or is not offered a version (`bytebiota-admin worker explain`): the same
   * decision its next poll would get, without recording an admission.
   */
  async explain(workerId: string): Promise<Record<string, unknown> | null> {
    const { fleet, clock } = this.options;
    const worker = await fleet.getWorker(workerId);
    if (!worker) return null;
    const now = clock.now();
    const policy = await fleet.getPoolPolicy(worker.pool);
    const live = Date.parse(worker.last_seen_at) >= now.getTime() - this.options.workerStaleAfterSeconds * 1000;
    const events = await fleet.workerEvents(workerId, 20);
    const steps: OfferStep[] = [
      { serial: null, check: 'live', ok: live, detail: live ? `last seen ${worker.last_seen_at}` : `not seen since ${worker.last_seen_at}: left out of the shares` },
      { serial: null, check: 'pool_policy', ok: policy?.auto_update ?? false, detail: `pool ${worker.pool}: auto_update ${(policy?.auto_update ?? false) ? 'on' : 'off'}` },
      {
        serial: null,
        check: 'window',
        ok: this.offers.windowOpen(policy, now),
        detail: (policy?.maintenance_windows ?? []).length === 0 ? 'no maintenance windows: always open' : `windows ${policy!.maintenance_windows!.join('; ')}: ${this.offers.windowOpen(policy, now) ? 'open now' : 'closed now'}`,
      },
      { serial: null, check: 'worker_setting', ok: true, detail: "the worker's own auto_update setting is not sent to the server: a worker with --no-auto-update takes nothing offered" },
    ];
    let offer: { serial: number; version: string; state: RolloutState } | null = null;
    if (worker.channel === null) {
      steps.push({ serial: null, check: 'registered', ok: false, detail: 'has not registered on a channel' });
    } else {
      const decision = await this.offers.decide({ workerId, pool: worker.pool, channel: worker.channel, currentVersion: worker.version, dryRun: true });
      steps.push(...decision.steps);
      if (decision.kind === 'offer') offer = { serial: decision.rollout.record.serial, version: decision.rollout.record.version, state: decision.rollout.record.state };
    }
    for (const rolledBack of events.filter((e) => e.event === 'rollback')) {
      steps.push({ serial: null, check: 'local_rollback', ok: false, detail: `rolled back ${rolledBack.to_version} (${rolledBack.reason ?? 'no reason'}) at ${rolledBack.received_at}: it will not try that version again` });
    }
    return {
      worker_id: worker.worker_id,
      pool: worker.pool,
      channel: worker.channel,
      version: worker.version,
      state: worker.state,
      update: worker.update,
      last_seen_at: worker.last_seen_at,
      live,
      offer,
      steps,
      recent_events: events,
    };
  }

  /** Pools with their policy, windows (open now, next change) and live workers. */
  async pools(): Promise<Array<{ pool: string; auto_update: boolean; maintenance_windows: string[]; window_open: boolean; window_changes_at: string | null; updated_at: string }>> {
    const now = this.options.clock.now();
    const policies = await this.options.fleet.listPoolPolicies();
    return policies.map(({ pool, policy, updated_at }) => {
      const texts = policy.maintenance_windows ?? [];
      let changesAt: string | null = null;
      if (texts.length > 0) {
        try {
          changesAt = nextWindowChange(texts.map((text) => this.offers.parsedWindow(text)), now).changesAt?.toISOString() ?? null;
        } catch {
          changesAt = null;
        }
      }
      return { pool, auto_update: policy.auto_update, maintenance_windows: texts, window_open: this.offers.windowOpen(policy, now), window_changes_at: changesAt, updated_at };
    });
  }
}
