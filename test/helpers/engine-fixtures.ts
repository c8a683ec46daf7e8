import { execFile } from 'node:child_process';
import { access, mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { fixedClock } from '../../src/shared/clock.js';
import type { Logger } from '../../src/shared/logger.js';
import type { UpdateProgress } from '../../src/protocol/messages.js';
import type { UpdaterContext } from '../../src/worker/engine/updater.js';
import type { ArtifactEntry, SignedRelease } from '../../src/protocol/manifest.js';
import type { PrivateKey, PublicKey } from '../../src/trust/keys.js';
import type { InstallLayout } from '../../src/worker/install/install-layout.js';
import { stageVersion, switchCurrent } from '../../src/worker/install/installer.js';
import { makeKey } from './trust-fixtures.js';

const execFileAsync = promisify(execFile);

/** A temp dir under the OS temp folder, and its removal. */
/** Whether a path exists (any error from `access` counts as no). */
export async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export async function makeTempDir(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `bytebiota-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * A stand-in worker executable: a POSIX shell script that answers `--version --json` with the
 * given version (or `reportVersion`, to fake a mislabelled build) and exits 0 otherwise.
 * `paddingBytes` appends bytes after `exit`, which the shell never reads, to make it larger.
 */
export function fakeWorkerExecutable(
  version: string,
  options: { reportVersion?: string; paddingBytes?: number; versionExitCode?: number } = {},
): Buffer {
  const reported = options.reportVersion ?? version;
  const json = JSON.stringify({ version: reported, commit: 'fixture', built_at: '2026-01-01T00:00:00Z', platform: 'linux-x64' });
  const script =
    '#!/bin/sh\n' +
    'if [ "$1" = "--version" ]; then\n' +
    `  if [ "$2" = "--json" ]; then echo '${json}'; else echo 'bytebiota-worker ${reported}'; fi\n` +
    `  exit ${options.versionExitCode ?? 0}\n` +
    'fi\n' +
    'exit 0\n';
  const padding = Buffer.alloc(options.paddingBytes ?? 0, 0x23);
  return Buffer.concat([Buffer.from(script), padding]);
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function artifactEntryFor(bytes: Uint8Array, url: string): ArtifactEntry {
  return { url, sha256: sha256Hex(bytes), size: bytes.length };
}

/** Stage a fake executable for `version` and make it current, as `bytebiota-worker install` would. */
export async function installFakeVersion(layout: InstallLayout, version: string, scratchDir: string, bytes = fakeWorkerExecutable(version)): Promise<void> {
  const source = join(scratchDir, `source-${version}`);
  await writeFile(source, bytes);
  await chmod(source, 0o755);
  await stageVersion({ layout, sourcePath: source, version, sha256: sha256Hex(bytes), size: bytes.length });
  await switchCurrent(layout, version);
}

/** What `versions/<current>/bytebiota-worker --version --json` prints: proves current still runs. */
export async function runVersionOf(executable: string): Promise<string> {
  const { stdout } = await execFileAsync(executable, ['--version', '--json']);
  return (JSON.parse(stdout) as { version: string }).version;
}

export interface TestKeys {
  privateKeys: PrivateKey[];
  publicKeys: PublicKey[];
}

/** `count` key pairs from trust-fixtures' makeKey, as the lists an updater context and a signer take. */
export function testKeys(count = 1): TestKeys {
  const keys = Array.from({ length: count }, () => makeKey());
  return { privateKeys: keys.map((key) => key.private), publicKeys: keys.map((key) => key.public) };
}

export function releaseFor(overrides: Partial<SignedRelease> & Pick<SignedRelease, 'version' | 'artifacts'>): SignedRelease {
  return {
    _type: 'worker-release',
    schema_version: 1,
    channel: 'stable',
    serial: 1,
    released_at: '2026-01-01T00:00:00Z',
    expires: '2026-12-31T00:00:00Z',
    ...overrides,
  };
}

/** A logger that keeps its lines in memory, so tests can read the events and check for secrets. */
export function memoryLogger(): { log: Logger; lines(): Array<Record<string, unknown>>; text(): string } {
  const chunks: string[] = [];
  const log = pino({ level: 'debug' }, { write: (chunk: string) => chunks.push(chunk) });
  return {
    log,
    lines: () => chunks.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>),
    text: () => chunks.join(''),
  };
}

export type MemoryLogger = ReturnType<typeof memoryLogger>;

/** An UpdaterContext that keeps what the updater told it: log lines, progress, verified releases. */
export interface RecordingUpdaterContext extends UpdaterContext {
  logs: MemoryLogger;
  progress: UpdateProgress[];
  verified: Array<{ version: string; serial: number }>;
}

/**
 * The context `run` gives the updater, for a worker on 1.0.0 (linux-x64, channel stable) with
 * plenty of disk, at a fixed instant; the test names its install root, server, token, keys and
 * correlation id, and may override any field.
 */
export function updaterContext(
  required: Pick<UpdaterContext, 'layout' | 'serverUrl' | 'token' | 'trustedKeys' | 'correlationId'>,
  overrides: Partial<UpdaterContext> = {},
): RecordingUpdaterContext {
  const logs = memoryLogger();
  const progress: UpdateProgress[] = [];
  const verified: Array<{ version: string; serial: number }> = [];
  return {
    channel: 'stable',
    platform: 'linux-x64',
    workerId: 'worker-1',
    currentVersion: '1.0.0',
    threshold: 1,
    clock: fixedClock('2026-06-01T00:00:00Z'),
    force: false,
    onProgress: (p) => progress.push(p),
    onManifestVerified: (release) => verified.push(release),
    log: logs.log,
    statfs: async () => ({ bavail: 1n << 30n, bsize: 4096n }),
    selfTestTimeoutMs: 5_000,
    ...required,
    logs,
    progress,
    verified,
    ...overrides,
  };
}
