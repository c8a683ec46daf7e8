import { createHash } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';

/**
 * One kind of work the worker does, in units. A unit is all or nothing: the loop records it only
 * after `runUnit` resolves, and stops or restarts only between units.
 */
export interface Workload {
  readonly name: string;
  /** Deterministic for a unit number, so a unit redone after a crash gives the same result. */
  runUnit(unit: number): Promise<string>;
}

export interface HashChainOptions {
  /** Hash rounds per unit; the default takes roughly 50-200 ms on a current core. */
  iterationsPerUnit?: number;
  /** Rounds between yields to the event loop, so signals, IPC and heartbeats are not starved. */
  iterationsPerSlice?: number;
}

export const DEFAULT_ITERATIONS_PER_UNIT = 40_000;

/**
 * The built-in workload: one step of a seeded artificial-life run, modelled as a SHA-256 chain
 * seeded by the unit number. CPU-bound and reproducible, which is all the update machinery needs
 * to prove that no unit is cut in half and none is lost.
 */
export function hashChainWorkload(options: HashChainOptions = {}): Workload {
  const iterationsPerUnit = options.iterationsPerUnit ?? DEFAULT_ITERATIONS_PER_UNIT;
  const iterationsPerSlice = options.iterationsPerSlice ?? 5_000;
  return {
    name: 'hash-chain',
    async runUnit(unit) {
      let digest = createHash('sha256').update(`bytebiota:unit:${unit}`).digest();
      for (let done = 0; done < iterationsPerUnit; ) {
        const sliceEnd = Math.min(iterationsPerUnit, done + iterationsPerSlice);
        for (; done < sliceEnd; done += 1) digest = createHash('sha256').update(digest).digest();
        if (done < iterationsPerUnit) await yieldToEventLoop();
      }
      return digest.toString('hex').slice(0, 32);
    },
  };
}
