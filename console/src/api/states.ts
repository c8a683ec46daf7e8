import type { UpdateState, WorkerState } from './types';

/**
 * The worker states and update states the filters offer, in the protocol's order
 * (src/protocol/messages.ts). The check below fails to compile when a state of the types is
 * missing here, and the types are held to the protocol by test/console/contract-types.ts.
 */
export const WORKER_STATES = ['starting', 'working', 'idle', 'draining'] as const satisfies readonly WorkerState[];
export const UPDATE_STATES = [
  'downloading',
  'verifying',
  'staging',
  'switching',
  'restarting',
  'watching',
  'completed',
  'failed',
  'rolled_back',
] as const satisfies readonly UpdateState[];

/** Compiles only when `Listed` names every member of `All`. */
type Complete<All, Listed> = [Exclude<All, Listed>] extends [never] ? true : false;
export type WorkerStatesComplete = Complete<WorkerState, (typeof WORKER_STATES)[number]> extends true ? true : never;
export type UpdateStatesComplete = Complete<UpdateState, (typeof UPDATE_STATES)[number]> extends true ? true : never;
export const LISTS_COMPLETE: WorkerStatesComplete & UpdateStatesComplete = true;
