import { join } from 'node:path';
import { currentPlatform, executableName } from '../../protocol/platform.js';
import { isValidVersion } from '../../protocol/version.js';

/** current, previous and launcher can name three different versions; fewer could not keep them all. */
export const MIN_KEEP_VERSIONS = 3;

/**
 * The install root (docs/protocol.md, section 4) and the engine's working folders:
 *
 * ```
 * versions/<version>/bytebiota-worker[.exe]   complete and verified; versions/<v>/.complete is the mark, written last
 * current, previous                           symlinks to versions/<v>; pointer files holding the version on Windows
 * state.json                                  highest accepted serial per channel, pending switch and watch, worker id
 * tmp/                                        partial downloads and staging dirs, on the same filesystem as versions/
 * update.lock                                 one update at a time
 * reports/                                    queued update reports
 * logs/                                       child output of failed attempts
 * ```
 */
export interface InstallLayout {
  root: string;
  versionsDir: string;
  tmpDir: string;
  reportsDir: string;
  logsDir: string;
  statePath: string;
  lockPath: string;
  currentPointer: string;
  previousPointer: string;
  /**
   * What the service manager starts (`launcher/bytebiota-worker supervise`): the last version
   * that passed a health watch. It moves only after a success, so a new version that crashes at
   * once can never be the supervisor that must roll it back, even after a power cut mid-watch.
   */
  launcherPointer: string;
  platform: string;
  /**
   * How `current` and `previous` are stored: a relative symlink, or (on Windows, where creating
   * symlinks needs a privilege services often lack) a small file holding the version.
   */
  pointerKind: 'symlink' | 'file';
  versionDir(version: string): string;
  executablePath(version: string): string;
}

/** The name of the mark that makes `versions/<v>/` a complete version; written last. */
export const COMPLETE_MARK_FILE = '.complete';

/**
 * A version becomes a path segment here. The SemVer grammar has no separators and no
 * dot-only segments, so a version that passes `isValidVersion` cannot leave `versions/`.
 */
function assertVersionSegment(version: string): void {
  if (!isValidVersion(version)) throw new RangeError(`not a valid version: ${JSON.stringify(version)}`);
}

export function installLayout(root: string, platform: string = currentPlatform()): InstallLayout {
  const versionsDir = join(root, 'versions');
  const versionDir = (version: string): string => {
    assertVersionSegment(version);
    return join(versionsDir, version);
  };
  return {
    root,
    versionsDir,
    tmpDir: join(root, 'tmp'),
    reportsDir: join(root, 'reports'),
    logsDir: join(root, 'logs'),
    statePath: join(root, 'state.json'),
    lockPath: join(root, 'update.lock'),
    currentPointer: join(root, 'current'),
    previousPointer: join(root, 'previous'),
    launcherPointer: join(root, 'launcher'),
    platform,
    pointerKind: platform.startsWith('win32-') ? 'file' : 'symlink',
    versionDir,
    executablePath: (version) => join(versionDir(version), executableName(platform)),
  };
}
