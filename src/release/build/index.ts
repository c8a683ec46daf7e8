import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { artifactFileName, currentPlatform, type Platform } from '../../protocol/platform.js';
import { isValidVersion } from '../../protocol/version.js';
import { CodedError, UsageError } from '../../shared/errors.js';
import type { BuildInfo } from './build-info.js';
import { bundleWorker } from './bundle.js';
import { digestFile } from '../../shared/file-digest.js';
import { headCommit, isCommitOrUnknown } from './git-commit.js';
import { makeSingleExecutable } from './sea.js';
import { pathExists } from '../../shared/path-exists.js';
import { defaultBuildCacheDir } from './build-cache.js';
import { verifiedWindowsNode } from './windows-node.js';

export type { BuildInfo } from './build-info.js';
export { BUILD_INFO_DEFINE } from './build-info.js';

/** src/release/build/ and dist/release/build/ are both three levels below the package root. */
const DEFAULT_ENTRY = fileURLToPath(new URL('../../../src/worker/main.ts', import.meta.url));
/** Prefix of the scratch directory inside outDir; a crashed build may leave one behind. */
export const WORK_DIR_PREFIX = '.bytebiota-build-';
/** The one platform built from another platform's node binary: from Linux, with the official node.exe. */
export const WINDOWS_CROSS_PLATFORM = 'win32-x64';

export interface BuildWorkerOptions {
  /** Strict SemVer, no leading "v". */
  version: string;
  /** Created if missing; receives exactly one file, bytebiota-worker-<version>-<platform>[.exe]. */
  outDir: string;
  /** Defaults to the package's src/worker/main.ts. */
  entry?: string;
  /** Defaults to `git rev-parse HEAD` in the entry's directory, or "unknown". */
  commit?: string;
  /** The embedded build time; defaults to the current time. */
  now?: Date;
  /**
   * This machine's platform (the default: the executable is a copy of the running node), or
   * win32-x64 on Linux (a copy of the official node.exe of the same Node version, fetched and
   * checked against a pinned hash: windows-node.ts).
   */
  platform?: string;
  /** The Node binary to embed; defaults to the one running this build. Not for win32-x64 on Linux. */
  nodeBinary?: string;
  /** Where the win32-x64 build caches the node.exe tarball; defaults to defaultBuildCacheDir(). */
  cacheDir?: string;
}

export interface BuiltWorker {
  path: string;
  sha256: string;
  /** In bytes. */
  size: number;
  buildInfo: BuildInfo;
}

/**
 * semver.valid() also accepts loose forms and returns them normalised ("v1.2.3" gives
 * "1.2.3"), so only a version it returns unchanged is strict; the protocol check adds the
 * length limit manifests enforce.
 */
function assertStrictVersion(version: string): void {
  if (semver.valid(version) !== version || !isValidVersion(version)) {
    throw new UsageError(
      `invalid version ${JSON.stringify(version)}: expected strict SemVer such as 1.2.3 or 1.2.3-rc.1, without a leading "v"`,
    );
  }
}

function isLinux(platform: Platform): boolean {
  return platform.startsWith('linux-');
}

function resolvePlatform(requested: string | undefined): string {
  const host = currentPlatform();
  if (requested === undefined || requested === host) return host;
  if (requested === WINDOWS_CROSS_PLATFORM && isLinux(host)) return requested;
  const alternative = isLinux(host) ? `, or the official node.exe for ${WINDOWS_CROSS_PLATFORM}` : '';
  throw new UsageError(
    `cannot build for platform ${requested} on ${host}: the executable is a copy of this machine's node binary${alternative}`,
  );
}

/**
 * The official node.exe of the running Node's version, checked against its pinned hash, for a
 * cross build; undefined for a build from this machine's node. Called before anything is
 * written to outDir, so a refused binary leaves no trace there.
 */
async function crossNodeBinary(platform: string, options: BuildWorkerOptions): Promise<Buffer | undefined> {
  if (platform === currentPlatform()) return undefined;
  if (options.nodeBinary !== undefined) {
    throw new UsageError(`a ${platform} build embeds the official node.exe checked against its pinned hash; nodeBinary cannot replace it`);
  }
  return verifiedWindowsNode({ cacheDir: options.cacheDir ?? defaultBuildCacheDir(), nodeVersion: process.version.slice(1) });
}

async function assertEntryExists(entry: string): Promise<void> {
  try {
    await access(entry);
  } catch (err) {
    throw new CodedError('entry_not_found', `worker entry point ${entry} does not exist`, { cause: err });
  }
}

/** A published version's bytes must not change under its name, so an existing file is kept. */
async function assertAbsent(path: string): Promise<void> {
  if (!(await pathExists(path))) return;
  throw new CodedError('artifact_exists', `${path} already exists; remove it or build into another directory`);
}

/**
 * Build the worker as one executable for this machine's platform (or win32-x64 on Linux), with
 * its version, commit and build time embedded. The file appears in outDir only when complete.
 */
export async function buildWorker(options: BuildWorkerOptions): Promise<BuiltWorker> {
  assertStrictVersion(options.version);
  if (options.commit !== undefined && !isCommitOrUnknown(options.commit)) {
    throw new UsageError(`invalid commit ${JSON.stringify(options.commit)}: expected a full git hash or "unknown"`);
  }
  const platform = resolvePlatform(options.platform);
  const entry = resolve(options.entry ?? DEFAULT_ENTRY);
  await assertEntryExists(entry);

  const buildInfo: BuildInfo = {
    version: options.version,
    commit: options.commit ?? (await headCommit(dirname(entry))),
    built_at: (options.now ?? new Date()).toISOString(),
    platform,
  };

  const outDir = resolve(options.outDir);
  const outFile = join(outDir, artifactFileName(options.version, platform));
  await assertAbsent(outFile);
  const crossNode = await crossNodeBinary(platform, options);
  await mkdir(outDir, { recursive: true });

  const workDir = await mkdtemp(join(outDir, WORK_DIR_PREFIX));
  try {
    const bundleFile = join(workDir, 'worker.cjs');
    await bundleWorker({ entry, outFile: bundleFile, buildInfo });
    if (crossNode === undefined) {
      await makeSingleExecutable({ bundleFile, outFile, workDir, nodeBinary: options.nodeBinary });
    } else {
      const nodeBinary = join(workDir, 'node.exe');
      await writeFile(nodeBinary, crossNode);
      // The running node writes the blob: it is the same Node version as node.exe (see crossNodeBinary).
      await makeSingleExecutable({ bundleFile, outFile, workDir, nodeBinary, blobWriter: process.execPath, targetOs: 'win32' });
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }

  const { sha256, sizeBytes } = await digestFile(outFile);
  return { path: outFile, sha256, size: sizeBytes, buildInfo };
}
