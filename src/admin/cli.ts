import { Command, CommanderError, Option } from 'commander';
import type { Dispatcher } from 'undici';
import { CHANNEL_PATTERN } from '../protocol/manifest.js';
import { PoolName, WorkerId } from '../protocol/messages.js';
import { CodedError, errorMessage, UsageError } from '../shared/errors.js';
import { parseDurationMs } from '../shared/duration.js';
import { AdminClient, type RolloutAction, type RolloutPlan, type Wave } from './client.js';
import {
  formatExplanation,
  formatFleet,
  formatPlan,
  formatPools,
  formatPoolSet,
  formatRolloutControl,
  formatRolloutStatuses,
} from './format.js';

export const PROGRAM_NAME = 'bytebiota-admin';
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export const SERVER_URL_ENV = 'BYTEBIOTA_SERVER_URL';
export const ADMIN_TOKEN_ENV = 'BYTEBIOTA_ADMIN_TOKEN';

/** What a wave gets when `--soak` / `--min-healthy` are not given (the server's default plan uses the same). */
const DEFAULT_SOAK = '30m';
const DEFAULT_MIN_HEALTHY = 5;
/** The server's limits on a plan (src/server/rollout/plan.ts), checked here so a typo exits 2 before any request. */
const MAX_SOAK_SECONDS = 30 * 24 * 3600;
const MAX_MIN_HEALTHY = 100_000;
const MAX_WAVES = 32;
const MAX_POOLS_PER_WAVE = 64;
const MAX_REASON_CHARS = 500;
const MAX_FLEET_LIMIT = 10_000;
const ALL_POOLS = '*';
const IMMEDIATE_PLAN: RolloutPlan = { immediate: true, waves: [{ pools: [ALL_POOLS], percent: 100, soak_s: 0, min_healthy: 0 }] };

const POOL_NAME = new RegExp(PoolName.pattern as string);
const CHANNEL_NAME = new RegExp(CHANNEL_PATTERN);
const WORKER_ID = new RegExp(WorkerId.pattern as string);
const DURATION_UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;
const ROLLOUT_ACTIONS: ReadonlyArray<{ action: RolloutAction; description: string }> = [
  { action: 'pause', description: 'hold the rollout: no new workers are admitted; admitted ones still get it' },
  { action: 'resume', description: 'let a paused or halted rollout go on (the failure count starts afresh)' },
  { action: 'halt', description: 'stop offering the release to anyone, with a reason' },
  { action: 'abort', description: 'end the rollout for good' },
];

export interface CliIo {
  /** Results (stdout). */
  out(line: string): void;
  /** Warnings and errors (stderr). */
  err(line: string): void;
}

export interface CliContext {
  io: CliIo;
  env: Record<string, string | undefined>;
  /** The HTTP client's dispatcher (timeouts, proxies); undici's global one when not given. */
  dispatcher?: Dispatcher;
}

interface GlobalFlags {
  server?: string;
  token?: string;
  json?: boolean;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `where` says which flag the value sits in when it is part of a larger one (` in --wave "a=101"`). */
function integerIn(text: string, min: number, max: number, what: string, where = ''): number {
  if (!/^\d{1,15}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`invalid ${what} ${JSON.stringify(text)}${where}: expected a whole number from ${min} to ${max}`);
  }
  return Number(text);
}

/** `90s`, `30m`, `2h`, `1d` (or `0`) in seconds: a wave's soak. */
export function parseDurationSeconds(text: string, what = '--soak', where = ''): number {
  if (text.trim() === '0') return 0;
  const match = /^(\d{1,7})([smhd])$/.exec(text.trim());
  if (!match) throw new UsageError(`invalid ${what} ${JSON.stringify(text)}${where}: expected a number and a unit, such as 90s, 30m, 2h or 1d`);
  const seconds = Number(match[1]) * DURATION_UNIT_SECONDS[match[2] as keyof typeof DURATION_UNIT_SECONDS];
  if (seconds > MAX_SOAK_SECONDS) throw new UsageError(`${what} ${text}${where} is longer than the server's limit of 30d`);
  return seconds;
}

function checkChannel(channel: string): string {
  if (!CHANNEL_NAME.test(channel)) throw new UsageError(`invalid channel ${JSON.stringify(channel)}: lower-case letters, digits and "-", starting with a letter`);
  return channel;
}

function checkPool(pool: string, where = ''): string {
  if (!POOL_NAME.test(pool)) {
    throw new UsageError(`invalid pool ${JSON.stringify(pool)}${where}: lower-case letters, digits, "_" and "-", starting with a letter or digit, at most 64 (or "*" in a wave)`);
  }
  return pool;
}

/**
 * One `--wave`: `POOLS=PERCENT[:soak=DURATION][:min-healthy=N]`, POOLS a comma list of pool
 * names or `*`. The per-wave settings override `--soak` and `--min-healthy` for that wave only.
 */
export function parseWaveFlag(text: string, defaults: { soak_s: number; min_healthy: number }): Wave {
  const where = ` in --wave ${JSON.stringify(text)}`;
  const [share = '', ...settings] = text.split(':');
  const at = share.lastIndexOf('=');
  if (at <= 0) throw new UsageError(`invalid --wave ${JSON.stringify(text)}: expected POOLS=PERCENT, e.g. canary=100 or stable,edge=25:soak=1h:min-healthy=20`);
  const pools = share.slice(0, at).split(',').map((pool) => pool.trim());
  for (const pool of pools) {
    if (pool !== ALL_POOLS) checkPool(pool, where);
  }
  if (new Set(pools).size !== pools.length) throw new UsageError(`--wave ${JSON.stringify(text)} names a pool twice`);
  if (pools.includes(ALL_POOLS) && pools.length > 1) throw new UsageError(`--wave ${JSON.stringify(text)}: "*" already means every pool`);
  if (pools.length > MAX_POOLS_PER_WAVE) throw new UsageError(`--wave ${JSON.stringify(text)} names more than ${MAX_POOLS_PER_WAVE} pools`);
  const wave: Wave = { pools, percent: integerIn(share.slice(at + 1), 1, 100, 'percent', where), ...defaults };
  for (const setting of settings) {
    const [name, value, ...rest] = setting.split('=');
    if (value === undefined || rest.length > 0) throw new UsageError(`invalid --wave ${JSON.stringify(text)}: expected :soak=DURATION or :min-healthy=N after the share`);
    if (name === 'soak') wave.soak_s = parseDurationSeconds(value, 'soak', where);
    else if (name === 'min-healthy') wave.min_healthy = integerIn(value, 0, MAX_MIN_HEALTHY, 'min-healthy', where);
    else throw new UsageError(`invalid --wave ${JSON.stringify(text)}: unknown setting ${JSON.stringify(name)} (soak or min-healthy)`);
  }
  return wave;
}

/** The body of `rollout plan set`: the waves in the order given, or the immediate plan. */
export function planFromFlags(flags: { wave?: string[]; soak?: string; minHealthy?: string; immediate?: boolean }): RolloutPlan {
  const waves = flags.wave ?? [];
  if (flags.immediate) {
    if (waves.length > 0) throw new UsageError('--immediate is one wave of every pool at 100 %: give it without --wave');
    if (flags.soak !== undefined || flags.minHealthy !== undefined) throw new UsageError('--immediate takes no --soak or --min-healthy: it does not wait');
    return IMMEDIATE_PLAN;
  }
  if (waves.length === 0) throw new UsageError('give the waves in order with --wave POOLS=PERCENT (e.g. --wave canary=100 --wave "*"=100), or --immediate');
  if (waves.length > MAX_WAVES) throw new UsageError(`a plan has at most ${MAX_WAVES} waves`);
  const defaults = {
    soak_s: parseDurationSeconds(flags.soak ?? DEFAULT_SOAK),
    min_healthy: flags.minHealthy === undefined ? DEFAULT_MIN_HEALTHY : integerIn(flags.minHealthy, 0, MAX_MIN_HEALTHY, '--min-healthy'),
  };
  return { immediate: false, waves: waves.map((text) => parseWaveFlag(text, defaults)) };
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** Where to connect and as whom: the flags first, then the environment. The token is never part of any message. */
function resolveConnection(flags: GlobalFlags, context: CliContext): { serverUrl: URL; token: string } {
  const serverText = (flags.server ?? context.env[SERVER_URL_ENV] ?? '').trim();
  if (serverText === '') throw new UsageError(`give the server's URL with --server URL or ${SERVER_URL_ENV}`);
  let serverUrl: URL;
  try {
    serverUrl = new URL(serverText);
  } catch {
    throw new UsageError(`invalid --server ${JSON.stringify(serverText)}: expected an http:// or https:// URL`);
  }
  if (serverUrl.protocol !== 'http:' && serverUrl.protocol !== 'https:') {
    throw new UsageError(`invalid --server ${JSON.stringify(serverText)}: expected an http:// or https:// URL`);
  }
  if (serverUrl.username !== '' || serverUrl.password !== '') throw new UsageError('--server must not carry credentials: give the admin token with --token');
  const token = (flags.token ?? context.env[ADMIN_TOKEN_ENV] ?? '').trim();
  if (token === '') throw new UsageError(`give an admin token with --token TOKEN or ${ADMIN_TOKEN_ENV} (bytebiota-server token create --role admin)`);
  if ([...token].some((char) => char.trim() === '' || char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f)) throw new UsageError('the admin token holds spaces or control characters: check how it was copied');
  if (serverUrl.protocol === 'http:' && !isLoopback(serverUrl.hostname)) {
    context.io.err(`warning: ${serverUrl.origin} is plain http: the admin token crosses the network unencrypted`);
  }
  return { serverUrl, token };
}

/**
 * Every secret the run knows of is cut out of every line it prints, whatever printed it: the
 * token goes in the Authorization header and nowhere else, and this keeps it so even if an
 * error message one day quoted a header or an argument.
 */
function redactingIo(io: CliIo, secrets: Set<string>): CliIo {
  const redact = (line: string) => {
    let out = line;
    for (const secret of secrets) out = out.split(secret).join('[redacted]');
    return out;
  };
  return { out: (line) => io.out(redact(line)), err: (line) => io.err(redact(line)) };
}

/** `--token X` and `--token=X` on the command line, found before commander parses (and might quote) anything. */
function tokensInArgv(argv: readonly string[]): string[] {
  const found: string[] = [];
  argv.forEach((arg, index) => {
    if (arg === '--token' && argv[index + 1] !== undefined) found.push(argv[index + 1]!);
    else if (arg.startsWith('--token=')) found.push(arg.slice('--token='.length));
  });
  return found;
}

function buildProgram(context: CliContext): Command {
  const { io } = context;

  /** The client for this run and whether to print JSON; `command` is the subcommand whose action runs. */
  const connect = (command: Command): { client: AdminClient; json: boolean } => {
    const flags = command.optsWithGlobals<GlobalFlags>();
    const { serverUrl, token } = resolveConnection(flags, context);
    return { client: new AdminClient({ serverUrl, token, dispatcher: context.dispatcher }), json: flags.json === true };
  };
  const print = (json: boolean, answer: unknown, lines: () => string[]) => {
    if (json) io.out(JSON.stringify(answer));
    else for (const line of lines()) io.out(line);
  };

  const program = new Command(PROGRAM_NAME)
    .description("Operate a ByteBiota update server through its admin API: rollouts, plans, pools, the fleet, why a worker is offered what")
    .option('--server <url>', `the server's base URL (env ${SERVER_URL_ENV})`)
    .option('--token <token>', `an admin token (env ${ADMIN_TOKEN_ENV}); sent only as the Authorization bearer`)
    .option('--json', "print the server's JSON answer, one object, instead of tables")
    .exitOverride()
    .showHelpAfterError()
    .configureOutput({ writeOut: (text) => io.out(text.trimEnd()), writeErr: (text) => io.err(text.trimEnd()) });

  const rollout = program.command('rollout').description("staged rollouts: status, the channel's plan, pause, resume, halt, abort");

  rollout
    .command('status')
    .description("each channel's newest rollout: release, state, waves with their counts, failure rate against the halt threshold")
    .option('--channel <channel>', 'only this channel')
    .action(async (flags: { channel?: string }, command: Command) => {
      if (flags.channel !== undefined) checkChannel(flags.channel);
      const { client, json } = connect(command);
      const answer = await client.rolloutStatuses(flags.channel);
      print(json, answer, () => formatRolloutStatuses(answer, flags.channel));
    });

  const plan = rollout.command('plan').description("the plan a channel's next rollouts start with (a running rollout keeps its own)");
  plan
    .command('show')
    .description("the channel's plan, or the server's default when it has none")
    .requiredOption('--channel <channel>', 'the channel')
    .action(async (flags: { channel: string }, command: Command) => {
      checkChannel(flags.channel);
      const { client, json } = connect(command);
      const answer = await client.channelPlan(flags.channel);
      print(json, answer, () => formatPlan(answer));
    });
  plan
    .command('set')
    .description("replace the channel's plan: waves in order, or --immediate")
    .requiredOption('--channel <channel>', 'the channel')
    .option('--wave <spec>', 'POOLS=PERCENT[:soak=DURATION][:min-healthy=N], in order (repeatable); POOLS a comma list or "*" for every pool', collect)
    .option('--soak <duration>', `how long each wave runs before the next may start: 90s, 30m, 2h, 1d (default ${DEFAULT_SOAK})`)
    .option('--min-healthy <n>', `healthy updates each wave needs before the next starts (default ${DEFAULT_MIN_HEALTHY})`)
    .option('--immediate', 'one wave: every pool at 100 %, no soak')
    .action(async (flags: { channel: string; wave?: string[]; soak?: string; minHealthy?: string; immediate?: boolean }, command: Command) => {
      checkChannel(flags.channel);
      const body = planFromFlags(flags);
      const { client, json } = connect(command);
      const answer = await client.setChannelPlan(flags.channel, body);
      print(json, answer, () => formatPlan(answer));
    });

  for (const { action, description } of ROLLOUT_ACTIONS) {
    rollout
      .command(action)
      .description(description)
      .requiredOption('--channel <channel>', 'the channel')
      .option('--reason <text>', 'why, for the audit log and `rollout status` (default: "<action> by <token label>")')
      .option('--serial <n>', "the rollout's manifest serial (default: the channel's newest)")
      .action(async (flags: { channel: string; reason?: string; serial?: string }, command: Command) => {
        checkChannel(flags.channel);
        if (flags.reason !== undefined && (flags.reason.trim() === '' || flags.reason.length > MAX_REASON_CHARS)) {
          throw new UsageError(`--reason must be 1 to ${MAX_REASON_CHARS} characters`);
        }
        const serial = flags.serial === undefined ? undefined : integerIn(flags.serial, 1, Number.MAX_SAFE_INTEGER, '--serial');
        const { client, json } = connect(command);
        const answer = await client.controlRollout(flags.channel, action, {
          ...(flags.reason !== undefined ? { reason: flags.reason } : {}),
          ...(serial !== undefined ? { serial } : {}),
        });
        print(json, answer, () => formatRolloutControl(answer));
      });
  }

  const pool = program.command('pool').description('per-pool self-update switch and maintenance windows');
  pool
    .command('list')
    .description('pools with a policy: auto_update, windows, open now, next change')
    .action(async (_flags: unknown, command: Command) => {
      const { client, json } = connect(command);
      const answer = await client.pools();
      print(json, answer, () => formatPools(answer));
    });
  pool
    .command('set')
    .description("change a pool's policy; what is not given is kept as it is")
    .argument('<pool>', 'the pool')
    .addOption(new Option('--auto-update <on|off>', "turn the pool's self-update on or off").choices(['on', 'off']))
    .option('--window <text>', 'a maintenance window, e.g. "Mon-Thu 09:00-17:00 Europe/Berlin" (repeatable; replaces the pool\'s windows)', collect)
    .option('--no-windows', 'remove every window: the pool is always open')
    .action(async (name: string, flags: { autoUpdate?: 'on' | 'off'; window?: string[]; windows: boolean }, command: Command) => {
      checkPool(name);
      const windowsGiven = flags.window !== undefined;
      if (windowsGiven && !flags.windows) throw new UsageError('give --window or --no-windows, not both');
      if (flags.autoUpdate === undefined && !windowsGiven && flags.windows) {
        throw new UsageError('nothing to change: give --auto-update on|off, --window or --no-windows');
      }
      const { client, json } = connect(command);
      // The PUT replaces the whole policy: what the operator did not name is read first and kept.
      const current = (await client.pools()).pools.find((p) => p.pool === name);
      const answer = await client.setPoolPolicy(name, {
        auto_update: flags.autoUpdate === undefined ? (current?.auto_update ?? false) : flags.autoUpdate === 'on',
        maintenance_windows: windowsGiven ? (flags.window ?? []) : flags.windows ? (current?.maintenance_windows ?? []) : [],
      });
      print(json, answer, () => formatPoolSet(answer));
    });

  program
    .command('fleet')
    .description('workers by channel, pool, version and state; recent failures')
    .option('--limit <n>', `most workers the server lists (1-${MAX_FLEET_LIMIT}; the workers list is in --json)`)
    .action(async (flags: { limit?: string }, command: Command) => {
      const limit = flags.limit === undefined ? undefined : integerIn(flags.limit, 1, MAX_FLEET_LIMIT, '--limit');
      const { client, json } = connect(command);
      const answer = await client.fleet(limit);
      print(json, answer, () => formatFleet(answer));
    });

  const worker = program.command('worker').description('one worker');
  worker
    .command('explain')
    .description('why the worker is or is not offered a version: policy, window, wave, share, halt, floor, local rollback')
    .argument('<worker-id>', 'the worker id')
    .action(async (workerId: string, _flags: unknown, command: Command) => {
      if (!WORKER_ID.test(workerId)) throw new UsageError(`invalid worker id ${JSON.stringify(workerId)}`);
      const { client, json } = connect(command);
      const answer = await client.explainWorker(workerId);
      print(json, answer, () => formatExplanation(answer));
    });
  worker
    .command('revoke')
    .description("revoke the worker's credential: its next request is refused, the rest of its pool carries on; it comes back only by a new enrollment")
    .argument('<worker-id>', 'the worker id')
    .action(async (workerId: string, _flags: unknown, command: Command) => {
      if (!WORKER_ID.test(workerId)) throw new UsageError(`invalid worker id ${JSON.stringify(workerId)}`);
      const { client, json } = connect(command);
      const answer = await client.revokeWorker(workerId);
      print(json, answer, () => [`revoked credential ${answer.credential_id} of worker ${answer.worker_id} at ${answer.revoked_at}`]);
    });
  worker
    .command('rotate')
    .description('ask the worker to rotate its credential at its next heartbeat (without downtime)')
    .argument('<worker-id>', 'the worker id')
    .action(async (workerId: string, _flags: unknown, command: Command) => {
      if (!WORKER_ID.test(workerId)) throw new UsageError(`invalid worker id ${JSON.stringify(workerId)}`);
      const { client, json } = connect(command);
      const answer = await client.rotateWorker(workerId);
      print(json, answer, () => [`worker ${answer.worker_id} will rotate its credential at its next heartbeat (asked at ${answer.requested_at})`]);
    });

  const enrollToken = program.command('enroll-token').description('enrollment tokens: what a new worker spends, once, for its own credential');
  enrollToken
    .command('create')
    .description('a new enrollment token for a pool, printed this once')
    .requiredOption('--pool <pool>', 'the pool its workers join')
    .option('--expires-in <duration>', 'valid for this long: 7d, 12h, 90m (default: no expiry)')
    .option('--max-uses <n>', 'workers it may enroll (default: no limit)')
    .option('--label <text>', 'who or what it is for')
    .action(async (flags: { pool: string; expiresIn?: string; maxUses?: string; label?: string }, command: Command) => {
      const body = {
        pool: flags.pool,
        ...(flags.expiresIn !== undefined ? { expires_in_s: parseDurationMs(flags.expiresIn) / 1000 } : {}),
        ...(flags.maxUses !== undefined ? { max_uses: integerIn(flags.maxUses, 1, 1_000_000, '--max-uses') } : {}),
        ...(flags.label !== undefined ? { label: flags.label } : {}),
      };
      const { client, json } = connect(command);
      const answer = await client.createEnrollmentToken(body);
      print(json, answer, () => [
        answer.token,
        `enrollment token ${answer.id} for pool ${answer.pool}: max uses ${answer.max_uses ?? 'unlimited'}, expires ${answer.expires_at ?? 'never'}. It is shown only now.`,
      ]);
    });
  enrollToken
    .command('list')
    .description('enrollment tokens with their pools, uses and expiry (never their secrets)')
    .action(async (_flags: unknown, command: Command) => {
      const { client, json } = connect(command);
      const answer = await client.enrollmentTokens();
      print(json, answer, () => [
        'ID                POOL        USES  EXPIRES                   REVOKED',
        ...answer.enrollment_tokens.map(
          (t) => `${t.id}  ${t.pool.padEnd(10)}  ${`${t.uses}/${t.max_uses ?? '-'}`.padEnd(4)}  ${(t.expires_at ?? 'never').padEnd(24)}  ${t.revoked_at ?? '-'}`,
        ),
      ]);
    });
  enrollToken
    .command('revoke')
    .description('it enrolls no more workers (those it enrolled keep their credentials)')
    .argument('<id>', 'the enrollment token id (16 hex digits)')
    .action(async (id: string, _flags: unknown, command: Command) => {
      if (!/^[0-9a-f]{16}$/.test(id)) throw new UsageError(`invalid enrollment token id ${JSON.stringify(id)}`);
      const { client, json } = connect(command);
      const answer = await client.revokeEnrollmentToken(id);
      print(json, answer, () => [`enrollment token ${answer.id} revoked at ${answer.revoked_at}`]);
    });

  return program;
}

/**
 * Run the admin tool and return its exit code: 0 done; 1 the server refused (`error: <code>:
 * <message>`, the server's own code) or could not be reached (`server_unreachable`); 2 usage error.
 */
export async function runCli(argv: readonly string[], context: CliContext): Promise<number> {
  const secrets = new Set([context.env[ADMIN_TOKEN_ENV]?.trim() ?? '', ...tokensInArgv(argv).map((token) => token.trim())].filter((token) => token !== ''));
  const io = redactingIo(context.io, secrets);
  const program = buildProgram({ ...context, io });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (and the help) through configureOutput.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      io.err(`error: usage: ${err.message}`);
      return EXIT_USAGE;
    }
    if (err instanceof CodedError) {
      io.err(`error: ${err.code}: ${err.message}`);
      return EXIT_FAILURE;
    }
    io.err(`error: ${errorMessage(err)}`);
    return EXIT_FAILURE;
  }
}
