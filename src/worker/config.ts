import { isAbsolute, join, resolve } from 'node:path';
import { CHANNEL_PATTERN } from '../protocol/manifest.js';
import { KeyFormatError, type PublicKey } from '../trust/keys.js';
import { isRawPublicKeyBase64, loadPublicKey } from '../trust/key-source.js';
import { pickSetting, readConfigFile, type RawSetting } from '../shared/config-sources.js';
import { UsageError } from '../shared/errors.js';
import { MIN_KEEP_VERSIONS } from './install/install-layout.js';
import { CREDENTIAL_FILE } from './install/credential.js';
import { pathExists } from '../shared/path-exists.js';
import { readFileHead } from '../shared/read-file-head.js';

/**
 * The worker's settings (docs/protocol.md, section 4). Each comes from, in order of
 * precedence: a command-line flag, an environment variable, the JSON `--config` file, the
 * default. Everything is validated up front; any mistake is a UsageError (exit code 2) that
 * names where the bad value came from.
 */
export interface RunConfig {
  installRoot: string;
  serverUrl: string | null;
  /** Never logged; passed to child processes by environment, never by argv. */
  token: string | null;
  /** Spent once for this worker's own credential (credential.json); never logged, passed on by environment. */
  enrollmentToken: string | null;
  channel: string;
  workerId: string | null;
  /** As given (base64 or a PEM file path), for handing on to the supervised child. */
  trustedKeySources: string[];
  trustedKeys: PublicKey[];
  /** How many distinct trusted keys must have signed a manifest (docs/protocol.md, section 1); default 1. */
  trustedKeyThreshold: number;
  autoUpdateEnabled: boolean;
  /** One-shot actions: flags only, never from a file or the environment. */
  forceUpdate: boolean;
  forceStart: boolean;
  checkIntervalS: number;
  /** The whole artifact download must finish within this; a slow-drip server cannot stall updates forever. */
  downloadTimeoutS: number;
  metricsPort: number | null;
  metricsHost: string;
  caFile: string | null;
}

export interface SuperviseConfig extends RunConfig {
  healthWindowS: number;
  stopTimeoutS: number;
  /** Versions kept in versions/ after a prune, current, previous and launcher included (install/pruning.ts). */
  keepVersions: number;
  /** Windows: the NSSM service that runs this supervisor, moved to each proven version (supervisor/windows-service.ts); null elsewhere. */
  windowsService: string | null;
}

/** Defaults (docs/environment.md, `## Worker`). */
export const DEFAULT_CHANNEL = 'stable';
/** An hour, ±20% jitter: a fleet spreads its checks; heartbeats announce new releases sooner. */
export const DEFAULT_CHECK_INTERVAL_S = 3600;
export const DEFAULT_HEALTH_WINDOW_S = 60;
/** Time for one download attempt; a broken-off download resumes from its partial at the next check. */
export const DEFAULT_DOWNLOAD_TIMEOUT_S = 900;
export const DEFAULT_STOP_TIMEOUT_S = 30;
export const DEFAULT_KEEP_VERSIONS = MIN_KEEP_VERSIONS;
/** 100 packaged versions are about 10 GB: more is a typo, not a disk budget. */
const MAX_KEEP_VERSIONS = 100;
export const DEFAULT_METRICS_HOST = '127.0.0.1';

type Setting =
  | 'installRoot'
  | 'serverUrl'
  | 'token'
  | 'enrollmentToken'
  | 'channel'
  | 'workerId'
  | 'trustedKeys'
  | 'trustedKeyThreshold'
  | 'autoUpdateEnabled'
  | 'checkIntervalS'
  | 'downloadTimeoutS'
  | 'metricsPort'
  | 'metricsHost'
  | 'caFile'
  | 'healthWindowS'
  | 'stopTimeoutS'
  | 'keepVersions'
  | 'windowsService';

interface SettingSpec {
  flag: string;
  env: string;
  fileKey: string;
  superviseOnly?: boolean;
}

export const SETTINGS: Record<Setting, SettingSpec> = {
  installRoot: { flag: '--install-root', env: 'BYTEBIOTA_INSTALL_ROOT', fileKey: 'install_root' },
  serverUrl: { flag: '--server', env: 'BYTEBIOTA_SERVER_URL', fileKey: 'server_url' },
  token: { flag: '--token', env: 'BYTEBIOTA_WORKER_TOKEN', fileKey: 'token' },
  enrollmentToken: { flag: '--enrollment-token', env: 'BYTEBIOTA_ENROLLMENT_TOKEN', fileKey: 'enrollment_token' },
  channel: { flag: '--channel', env: 'BYTEBIOTA_CHANNEL', fileKey: 'auto_update_channel' },
  workerId: { flag: '--worker-id', env: 'BYTEBIOTA_WORKER_ID', fileKey: 'worker_id' },
  trustedKeys: { flag: '--trusted-key', env: 'BYTEBIOTA_TRUSTED_KEYS', fileKey: 'trusted_keys' },
  trustedKeyThreshold: { flag: '--trusted-key-threshold', env: 'BYTEBIOTA_TRUSTED_KEY_THRESHOLD', fileKey: 'trusted_key_threshold' },
  autoUpdateEnabled: { flag: '--no-auto-update', env: 'AUTO_UPDATE', fileKey: 'auto_update_enabled' },
  checkIntervalS: { flag: '--check-interval', env: 'BYTEBIOTA_CHECK_INTERVAL', fileKey: 'check_interval_s' },
  downloadTimeoutS: { flag: '--download-timeout', env: 'BYTEBIOTA_DOWNLOAD_TIMEOUT', fileKey: 'download_timeout_s' },
  metricsPort: { flag: '--metrics-port', env: 'BYTEBIOTA_METRICS_PORT', fileKey: 'metrics_port' },
  metricsHost: { flag: '--metrics-host', env: 'BYTEBIOTA_METRICS_HOST', fileKey: 'metrics_host' },
  caFile: { flag: '--ca-file', env: 'BYTEBIOTA_CA_FILE', fileKey: 'ca_file' },
  healthWindowS: { flag: '--health-window', env: 'BYTEBIOTA_HEALTH_WINDOW', fileKey: 'health_window_s', superviseOnly: true },
  stopTimeoutS: { flag: '--stop-timeout', env: 'BYTEBIOTA_STOP_TIMEOUT', fileKey: 'stop_timeout_s', superviseOnly: true },
  keepVersions: { flag: '--keep-versions', env: 'BYTEBIOTA_KEEP_VERSIONS', fileKey: 'keep_versions', superviseOnly: true },
  windowsService: { flag: '--windows-service', env: 'BYTEBIOTA_WINDOWS_SERVICE', fileKey: 'windows_service', superviseOnly: true },
};

export const CONFIG_FILE_ENV = 'BYTEBIOTA_WORKER_CONFIG';

/** Values as the command line gave them (commander's parsed options, explicit ones only). */
export interface FlagValues {
  config?: string;
  installRoot?: string;
  serverUrl?: string;
  token?: string;
  enrollmentToken?: string;
  channel?: string;
  workerId?: string;
  trustedKeys?: string[];
  trustedKeyThreshold?: string;
  autoUpdateEnabled?: boolean;
  checkIntervalS?: string;
  downloadTimeoutS?: string;
  metricsPort?: string;
  metricsHost?: string;
  caFile?: string;
  healthWindowS?: string;
  stopTimeoutS?: string;
  keepVersions?: string;
  windowsService?: string;
  forceUpdate?: boolean;
  forceStart?: boolean;
}

export interface ConfigSources {
  flags: FlagValues;
  env: NodeJS.ProcessEnv;
  /** Where relative paths from flags and env resolve. */
  cwd: string;
  readFile?: (path: string) => Promise<string>;
  /** Whether the install root holds a credential.json (a server URL then needs no token). */
  credentialExists?: (installRoot: string) => Promise<boolean>;
}

async function defaultCredentialExists(installRoot: string): Promise<boolean> {
  return pathExists(join(installRoot, CREDENTIAL_FILE));
}

/** One raw value and where it came from, for error messages and relative-path resolution. */
type Raw = RawSetting;

/** A service name as `sc` and NSSM take it: no path separators, no quotes. */
const WINDOWS_SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}$/;
const WORKER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const CHANNEL_REGEXP = new RegExp(CHANNEL_PATTERN);

function fail(raw: Raw, expected: string): never {
  throw new UsageError(`${raw.source}: expected ${expected}, got ${JSON.stringify(raw.value)}`);
}

function asString(raw: Raw): string {
  if (typeof raw.value !== 'string' || raw.value.trim() === '') fail(raw, 'a non-empty string');
  return raw.value.trim();
}

function asPath(raw: Raw): string {
  const text = asString(raw);
  return isAbsolute(text) ? text : resolve(raw.baseDir, text);
}

function asNumber(raw: Raw, options: { min: number; max: number; integer: boolean }, unit: string): number {
  const value = typeof raw.value === 'string' && raw.value.trim() !== '' ? Number(raw.value) : raw.value;
  const kind = options.integer ? 'a whole number' : 'a number';
  if (typeof value !== 'number' || !Number.isFinite(value) || (options.integer && !Number.isInteger(value))) {
    fail(raw, `${kind} of ${unit} from ${options.min} to ${options.max}`);
  }
  if (value < options.min || value > options.max) fail(raw, `${kind} of ${unit} from ${options.min} to ${options.max}`);
  return value;
}

/** Only Windows has the service this names (supervisor/windows-service.ts): elsewhere it is a mistake, not a no-op. */
function asWindowsServiceName(raw: Raw): string {
  const name = asString(raw);
  if (process.platform !== 'win32') throw new UsageError(`${raw.source}: a Windows service is only run on Windows, and this is ${process.platform}`);
  if (!WINDOWS_SERVICE_NAME.test(name)) fail(raw, 'a Windows service name (letters, digits, space, . _ -; at most 80)');
  return name;
}

function asBoolean(raw: Raw): boolean {
  if (typeof raw.value === 'boolean') return raw.value;
  if (typeof raw.value === 'string') {
    const text = raw.value.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(text)) return true;
    if (['0', 'false', 'no', 'off'].includes(text)) return false;
  }
  return fail(raw, 'true or false (1/0, yes/no, on/off)');
}

function asServerUrl(raw: Raw): string {
  const text = asString(raw);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail(raw, 'an absolute http:// or https:// URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') fail(raw, 'an absolute http:// or https:// URL');
  if (url.username || url.password) fail(raw, 'a URL without credentials (give the token separately)');
  return url.toString();
}

function asKeyList(raw: Raw): string[] {
  const list = typeof raw.value === 'string' ? raw.value.split(',') : raw.value;
  if (!Array.isArray(list) || list.some((item) => typeof item !== 'string')) fail(raw, 'a list of keys');
  return (list as string[])
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .map((item) => (isRawPublicKeyBase64(item) || isAbsolute(item) ? item : resolve(raw.baseDir, item)));
}

async function loadTrustedKey(source: string, origin: string): Promise<PublicKey> {
  try {
    return await loadPublicKey(source, readFileHead);
  } catch (err) {
    if (err instanceof KeyFormatError) throw new UsageError(`${origin}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Resolve and validate the settings of `run` or `supervise`. */
export async function resolveConfig(command: 'run', sources: ConfigSources): Promise<RunConfig>;
export async function resolveConfig(command: 'supervise', sources: ConfigSources): Promise<SuperviseConfig>;
export async function resolveConfig(command: 'run' | 'supervise', sources: ConfigSources): Promise<RunConfig | SuperviseConfig> {
  const { flags, env, cwd } = sources;
  const knownKeys = Object.values(SETTINGS)
    .filter((spec) => command === 'supervise' || !spec.superviseOnly)
    .map((spec) => spec.fileKey);
  const file = await readConfigFile(flags.config ?? env[CONFIG_FILE_ENV], { cwd, knownKeys, readFile: sources.readFile });

  /** The highest-precedence raw value of a setting, or undefined for its default. */
  function pick(setting: Setting): Raw | undefined {
    return pickSetting(SETTINGS[setting], flags[setting as keyof FlagValues], { env, file, cwd });
  }
  function optional<T>(setting: Setting, parse: (raw: Raw) => T): T | null {
    const raw = pick(setting);
    return raw === undefined ? null : parse(raw);
  }

  const installRootRaw = pick('installRoot');
  if (installRootRaw === undefined) {
    throw new UsageError(`${command} needs an install root: --install-root DIR or ${SETTINGS.installRoot.env}`);
  }
  const installRoot = asPath(installRootRaw);
  const serverUrl = optional('serverUrl', asServerUrl);
  const token = optional('token', asString);
  const enrollmentToken = optional('enrollmentToken', asString);
  const channel = optional('channel', (raw) => {
    const text = asString(raw);
    if (!CHANNEL_REGEXP.test(text)) fail(raw, `a channel name matching ${CHANNEL_PATTERN}`);
    return text;
  }) ?? DEFAULT_CHANNEL;
  const workerId = optional('workerId', (raw) => {
    const text = asString(raw);
    if (!WORKER_ID_PATTERN.test(text)) fail(raw, 'a worker id of letters, digits and . _ : - (at most 128)');
    return text;
  });
  const keysRaw = pick('trustedKeys');
  const trustedKeySources = keysRaw === undefined ? [] : asKeyList(keysRaw);
  const trustedKeys: PublicKey[] = [];
  for (const source of trustedKeySources) {
    trustedKeys.push(await loadTrustedKey(source, keysRaw?.source ?? SETTINGS.trustedKeys.flag));
  }
  const thresholdRaw = pick('trustedKeyThreshold');
  const trustedKeyThreshold = thresholdRaw === undefined ? 1 : asNumber(thresholdRaw, { min: 1, max: 64, integer: true }, 'keys');
  const distinctTrustedKeys = new Set(trustedKeys.map((key) => key.keyid)).size;
  // A threshold above the number of distinct keys could never be met: every update would fail.
  if (thresholdRaw !== undefined && trustedKeyThreshold > distinctTrustedKeys) {
    fail(thresholdRaw, `at most the number of distinct trusted keys (${distinctTrustedKeys})`);
  }
  const autoUpdateEnabled = optional('autoUpdateEnabled', asBoolean) ?? true;
  const checkIntervalS =
    optional('checkIntervalS', (raw) => asNumber(raw, { min: 1, max: 7 * 24 * 3600, integer: true }, 'seconds')) ??
    DEFAULT_CHECK_INTERVAL_S;
  const downloadTimeoutS =
    optional('downloadTimeoutS', (raw) => asNumber(raw, { min: 1, max: 7 * 24 * 3600, integer: true }, 'seconds')) ??
    DEFAULT_DOWNLOAD_TIMEOUT_S;
  const metricsPort = optional('metricsPort', (raw) => asNumber(raw, { min: 0, max: 65535, integer: true }, 'a TCP port'));
  const metricsHost = optional('metricsHost', asString) ?? DEFAULT_METRICS_HOST;
  const caFile = optional('caFile', asPath);
  const forceUpdate = flags.forceUpdate === true;
  const forceStart = flags.forceStart === true;

  // A worker authenticates with its credential (credential.json), got with an enrollment token,
  // or with its pool's shared token (docs/protocol.md, section 3).
  if (serverUrl !== null && token === null && enrollmentToken === null && !(await (sources.credentialExists ?? defaultCredentialExists)(installRoot))) {
    throw new UsageError(
      `a server URL needs a credential (bytebiota-worker enroll), an enrollment token (${SETTINGS.enrollmentToken.env}) or a worker token (${SETTINGS.token.env}; preferred to --token: not visible in ps)`,
    );
  }
  // Fail closed (docs/protocol.md, section 1): without trust there is nothing to check a release against.
  if (forceUpdate && trustedKeys.length === 0) {
    throw new UsageError('--force-update needs at least one --trusted-key: a release cannot be installed without verifying its signature');
  }
  if (forceUpdate && serverUrl === null) {
    throw new UsageError(`--force-update needs a server: --server URL or ${SETTINGS.serverUrl.env}`);
  }

  const runConfig: RunConfig = {
    installRoot,
    serverUrl,
    token,
    enrollmentToken,
    channel,
    workerId,
    trustedKeySources,
    trustedKeys,
    trustedKeyThreshold,
    autoUpdateEnabled,
    forceUpdate,
    forceStart,
    checkIntervalS,
    downloadTimeoutS,
    metricsPort,
    metricsHost,
    caFile,
  };
  if (command === 'run') return runConfig;
  return {
    ...runConfig,
    healthWindowS:
      optional('healthWindowS', (raw) => asNumber(raw, { min: 0.1, max: 24 * 3600, integer: false }, 'seconds')) ??
      DEFAULT_HEALTH_WINDOW_S,
    stopTimeoutS:
      optional('stopTimeoutS', (raw) => asNumber(raw, { min: 0.1, max: 3600, integer: false }, 'seconds')) ??
      DEFAULT_STOP_TIMEOUT_S,
    keepVersions:
      optional('keepVersions', (raw) => asNumber(raw, { min: MIN_KEEP_VERSIONS, max: MAX_KEEP_VERSIONS, integer: true }, 'versions')) ??
      DEFAULT_KEEP_VERSIONS,
    windowsService: optional('windowsService', asWindowsServiceName),
  };
}

/**
 * The `run` command line and environment a supervisor gives its child, carrying its own resolved
 * settings. The token travels in the environment only, so it never shows in `ps`. The worker's
 * own variables and the config file are taken out of the inherited environment: the flags carry
 * every setting, and the child must not bind the supervisor's metrics port.
 */
export function childRunInvocation(
  config: RunConfig,
  options: { forceUpdate: boolean; baseEnv: NodeJS.ProcessEnv },
): { args: string[]; env: NodeJS.ProcessEnv } {
  const args = ['run', '--install-root', config.installRoot, '--channel', config.channel, '--check-interval', String(config.checkIntervalS)];
  if (config.serverUrl !== null) args.push('--server', config.serverUrl);
  if (config.workerId !== null) args.push('--worker-id', config.workerId);
  for (const key of config.trustedKeySources) args.push('--trusted-key', key);
  if (config.trustedKeySources.length > 0) args.push('--trusted-key-threshold', String(config.trustedKeyThreshold));
  args.push('--download-timeout', String(config.downloadTimeoutS));
  if (!config.autoUpdateEnabled) args.push('--no-auto-update');
  if (config.caFile !== null) args.push('--ca-file', config.caFile);
  if (options.forceUpdate) args.push('--force-update');
  if (config.forceStart) args.push('--force-start');
  const env: NodeJS.ProcessEnv = { ...options.baseEnv };
  for (const spec of Object.values(SETTINGS)) delete env[spec.env];
  delete env[CONFIG_FILE_ENV];
  if (config.token !== null) env[SETTINGS.token.env] = config.token;
  if (config.enrollmentToken !== null) env[SETTINGS.enrollmentToken.env] = config.enrollmentToken;
  return { args, env };
}
