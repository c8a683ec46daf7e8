import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const COMMIT_PATTERN = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

export const UNKNOWN_COMMIT = 'unknown';

/**
 * The HEAD commit of the git checkout containing `dir`, or "unknown" when there is none (an
 * unpacked tarball, a repository without commits, no git installed): a build from such a tree
 * is still a valid build, it just cannot be traced to a commit.
 */
export async function headCommit(dir: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync('git', ['rev-parse', '--verify', '--quiet', 'HEAD'], { cwd: dir });
    const commit = stdout.trim();
    return COMMIT_PATTERN.test(commit) ? commit : UNKNOWN_COMMIT;
  } catch {
    return UNKNOWN_COMMIT;
  }
}

export function isCommitOrUnknown(value: string): boolean {
  return value === UNKNOWN_COMMIT || COMMIT_PATTERN.test(value);
}
