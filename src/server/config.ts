import { isIP } from 'node:net';
import { pickSetting, readConfigFile } from '../shared/config-sources.js';
import { errorMessage, UsageError } from '../shared/errors.js';
import { parseDurationMs } from '../shared/duration.js';
import { DEFAULT_PLANS, type DefaultPlanName } from './rollout/plan.js';

/**
 * The serve configuration. Each setting has a flag, an environment variable and a config-file
 * key; a flag beats the environment, which beats the file, which beats the default. Everything
 * is validated here, at start, so a bad value stops the server with exit code 2 and a message
 * naming the setting and where it came from.
 */
export interface ServeConfig {
  host: string;
  port: number;
  store: string;
  db: string;
  /** Base64 raw keys or PEM/base64 key file paths, as given; resolved by release-keys.ts. */
  releaseKeys: string[];
  releaseKeyThreshold: number;
  cacheTtlSeconds: number;
  heartbeatIntervalSeconds: number;
  metricsToken: string | undefined;
  rateLimitMax: number;
  rateLimitWindowSeconds: number;
  bodyLimitBytes: number;
  logLevel: string;
  /** SQLite durability of an acknowledged write: `full` (power loss) or `normal` (process crash). */
  dbSync: DbSync;
  /** The rollout plan of channels without their own: `staged` or `immediate`. */
  defaultRolloutPlan: DefaultPlanName;
  rolloutEvalIntervalSeconds: number;
  /** Halt a rollout when more than this percent of the sampled workers fail with the release's fault. */
  rolloutHaltPercent: number;
  rolloutHaltMinSample: number;
  rolloutHaltWindowSeconds: number;
  /** JSON POST on every halt; optional. */
  rolloutWebhookUrl: string | undefined;
  /** Worker routes take worker credentials only: a pool token gets 401 `pool_token_refused`. */
  refusePoolTokens: boolean;
  /** Enrollments allowed per client address in each rate-limit window. */
  enrollRateLimitMax: number;
  /** Workers are asked to rotate credentials older than this: `90d`, `12h`, `30m` (shared/duration.ts). */
  credentialMaxAge: string;
  /**
   * Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For is believed: the client
   * address (rate limits per address, logged addresses) is then the first one not in this list.
   * Empty: the TCP peer, and X-Forwarded-For is ignored (anyone can send it).
   */
  trustedProxies: string[];
  /** A console session lasts this long before its page must sign in again. */
  consoleSessionTtlSeconds: number;
  /** The console's version-distribution chart gets one sample per this interval (across every replica). */
  consoleSampleIntervalSeconds: number;
  /** Update events older than this are deleted (docs/server.md, "Retention"); a duration, at least 2 days. */
  eventRetention: string;
  /** Workers unseen for longer than this are deleted, their serial floors and credentials kept; at least 2 days. */
  workerRetention: string;
  /** Connections each replica opens to a PostgreSQL database (besides one that listens for changes). */
  dbPoolSize: number;
}

/** The shortest retention: the halt window, the unseen-workers gauge (24 h) and the console's day view all need their rows. */
export const MIN_RETENTION_MS = 2 * 86_400_000;

export const DB_SYNC_MODES = ['full', 'normal'] as const;
export type DbSync = (typeof DB_SYNC_MODES)[number];

/** `flag`: a switch, `--name` alone on the command line; true/false (or 1/0) in the environment and the file. */
type Kind = 'string' | 'list' | 'flag' | { min: number; max: number };

interface Setting {
  /** Key in ServeConfig. */
  field: keyof ServeConfig;
  /** Long flag, without dashes. */
  flag: string;
  env: string;
  /** Key in the JSON config file. */
  fileKey: string;
  kind: Kind;
  default?: string | number | boolean | string[];
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export const SETTINGS: readonly Setting[] = [
  { field: 'host', flag: 'host', env: 'BYTEBIOTA_HOST', fileKey: 'host', kind: 'string', default: '127.0.0.1' },
  { field: 'port', flag: 'port', env: 'BYTEBIOTA_PORT', fileKey: 'port', kind: { min: 0, max: 65535 }, default: 8080 },
  { field: 'store', flag: 'store', env: 'BYTEBIOTA_STORE', fileKey: 'store', kind: 'string' },
  { field: 'db', flag: 'db', env: 'BYTEBIOTA_DB', fileKey: 'db', kind: 'string' },
  { field: 'releaseKeys', flag: 'release-key', env: 'BYTEBIOTA_RELEASE_KEYS', fileKey: 'release_keys', kind: 'list' },
  {
    field: 'releaseKeyThreshold',
    flag: 'release-key-threshold',
    env: 'BYTEBIOTA_RELEASE_KEY_THRESHOLD',
    fileKey: 'release_key_threshold',
    kind: { min: 1, max: 64 },
    default: 1,
  },
  { field: 'cacheTtlSeconds', flag: 'cache-ttl', env: 'BYTEBIOTA_CACHE_TTL', fileKey: 'cache_ttl', kind: { min: 0, max: 86_400 }, default: 300 },
  {
    field: 'heartbeatIntervalSeconds',
    flag: 'heartbeat-interval',
    env: 'BYTEBIOTA_HEARTBEAT_INTERVAL',
    fileKey: 'heartbeat_interval',
    kind: { min: 1, max: 86_400 },
    default: 30,
  },
  { field: 'metricsToken', flag: 'metrics-token', env: 'BYTEBIOTA_METRICS_TOKEN', fileKey: 'metrics_token', kind: 'string' },
  {
    field: 'rateLimitMax',
    flag: 'rate-limit-max',
    env: 'BYTEBIOTA_RATE_LIMIT_MAX',
    fileKey: 'rate_limit_max',
    kind: { min: 1, max: 1_000_000_000 },
    default: 120_000,
  },
  {
    field: 'rateLimitWindowSeconds',
    flag: 'rate-limit-window',
    env: 'BYTEBIOTA_RATE_LIMIT_WINDOW',
    fileKey: 'rate_limit_window',
    kind: { min: 1, max: 86_400 },
    default: 60,
  },
  {
    field: 'bodyLimitBytes',
    flag: 'body-limit',
    env: 'BYTEBIOTA_BODY_LIMIT',
    fileKey: 'body_limit',
    kind: { min: 1024, max: 16 * 1024 * 1024 },
    default: 64 * 1024,
  },
  { field: 'logLevel', flag: 'log-level', env: 'BYTEBIOTA_LOG_LEVEL', fileKey: 'log_level', kind: 'string', default: 'info' },
  { field: 'dbSync', flag: 'db-sync', env: 'BYTEBIOTA_DB_SYNC', fileKey: 'db_sync', kind: 'string', default: 'full' },
  {
    field: 'defaultRolloutPlan',
    flag: 'default-rollout-plan',
    env: 'BYTEBIOTA_DEFAULT_ROLLOUT_PLAN',
    fileKey: 'default_rollout_plan',
    kind: 'string',
    default: 'staged',
  },
  {
    field: 'rolloutEvalIntervalSeconds',
    flag: 'rollout-eval-interval',
    env: 'BYTEBIOTA_ROLLOUT_EVAL_INTERVAL',
    fileKey: 'rollout_eval_interval',
    kind: { min: 1, max: 3600 },
    default: 30,
  },
  {
    field: 'rolloutHaltPercent',
    flag: 'rollout-halt-percent',
    env: 'BYTEBIOTA_ROLLOUT_HALT_PERCENT',
    fileKey: 'rollout_halt_percent',
    kind: { min: 0, max: 99 },
    default: 10,
  },
  {
    field: 'rolloutHaltMinSample',
    flag: 'rollout-halt-min-sample',
    env: 'BYTEBIOTA_ROLLOUT_HALT_MIN_SAMPLE',
    fileKey: 'rollout_halt_min_sample',
    kind: { min: 1, max: 100_000 },
    default: 10,
  },
  {
    field: 'rolloutHaltWindowSeconds',
    flag: 'rollout-halt-window',
    env: 'BYTEBIOTA_ROLLOUT_HALT_WINDOW',
    fileKey: 'rollout_halt_window',
    kind: { min: 60, max: 30 * 86_400 },
    default: 3600,
  },
  { field: 'rolloutWebhookUrl', flag: 'rollout-webhook', env: 'BYTEBIOTA_ROLLOUT_WEBHOOK', fileKey: 'rollout_webhook', kind: 'string' },
  {
    field: 'refusePoolTokens',
    flag: 'refuse-pool-tokens',
    env: 'BYTEBIOTA_REFUSE_POOL_TOKENS',
    fileKey: 'refuse_pool_tokens',
    kind: 'flag',
    default: false,
  },
  {
    field: 'enrollRateLimitMax',
    flag: 'enroll-rate-limit-max',
    env: 'BYTEBIOTA_ENROLL_RATE_LIMIT_MAX',
    fileKey: 'enroll_rate_limit_max',
    kind: { min: 1, max: 1_000_000 },
    default: 10,
  },
  { field: 'credentialMaxAge', flag: 'credential-max-age', env: 'BYTEBIOTA_CREDENTIAL_MAX_AGE', fileKey: 'credential_max_age', kind: 'string', default: '90d' },
  { field: 'trustedProxies', flag: 'trusted-proxy', env: 'BYTEBIOTA_TRUSTED_PROXIES', fileKey: 'trusted_proxies', kind: 'list', default: [] },
  {
    field: 'consoleSessionTtlSeconds',
    flag: 'console-session-ttl',
    env: 'BYTEBIOTA_CONSOLE_SESSION_TTL',
    fileKey: 'console_session_ttl',
    kind: { min: 60, max: 7 * 86_400 },
    default: 8 * 3600,
  },
  {
    field: 'consoleSampleIntervalSeconds',
    flag: 'console-sample-interval',
    env: 'BYTEBIOTA_CONSOLE_SAMPLE_INTERVAL',
    fileKey: 'console_sample_interval',
    kind: { min: 1, max: 86_400 },
    default: 300,
  },
  { field: 'eventRetention', flag: 'event-retention', env: 'BYTEBIOTA_EVENT_RETENTION', fileKey: 'event_retention', kind: 'string', default: '90d' },
  { field: 'workerRetention', flag: 'worker-retention', env: 'BYTEBIOTA_WORKER_RETENTION', fileKey: 'worker_retention', kind: 'string', default: '30d' },
  { field: 'dbPoolSize', flag: 'db-pool-size', env: 'BYTEBIOTA_DB_POOL_SIZE', fileKey: 'db_pool_size', kind: { min: 1, max: 1000 }, default: 10 },
];

/** An IPv4 or IPv6 address, or one with a /prefix (a CIDR range). */
function isAddressOrRange(entry: string): boolean {
  const [address, prefix, ...rest] = entry.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/** Values as commander parsed them: strings, or string arrays for repeatable flags. */
export type FlagValues = Record<string, string | string[] | boolean | undefined>;

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

const FLAG_WORDS: Record<string, boolean> = { true: true, '1': true, false: false, '0': false };

function convert(setting: Setting, raw: unknown, source: string): string | number | boolean | string[] {
  const where = source;
  if (setting.kind === 'flag') {
    const value = typeof raw === 'boolean' ? raw : typeof raw === 'string' ? FLAG_WORDS[raw.trim().toLowerCase()] : undefined;
    if (value === undefined) throw new UsageError(`${where}: expected true or false, got ${JSON.stringify(raw)}`);
    return value;
  }
  if (setting.kind === 'list') {
    const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null;
    if (!items || !items.every((item) => typeof item === 'string')) {
      throw new UsageError(`${where}: expected a list of strings`);
    }
    const cleaned = items.map((item) => item.trim()).filter((item) => item !== '');
    const notAddress = setting.field === 'trustedProxies' ? cleaned.find((item) => !isAddressOrRange(item)) : undefined;
    if (notAddress !== undefined) throw new UsageError(`${where}: ${JSON.stringify(notAddress)} is not an IP address or CIDR range`);
    return cleaned;
  }
  if (setting.kind === 'string') {
    if (typeof raw !== 'string' || raw.trim() === '') throw new UsageError(`${where}: expected a non-empty string`);
    if (setting.field === 'logLevel' && !LOG_LEVELS.includes(raw)) {
      throw new UsageError(`${where}: log level must be one of ${LOG_LEVELS.join(', ')}`);
    }
    if (setting.field === 'dbSync' && !(DB_SYNC_MODES as readonly string[]).includes(raw)) {
      throw new UsageError(`${where}: must be one of ${DB_SYNC_MODES.join(', ')}`);
    }
    if (setting.field === 'defaultRolloutPlan' && !Object.keys(DEFAULT_PLANS).includes(raw)) {
      throw new UsageError(`${where}: must be one of ${Object.keys(DEFAULT_PLANS).join(', ')}`);
    }
    if (setting.field === 'credentialMaxAge' || setting.field === 'eventRetention' || setting.field === 'workerRetention') {
      let ms: number;
      try {
        ms = parseDurationMs(raw);
      } catch (err) {
        throw new UsageError(`${where}: ${errorMessage(err)}`);
      }
      if (setting.field !== 'credentialMaxAge' && ms < MIN_RETENTION_MS) throw new UsageError(`${where}: must be at least 2d (got ${raw})`);
    }
    if (setting.field === 'rolloutWebhookUrl' && !/^https?:\/\/[^\s]+$/.test(raw)) {
      throw new UsageError(`${where}: expected an http:// or https:// URL`);
    }
    return raw;
  }
  const text = typeof raw === 'number' ? String(raw) : raw;
  if (typeof text !== 'string' || !/^\d{1,10}$/.test(text.trim())) {
    throw new UsageError(`${where}: expected a whole number between ${setting.kind.min} and ${setting.kind.max}, got ${JSON.stringify(raw)}`);
  }
  const value = Number(text.trim());
  if (value < setting.kind.min || value > setting.kind.max) {
    throw new UsageError(`${where}: ${value} is outside ${setting.kind.min}-${setting.kind.max}`);
  }
  return value;
}

/** Merge flags, environment, config file and defaults; throws UsageError on any bad value. */
export async function resolveServeConfig(flags: FlagValues, env: Record<string, string | undefined>): Promise<ServeConfig> {
  const cwd = process.cwd();
  const configPath = (flags['config'] as string | undefined) ?? env['BYTEBIOTA_CONFIG'];
  const file = await readConfigFile(configPath, { cwd, knownKeys: SETTINGS.map((setting) => setting.fileKey) });
  const resolved: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const names = { flag: `--${setting.flag}`, env: setting.env, fileKey: setting.fileKey };
    const raw = pickSetting(names, flags[camel(setting.flag)], { env, file, cwd });
    resolved[setting.field] = raw === undefined ? setting.default : convert(setting, raw.value, raw.source);
  }
  for (const setting of SETTINGS.filter((s) => ['store', 'db'].includes(s.field))) {
    if (resolved[setting.field] === undefined) {
      throw new UsageError(`--${setting.flag} is required (or ${setting.env}, or "${setting.fileKey}" in the config file)`);
    }
  }
  const keys = resolved['releaseKeys'] as string[] | undefined;
  if (!keys || keys.length === 0) {
    // Fail closed: a server with no release key would have nothing to verify manifests against.
    throw new UsageError('at least one --release-key is required (or BYTEBIOTA_RELEASE_KEYS, or "release_keys" in the config file)');
  }
  // The automatic halt counts the reports of its window: retention must not delete them first.
  const eventRetentionMs = parseDurationMs(resolved['eventRetention'] as string);
  if (eventRetentionMs < (resolved['rolloutHaltWindowSeconds'] as number) * 1000) {
    throw new UsageError(`--event-retention (${String(resolved['eventRetention'])}) must be at least --rollout-halt-window (${String(resolved['rolloutHaltWindowSeconds'])} s)`);
  }
  return resolved as unknown as ServeConfig;
}
