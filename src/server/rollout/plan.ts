import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ALL_POOLS, RolloutPlanSchema, type RolloutPlan, type Wave } from '../../protocol/rollouts.js';
import { CodedError } from '../../shared/errors.js';

const planChecker = TypeCompiler.Compile(RolloutPlanSchema);

export const IMMEDIATE_PLAN: RolloutPlan = {
  immediate: true,
  waves: [{ pools: [ALL_POOLS], percent: 100, soak_s: 0, min_healthy: 0 }],
};

/**
 * The server's default plan (docs/runbooks/rollout.md, "The default plan"): 5 % of every pool,
 * then 25 %, then everyone, each wave soaking 30 minutes with at least 5 healthy updates. 5 %
 * of a fleet of thousands is a canary of dozens (enough for the automatic halt's minimum sample
 * of 10); 30 minutes is long enough for a release that crashes after a few minutes of work to
 * show it, short enough that a good release reaches the fleet in about 1.5 hours.
 */
export const DEFAULT_STAGED_PLAN: RolloutPlan = {
  immediate: false,
  waves: [
    { pools: [ALL_POOLS], percent: 5, soak_s: 1800, min_healthy: 5 },
    { pools: [ALL_POOLS], percent: 25, soak_s: 1800, min_healthy: 5 },
    { pools: [ALL_POOLS], percent: 100, soak_s: 1800, min_healthy: 5 },
  ],
};

export const DEFAULT_PLANS = { staged: DEFAULT_STAGED_PLAN, immediate: IMMEDIATE_PLAN } as const;
export type DefaultPlanName = keyof typeof DEFAULT_PLANS;

export class PlanError extends CodedError<'invalid_plan'> {
  constructor(message: string) {
    super('invalid_plan', message);
  }
}

/** Check a plan beyond its schema: a pool named twice in one wave, `*` beside names. */
export function validatePlan(value: unknown): RolloutPlan {
  if (!planChecker.Check(value)) {
    const first = planChecker.Errors(value).First();
    throw new PlanError(`invalid rollout plan at ${first?.path || '/'}: ${first?.message ?? 'invalid'}`);
  }
  value.waves.forEach((wave, index) => {
    if (new Set(wave.pools).size !== wave.pools.length) throw new PlanError(`wave ${index + 1} names a pool twice`);
    if (wave.pools.includes(ALL_POOLS) && wave.pools.length > 1) throw new PlanError(`wave ${index + 1}: "*" already means every pool`);
  });
  return value;
}

/** Whether a wave covers the pool. */
export function waveCovers(wave: Wave, pool: string): boolean {
  return wave.pools.includes(ALL_POOLS) || wave.pools.includes(pool);
}

/** The share of `pool` admitted once waves 0..startedThrough have started (0 when none covers it). */
export function admittedPercent(plan: RolloutPlan, startedThrough: number, pool: string): number {
  let percent = 0;
  for (let index = 0; index <= startedThrough && index < plan.waves.length; index += 1) {
    const wave = plan.waves[index]!;
    if (waveCovers(wave, pool)) percent = Math.max(percent, wave.percent);
  }
  return percent;
}

/** `canary=100`, `stable,edge=25`: the CLI's short form of a wave's pools and share. */
export function describeWave(wave: Wave): string {
  return `${wave.pools.join(',')}=${wave.percent}`;
}

/** A rollout that offers its release to every worker: completed, urgent, or active with a started `*=100` wave. */
export function admitsEveryone(rollout: { state: string; urgent: boolean; plan: RolloutPlan; wavesStarted: readonly unknown[] }): boolean {
  if (rollout.state === 'completed') return true;
  if (rollout.state !== 'active') return false;
  if (rollout.urgent) return true;
  return rollout.plan.waves.slice(0, rollout.wavesStarted.length).some((wave) => wave.percent === 100 && wave.pools.includes(ALL_POOLS));
}
