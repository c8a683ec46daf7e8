import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import lockfile from 'proper-lockfile';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { CodedError, errorMessage, isErrnoCode } from '../../shared/errors.js';
import { Channel, Timestamp, Version } from '../../protocol/manifest.js';
import { CorrelationId, ReasonCodeSchema, WorkerId } from '../../protocol/messages.js';
import type { InstallLayout } from './install-layout.js';

/** The manifest serial an update acted on: optional, since a version before it wrote none. */
const Serial = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });

/**
 * How the staged version's bytes came (docs/protocol.md, section 8), carried to the success
 * report: differentially or whole, how many bytes crossed the network, and why a differential
 * download fell back. Optional: versions before differential updates write none.
 */
const DownloadSummary = Type.Object({
  mode: Type.Union([Type.Literal('delta'), Type.Literal('full')]),
  bytes_fetched: Type.Integer({ minimum: 0 }),
  delta_fallback: Type.Optional(Type.String({ maxLength: 64 })),
});
export type DownloadSummary = Static<typeof DownloadSummary>;

const PendingSwitch = Type.Object({
  to_version: Version,
  from_version: Version,
  correlation_id: CorrelationId,
  channel: Channel,
  serial: Type.Optional(Serial),
  download: Type.Optional(DownloadSummary),
});

const PendingWatch = Type.Object({
  to_version: Version,
  from_version: Version,
  correlation_id: CorrelationId,
  channel: Channel,
  started_at: Type.String({ maxLength: 40 }),
  serial: Type.Optional(Serial),
  download: Type.Optional(DownloadSummary),
});

/**
 * What a server said it accepts (`accepts` in its handshake and heartbeats), and which server
 * said it: another server URL, or none remembered, counts as an older server.
 */
const RememberedAccepts = Type.Object({
  server_url: Type.String({ maxLength: 2048 }),
  report_fields: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64 }),
  reasons: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 256 }),
});

/** The version whose health watch passed last, with the serial it was installed from. */
const ProvenRelease = Type.Object({
  version: Version,
  serial: Serial,
});

/**
 * `state.json` under the install root: what the worker must remember across restarts and kill -9.
 * Unknown fields are kept on purpose (a newer version may add some, and a rollback to this one
 * must not erase them). For the same reason every field added later is optional, objects
 * included: an older version must still read a file this one wrote.
 */
export const WorkerStateFileSchema = Type.Object({
  worker_id: WorkerId,
  /** The highest manifest serial accepted per channel: a lower one is a rollback attack. */
  highest_serial: Type.Record(Channel, Type.Integer({ minimum: 0 })),
  /** Set by `run` once a version is staged; the supervisor switches to it on exit code 75. */
  pending_switch: Type.Optional(PendingSwitch),
  /** Set by the supervisor before it switches `current`; cleared when the new version is ready. */
  pending_watch: Type.Optional(PendingWatch),
  /**
   * Versions rolled back on this worker; not tried again until a newer one appears. Only
   * LEGACY_REASON_CODES may be written here: older versions check the reason against their own
   * list, and would take a newer code for a corrupt file.
   */
  rolled_back: Type.Record(Version, Type.Object({ reason: ReasonCodeSchema, at: Timestamp })),
  /** The ETag of the last manifest fully handled per channel, sent as If-None-Match. */
  manifest_etags: Type.Optional(Type.Record(Channel, Type.String({ maxLength: 512 }))),
  /**
   * The last `accepts` the server sent `run` (absent: an older server, or not heard from yet).
   * Kept here so that the supervisor, which never registers, sends its reports in a form the
   * server takes.
   */
  server_accepts: Type.Optional(RememberedAccepts),
  /** Set when a watch passes with a known serial: the serial a later crash_loop report names. */
  proven: Type.Optional(ProvenRelease),
});
export type RememberedAccepts = Static<typeof RememberedAccepts>;
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
    // Unreadable is not missing: a fresh state would lose the worker id and the rollback floor.
    throw new StateFileError(`state file ${layout.statePath} cannot be read: ${errorMessage(err)}`, { cause: err });
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
    // A bug of this program, not a damaged file: install_failed, and reset-state would not help.
    throw new CodedError('state_write_invalid', `refusing to write an invalid state at ${first?.path || '/'}: ${first?.message ?? 'invalid'}`);
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

/**
 * state.json as it is on disk: null when missing, never created (unlike loadState). A file that
 * cannot be read or does not match throws StateFileError.
 */
export function readState(layout: InstallLayout): Promise<WorkerStateFile | null> {
  return readStateFile(layout);
}

/** Move an unusable state.json to `movedTo` and write `state` in its place, under the state lock. */
export async function replaceUnusableState(layout: InstallLayout, movedTo: string, state: WorkerStateFile): Promise<void> {
  await withStateLock(layout, async () => {
    await rename(layout.statePath, movedTo);
    await writeStateFile(layout, state);
  });
}
