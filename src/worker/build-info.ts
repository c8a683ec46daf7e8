import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { currentPlatform } from '../protocol/platform.js';

/** What `bytebiota-worker --version --json` prints (docs/protocol.md, section 4). */
export interface WorkerBuildInfo {
  version: string;
  commit: string;
  built_at: string;
  platform: string;
}

/**
 * Defined by the release build (src/release/build/bundle.ts, BUILD_INFO_DEFINE) as an object
 * literal; absent when the worker runs from source. Read only behind `typeof`, so the source
 * build does not throw a ReferenceError.
 */
declare const __BYTEBIOTA_BUILD__: WorkerBuildInfo | undefined;

export const SOURCE_COMMIT = 'source';
const PACKAGE_NAME = 'bytebiota';

/** True in the packaged single executable: the build embedded its metadata. */
export function isPackagedBuild(): boolean {
  return typeof __BYTEBIOTA_BUILD__ !== 'undefined';
}

/**
 * The package.json of this package, found by walking up from the entry script. From source
 * there is no embedded metadata, and `import.meta` cannot be used: esbuild bundles this file to
 * CommonJS, where it would be empty.
 */
function sourcePackageVersion(entryScript: string): string {
  let dir = dirname(resolve(entryScript));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === PACKAGE_NAME && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json here (or not ours): keep walking up.
    }
    const parent = dirname(dir);
    if (parent === dir) return '0.0.0';
    dir = parent;
  }
}

let cached: WorkerBuildInfo | undefined;

/** The running worker's version and build metadata, embedded or (from source) the package's. */
export function buildInfo(): WorkerBuildInfo {
  if (cached) return cached;
  if (typeof __BYTEBIOTA_BUILD__ !== 'undefined') {
    cached = { ...__BYTEBIOTA_BUILD__ };
  } else {
    cached = {
      version: sourcePackageVersion(process.argv[1] ?? process.cwd()),
      commit: SOURCE_COMMIT,
      built_at: 'unknown',
      platform: currentPlatform(),
    };
  }
  return cached;
}

/** The text of `--version`: the first line docs/protocol.md, section 4 fixes, then one `key: value` line each. */
export function formatVersionText(info: WorkerBuildInfo): string {
  return [
    `bytebiota-worker ${info.version}`,
    `commit: ${info.commit}`,
    `built: ${info.built_at}`,
    `platform: ${info.platform}`,
  ].join('\n') + '\n';
}

export function formatVersionJson(info: WorkerBuildInfo): string {
  return `${JSON.stringify({ version: info.version, commit: info.commit, built_at: info.built_at, platform: info.platform })}\n`;
}
