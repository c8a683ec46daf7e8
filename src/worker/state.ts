import { randomUUID } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import lockfile from 'proper-lockfile';
import { writeFileAtomic } from '../shared/atomic-file.js';
import { CodedError, errorMessage, isErrnoCode } from '../shared/errors.js';
import { Channel, Timestamp, Version } from '../protocol/manifest.js';
import { CorrelationId, ReasonCodeSchema, WorkerId } from '../protocol/messages.js';
import type { InstallLayout } from './install-layout.js';

const PendingSwitch = Type.Object({
  to_version: Version,
  from_version: Version,
  correlation_id: CorrelationId,
  channel: Channel,
});

const PendingWatch = Type.Object({
  to_version: Version,
  from_version: Version,
  correlation_id: CorrelationId,
  channel: Channel,
  started_at: Type.String({ maxLength: 40 }),
});

/**
 * `state.json` under the install root: what the worker must remember across restarts and kill -9.
 * Unknown fields are kept on purpose (a newer version may add some, and a rollback to this one
 * must not erase them).
 */
export const WorkerStateFileSchema = Type.Object({
  worker_id: WorkerId,
  /** The highest manifest serial accepted per channel: a lower one is a rollback attack. */
  highest_serial: Type.Record(Channel, Type.Integer({ minimum: 0 })),
  /** Set by `run` once a version is staged; the supervisor switches to it on exit code 75. */
  pending_switch: Type.Optional(PendingSwitch),
  /** Set by the supervisor before it switches `current`; cleared when the new version is ready. */
  pending_watch: Type.Optional(PendingWatch),
  /** Versions rolled back on this worker; not tried again until a newer one appears. */
  rolled_back: Type.Record(Version, Type.Object({ reason: ReasonCodeSchema, at: Timestamp })),
  /** The ETag of the last manifest fully handled per channel, sent as If-None-Match. */
  manifest_etags: Type.Optional(Type.Record(Channel, Type.String({ maxLength: 512 }))),
});
export type WorkerStateFile = Static<typeof WorkerStateFileSchema>;

const stateChecker = TypeCompiler.Compile(WorkerStateFileSchema);

/** state.json exists but cannot be trusted: the operator must look, so it is never silently reset. */
export class StateFileError extends CodedError<'state_corrupt'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('state_corrupt', message, options);
  }
}

/** How long another process may hold the state lock (a read-modify-write takes milliseconds). */
const STATE_LOCK_STALE_MS = 10_000;

async function readStateFile(layout: InstallLayout): Promise<WorkerStateFile | null> {
  let text: string;
  try {
    text = await readFile(layout.statePath, 'utf8');
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return null;
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(`state file ${layout.statePath} is not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
  if (!stateChecker.Check(value)) {
    const first = stateChecker.Errors(value).First();
    throw new StateFileError(
      `state file ${layout.statePath} does not match its schema at ${first?.path || '/'}: ${first?.message ?? 'invalid'}`,
    );
  }
  return value;
}

function freshState(workerId: string): WorkerStateFile {
  return { worker_id: workerId, highest_serial: {}, rolled_back: {} };
}

async function writeStateFile(layout: InstallLayout, state: WorkerStateFile): Promise<void> {
  if (!stateChecker.Check(state)) {
    const first = stateChecker.Errors(state).First();
    throw new StateFileError(`refusing to write an invalid state at ${first?.path || '/'}: ${first?.message ?? 'invalid'}`);
  }
  await writeFileAtomic(layout.statePath, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

/**
 * The supervisor and its child both write state.json; a short lock (a directory beside it) keeps
 * their read-modify-write cycles from losing each other's changes.
 */
async function withStateLock<T>(layout: InstallLayout, body: () => Promise<T>): Promise<T> {
  await mkdir(layout.root, { recursive: true });
  const release = await lockfile.lock(layout.statePath, {
    realpath: false,
    stale: STATE_LOCK_STALE_MS,
    retries: { retries: 200, minTimeout: 5, maxTimeout: 50 },
  });
  try {
    return await body();
  } finally {
    await release();
  }
}

/** Read state.json, creating it with a new worker id when missing. A corrupt file throws StateFileError. */
export async function loadState(layout: InstallLayout, newWorkerId: () => string): Promise<WorkerStateFile> {
  const existing = await readStateFile(layout);
  if (existing) return existing;
  return withStateLock(layout, async () => {
    const raced = await readStateFile(layout);
    if (raced) return raced;
    const state = freshState(newWorkerId());
    await writeStateFile(layout, state);
    return state;
  });
}

/** Read, change and atomically write state.json under the state lock; returns the new state. */
export async function updateState(
  layout: InstallLayout,
  mutate: (state: WorkerStateFile) => void,
): Promise<WorkerStateFile> {
  return withStateLock(layout, async () => {
    const state = (await readStateFile(layout)) ?? freshState(randomUUID());
    mutate(state);
    await writeStateFile(layout, state);
    return state;
  });
}
