/**
 * Platform names are Node's `<process.platform>-<process.arch>`, with `-musl` on Linux builds
 * against musl libc (docs/protocol.md, section 1).
 */
export const PLATFORMS = [
  'linux-x64',
  'linux-arm64',
  'linux-x64-musl',
  'linux-arm64-musl',
  'darwin-x64',
  'darwin-arm64',
  'win32-x64',
  'win32-arm64',
] as const;

export type Platform = (typeof PLATFORMS)[number];

export const PLATFORM_PATTERN = '^(linux-(x64|arm64)(-musl)?|darwin-(x64|arm64)|win32-(x64|arm64))$';

export function isPlatform(value: unknown): value is Platform {
  return typeof value === 'string' && (PLATFORMS as readonly string[]).includes(value);
}

/** True when this Linux process runs on musl: glibc reports its version in process.report. */
function isMusl(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return !report?.header?.glibcVersionRuntime;
}

export function currentPlatform(): Platform {
  const name = `${process.platform}-${process.arch}${process.platform === 'linux' && isMusl() ? '-musl' : ''}`;
  if (!isPlatform(name)) throw new Error(`unsupported platform ${name}; supported: ${PLATFORMS.join(', ')}`);
  return name;
}

/** The worker executable's file name on a platform. */
export function executableName(platform: string): string {
  return platform.startsWith('win32-') ? 'bytebiota-worker.exe' : 'bytebiota-worker';
}

/** The artifact's file name in the store: `artifacts/<version>/<this>`. */
export function artifactFileName(version: string, platform: string): string {
  return `bytebiota-worker-${version}-${platform}${platform.startsWith('win32-') ? '.exe' : ''}`;
}
