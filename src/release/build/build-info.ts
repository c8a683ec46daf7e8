/**
 * Build metadata embedded into every worker executable at bundle time.
 * The worker reads it back from the global constant named by BUILD_INFO_DEFINE.
 */
export interface BuildInfo {
  /** Strict SemVer, no leading "v". */
  version: string;
  /** Full git commit hash of the source tree, or "unknown" outside a git checkout. */
  commit: string;
  /** ISO-8601 UTC timestamp of the build. */
  built_at: string;
  /** `${process.platform}-${process.arch}` of the executable, e.g. "linux-x64". */
  platform: string;
}

/** Identifier that esbuild's `define` replaces with the BuildInfo JSON object. */
export const BUILD_INFO_DEFINE = '__BYTEBIOTA_BUILD__';
