import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import type { Logger } from '../../src/shared/logger.js';
import type { ArtifactEntry, SignedRelease } from '../../src/protocol/manifest.js';
import { generateSigningKeyPair, parsePrivateKey, parsePublicKey, type PrivateKey, type PublicKey } from '../../src/trust/keys.js';
import { serializeManifest, signManifest } from '../../src/trust/sign.js';
import type { InstallLayout } from '../../src/worker/install/install-layout.js';
import { stageVersion, switchCurrent } from '../../src/worker/install/installer.js';

const execFileAsync = promisify(execFile);

/** A temp dir under the OS temp folder, and its removal. */
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
export async function installFakeVersion(layout: InstallLayout, version: string, scratchDir: string): Promise<void> {
  const bytes = fakeWorkerExecutable(version);
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

export function testKeys(count = 1): TestKeys {
  const pairs = Array.from({ length: count }, () => generateSigningKeyPair());
  return {
    privateKeys: pairs.map((pair) => parsePrivateKey(pair.privateKeyPem)),
    publicKeys: pairs.map((pair) => parsePublicKey(pair.publicKeyBase64)),
  };
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

export function signedManifestBytes(signed: SignedRelease, keys: readonly PrivateKey[]): Buffer {
  return serializeManifest(signManifest(signed, keys));
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
