import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

/**
 * Where the build keeps what it downloads (the Windows node.exe tarball): the user's cache
 * directory after the XDG convention, `$XDG_CACHE_HOME/bytebiota`, else `~/.cache/bytebiota`.
 * `bytebiota-release build --cache-dir DIR` (or BYTEBIOTA_BUILD_CACHE) overrides it. Nothing
 * in it is trusted: every file is checked against a hash pinned in the repository when used.
 */
export function defaultBuildCacheDir(env: Record<string, string | undefined> = process.env): string {
  const xdg = env['XDG_CACHE_HOME'];
  // The XDG spec says a relative value is invalid and must be ignored.
  const base = xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
  return join(base, 'bytebiota');
}
