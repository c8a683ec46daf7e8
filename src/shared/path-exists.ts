import { access } from 'node:fs/promises';
import { isErrnoCode } from './errors.js';

/** Whether anything exists at `path`; errors other than "not found" (permissions, I/O) are thrown. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return false;
    throw err;
  }
}
