import { mkdir, readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { fsyncDirectory, tempPathBeside, writeFileAtomic, type AtomicWriteOptions } from '../../shared/atomic-file.js';
import { CodedError, isErrnoCode } from '../../shared/errors.js';
import { isValidVersion } from '../../protocol/version.js';
import type { InstallLayout } from './install-layout.js';
import { retryWhileLocked } from '../../shared/retry-while-locked.js';

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

/** The pointer-file scheme's retry, as writeFileAtomic takes it; tests inject `rename` and `sleep`. */
export type PointerWriteOptions = Pick<AtomicWriteOptions, 'rename' | 'sleep' | 'budgetMs'>;

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
    // The pointer-file scheme is the Windows one wherever it runs (tests run it on Linux): its
    // rename is retried while a reader holds the pointer open, as Windows refuses it then.
    await writeFileAtomic(path, `${version}\n`, { ...options, platform: 'win32' });
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
