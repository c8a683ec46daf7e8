import { Type, type Static } from '@sinclair/typebox';
import { PoolName } from './messages.js';

/**
 * The staged-rollout part of the admin API (docs/runbooks/rollout.md): plans as operators send
 * them, and rollouts as the server reports them. Shared by bytebiota-server, which serves them,
 * and bytebiota-admin, which reads them; a newer server may add fields to a status.
 */

/** Every pool, in a wave's pool list. */
export const ALL_POOLS = '*';

export const WaveSchema = Type.Object(
  {
    /** Pool names, or `*` for every pool. */
    pools: Type.Array(Type.Union([PoolName, Type.Literal(ALL_POOLS)]), { minItems: 1, maxItems: 64 }),
    /** The share of each named pool's live workers this wave admits, 1-100. */
    percent: Type.Integer({ minimum: 1, maximum: 100 }),
    /** How long the wave runs before the next may start. */
    soak_s: Type.Integer({ minimum: 0, maximum: 30 * 24 * 3600 }),
    /** How many of its admitted workers must have updated and passed their watch (fewer when fewer are live). */
    min_healthy: Type.Integer({ minimum: 0, maximum: 100_000 }),
  },
  { additionalProperties: false },
);
export type Wave = Static<typeof WaveSchema>;

/** A channel's rollout plan: ordered waves. `immediate` is one wave of every pool at 100 %. */
export const RolloutPlanSchema = Type.Object(
  {
    immediate: Type.Boolean(),
    waves: Type.Array(WaveSchema, { minItems: 1, maxItems: 32 }),
  },
  { additionalProperties: false },
);
export type RolloutPlan = Static<typeof RolloutPlanSchema>;

export const ROLLOUT_STATES = ['active', 'paused', 'halted', 'aborted', 'completed', 'superseded'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

/** An operator's control: pause holds, resume goes on, halt stops offering it, abort ends it. */
export const ROLLOUT_ACTIONS = ['pause', 'resume', 'halt', 'abort'] as const;
export type RolloutAction = (typeof ROLLOUT_ACTIONS)[number];

export interface WaveProgress {
  index: number;
  pools: string[];
  percent: number;
  soak_s: number;
  min_healthy: number;
  started_at: string | null;
  /** Workers this wave admitted (the newest started wave when they were). */
  admitted: number;
  live_admitted: number;
  /** Of those, workers that updated and passed their watch (a success report). */
  updated: number;
  /** Of those, workers with a failure or rollback that is the release's fault. */
  failed: number;
  /** Healthy updates the wave needs before the next starts: min_healthy, lowered to its live admitted workers that have not failed. */
  healthy_needed: number;
  /** What the next step waits on, in words; empty when nothing does. */
  waiting_on: string[];
}

export interface RolloutStatus {
  channel: string;
  serial: number;
  version: string;
  state: RolloutState;
  urgent: boolean;
  started_at: string;
  state_reason: string | null;
  state_changed_at: string;
  state_changed_by: string | null;
  expires_at: string;
  plan: RolloutPlan;
  current_wave: number;
  waves: WaveProgress[];
  /** Pools with live workers that no wave names: this release never reaches them. */
  pools_not_in_plan: string[];
  /** Workers offered the release outside the waves: those that already ran it, and forced updates. */
  outside_waves: { already_running: number; forced: number };
  failure: {
    rate: number;
    failed_workers: number;
    sample_workers: number;
    min_sample: number;
    threshold: number;
    window_s: number;
  };
}

