import { readFile } from 'node:fs/promises';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { CodedError, UsageError } from '../../shared/errors.js';
import { WorkerId } from '../../protocol/messages.js';
import type { InstallLayout } from './install-layout.js';
import { switchCurrent } from './installer.js';
import { readPointer } from './pointer.js';
import { readState, replaceUnusableState, StateFileError, WorkerStateFileSchema, type WorkerStateFile } from './state.js';

export type StateReset =
  /** The file is fine, or missing (the worker makes one at its next start): nothing was done. */
  | { kind: 'not_needed'; why: string }
  | {
      kind: 'reset';
      /** Where the unusable file was moved: it is the evidence, never deleted. */
      movedTo: string;
      workerId: string;
      /** The top-level fields carried over from the old file because each still matched its schema. */
      salvaged: string[];
      /** `current` was moved back to this version (the launcher): see resetUnusableState. */
      restoredCurrent: string | null;
    };

const workerIdChecker = TypeCompiler.Compile(WorkerId);
// Compiled on first use: every CLI start loads this module, and only reset-state needs them.
let fieldCheckers: { name: string; checker: ReturnType<typeof TypeCompiler.Compile> }[] | undefined;
function checkersOfFields(): NonNullable<typeof fieldCheckers> {
  fieldCheckers ??= Object.entries(WorkerStateFileSchema.properties).map(([name, schema]) => ({ name, checker: TypeCompiler.Compile(schema) }));
  return fieldCheckers;
}

/** The fields of an unusable state.json that still match their own schema, when it parses as JSON at all. */
async function salvageFields(path: string): Promise<Partial<WorkerStateFile>> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    // Unreadable or not JSON: nothing can be salvaged; the caller asks for the worker id.
    return {};
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return {};
  const fields = value as Record<string, unknown>;
  const salvaged: Record<string, unknown> = {};
  for (const { name, checker } of checkersOfFields()) {
    if (fields[name] !== undefined && checker.Check(fields[name])) salvaged[name] = fields[name];
  }
  // Each field passed its own schema just above.
  return salvaged;
}

/**
 * The documented recovery from `state_corrupt` (docs/runbooks/worker-state-corrupt.md), for a
 * stopped worker:
 * 1. move the unusable state.json aside (never delete it: it is the evidence);
 * 2. write a fresh one with every top-level field of the old file that still matches its schema,
 *    the worker id above all: from the old file, or `workerId` when it cannot be read. A given id
 *    that differs from a readable one is refused: two machines would share one id. Without any id
 *    it refuses too: a new id would make the server see a new worker and lose this one's history;
 * 3. when no health watch could be salvaged but `current` names another version than `launcher`,
 *    `current` is an unproven version nobody watches any more: `current` goes back to the
 *    launcher, the last proven version. The newer release is offered again at the next check.
 */
export async function resetUnusableState(layout: InstallLayout, options: { workerId?: string; now: Date }): Promise<StateReset> {
  try {
    const usable = await readState(layout);
    return { kind: 'not_needed', why: usable ? 'the file is readable and valid' : 'there is no file (the worker makes one at its next start)' };
  } catch (err) {
    if (!(err instanceof StateFileError)) throw err;
  }
  if (options.workerId !== undefined && !workerIdChecker.Check(options.workerId)) {
    throw new UsageError(`--worker-id ${JSON.stringify(options.workerId)} is not a valid worker id`);
  }
  const salvaged = await salvageFields(layout.statePath);
  if (options.workerId !== undefined && salvaged.worker_id !== undefined && salvaged.worker_id !== options.workerId) {
    throw new CodedError(
      'worker_id_conflict',
      `${layout.statePath} names worker id ${salvaged.worker_id}, not ${options.workerId}: leave out --worker-id to keep the id this machine has`,
    );
  }
  const workerId = options.workerId ?? salvaged.worker_id;
  if (workerId === undefined) {
    throw new CodedError('worker_id_unknown', `the worker id cannot be read from ${layout.statePath}: give the id the server knows with --worker-id`);
  }
  const state: WorkerStateFile = { highest_serial: {}, rolled_back: {}, ...salvaged, worker_id: workerId };
  const movedTo = `${layout.statePath}.unusable-${options.now.toISOString().replace(/[:.]/g, '-')}`;
  await replaceUnusableState(layout, movedTo, state);

  let restoredCurrent: string | null = null;
  const current = await readPointer(layout, 'current');
  const launcher = await readPointer(layout, 'launcher');
  if (state.pending_watch === undefined && launcher !== null && current !== launcher) {
    await switchCurrent(layout, launcher);
    restoredCurrent = launcher;
  }
  return { kind: 'reset', movedTo, workerId, salvaged: Object.keys(salvaged).sort(), restoredCurrent };
}
