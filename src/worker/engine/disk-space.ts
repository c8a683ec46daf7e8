import { statfs as fsStatfs } from 'node:fs/promises';
import { UpdateError } from '../../protocol/reason-codes.js';

/** The part of `fs.statfs` the disk check needs; injected in tests. */
export type StatFs = (path: string) => Promise<{ bavail: number | bigint; bsize: number | bigint }>;

export const defaultStatFs: StatFs = (path) => fsStatfs(path);

/** Free space kept for the running worker and its logs: the larger of 64 MiB and 10% of the artifact. */
export const MIN_RESERVE_BYTES = 64 * 1024 * 1024;
export const RESERVE_FRACTION = 0.1;

export function reserveBytesFor(artifactBytes: number): number {
  return Math.max(MIN_RESERVE_BYTES, Math.ceil(artifactBytes * RESERVE_FRACTION));
}

export async function freeBytes(path: string, statfs: StatFs = defaultStatFs): Promise<number> {
  const stats = await statfs(path);
  return Number(stats.bavail) * Number(stats.bsize);
}

/**
 * Step 1 of a download: refuse before the first byte is written when `bytesToWrite` plus the
 * reserve does not fit, rather than filling the disk the worker itself runs from.
 */
export async function ensureFreeSpace(
  dir: string,
  bytesToWrite: number,
  artifactBytes: number,
  statfs: StatFs = defaultStatFs,
): Promise<void> {
  const needed = bytesToWrite + reserveBytesFor(artifactBytes);
  const available = await freeBytes(dir, statfs);
  if (available < needed) {
    throw new UpdateError(
      'disk_full',
      `${dir} has ${available} bytes free; the download needs ${bytesToWrite} bytes plus a reserve of ${reserveBytesFor(artifactBytes)}`,
    );
  }
}
