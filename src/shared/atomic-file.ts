import { randomBytes } from 'node:crypto';
import { open, rename, rm, mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { retryWhileLocked, type LockedRetryOptions } from './retry-while-locked.js';

/**
 * fsync a directory so that a rename or create inside it survives power loss. Windows cannot
 * open directories for fsync; there NTFS journals the metadata and this is a no-op.
 */
export async function fsyncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A temp path beside `target`, on the same filesystem so that rename() is atomic. */
export function tempPathBeside(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** How a temp file is renamed into place; injected by tests to fail as Windows does. */
export type RenameFile = (from: string, to: string) => Promise<void>;

export interface AtomicWriteOptions extends LockedRetryOptions {
  mode?: number;
  /** Whose rules the rename follows; the running platform's. Tests pass win32 with `rename`. */
  platform?: NodeJS.Platform;
  /** Injected by tests to fail as Windows fails; fs.rename otherwise. */
  rename?: RenameFile;
}

/**
 * Write a file so that readers see either the old bytes or the new ones, never a mix:
 * 1. write a temp file beside the target, 2. fsync it, 3. rename it over the target,
 * 4. fsync the directory so the rename itself is durable.
 *
 * On Windows step 3 fails (EPERM) for as long as another process has the target open, a reader
 * of state.json or credential.json in the supervisor or the worker included; the rename is
 * retried for a short while there (retry-while-locked.ts). Elsewhere those codes are real
 * refusals and fail at once.
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const renameFile = options.rename ?? rename;
  const platform = options.platform ?? process.platform;
  await mkdir(dirname(target), { recursive: true });
  const temp = tempPathBeside(target);
  const handle = await open(temp, 'wx', options.mode ?? 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    if (platform === 'win32') await retryWhileLocked(() => renameFile(temp, target), options);
    else await renameFile(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await fsyncDirectory(dirname(target));
}

/** fsync an existing file by path (used after copying or streaming into it). */
export async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
