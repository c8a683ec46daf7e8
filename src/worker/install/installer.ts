import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fsyncDirectory, fsyncFile, writeFileAtomic } from '../../shared/atomic-file.js';
import { errorMessage, isErrnoCode, isNoSpace } from '../../shared/errors.js';
import { chunkFile, type ChunkedFile, type ChunkingParams } from '../../shared/chunker.js';
import { digestFile } from '../../shared/file-digest.js';
import type { Logger } from '../../shared/logger.js';
import { DEFAULT_CHUNKING } from '../../protocol/chunk-index.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import { executableName } from '../../protocol/platform.js';
import { isValidVersion } from '../../protocol/version.js';
import { COMPLETE_MARK_FILE, type InstallLayout } from './install-layout.js';
import { PointerError, readPointer, removePointer, writePointer, type PointerName } from './pointer.js';
import { acquireUpdateLock, UpdateInProgressError } from './lock.js';
import { fileIdentity, sameFile, type VerifiedFile } from './file-receipt.js';
import { writeLocalChunks } from './local-chunks.js';

/** `versions/<v>/.complete`: written last, so its presence means every byte before it is in place. */
export interface CompleteMark {
  version: string;
  sha256: string;
  size: number;
  installed_at: string;
}

export const DEFAULT_SELF_TEST_TIMEOUT_MS = 15_000;
const SELF_TEST_MAX_OUTPUT_BYTES = 64 * 1024;
/** Staging dirs are `tmp/stage-<version>-<random>`; recovery removes every one of them. */
const STAGING_PREFIX = 'stage-';
/** What mkdtemp appends to the prefix `stage-<version>-`: six random characters. */
const STAGING_RANDOM_LENGTH = 6;

/** The version a staging dir under tmp/ is made for, or null when `name` is not a staging dir. */
export function stagingDirVersion(name: string): string | null {
  if (!name.startsWith(STAGING_PREFIX) || name.length < STAGING_PREFIX.length + STAGING_RANDOM_LENGTH + 2) return null;
  const version = name.slice(STAGING_PREFIX.length, -(STAGING_RANDOM_LENGTH + 1));
  return isValidVersion(version) ? version : null;
}

/**
 * The reads that tell whether a version is complete. Injectable so that tests can make one fail
 * as a disk or a permission can (EACCES, EPERM, EIO); production uses node:fs.
 */
export interface VersionReader {
  readFile(path: string): Promise<string>;
  stat(path: string): Promise<{ isFile(): boolean; size: number }>;
}

export const fsVersionReader: VersionReader = {
  readFile: (path) => readFile(path, 'utf8'),
  stat: (path) => stat(path),
};

/**
 * What `versions/<v>/` holds (docs/protocol.md, section 4). Unreadable is not missing: a mark or
 * executable that is there but cannot be read (EACCES, EPERM, EIO: any errno but ENOENT and
 * ENOTDIR) may belong to a complete version, so such a version is never removed as incomplete,
 * and never switched to either.
 */
export type VersionStatus =
  | { kind: 'complete'; mark: CompleteMark }
  | { kind: 'incomplete'; detail: string }
  | { kind: 'unreadable'; path: string; errno: string; detail: string };

/** ENOENT, or ENOTDIR (`versions/<v>` is a file): nothing is there. */
function isMissing(err: unknown): boolean {
  return isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR');
}

function unreadable(path: string, err: unknown): Extract<VersionStatus, { kind: 'unreadable' }> {
  const code = (err as { code?: unknown } | null)?.code;
  return { kind: 'unreadable', path, errno: typeof code === 'string' ? code : 'UNKNOWN', detail: `${path} cannot be read: ${errorMessage(err)}` };
}

type MarkStatus = Exclude<VersionStatus, { kind: 'complete' }> | { kind: 'marked'; mark: CompleteMark };

async function readMark(layout: InstallLayout, version: string, reader: VersionReader): Promise<MarkStatus> {
  if (!isValidVersion(version)) return { kind: 'incomplete', detail: `${JSON.stringify(version)} is not a valid version` };
  const path = join(layout.versionDir(version), COMPLETE_MARK_FILE);
  let text: string;
  try {
    text = await reader.readFile(path);
  } catch (err) {
    if (isMissing(err)) return { kind: 'incomplete', detail: `versions/${version} has no ${COMPLETE_MARK_FILE} mark` };
    return unreadable(path, err);
  }
  let value: Partial<CompleteMark> | null;
  try {
    value = JSON.parse(text) as Partial<CompleteMark> | null;
  } catch {
    // The mark is written atomically: bytes that do not parse were never a whole mark.
    return { kind: 'incomplete', detail: `versions/${version}/${COMPLETE_MARK_FILE} is not JSON` };
  }
  if (
    typeof value !== 'object' ||
    value === null ||
    value.version !== version ||
    typeof value.sha256 !== 'string' ||
    !/^[0-9a-f]{64}$/.test(value.sha256) ||
    typeof value.size !== 'number' ||
    typeof value.installed_at !== 'string'
  ) {
    return { kind: 'incomplete', detail: `versions/${version}/${COMPLETE_MARK_FILE} is not a mark of ${version}` };
  }
  return { kind: 'marked', mark: value as CompleteMark };
}

/**
 * The mark of `versions/<version>`, or null when there is none (or none valid for it). A mark
 * that is there but cannot be read is install_failed, never null: a caller that took the version
 * for missing would replace it.
 */
export async function readCompleteMark(layout: InstallLayout, version: string, reader: VersionReader = fsVersionReader): Promise<CompleteMark | null> {
  const status = await readMark(layout, version, reader);
  if (status.kind === 'unreadable') throw new UpdateError('install_failed', `version ${version}: ${status.detail}`);
  return status.kind === 'marked' ? status.mark : null;
}

/**
 * A version is complete when its mark is there and names it, and its executable is a file of
 * the size the mark records. The hash was checked before the mark was written; it is not
 * recomputed on every start.
 */
export async function inspectVersion(layout: InstallLayout, version: string, reader: VersionReader = fsVersionReader): Promise<VersionStatus> {
  const mark = await readMark(layout, version, reader);
  if (mark.kind !== 'marked') return mark;
  const executable = layout.executablePath(version);
  let info: { isFile(): boolean; size: number };
  try {
    info = await reader.stat(executable);
  } catch (err) {
    if (isMissing(err)) return { kind: 'incomplete', detail: `versions/${version} has a mark but no executable` };
    return unreadable(executable, err);
  }
  if (!info.isFile() || info.size !== mark.mark.size) {
    return { kind: 'incomplete', detail: `the executable of ${version} is not a file of the ${mark.mark.size} bytes its mark records` };
  }
  return { kind: 'complete', mark: mark.mark };
}

/** True for a complete version only; inspectVersion tells incomplete from unreadable. */
export async function isCompleteVersion(layout: InstallLayout, version: string, reader: VersionReader = fsVersionReader): Promise<boolean> {
  return (await inspectVersion(layout, version, reader)).kind === 'complete';
}

/** Why a version is not complete, for messages: with the errno when it could not be read. */
export function describeVersionStatus(version: string, status: VersionStatus): string {
  if (status.kind === 'complete') return `${version} is complete`;
  if (status.kind === 'unreadable') return `${version} is unreadable (${status.errno}): ${status.detail}`;
  return `${version} is not complete: ${status.detail}`;
}

class SelfTestTimeout extends Error {}

/**
 * Run `<executable> --version --json` and collect its stdout. On timeout the child is killed and
 * the promise settles at once, even if a grandchild still holds the pipe open.
 */
function runVersionJson(executable: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(executable, ['--version', '--json'], { stdio: ['ignore', 'pipe', 'ignore'], windowsHide: true });
    const chunks: Buffer[] = [];
    let total = 0;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      child.stdout.destroy();
      reject(new SelfTestTimeout(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total <= SELF_TEST_MAX_OUTPUT_BYTES) chunks.push(chunk);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(chunks).toString('utf8'));
      else reject(new Error(`exited with ${signal ?? `code ${code}`}`));
    });
  });
}

/**
 * Spawn errors that say the executable itself cannot run here, not that this machine failed to
 * start it: ENOEXEC (not an executable format), ENOENT (the file was just staged, so it is the
 * interpreter or loader it names that is missing: a build for another libc or a bad `#!`).
 */
const EXECUTABLE_AT_FAULT_ERRNOS: ReadonlySet<string> = new Set(['ENOEXEC', 'ENOENT']);

/**
 * The reason code for a `--version --json` run that failed: `self_test_failed` when the
 * executable is at fault (it exited non-zero, died, hung, or cannot be executed at all), and
 * `install_failed` when this machine could not start a process (EACCES on a noexec mount,
 * EAGAIN, ENOMEM, ETXTBSY that did not clear): that is not the release's fault.
 */
export function selfTestRunFailureCode(err: unknown): 'self_test_failed' | 'install_failed' {
  const errno = (err as { code?: unknown } | null)?.code;
  return typeof errno === 'string' && !EXECUTABLE_AT_FAULT_ERRNOS.has(errno) ? 'install_failed' : 'self_test_failed';
}

/**
 * Run the staged executable with `--version --json` and require it to report `version`: a
 * binary for the wrong platform, a truncated one, or a mislabelled build never becomes a version.
 * Its failures are `self_test_failed`, the release's fault (it counts toward halting a rollout):
 * the run exits non-zero, dies, hangs past the timeout, prints no JSON, or reports another
 * version; a process this machine could not start stays `install_failed` (selfTestRunFailureCode).
 * ETXTBSY (a just-closed file still counted as open for writing by a concurrent fork) is retried.
 */
async function selfTest(executable: string, version: string, timeoutMs: number): Promise<void> {
  let stdout: string | undefined;
  for (let attempt = 1; stdout === undefined; attempt += 1) {
    try {
      stdout = await runVersionJson(executable, timeoutMs);
    } catch (err) {
      if (isErrnoCode(err, 'ETXTBSY') && attempt < 5) {
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
        continue;
      }
      throw new UpdateError(selfTestRunFailureCode(err), `self-test of ${version}: --version --json failed: ${errorMessage(err)}`, { cause: err });
    }
  }
  let reported: unknown;
  try {
    reported = (JSON.parse(stdout.trim()) as { version?: unknown }).version;
  } catch (err) {
    throw new UpdateError('self_test_failed', `self-test of ${version}: --version --json did not print JSON`, { cause: err });
  }
  if (reported !== version) {
    throw new UpdateError('self_test_failed', `self-test: the executable staged as ${version} reports version ${String(reported)}`);
  }
}

function asInstallError(err: unknown, version: string): UpdateError {
  if (err instanceof UpdateError) return err;
  if (isNoSpace(err)) return new UpdateError('disk_full', `no space left staging ${version}`, { cause: err });
  return new UpdateError('install_failed', `staging ${version} failed: ${errorMessage(err)}`, { cause: err });
}

export interface StageOptions {
  layout: InstallLayout;
  sourcePath: string;
  version: string;
  sha256: string;
  size: number;
  selfTestTimeoutMs?: number;
  /**
   * Move the source into the staging dir instead of copying it (a download in `tmp/`, on the same
   * filesystem): no second copy on disk. The source is consumed either way the staging ends.
   */
  moveSource?: boolean;
  /**
   * The fetcher's receipt for `sourcePath`. When it names the same SHA-256 and size and the
   * staged file is still the very file that was hashed, the second hashing pass is skipped;
   * otherwise the staged file is hashed again. There is no way to skip the check without one.
   */
  verified?: VerifiedFile;
  /**
   * The chunks of these bytes when the fetcher already knows them (a verified chunk index, or a
   * differential download), kept as the version's chunk cache; otherwise they are cut while the
   * file is hashed here, when it is.
   */
  chunks?: { chunked: ChunkedFile; params: ChunkingParams };
}

/** True when `staged` is provably the file the fetcher hashed against these exact values. */
async function coveredByReceipt(opts: StageOptions, staged: string): Promise<boolean> {
  const receipt = opts.verified;
  if (!receipt || receipt.path !== opts.sourcePath || receipt.sha256 !== opts.sha256 || receipt.size !== opts.size) return false;
  return sameFile(receipt.identity, await fileIdentity(staged));
}

/**
 * Make `versions/<version>/` from an executable, so that it is there complete or not at all:
 * 1. place the file in a fresh staging dir under tmp/ (same filesystem as versions/);
 * 2. check its size and SHA-256 against the signed values (hashing it, unless the fetcher's
 *    receipt proves this very file was hashed against them), and keep its chunks (local-chunks.ts);
 * 3. chmod 0755 and self-test it (`--version --json` must report `version`; self_test_failed);
 * 4. fsync the file, write `.complete` last (itself fsynced), fsync the staging dir;
 * 5. rename the staging dir to `versions/<version>` and fsync `versions/`.
 * Idempotent: a version already complete with the same SHA-256 is returned as is. On failure the
 * staging dir is removed and an UpdateError is thrown (install_failed; size_mismatch,
 * checksum_mismatch, self_test_failed or disk_full when that is what went wrong). It never writes into a version
 * dir that exists complete, so it never writes over an executable that may be running; nor into
 * one it cannot read (install_failed): that may be complete too.
 */
export async function stageVersion(opts: StageOptions): Promise<{ version: string; executablePath: string }> {
  const { layout, version } = opts;
  const finalDir = layout.versionDir(version);
  const executablePath = layout.executablePath(version);
  const existing = await inspectVersion(layout, version);
  if (existing.kind === 'unreadable') {
    throw new UpdateError('install_failed', `not staging over versions/${version}: ${describeVersionStatus(version, existing)}`);
  }
  if (existing.kind === 'complete') {
    if (existing.mark.sha256 !== opts.sha256) {
      throw new UpdateError(
        'install_failed',
        `version ${version} is already installed with SHA-256 ${existing.mark.sha256}, not ${opts.sha256}; a version's bytes never change`,
      );
    }
    if (opts.moveSource) await rm(opts.sourcePath, { force: true });
    return { version, executablePath };
  }

  await mkdir(layout.tmpDir, { recursive: true });
  await mkdir(layout.versionsDir, { recursive: true });
  const stagingDir = await mkdtemp(join(layout.tmpDir, `${STAGING_PREFIX}${version}-`));
  try {
    const staged = join(stagingDir, executableName(layout.platform));
    if (opts.moveSource) await rename(opts.sourcePath, staged);
    else await copyFile(opts.sourcePath, staged);

    let chunks = opts.chunks?.chunked.sha256 === opts.sha256 ? opts.chunks : undefined;
    if (!(await coveredByReceipt(opts, staged))) {
      // Hashed and cut in one pass: the check and the chunk cache from a single read.
      const actual = await chunkFile(staged, DEFAULT_CHUNKING);
      if (actual.size !== opts.size) {
        throw new UpdateError('size_mismatch', `staged ${version} is ${actual.size} bytes; expected ${opts.size}`);
      }
      if (actual.sha256 !== opts.sha256) {
        throw new UpdateError('checksum_mismatch', `staged ${version} has SHA-256 ${actual.sha256}; expected ${opts.sha256}`);
      }
      chunks ??= { chunked: actual, params: DEFAULT_CHUNKING };
    }
    await chmod(staged, 0o755);
    await selfTest(staged, version, opts.selfTestTimeoutMs ?? DEFAULT_SELF_TEST_TIMEOUT_MS);
    // Only a cache for the next differential update: failing to write it costs a later re-read. A
    // download whose release had no chunk index is not read again for it here (that would cost
    // more than the whole download): the next differential update cuts it once, if one comes.
    if (chunks) await writeLocalChunks(stagingDir, chunks.chunked, chunks.params).catch(() => undefined);
    await fsyncFile(staged);
    const mark: CompleteMark = { version, sha256: opts.sha256, size: opts.size, installed_at: new Date().toISOString() };
    await writeFileAtomic(join(stagingDir, COMPLETE_MARK_FILE), `${JSON.stringify(mark)}\n`);

    // A leftover incomplete dir (a crash before an earlier rename finished is not possible, but
    // an operator's partial copy is) would make the rename fail; it holds nothing that runs.
    await rm(finalDir, { recursive: true, force: true });
    await rename(stagingDir, finalDir);
    await fsyncDirectory(layout.versionsDir);
  } catch (err) {
    await rm(stagingDir, { recursive: true, force: true });
    if (opts.moveSource) await rm(opts.sourcePath, { force: true });
    throw asInstallError(err, version);
  }
  return { version, executablePath };
}

/** A pointer that cannot be read (garbage, not a symlink) counts as no pointer: it names nothing runnable. */
/** A pointer that cannot be read (PointerError) names no version; other errors propagate. */
export async function readPointerOrNull(layout: InstallLayout, which: PointerName): Promise<string | null> {
  try {
    return await readPointer(layout, which);
  } catch (err) {
    if (err instanceof PointerError) return null;
    throw err;
  }
}

async function restorePointer(layout: InstallLayout, which: PointerName, version: string | null): Promise<void> {
  if (version === null) await removePointer(layout, which);
  else await writePointer(layout, which, version);
}

/**
 * Make `version` current, keeping the old current as `previous` for rollback:
 * 1. previous := current (only when current is a complete version), 2. current := version.
 * Each pointer changes by one atomic rename, so a crash between or during the steps leaves
 * `current` on a complete version. Refuses an incomplete version (install_failed). The returned
 * revert puts both pointers back as they were and may be called more than once.
 */
export async function switchCurrent(
  layout: InstallLayout,
  version: string,
): Promise<{ from: string | null; revert(): Promise<void> }> {
  const status = await inspectVersion(layout, version);
  if (status.kind !== 'complete') {
    throw new UpdateError('install_failed', `refusing to make ${version} current: ${describeVersionStatus(version, status)}`);
  }
  const from = await readPointerOrNull(layout, 'current');
  if (from === version) return { from, revert: async () => undefined };
  const oldPrevious = await readPointerOrNull(layout, 'previous');
  if (from !== null && (await isCompleteVersion(layout, from))) await writePointer(layout, 'previous', from);
  await writePointer(layout, 'current', version);
  return {
    from,
    revert: async () => {
      await restorePointer(layout, 'current', from);
      await restorePointer(layout, 'previous', oldPrevious);
    },
  };
}

/**
 * current := previous, by one atomic rename. `previous` is left as it is (the good version), so
 * the version that failed is never a rollback target. `from` is the version current named, or
 * an empty string when it named none. rollback_failed when previous is missing or incomplete.
 */
export async function rollbackToPrevious(layout: InstallLayout): Promise<{ from: string; to: string }> {
  const to = await readPointerOrNull(layout, 'previous');
  if (to === null) throw new UpdateError('rollback_failed', `no previous version to roll back to in ${layout.root}`);
  const status = await inspectVersion(layout, to);
  if (status.kind !== 'complete') {
    throw new UpdateError('rollback_failed', `cannot roll back to the previous version: ${describeVersionStatus(to, status)}`);
  }
  const from = await readPointerOrNull(layout, 'current');
  try {
    await writePointer(layout, 'current', to);
  } catch (err) {
    throw new UpdateError('rollback_failed', `could not point current at ${to}: ${errorMessage(err)}`, { cause: err });
  }
  return { from: from ?? '', to };
}

/**
 * `bytebiota-worker install`: stage the given executable as `version` and make it current.
 * Takes the update lock, so it cannot race an update of the same root.
 */
export async function installExecutable(layout: InstallLayout, executablePath: string, version: string): Promise<void> {
  const release = await acquireUpdateLock(layout);
  try {
    const { sha256, sizeBytes: size } = await digestFile(executablePath);
    await stageVersion({ layout, sourcePath: executablePath, version, sha256, size });
    await switchCurrent(layout, version);
    // An installed version is trusted by the operator who installed it: it is what starts.
    await writePointer(layout, 'launcher', version);
  } finally {
    await release();
  }
}

const POINTER_TEMP = /^\.(current|previous|launcher|state\.json|service-restart\.json)\.[0-9a-f]+\.tmp$/;

/**
 * At supervisor start, clear what a crash may have left half done: staging dirs and stray temp
 * files under tmp/, temp pointers in the root, and `versions/<v>` dirs without a valid mark
 * (unless a pointer names them: those are left for the supervisor to roll back from). A version
 * that cannot be read is not missing: it is left alone and logged (worker_version_unreadable),
 * never removed as incomplete. Partial downloads and their sidecars are kept so that the next
 * attempt resumes. When another process holds the update lock its staging is live, and nothing
 * is touched.
 */
export async function recoverInstallRoot(layout: InstallLayout, deps: { log?: Logger; reader?: VersionReader } = {}): Promise<void> {
  for (const dir of [layout.root, layout.versionsDir, layout.tmpDir, layout.reportsDir, layout.logsDir]) {
    await mkdir(dir, { recursive: true });
  }
  let release: () => Promise<void>;
  try {
    release = await acquireUpdateLock(layout);
  } catch (err) {
    if (err instanceof UpdateInProgressError) return;
    throw err;
  }
  try {
    for (const entry of await readdir(layout.tmpDir, { withFileTypes: true })) {
      if (entry.name.endsWith('.partial') || entry.name.endsWith('.partial.json')) continue;
      await rm(join(layout.tmpDir, entry.name), { recursive: true, force: true });
    }
    for (const entry of await readdir(layout.root, { withFileTypes: true })) {
      if (POINTER_TEMP.test(entry.name)) await rm(join(layout.root, entry.name), { force: true });
    }
    const pointed = new Set<string | null>([
      await readPointerOrNull(layout, 'current'),
      await readPointerOrNull(layout, 'previous'),
      await readPointerOrNull(layout, 'launcher'),
    ]);
    for (const entry of await readdir(layout.versionsDir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !isValidVersion(entry.name) || pointed.has(entry.name)) continue;
      const status = await inspectVersion(layout, entry.name, deps.reader);
      if (status.kind === 'incomplete') {
        await rm(join(layout.versionsDir, entry.name), { recursive: true, force: true });
      } else if (status.kind === 'unreadable') {
        deps.log?.warn(
          { event: 'worker_version_unreadable', version: entry.name, errno: status.errno, path: status.path },
          `left versions/${entry.name} alone: ${status.detail}`,
        );
      }
    }
    await fsyncDirectory(layout.versionsDir);
  } finally {
    await release();
  }
}
