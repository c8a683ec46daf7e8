import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { Command, CommanderError } from 'commander';
import { isValidVersion } from '../protocol/version.js';
import { systemClock } from '../shared/clock.js';
import { isCodedError, UsageError, errorMessage } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { buildInfo, formatVersionJson, formatVersionText, isPackagedBuild } from './build-info.js';
import { resolveConfig, type FlagValues } from './config.js';
import { installLayout, type InstallLayout } from './install/install-layout.js';
import { installExecutable } from './install/installer.js';
import { resetUnusableState } from './install/state-reset.js';
import { EXIT_CODES } from './runtime/policy.js';
import { processSupervisorChannel, runWorker } from './runtime/run.js';
import { supervise } from './supervisor/supervisor.js';
import { enrollCommand } from './runtime/enroll-command.js';

const execFileAsync = promisify(execFile);

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  cwd: string;
  log?: Logger;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** The options `run` and `supervise` share (docs/protocol.md, section 4). */
function addRunOptions(command: Command): Command {
  return command
    .option('--config <file>', 'JSON config file (keys in docs/environment.md)')
    .option('--install-root <dir>', 'install root [BYTEBIOTA_INSTALL_ROOT]')
    .option('--server <url>', 'update server URL [BYTEBIOTA_SERVER_URL]')
    .option('--token <token>', 'worker token [BYTEBIOTA_WORKER_TOKEN]; visible in ps when given here')
    .option('--enrollment-token <token>', 'enroll for this worker\'s own credential at start when it has none [BYTEBIOTA_ENROLLMENT_TOKEN]; visible in ps when given here')
    .option('--channel <channel>', 'release channel [BYTEBIOTA_CHANNEL] (default stable)')
    .option('--worker-id <id>', 'worker id (default: generated once and kept in state.json)')
    .option('--trusted-key <key>', 'release public key, base64 or PEM file (repeatable) [BYTEBIOTA_TRUSTED_KEYS]', collect)
    .option('--trusted-key-threshold <n>', 'distinct trusted keys that must have signed a release [BYTEBIOTA_TRUSTED_KEY_THRESHOLD] (default 1)')
    .option('--no-auto-update', 'never update automatically [AUTO_UPDATE=0]')
    .option('--force-update', 'check for and install an update now, once, whatever the policy')
    .option('--force-start', 'start even below the server minimum version')
    .option('--check-interval <seconds>', 'seconds between update checks, ±20% [BYTEBIOTA_CHECK_INTERVAL] (default 3600)')
    .option('--download-timeout <seconds>', 'seconds one artifact download may take; it resumes at the next check [BYTEBIOTA_DOWNLOAD_TIMEOUT] (default 900)')
    .option('--metrics-port <port>', 'serve /metrics on this port [BYTEBIOTA_METRICS_PORT]')
    .option('--metrics-host <host>', 'address for /metrics [BYTEBIOTA_METRICS_HOST] (default 127.0.0.1)')
    .option('--ca-file <file>', 'extra CA certificates, PEM [BYTEBIOTA_CA_FILE]');
}

/** Commander's values, keeping only those given on the command line (precedence is ours). */
function explicitFlags(command: Command): FlagValues {
  const opts = command.opts<Record<string, unknown>>();
  const given = (name: string): boolean => command.getOptionValueSource(name) === 'cli';
  const text = (name: string): string | undefined => (given(name) ? (opts[name] as string) : undefined);
  const flags: FlagValues = {};
  const assign = <K extends keyof FlagValues>(key: K, value: FlagValues[K] | undefined): void => {
    if (value !== undefined) flags[key] = value;
  };
  assign('config', text('config'));
  assign('installRoot', text('installRoot'));
  assign('serverUrl', text('server'));
  assign('token', text('token'));
  assign('enrollmentToken', text('enrollmentToken'));
  assign('channel', text('channel'));
  assign('workerId', text('workerId'));
  assign('trustedKeys', given('trustedKey') ? (opts['trustedKey'] as string[]) : undefined);
  assign('autoUpdateEnabled', given('autoUpdate') ? (opts['autoUpdate'] as boolean) : undefined);
  assign('trustedKeyThreshold', text('trustedKeyThreshold'));
  assign('checkIntervalS', text('checkInterval'));
  assign('downloadTimeoutS', text('downloadTimeout'));
  assign('metricsPort', text('metricsPort'));
  assign('metricsHost', text('metricsHost'));
  assign('caFile', text('caFile'));
  assign('healthWindowS', text('healthWindow'));
  assign('stopTimeoutS', text('stopTimeout'));
  assign('keepVersions', text('keepVersions'));
  assign('windowsService', text('windowsService'));
  assign('forceUpdate', opts['forceUpdate'] === true ? true : undefined);
  assign('forceStart', opts['forceStart'] === true ? true : undefined);
  return flags;
}

/** The version an executable reports through `--version --json` (for `install --executable`). */
async function executableVersion(path: string): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(path, ['--version', '--json'], { timeout: 15_000 }));
  } catch (err) {
    throw new UsageError(`cannot run ${path} --version --json: ${errorMessage(err)}`, { cause: err });
  }
  let version: unknown;
  try {
    version = (JSON.parse(stdout) as { version?: unknown }).version;
  } catch {
    version = undefined;
  }
  if (!isValidVersion(version)) throw new UsageError(`${path} did not report a valid version through --version --json`);
  return version;
}

/**
 * `bytebiota-worker`: parse, run the command, and resolve to the process exit code (0 stopped,
 * 2 usage or config, 3 refused to start, 75 restart into the staged version).
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT_CODES.ok;
  const log = (): Logger => io.log ?? createLogger({ name: 'bytebiota-worker' });
  /** The install root of `install` and `reset-state`: the flag, else BYTEBIOTA_INSTALL_ROOT. */
  const installRootOf = (opts: { installRoot?: string }, command: string): InstallLayout => {
    const root = opts.installRoot ?? io.env['BYTEBIOTA_INSTALL_ROOT'];
    if (!root) throw new UsageError(`${command} needs --install-root DIR or BYTEBIOTA_INSTALL_ROOT`);
    return installLayout(resolve(io.cwd, root));
  };
  const program = new Command('bytebiota-worker')
    .description('ByteBiota worker: works, updates itself safely, rolls back')
    .option('--version', 'print version and build metadata')
    .option('--json', 'with --version: one JSON object')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    })
    .action((opts: { version?: boolean; json?: boolean }) => {
      if (!opts.version) {
        program.outputHelp({ error: true });
        exitCode = EXIT_CODES.usage;
        return;
      }
      const info = buildInfo();
      io.stdout.write(opts.json ? formatVersionJson(info) : formatVersionText(info));
    });

  program
    .command('install')
    .description('install this executable as the current version')
    .option('--install-root <dir>', 'install root [BYTEBIOTA_INSTALL_ROOT]')
    .option('--executable <file>', 'the executable to install (default: this one, when packaged)')
    .action(async (opts: { installRoot?: string; executable?: string }) => {
      const layout = installRootOf(opts, 'install');
      let executable: string;
      let version: string;
      if (opts.executable !== undefined) {
        executable = resolve(io.cwd, opts.executable);
        version = await executableVersion(executable);
      } else if (isPackagedBuild()) {
        executable = process.execPath;
        version = buildInfo().version;
      } else {
        throw new UsageError('running from source: give the packaged executable to install with --executable FILE');
      }
      await installExecutable(layout, executable, version);
      log().info({ event: 'worker_installed', version, install_root: layout.root }, `installed ${version} as current`);
    });

  program
    .command('reset-state')
    .description('recover from state_corrupt: move an unusable state.json aside and write a fresh one with the same worker id (stop the worker first)')
    .option('--install-root <dir>', 'install root [BYTEBIOTA_INSTALL_ROOT]')
    .option('--worker-id <id>', 'the id the server knows, when the old file does not give it')
    .action(async (opts: { installRoot?: string; workerId?: string }) => {
      const layout = installRootOf(opts, 'reset-state');
      const reset = await resetUnusableState(layout, { now: systemClock.now(), ...(opts.workerId !== undefined ? { workerId: opts.workerId } : {}) });
      if (reset.kind === 'not_needed') {
        log().info({ event: 'worker_state_reset_not_needed', install_root: layout.root }, `nothing to reset: ${reset.why}`);
        return;
      }
      log().warn(
        { event: 'worker_state_reset', moved_to: reset.movedTo, worker_id: reset.workerId, salvaged: reset.salvaged, restored_current: reset.restoredCurrent },
        `state.json moved to ${reset.movedTo}; a fresh one keeps worker id ${reset.workerId}` +
          (reset.restoredCurrent !== null ? `; current is back on the proven version ${reset.restoredCurrent}` : ''),
      );
    });

  program
    .command('enroll')
    .description("spend an enrollment token for this worker's own credential, stored in the install root (credential.json, mode 0600)")
    .option('--config <file>', 'JSON config file (keys in docs/environment.md)')
    .option('--install-root <dir>', 'install root [BYTEBIOTA_INSTALL_ROOT]')
    .option('--server <url>', 'update server URL [BYTEBIOTA_SERVER_URL]')
    .option('--enrollment-token <token>', 'the enrollment token [BYTEBIOTA_ENROLLMENT_TOKEN]; visible in ps when given here')
    .option('--channel <channel>', 'release channel [BYTEBIOTA_CHANNEL] (default stable)')
    .option('--worker-id <id>', 'worker id (default: the one in state.json, created when new)')
    .option('--ca-file <file>', 'extra CA certificates, PEM [BYTEBIOTA_CA_FILE]')
    .action(async (_opts: unknown, command: Command) => {
      const config = await resolveConfig('run', { flags: explicitFlags(command), env: io.env, cwd: io.cwd, credentialExists: async () => true });
      if (config.serverUrl === null) throw new UsageError('enroll needs a server: --server URL or BYTEBIOTA_SERVER_URL');
      if (config.enrollmentToken === null) throw new UsageError('enroll needs an enrollment token: BYTEBIOTA_ENROLLMENT_TOKEN (preferred: not visible in ps), the config file\'s "enrollment_token", or --enrollment-token');
      exitCode = await enrollCommand(config, { log: log(), clock: systemClock });
    });

  addRunOptions(program.command('run').description('run the worker (normally started by supervise)')).action(
    async (_opts: unknown, command: Command) => {
      // First: a stop the supervisor sends while the settings are read is kept for the work loop.
      const channel = processSupervisorChannel();
      const config = await resolveConfig('run', { flags: explicitFlags(command), env: io.env, cwd: io.cwd });
      exitCode = await runWorker(config, { log: log(), clock: systemClock, channel });
    },
  );

  addRunOptions(program.command('supervise').description('run, update, watch and roll back the worker (the service entry point)'))
    .option('--health-window <seconds>', 'seconds a new version has to become ready [BYTEBIOTA_HEALTH_WINDOW] (default 60)')
    .option('--stop-timeout <seconds>', 'seconds between SIGTERM and SIGKILL for the worker [BYTEBIOTA_STOP_TIMEOUT] (default 30)')
    .option('--keep-versions <count>', 'versions kept on disk, current, previous and launcher included [BYTEBIOTA_KEEP_VERSIONS] (default 3, at least 3)')
    .option('--windows-service <name>', 'Windows: the NSSM service running this supervisor, pointed at each proven version [BYTEBIOTA_WINDOWS_SERVICE]')
    .action(async (_opts: unknown, command: Command) => {
      const config = await resolveConfig('supervise', { flags: explicitFlags(command), env: io.env, cwd: io.cwd });
      exitCode = await supervise(config, { log: log(), clock: systemClock, stdout: process.stdout, stderr: process.stderr, env: io.env });
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and the like exit 0; every parse error is a usage error.
      return err.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.usage;
    }
    if (err instanceof UsageError) {
      io.stderr.write(`bytebiota-worker: ${err.message}\n`);
      return EXIT_CODES.usage;
    }
    const code = isCodedError(err) ? err.code : 'error';
    // state.json cannot be trusted: the worker stops rather than lose its id and rollback floor.
    const recovery = code === 'state_corrupt' ? { recovery: 'bytebiota-worker reset-state (docs/runbooks/worker-state-corrupt.md)' } : {};
    log().error({ event: 'worker_fatal', code, error: errorMessage(err), ...recovery }, 'worker failed');
    io.stderr.write(`bytebiota-worker: ${errorMessage(err)}\n`);
    return 1;
  }
}


