import type { Dirent } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fsyncDirectory } from '../../shared/atomic-file.js';
import { errorMessage, isErrnoCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { compareVersions, isValidVersion } from '../../protocol/version.js';
import { COMPLETE_MARK_FILE, MIN_KEEP_VERSIONS, type InstallLayout } from './install-layout.js';
import { inspectVersion, stagingDirVersion, type VersionReader, type VersionStatus } from './installer.js';
import { acquireUpdateLock, UpdateInProgressError } from './lock.js';
import { readPointer, type PointerName } from './pointer.js';
import { readState } from './state.js';

/**
 * Bounded disk (docs/worker-updates.md, "Disk use"): after a version passes its health watch,
 * and once at supervisor start, the versions nothing needs are removed from `versions/`.
 */


/** How long a prune waits for update.lock while an update check holds it, and how often it asks. */
const LOCK_WAIT_MS = 5_000;
const LOCK_POLL_MS = 250;

const POINTERS: readonly PointerName[] = ['current', 'previous', 'launcher'];

export interface VersionOnDisk {
  version: string;
  status: VersionStatus['kind'];
}

export interface PruneInputs {
  /** Every `versions/<v>` folder. */
  onDisk: readonly VersionOnDisk[];
  /** Named by a pointer, by pending_switch or pending_watch, or by a staging dir in tmp/. */
  pinned: ReadonlySet<string>;
  /** Versions rolled back on this worker (state.json `rolled_back`). */
  rolledBack: ReadonlySet<string>;
  /** How many versions to keep in all, pinned ones included (unreadable ones are kept besides); at least MIN_KEEP_VERSIONS. */
  keepVersions: number;
}

export interface PrunePlan {
  /** Newest first by SemVer. */
  keep: string[];
  remove: string[];
}

/** The configuration refuses smaller values (a usage error); here one is a programming error. */
function assertKeepVersions(keepVersions: number): void {
  if (!Number.isInteger(keepVersions) || keepVersions < MIN_KEEP_VERSIONS) {
    throw new RangeError(`keepVersions must be a whole number of at least ${MIN_KEEP_VERSIONS}, not ${keepVersions}`);
  }
}

const newestFirst = (a: string, b: string): number => compareVersions(b, a);

/**
 * Which versions stay:
 * 1. every pinned version, whatever its state: a pointer or an update in flight names it;
 * 2. every unreadable version: it may be complete, and unreadable is not missing;
 * 3. the newest other complete versions by SemVer, not rolled back here, until `keepVersions`
 *    versions are kept. SemVer and not the mark's `installed_at`: that is this machine's clock
 *    when the version was first staged, which a skewed clock or a signed rollback to a version
 *    staged long ago makes meaningless, while SemVer is the order the releases were made in.
 * The rest go: older complete versions, rolled-back ones, and incomplete ones.
 */
export function planPrune(inputs: PruneInputs): PrunePlan {
  assertKeepVersions(inputs.keepVersions);
  const keep = new Set<string>();
  for (const { version, status } of inputs.onDisk) {
    if (inputs.pinned.has(version) || status === 'unreadable') keep.add(version);
  }
  const pinnedOnDisk = inputs.onDisk.filter(({ version }) => inputs.pinned.has(version)).length;
  const extras = inputs.onDisk
    .filter(({ version, status }) => status === 'complete' && !keep.has(version) && !inputs.rolledBack.has(version))
    .map(({ version }) => version)
    .sort(newestFirst)
    .slice(0, Math.max(0, inputs.keepVersions - pinnedOnDisk));
  for (const version of extras) keep.add(version);
  return {
    keep: [...keep].sort(newestFirst),
    remove: inputs.onDisk.map(({ version }) => version).filter((version) => !keep.has(version)).sort(newestFirst),
  };
}

/** Removes a file, or with `recursive` a folder and all in it; never follows a symlink. */
export type RemovePath = (path: string, options: { recursive: boolean }) => Promise<void>;

const fsRemove: RemovePath = (path, { recursive }) => rm(path, { recursive, force: true });

export interface PruneDependencies {
  log: Logger;
  /** Injected by tests to make a removal fail as an open file on Windows does (EBUSY, EPERM). */
  remove?: RemovePath;
  reader?: VersionReader;
  /** Ends the wait for update.lock early (the supervisor is stopping). */
  signal?: AbortSignal;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export type PruneOutcome =
  /** Another process held update.lock throughout the wait; the next prune does the work. */
  | { kind: 'deferred' }
  | { kind: 'failed'; error: string }
  /** `notRemoved`: removals that failed; they are tried again at the next prune. */
  | { kind: 'pruned'; kept: string[]; removed: string[]; notRemoved: string[]; bytesFreed: number };

const defaultSleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  delay(ms, undefined, signal ? { signal } : {}).catch(() => undefined);

/** update.lock, waited for a few seconds (an update check holds it briefly); null if still held. */
async function lockSoon(layout: InstallLayout, deps: PruneDependencies): Promise<(() => Promise<void>) | null> {
  const sleep = deps.sleep ?? defaultSleep;
  for (let waitedMs = 0; ; waitedMs += LOCK_POLL_MS) {
    try {
      return await acquireUpdateLock(layout);
    } catch (err) {
      if (!(err instanceof UpdateInProgressError)) throw err;
      if (waitedMs >= LOCK_WAIT_MS || deps.signal?.aborted) return null;
      await sleep(LOCK_POLL_MS, deps.signal);
    }
  }
}

async function namesOrNone(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return [];
    throw err;
  }
}

async function entriesOrNone(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return [];
    throw err;
  }
}

/**
 * What may still be needed. Read under update.lock, so no update can name a new version
 * meanwhile. A pointer that cannot be read (PointerError, EACCES) throws: with a pointer
 * unknown, nothing is safe to remove.
 */
async function pinnedVersions(layout: InstallLayout): Promise<{ pinned: Set<string>; rolledBack: Set<string> }> {
  // Read, never created: a prune must not give the install root a worker id of its own.
  const state = await readState(layout);
  const pinned = new Set<string>();
  for (const pending of [state?.pending_switch, state?.pending_watch]) if (pending) pinned.add(pending.to_version);
  for (const which of POINTERS) {
    const version = await readPointer(layout, which);
    if (version !== null) pinned.add(version);
  }
  for (const name of await namesOrNone(layout.tmpDir)) {
    const staging = stagingDirVersion(name);
    if (staging !== null) pinned.add(staging);
  }
  return { pinned, rolledBack: new Set(Object.keys(state?.rolled_back ?? {})) };
}

/** Bytes of the files under `dir`, counted without following symlinks. */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? await bytesUnder(path) : (await lstat(path)).size;
  }
  return total;
}

function errnoOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

/**
 * Remove one version so that a crash at any point leaves it plainly incomplete, never looking
 * complete while it is not: 1. delete the mark, 2. fsync the folder so that the deletion is
 * durable, 3. delete the folder. A version left without its mark is removed by the next prune
 * (or by recovery at the next start).
 */
async function removeVersion(
  layout: InstallLayout,
  version: string,
  remove: RemovePath,
): Promise<{ ok: true; bytes: number } | { ok: false; step: 'mark' | 'folder'; err: unknown }> {
  const dir = layout.versionDir(version);
  // Only for the log: a folder that cannot be measured is still removed.
  const bytes = await bytesUnder(dir).catch(() => 0);
  try {
    await remove(join(dir, COMPLETE_MARK_FILE), { recursive: false });
    await fsyncDirectory(dir);
  } catch (err) {
    return { ok: false, step: 'mark', err };
  }
  try {
    await remove(dir, { recursive: true });
  } catch (err) {
    return { ok: false, step: 'folder', err };
  }
  return { ok: true, bytes };
}

async function pruneLocked(layout: InstallLayout, keepVersions: number, deps: PruneDependencies): Promise<PruneOutcome> {
  const { log } = deps;
  const { pinned, rolledBack } = await pinnedVersions(layout);
  const onDisk: VersionOnDisk[] = [];
  for (const entry of await entriesOrNone(layout.versionsDir)) {
    // A symlink is not a directory here (readdir does not follow it): what it points at, in or
    // out of versions/, is never touched. Nor is anything else that is not a version folder.
    if (!entry.isDirectory() || !isValidVersion(entry.name)) continue;
    const status = await inspectVersion(layout, entry.name, deps.reader);
    if (status.kind === 'unreadable') {
      log.warn(
        { event: 'worker_version_unreadable', version: entry.name, errno: status.errno, path: status.path },
        `keeping versions/${entry.name}: ${status.detail}`,
      );
    }
    onDisk.push({ version: entry.name, status: status.kind });
  }

  const plan = planPrune({ onDisk, pinned, rolledBack, keepVersions });
  const remove = deps.remove ?? fsRemove;
  const removed: string[] = [];
  const notRemoved: string[] = [];
  let bytesFreed = 0;
  for (const version of plan.remove) {
    const result = await removeVersion(layout, version, remove);
    if (result.ok) {
      removed.push(version);
      bytesFreed += result.bytes;
      continue;
    }
    notRemoved.push(version);
    log.warn(
      { event: 'worker_version_remove_failed', version, step: result.step, errno: errnoOf(result.err), error: errorMessage(result.err) },
      `could not remove versions/${version} (${errnoOf(result.err)}); the next prune tries again`,
    );
  }
  if (removed.length > 0) await fsyncDirectory(layout.versionsDir);
  log.info(
    { event: 'worker_versions_pruned', removed, bytes_freed: bytesFreed, kept: plan.keep, not_removed: notRemoved, keep_versions: keepVersions },
    removed.length > 0 ? `removed ${removed.length} old version(s), ${bytesFreed} bytes freed` : 'no old versions to remove',
  );
  return { kind: 'pruned', kept: plan.keep, removed, notRemoved, bytesFreed };
}

/**
 * Remove the versions nothing needs, keeping `keepVersions` in all (planPrune says which).
 * Runs under update.lock; when an update holds it for longer than a few seconds (a download),
 * the prune is deferred to the next one. It never throws for an I/O failure: pruning must never
 * fail an update, so every failure is logged with its own event and the work left for next time.
 */
export async function pruneVersions(layout: InstallLayout, options: { keepVersions: number }, deps: PruneDependencies): Promise<PruneOutcome> {
  assertKeepVersions(options.keepVersions);
  const { log } = deps;
  try {
    const release = await lockSoon(layout, deps);
    if (release === null) {
      log.info({ event: 'worker_versions_prune_deferred' }, 'an update holds update.lock; old versions are removed at the next prune');
      return { kind: 'deferred' };
    }
    try {
      return await pruneLocked(layout, options.keepVersions, deps);
    } finally {
      await release();
    }
  } catch (err) {
    log.warn({ event: 'worker_versions_prune_failed', error: errorMessage(err) }, 'removing old versions failed; the next prune tries again');
    return { kind: 'failed', error: errorMessage(err) };
  }
}
