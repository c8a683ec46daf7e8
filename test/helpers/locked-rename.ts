import { rename } from 'node:fs/promises';
import type { RenameFile } from '../../src/shared/atomic-file.js';

/**
 * A rename that fails as Windows fails it while another process has the target open (`code`:
 * EPERM, EACCES or EBUSY), `times` times, then renames; `calls` counts the attempts.
 */
export function lockedRename(code: string, times: number): { rename: RenameFile; calls: () => number } {
  let calls = 0;
  return {
    rename: async (from, to) => {
      calls += 1;
      if (calls <= times) throw Object.assign(new Error(`${code}: operation not permitted, rename '${from}' -> '${to}'`), { code });
      await rename(from, to);
    },
    calls: () => calls,
  };
}
