import { mkdir, readFile, rm, rmdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { CodedError, isErrnoCode } from '../../shared/errors.js';
import { isProcessAlive } from '../../shared/process-alive.js';
import type { InstallLayout } from './install-layout.js';

/** Another process is updating this install root right now. */
export class UpdateInProgressError extends CodedError<'update_in_progress'> {
  constructor(message: string) {
    super('update_in_progress', message);
  }
}

/**
 * The holder refreshes the lock's mtime every LOCK_UPDATE_MS; a lock older than LOCK_STALE_MS
 * belongs to a process that stopped refreshing it. A holder killed with -9 is also detected at
 * once through the pid written inside the lock directory.
 */
const LOCK_STALE_MS = 30_000;
const LOCK_UPDATE_MS = 5_000;
const PID_FILE = 'pid';

async function holderPid(lockPath: string): Promise<number | null> {
  try {
    const pid = Number.parseInt(await readFile(join(lockPath, PID_FILE), 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return null;
    throw err;
  }
}

async function tryLock(layout: InstallLayout): Promise<() => Promise<void>> {
  return lockfile.lock(layout.root, {
    lockfilePath: layout.lockPath,
    realpath: false,
    stale: LOCK_STALE_MS,
    update: LOCK_UPDATE_MS,
    retries: 0,
    // Losing the lock (its directory removed under us) is not worth crashing the worker for:
    // every step after it is idempotent, and the release below tolerates the lock being gone.
    onCompromised: () => undefined,
  });
}

/**
 * Take `update.lock`: one update at a time per install root. Returns the release function, which
 * is safe to call more than once. Throws UpdateInProgressError when a live process holds it.
 */
export async function acquireUpdateLock(layout: InstallLayout): Promise<() => Promise<void>> {
  await mkdir(layout.root, { recursive: true });
  let release: () => Promise<void>;
  try {
    release = await tryLock(layout);
  } catch (err) {
    // ENOTEMPTY: proper-lockfile judged the lock stale by its mtime but could not remove it,
    // because the pid file is inside; the pid decides below.
    if (!isErrnoCode(err, 'ELOCKED') && !isErrnoCode(err, 'ENOTEMPTY')) throw err;
    const pid = await holderPid(layout.lockPath);
    if (pid === null || pid === process.pid || isProcessAlive(pid)) {
      throw new UpdateInProgressError(
        `another update holds ${layout.lockPath}${pid === null ? '' : ` (pid ${pid})`}; try again when it is done`,
      );
    }
    // The holder died without releasing (kill -9, power loss): take the lock over.
    await rm(layout.lockPath, { recursive: true, force: true });
    try {
      release = await tryLock(layout);
    } catch (retryErr) {
      if (isErrnoCode(retryErr, 'ELOCKED') || isErrnoCode(retryErr, 'ENOTEMPTY')) throw new UpdateInProgressError(`another update took ${layout.lockPath} first`);
      throw retryErr;
    }
  }
  await keepingLockMtime(layout.lockPath, () => writeFile(join(layout.lockPath, PID_FILE), String(process.pid)));
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await keepingLockMtime(layout.lockPath, () => rm(join(layout.lockPath, PID_FILE), { force: true }));
    await release().catch(async (err: unknown) => {
      if (!isErrnoCode(err, 'ERELEASED') && !isErrnoCode(err, 'ENOENT')) throw err;
      // proper-lockfile gave the lock up as compromised and left its directory. Remove it only
      // when it is empty: a pid file inside would be a new holder's.
      await rmdir(layout.lockPath).catch(() => undefined);
    });
  };
}

/**
 * Adding or removing the pid file changes the lock directory's mtime, which proper-lockfile
 * reads as "another process took the lock": it would stop refreshing it (so it goes stale
 * mid-update) and leave it behind on release, blocking the next update for LOCK_STALE_MS.
 * Put the mtime back as proper-lockfile last set it.
 */
async function keepingLockMtime(lockPath: string, change: () => Promise<void>): Promise<void> {
  const before = await stat(lockPath);
  await change();
  await utimes(lockPath, before.atime, before.mtime);
}
