import { createHash } from 'node:crypto';
import { link, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { buildWorker } from '../../src/release/build/index.js';
import { artifactFileName, currentPlatform } from '../../src/protocol/platform.js';
import { isErrnoCode } from '../../src/shared/errors.js';
import { repoRoot } from './processes.js';

/**
 * Packaged workers take several seconds and most of a gigabyte of memory to build, and the demo
 * and several test files need the same versions. Builds are cached under the system temp folder,
 * keyed by everything that goes into the executable: the source tree, the lock file, the Node
 * binary and the version. A stale entry cannot be served: any change to the inputs changes the key.
 */
const cacheRoot = join(tmpdir(), 'bytebiota-worker-builds');

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return sourceFiles(path);
      return entry.isFile() ? [path] : [];
    }),
  );
  return nested.flat().sort();
}

async function inputsDigest(): Promise<string> {
  const hash = createHash('sha256');
  hash.update(process.execPath).update(process.version);
  hash.update(String((await stat(process.execPath)).size));
  const fixtures = await sourceFiles(join(repoRoot, 'test', 'fixtures')).catch(() => []);
  for (const file of [...(await sourceFiles(join(repoRoot, 'src'))), ...fixtures, join(repoRoot, 'package-lock.json')]) {
    hash.update(relative(repoRoot, file)).update(await readFile(file));
  }
  return hash.digest('hex').slice(0, 24);
}

let digestOnce: Promise<string> | undefined;

/**
 * The packaged worker executable for `version`, built once per source tree and reused. `entry`
 * builds another entry point (a test fixture) under the same version, cached under its own name.
 */
export async function packagedWorker(version: string, entry?: { name: string; path: string }): Promise<string> {
  digestOnce ??= inputsDigest();
  const dir = join(cacheRoot, await digestOnce, ...(entry ? [entry.name] : []));
  const cached = join(dir, artifactFileName(version, currentPlatform()));
  try {
    await stat(cached);
    return cached;
  } catch {
    // not built yet for this source tree
  }
  await mkdir(dir, { recursive: true });
  // Build in a private folder, then hard-link into place. A link never replaces an existing
  // file: when two test files build the same version at once, the second keeps the first one's
  // file, so an executable another test is running is never swapped out from under it (a
  // rename over it would leave that process's executable deleted).
  const scratch = join(dir, `.build-${process.pid}-${Date.now()}`);
  const built = await buildWorker({ version, outDir: scratch, now: new Date('2026-01-01T00:00:00Z'), ...(entry ? { entry: entry.path } : {}) });
  try {
    await link(built.path, cached);
  } catch (err) {
    if (!isErrnoCode(err, 'EEXIST')) throw err;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return cached;
}
