import { mkdir, open, readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { fsyncDirectory, tempPathBeside } from '../../shared/atomic-file.js';
import { CodedError, isErrnoCode } from '../../shared/errors.js';
import { isValidVersion } from '../../protocol/version.js';
import type { InstallLayout } from './install-layout.js';
import { retryWhileLocked, type LockedRetryOptions } from '../../shared/retry-while-locked.js';

export type PointerName = 'current' | 'previous' | 'launcher';

/** A pointer whose content is not a version we could have written: never guessed around. */
export class PointerError extends CodedError<'pointer_invalid'> {
  constructor(message: string) {
    super('pointer_invalid', message);
  }
}

function pointerPath(layout: InstallLayout, which: PointerName): string {
  if (which === 'launcher') return layout.launcherPointer;
  return which === 'current' ? layout.currentPointer : layout.previousPointer;
}

/** The relative symlink target: relative so that the install root can be moved or mounted elsewhere. */
function symlinkTarget(version: string): string {
  return posix.join('versions', version);
}

function versionFromSymlinkTarget(path: string, target: string): string {
  const segments = target.replaceAll('\\', '/').split('/').filter((segment) => segment !== '' && segment !== '.');
  const [dir, version] = segments;
  if (segments.length !== 2 || dir !== 'versions' || !isValidVersion(version)) {
    throw new PointerError(`${path} points to ${target}, not to versions/<version>`);
  }
  return version;
}

/** The version a pointer names, or null when the pointer does not exist. */
export async function readPointer(layout: InstallLayout, which: PointerName): Promise<string | null> {
  const path = pointerPath(layout, which);
  try {
    if (layout.pointerKind === 'symlink') return versionFromSymlinkTarget(path, await readlink(path));
    const version = (await readFile(path, 'utf8')).trim();
    if (!isValidVersion(version)) throw new PointerError(`${path} holds ${JSON.stringify(version)}, not a version`);
    return version;
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return null;
    if (isErrnoCode(err, 'EINVAL')) throw new PointerError(`${path} is not a symlink`);
    throw err;
  }
}

/** How a pointer file is renamed into place; injected by tests to fail as Windows does. */
export type RenameFile = (from: string, to: string) => Promise<void>;

export interface PointerWriteOptions extends LockedRetryOptions {
  rename?: RenameFile;
}

/**
 * The pointer-file scheme (Windows): write a temp file beside the pointer, fsync it, rename it
 * over the pointer. Windows refuses that rename (EPERM) while any process has the old pointer
 * open, a supervisor or worker reading it at that moment included, so the rename is retried for
 * a short while (retry-while-locked.ts) instead of failing the switch.
 */
async function writePointerFile(layout: InstallLayout, path: string, version: string, options: PointerWriteOptions): Promise<void> {
  const renameFile = options.rename ?? rename;
  await mkdir(layout.root, { recursive: true });
  const temp = tempPathBeside(path);
  const handle = await open(temp, 'wx', 0o644);
  try {
    await handle.writeFile(`${version}\n`);
    await handle.sync();
    await handle.close();
    await retryWhileLocked(() => renameFile(temp, path), options);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw err;
  }
  await fsyncDirectory(layout.root);
}

/**
 * Point `which` at a version by one atomic rename (docs/protocol.md, section 4: "current changes by one
 * atomic rename"). Symlink: create it at a temp name beside the pointer, rename it over the
 * pointer (rename(2) replaces a symlink atomically), fsync the root. Pointer file: the same
 * sequence with a file holding the version. A reader sees the old version or the new one, never neither.
 */
export async function writePointer(layout: InstallLayout, which: PointerName, version: string, options: PointerWriteOptions = {}): Promise<void> {
  if (!isValidVersion(version)) throw new RangeError(`not a valid version: ${JSON.stringify(version)}`);
  const path = pointerPath(layout, which);
  if (layout.pointerKind === 'file') {
    await writePointerFile(layout, path, version, options);
    return;
  }
  await mkdir(layout.root, { recursive: true });
  const temp = tempPathBeside(path);
  await symlink(symlinkTarget(version), temp);
  try {
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await fsyncDirectory(layout.root);
}

/** Remove a pointer (used only to revert the first install, when there was none before). */
export async function removePointer(layout: InstallLayout, which: PointerName): Promise<void> {
  const path = pointerPath(layout, which);
  // Windows refuses to delete a file another process has open, as it refuses the rename above.
  await (layout.pointerKind === 'file' ? retryWhileLocked(() => rm(path, { force: true })) : rm(path, { force: true }));
  await fsyncDirectory(layout.root);
}
