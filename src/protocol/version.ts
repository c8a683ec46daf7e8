import semver from 'semver';

/**
 * Versions are strict SemVer 2.0.0: no leading `v`, no loose forms. A version is also a path
 * segment (`versions/<v>/`, `artifacts/<v>/`), and this grammar has no separators or dots-only
 * segments, so it cannot escape a folder.
 */
export const SEMVER_PATTERN =
  '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)' +
  '(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?' +
  '(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$';

const semverRegExp = new RegExp(SEMVER_PATTERN);
export const MAX_VERSION_LENGTH = 64;

export function isValidVersion(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_VERSION_LENGTH && semverRegExp.test(value);
}

/** -1, 0 or 1, by SemVer precedence (build metadata ignored, as SemVer says). */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  return semver.compare(a, b);
}

export function isNewerVersion(candidate: string, than: string): boolean {
  return semver.gt(candidate, than);
}
