import { Command, CommanderError, Option } from 'commander';
import type { Clock } from '../shared/clock.js';
import { CodedError, errorMessage, UsageError } from '../shared/errors.js';
import { readFileHead } from '../shared/read-file-head.js';
import { openReleaseStore } from '../store/index.js';
import { generateKeyFiles } from './keygen.js';
import { readPrivateKeyFiles } from './key-files.js';
import { parseDurationMs } from './duration.js';
import { publishRelease } from './publish.js';
import { promoteRelease } from './promote.js';
import { rollbackRelease } from './rollback.js';
import { verifyManifestFile, verifyStoredChannel } from './verify.js';
import { assertStoredArtifactsIntact, type ArtifactSource, type StoredArtifactCheck } from './artifacts.js';
import { assertChunkIndexesUsable, type ChunkIndexCheck } from './chunk-index.js';
import type { PublicKey } from '../trust/keys.js';
import { loadPublicKey } from '../trust/key-source.js';
import type { VerifiedManifest } from '../trust/verify.js';

export const PROGRAM_NAME = 'bytebiota-release';
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
const DEFAULT_EXPIRES_IN = '30d';

export interface CliIo {
  /** Results, one line each (stdout). */
  out(line: string): void;
  /** Progress and errors (stderr). */
  err(line: string): void;
}

export interface CliContext {
  io: CliIo;
  env: Record<string, string | undefined>;
  clock: Clock;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `PLATFORM=FILE`; the file part may itself contain `=`. */
function parseArtifactFlag(value: string): ArtifactSource {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw new UsageError(`invalid --artifact ${JSON.stringify(value)}: expected PLATFORM=FILE, e.g. linux-x64=dist/bytebiota-worker`);
  return { platform: value.slice(0, at), path: value.slice(at + 1) };
}

function parseThreshold(value: string): number {
  if (!/^[1-9]\d{0,2}$/.test(value)) throw new UsageError(`invalid --threshold ${JSON.stringify(value)}: expected a positive integer`);
  return Number(value);
}

function storeOption(): Option {
  return new Option('--store <store>', 'release store: a folder path or s3://bucket/prefix').env('BYTEBIOTA_STORE').makeOptionMandatory();
}

/** What `verify` prints about a manifest that passed; `artifactLines` say what was checked of each artifact. */
function printVerified(io: CliIo, what: string, verified: VerifiedManifest, artifactLines: readonly string[], trustedKeys: readonly PublicKey[], threshold: number): void {
  const { signed } = verified;
  io.out(`verified ${what}`);
  io.out(`channel ${signed.channel} serial ${signed.serial} version ${signed.version}`);
  io.out(`released_at ${signed.released_at} expires ${signed.expires}`);
  if (signed.minimum_version) io.out(`minimum_version ${signed.minimum_version}`);
  if (signed.recommended_version) io.out(`recommended_version ${signed.recommended_version}`);
  io.out(`allow_downgrade ${signed.allow_downgrade === true}`);
  for (const line of artifactLines) io.out(line);
  for (const keyid of verified.signedBy) io.out(`signed_by ${keyid}`);
  io.out(`threshold ${threshold} of ${new Set(trustedKeys.map((k) => k.keyid)).size} trusted keys met`);
}

/** `artifact <platform> <url> <size> <sha256> <ok|missing|corrupted>`: the manifest's entry, then what the store holds. */
function artifactCheckLine(check: StoredArtifactCheck): string {
  const { platform, entry, key, found, status } = check;
  const line = `artifact ${platform} ${entry.url} ${entry.size} ${entry.sha256} ${status}`;
  if (!key) return `${line} (the url names no artifacts/<version>/<file> in the store)`;
  return found && status === 'corrupted' ? `${line} (the store has ${found.sizeBytes} bytes, sha256 ${found.sha256})` : line;
}

/**
 * `chunk_index <platform> <key> <ok|missing|invalid|none>`: missing (a release from before
 * differential updates) and none (an artifact hosted outside the store) only cost workers the
 * whole download; invalid is damage, and fails the check.
 */
function chunkIndexCheckLine(check: ChunkIndexCheck): string {
  const line = `chunk_index ${check.platform} ${check.key ?? '-'} ${check.status}`;
  if (check.status === 'invalid') return `${line} (${check.detail ?? ''})`;
  if (check.status === 'missing') return `${line} (workers download this artifact whole; a promote or rollback writes one)`;
  return line;
}

function buildProgram(context: CliContext): Command {
  const { io, clock } = context;
  const program = new Command(PROGRAM_NAME)
    .description('Keys, artifacts, signed manifests: publish, promote and roll back ByteBiota worker releases')
    .exitOverride()
    .showHelpAfterError()
    .configureOutput({ writeOut: (text) => io.out(text.trimEnd()), writeErr: (text) => io.err(text.trimEnd()) });

  program
    .command('keygen')
    .description('create an Ed25519 signing key: DIR/<name>.key (PKCS#8 PEM, mode 0600) and DIR/<name>.pub (base64)')
    .requiredOption('--out <dir>', 'folder to write the key files into')
    .option('--name <name>', 'file stem of the key files', 'release')
    .action(async (flags: { out: string; name: string }) => {
      const result = await generateKeyFiles({ outDir: flags.out, name: flags.name });
      io.err(`wrote ${result.privateKeyPath} (keep it secret) and ${result.publicKeyPath}`);
      io.out(`keyid ${result.keyid}`);
      io.out(`public_key ${result.publicKeyBase64}`);
    });

  program
    .command('build')
    .description("build the worker executable for this machine's platform (or win32-x64 on Linux), version and build metadata embedded")
    .requiredOption('--version <version>', 'the version to embed (SemVer)')
    .requiredOption('--out <dir>', 'folder to write bytebiota-worker-<version>-<platform>[.exe] into')
    .option('--entry <file>', 'the worker entry point (default: the package’s src/worker/main.ts)')
    .option('--commit <sha>', 'the commit to embed (default: git rev-parse HEAD, or "unknown")')
    .option('--platform <platform>', "this machine's platform (default), or win32-x64 on Linux: the official node.exe, checked against its pinned hash")
    .addOption(
      new Option('--cache-dir <dir>', 'where win32-x64 builds cache the node.exe tarball (default: $XDG_CACHE_HOME/bytebiota or ~/.cache/bytebiota)').env(
        'BYTEBIOTA_BUILD_CACHE',
      ),
    )
    .action(async (flags: { version: string; out: string; entry?: string; commit?: string; platform?: string; cacheDir?: string }) => {
      // Loaded only for this command: the bundler is heavy and the other commands never need it.
      const { buildWorker } = await import('./build/index.js');
      io.err(`building worker ${flags.version}`);
      const built = await buildWorker({
        version: flags.version,
        outDir: flags.out,
        entry: flags.entry,
        commit: flags.commit,
        now: clock.now(),
        platform: flags.platform,
        cacheDir: flags.cacheDir,
      });
      io.out(`artifact ${built.path}`);
      io.out(`platform ${built.buildInfo.platform}`);
      io.out(`sha256 ${built.sha256}`);
      io.out(`size ${built.size}`);
    });

  program
    .command('publish')
    .description('store artifacts and publish a signed manifest to a channel (serial = last + 1)')
    .addOption(storeOption())
    .requiredOption('--channel <channel>', 'channel to publish to, e.g. canary')
    .requiredOption('--version <version>', 'the version released (SemVer)')
    .requiredOption('--artifact <platform=file...>', 'an executable per platform, e.g. linux-x64=dist/bytebiota-worker')
    .requiredOption('--key <file...>', 'private key file(s) to sign with; several for a threshold')
    .option('--minimum-version <version>', 'workers older than this update before they start, or refuse to start')
    .option('--recommended-version <version>', 'the version workers should run (default: --version)')
    .option('--expires-in <duration>', 'how long the manifest is valid: 30d, 12h, 90m', DEFAULT_EXPIRES_IN)
    .option('--allow-downgrade', 'publish a version not newer than the current one and let workers downgrade to it (fleet rollback)', false)
    .option('--base-url <url>', 'absolute base for artifact urls (default: relative to the manifest)')
    .option('--notes <text>', 'release notes carried in the manifest')
    .option('--new-key', 'publish although none of the keys signed the channel’s current manifest (key rotation)', false)
    .action(async (flags: {
      store: string; channel: string; version: string; artifact: string[]; key: string[]; minimumVersion?: string;
      recommendedVersion?: string; expiresIn: string; allowDowngrade: boolean; baseUrl?: string; notes?: string; newKey: boolean;
    }) => {
      const artifacts = flags.artifact.map(parseArtifactFlag);
      const expiresInMs = parseDurationMs(flags.expiresIn);
      const store = openReleaseStore(flags.store, context.env);
      const keys = await readPrivateKeyFiles(flags.key);
      const result = await publishRelease({
        store, channel: flags.channel, version: flags.version, artifacts, keys, expiresInMs, clock,
        minimumVersion: flags.minimumVersion, recommendedVersion: flags.recommendedVersion,
        allowDowngrade: flags.allowDowngrade, baseUrl: flags.baseUrl, notes: flags.notes, allowNewKey: flags.newKey,
        log: (line) => io.err(line),
      });
      io.out(`published ${result.version} to ${result.channel} serial ${result.serial}${result.previousVersion ? ` (was ${result.previousVersion})` : ''}`);
      for (const artifact of result.artifacts) io.out(`artifact ${artifact.platform} ${artifact.key} ${artifact.size} ${artifact.sha256}`);
      for (const keyid of result.keyIds) io.out(`signed_by ${keyid}`);
    });

  program
    .command('promote')
    .description('re-sign the release a channel runs for another channel (e.g. canary to stable)')
    .addOption(storeOption())
    .requiredOption('--from <channel>', 'channel to promote from')
    .requiredOption('--to <channel>', 'channel to promote to')
    .requiredOption('--key <file...>', 'private key file(s) to sign with')
    .option('--expires-in <duration>', 'how long the new manifest is valid: 30d, 12h, 90m', DEFAULT_EXPIRES_IN)
    .option('--allow-downgrade', 'promote a version not newer than the target channel’s current one', false)
    .option('--new-key', 'promote although none of the keys signed the target channel’s current manifest', false)
    .action(async (flags: { store: string; from: string; to: string; key: string[]; expiresIn: string; allowDowngrade: boolean; newKey: boolean }) => {
      const expiresInMs = parseDurationMs(flags.expiresIn);
      const store = openReleaseStore(flags.store, context.env);
      const keys = await readPrivateKeyFiles(flags.key);
      const result = await promoteRelease({
        store, fromChannel: flags.from, toChannel: flags.to, keys, expiresInMs, clock,
        allowDowngrade: flags.allowDowngrade, allowNewKey: flags.newKey, log: (line) => io.err(line),
      });
      io.out(`promoted ${result.version} from ${result.fromChannel} serial ${result.fromSerial} to ${result.toChannel} serial ${result.serial}${result.previousVersion ? ` (was ${result.previousVersion})` : ''}`);
      for (const keyid of result.keyIds) io.out(`signed_by ${keyid}`);
    });

  program
    .command('rollback')
    .description('release an earlier version of a channel again, from its stored artifacts, with the next serial and allow_downgrade')
    .addOption(storeOption())
    .requiredOption('--channel <channel>', 'channel to roll back, e.g. stable')
    .requiredOption('--to <version>', 'the earlier version to release again; the channel must have released it before')
    .requiredOption('--key <file...>', 'private key file(s) to sign with; several for a threshold')
    .option('--expires-in <duration>', 'how long the new manifest is valid: 30d, 12h, 90m', DEFAULT_EXPIRES_IN)
    .option('--notes <text>', 'release notes carried in the manifest, e.g. why the fleet goes back')
    .option('--new-key', 'roll back although none of the keys signed the channel’s current manifest (key rotation)', false)
    .action(async (flags: { store: string; channel: string; to: string; key: string[]; expiresIn: string; notes?: string; newKey: boolean }) => {
      const expiresInMs = parseDurationMs(flags.expiresIn);
      const store = openReleaseStore(flags.store, context.env);
      const keys = await readPrivateKeyFiles(flags.key);
      const result = await rollbackRelease({
        store, channel: flags.channel, version: flags.to, keys, expiresInMs, clock, notes: flags.notes, allowNewKey: flags.newKey,
        log: (line) => io.err(line),
      });
      io.out(`rolled back ${result.channel} to ${result.version} serial ${result.serial} (was ${result.previousVersion})`);
      for (const artifact of result.artifacts) io.out(`artifact ${artifact.platform} ${artifact.key} ${artifact.size} ${artifact.sha256}`);
      for (const keyid of result.keyIds) io.out(`signed_by ${keyid}`);
    });

  program
    .command('verify')
    .description('verify a manifest exactly as a worker does: a file, or with --store a channel’s current manifest and every artifact it names')
    .argument('[file]', 'the worker-release.json to verify (or give --store and --channel)')
    .requiredOption('--trusted-key <key>', 'a trusted public key: base64 of the raw 32 bytes, or a key file path (repeatable)', collect)
    .option('--threshold <n>', 'how many distinct trusted keys must have signed', parseThreshold, 1)
    .option('--channel <channel>', 'the channel the manifest must be for (default: the one it names); with --store, the channel to check')
    .addOption(new Option('--store <store>', 'verify the channel’s manifest in this store and re-hash every artifact it names').env('BYTEBIOTA_STORE'))
    .action(async (file: string | undefined, flags: { trustedKey: string[]; threshold: number; channel?: string; store?: string }, command: Command) => {
      // A store from the environment gives way to a FILE named on the command line.
      const store = file !== undefined && command.getOptionValueSource('store') === 'env' ? undefined : flags.store;
      if (file !== undefined && store !== undefined) throw new UsageError('give a manifest FILE or --store, not both');
      if (file === undefined && store === undefined) throw new UsageError('give a manifest FILE, or --store and --channel');
      if (store !== undefined && flags.channel === undefined) throw new UsageError('--store needs --channel: the channel whose manifest to verify');
      const trustedKeys = [];
      for (const argument of flags.trustedKey) trustedKeys.push(await loadPublicKey(argument, readFileHead));

      if (file !== undefined) {
        const verified = await verifyManifestFile({ path: file, trustedKeys, threshold: flags.threshold, channel: flags.channel, now: clock.now() });
        const lines = Object.entries(verified.signed.artifacts).map(([platform, entry]) => `artifact ${platform} ${entry.url} ${entry.size} ${entry.sha256}`);
        printVerified(io, file, verified, lines, trustedKeys, flags.threshold);
        return;
      }
      const releaseStore = openReleaseStore(store as string, context.env);
      const report = await verifyStoredChannel({
        store: releaseStore, channel: flags.channel as string, trustedKeys, threshold: flags.threshold, now: clock.now(), log: (line) => io.err(line),
      });
      const lines = [...report.artifacts.map(artifactCheckLine), ...report.chunkIndexes.map(chunkIndexCheckLine)];
      printVerified(io, `${report.manifestKey} in ${releaseStore.location}`, report.verified, lines, trustedKeys, flags.threshold);
      assertStoredArtifactsIntact(releaseStore, report.artifacts);
      assertChunkIndexesUsable(releaseStore, report.chunkIndexes);
    });

  return program;
}

/**
 * Run the release tool and return its exit code: 0 done, 1 refused or failed (the line
 * `bytebiota-release: <code>: <message>` says why), 2 usage error.
 */
export async function runCli(argv: readonly string[], context: CliContext): Promise<number> {
  const program = buildProgram(context);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (and the help) through configureOutput.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      context.io.err(`${PROGRAM_NAME}: usage: ${err.message}`);
      return EXIT_USAGE;
    }
    if (err instanceof CodedError) {
      context.io.err(`${PROGRAM_NAME}: ${err.code}: ${err.message}`);
      return EXIT_FAILURE;
    }
    context.io.err(`${PROGRAM_NAME}: error: ${errorMessage(err)}`);
    return EXIT_FAILURE;
  }
}
