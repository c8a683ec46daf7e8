import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, isErrnoCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { InstallLayout } from '../install/install-layout.js';

/** What a download leaves in tmp/ until it completes: the file and its sidecar, whole or differential. */
function partialSuffixes(platform: string): string[] {
  return ['.partial', '.partial.json', '.delta.partial', '.delta.partial.json'].map((suffix) => `-${platform}${suffix}`);
}

/** The version a partial download in tmp/ is of, or null for any other file. */
export function partialDownloadVersion(name: string, platform: string): string | null {
  for (const suffix of partialSuffixes(platform)) {
    if (name.endsWith(suffix) && name.length > suffix.length) return name.slice(0, -suffix.length);
  }
  return null;
}

/**
 * Remove the partial downloads of every version but `keepVersion` (docs/worker-updates.md, "Disk
 * use"): a release that was superseded while it downloaded would otherwise keep up to a whole
 * artifact in tmp/ for good. Called under update.lock, so no other download is writing them. A
 * file that cannot be removed is left for the next attempt; this never fails an update.
 */
export async function discardStalePartials(layout: InstallLayout, keepVersion: string, log: Logger): Promise<void> {
  let names: string[];
  try {
    names = await readdir(layout.tmpDir);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return;
    log.warn({ event: 'worker_partials_discard_failed', error: errorMessage(err) }, 'could not list tmp/ for stale partial downloads');
    return;
  }
  const removed: string[] = [];
  let bytesFreed = 0;
  for (const name of names) {
    const version = partialDownloadVersion(name, layout.platform);
    if (version === null || version === keepVersion) continue;
    const path = join(layout.tmpDir, name);
    try {
      const { size } = await stat(path);
      await rm(path, { force: true });
      removed.push(name);
      bytesFreed += size;
    } catch (err) {
      log.warn({ event: 'worker_partials_discard_failed', file: name, error: errorMessage(err) }, `could not remove the stale partial download ${name}`);
    }
  }
  if (removed.length > 0) {
    log.info({ event: 'worker_partials_discarded', files: removed, bytes_freed: bytesFreed }, `removed ${removed.length} partial download file(s) of other releases`);
  }
}
