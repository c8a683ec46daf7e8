import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { currentPlatform } from '../../src/protocol/platform.js';
import { ManagedProcess, repoRoot, runChecked, sourceProgram, type LogLine } from './processes.js';
import { packagedWorker } from './worker-builds.js';

export interface LabOptions {
  /** Where to keep everything; a new temp folder when omitted. */
  dir?: string;
  /** Called with every output line of every process the lab starts (for the demo's --verbose). */
  onLine?: (source: string, line: string, parsed: LogLine | null) => void;
  /** The server's manifest cache TTL; short so that a publish shows up within seconds. */
  cacheTtlSeconds?: number;
  /** The server's plan for channels without their own; default `immediate` (a lab not about rollouts). */
  defaultRolloutPlan?: 'staged' | 'immediate';
}

export interface WorkerOptions {
  installRoot: string;
  /** The pool's shared worker token (older workers' way in). */
  token?: string;
  /** An enrollment token: the worker spends it at start for its own credential (credential.json). */
  enrollmentToken?: string;
  channel?: string;
  checkIntervalSeconds?: number;
  healthWindowSeconds?: number;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
}

/**
 * A whole update system on this machine, driven only through its external interfaces: the three
 * CLIs and the HTTP API (docs/protocol.md, sections 3 and 4; docs/release-tool.md). The demo and the end-to-end tests both use it,
 * so what the demo shows is what the tests assert.
 */
export class UpdateLab {
  readonly storeDir: string;
  readonly dbPath: string;
  readonly keyDir: string;
  readonly releaseKeyPath: string;
  readonly releasePublicKeyPath: string;
  releasePublicKey = '';
  server: ManagedProcess | undefined;
  serverUrl = '';
  private adminToken = '';
  private readonly processes = new Set<ManagedProcess>();

  private constructor(
    readonly dir: string,
    private readonly options: LabOptions,
  ) {
    this.storeDir = join(dir, 'store');
    this.dbPath = join(dir, 'fleet.db');
    this.keyDir = join(dir, 'keys');
    this.releaseKeyPath = join(this.keyDir, 'release.key');
    this.releasePublicKeyPath = join(this.keyDir, 'release.pub');
  }

  static async create(options: LabOptions = {}): Promise<UpdateLab> {
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'bytebiota-lab-')));
    const lab = new UpdateLab(dir, options);
    await mkdir(lab.storeDir, { recursive: true });
    await lab.release(['keygen', '--out', lab.keyDir, '--name', 'release']);
    lab.releasePublicKey = (await readFile(lab.releasePublicKeyPath, 'utf8')).trim();
    return lab;
  }

  get platform(): string {
    return currentPlatform();
  }

  /** Run `bytebiota-release ARGS` from source; it must succeed. */
  async release(args: string[]): Promise<string> {
    const program = sourceProgram('release');
    return (await runChecked(program.command, [...program.args, ...args])).stdout;
  }

  /** Run `bytebiota-server ARGS` (not `serve`) from source; it must succeed. */
  async serverCommand(args: string[]): Promise<string> {
    const program = sourceProgram('server');
    return (await runChecked(program.command, [...program.args, ...args])).stdout;
  }

  async startServer(extraArgs: string[] = []): Promise<string> {
    const program = sourceProgram('server');
    const args = [
      ...program.args,
      'serve',
      '--host', '127.0.0.1',
      '--port', this.serverUrl ? new URL(this.serverUrl).port : '0',
      '--store', this.storeDir,
      '--db', this.dbPath,
      '--release-key', this.releasePublicKeyPath,
      '--cache-ttl', String(this.options.cacheTtlSeconds ?? 1),
      // A lab that is not about rollouts offers each release to every worker at once.
      '--default-rollout-plan', this.options.defaultRolloutPlan ?? 'immediate',
      ...extraArgs,
    ];
    const server = this.track(new ManagedProcess('server', program.command, args, { env: process.env, onLine: this.lineSink('server') }));
    const listening = await server.waitForEvent((event) => event.event === 'server_listening', 30_000);
    this.server = server;
    this.serverUrl = String(listening['url']).replace(/\/$/, '');
    return this.serverUrl;
  }

  async stopServer(): Promise<void> {
    await this.server?.stop();
  }

  async killServer(): Promise<void> {
    await this.server?.kill();
  }

  async createToken(role: 'worker' | 'admin' | 'enroll', pool?: string, label?: string): Promise<string> {
    const args = ['token', 'create', '--db', this.dbPath, '--role', role, ...(pool ? ['--pool', pool] : []), ...(label ? ['--label', label] : [])];
    const lines = (await this.serverCommand(args)).trim().split('\n');
    return lines[lines.length - 1]!.trim();
  }

  async admin(): Promise<string> {
    // Labelled, as every admin token should be: actions are logged with the label.
    this.adminToken ||= await this.createToken('admin', undefined, 'lab-operator');
    return this.adminToken;
  }

  async api(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    const response = await fetch(`${this.serverUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, json: text ? JSON.parse(text) : null };
  }

  async setPoolPolicy(pool: string, autoUpdate: boolean): Promise<void> {
    const { status, json } = await this.api('PUT', `/api/admin/pools/${pool}/policy`, await this.admin(), { auto_update: autoUpdate });
    if (status !== 200) throw new Error(`setting the policy of pool ${pool} failed: ${status} ${JSON.stringify(json)}`);
  }

  async fleet(): Promise<FleetView> {
    const { status, json } = await this.api('GET', '/api/admin/fleet', await this.admin());
    if (status !== 200) throw new Error(`fleet view failed: ${status} ${JSON.stringify(json)}`);
    return json as FleetView;
  }

  /** The packaged worker executable of a version (built once per source tree). */
  buildWorker(version: string): Promise<string> {
    return packagedWorker(version);
  }

  /**
   * A real packaged worker that passes its health watch, then crashes a few seconds into every
   * run (test/fixtures/late-crash-worker.ts): a release that fails in the field, not at start.
   */
  lateCrashWorker(version: string): Promise<string> {
    return packagedWorker(version, { name: 'late-crash', path: join(repoRoot, 'test', 'fixtures', 'late-crash-worker.ts') });
  }

  /**
   * An executable that passes the install self-test (`--version --json` names its version) but,
   * started to work, exits with an error at once (`crash`) or never becomes ready (`hang`): what
   * a broken build looks like.
   */
  async brokenWorker(version: string, failure: 'crash' | 'hang' = 'crash'): Promise<string> {
    const path = join(this.dir, `broken-worker-${version}-${failure}`);
    const info = JSON.stringify({ version, commit: 'broken', built_at: '2026-01-01T00:00:00Z', platform: this.platform });
    await writeFile(
      path,
      [
        '#!/bin/sh',
        'if [ "$1" = "--version" ]; then',
        `  if [ "$2" = "--json" ]; then echo '${info}'; else echo 'bytebiota-worker ${version}'; fi`,
        '  exit 0',
        'fi',
        ...(failure === 'crash'
          ? [`echo 'bytebiota-worker ${version}: fatal: cannot load simulation core' >&2`, 'exit 70']
          : [`echo 'bytebiota-worker ${version}: waiting on a lock that never frees' >&2`, 'exec sleep 3600']),
        '',
      ].join('\n'),
    );
    await chmod(path, 0o755);
    return path;
  }

  async publish(
    version: string,
    artifactPath: string,
    options: { channel?: string; minimumVersion?: string; allowDowngrade?: boolean } = {},
  ): Promise<void> {
    await this.release([
      'publish',
      '--store', this.storeDir,
      '--channel', options.channel ?? 'stable',
      '--version', version,
      '--artifact', `${this.platform}=${artifactPath}`,
      '--key', this.releaseKeyPath,
      ...(options.minimumVersion ? ['--minimum-version', options.minimumVersion] : []),
      ...(options.allowDowngrade ? ['--allow-downgrade'] : []),
    ]);
  }

  async installWorker(executable: string, installRoot: string): Promise<void> {
    await runChecked(executable, ['install', '--install-root', installRoot]);
  }

  /** Arguments and environment for `run`/`supervise` against this lab's server. */
  workerInvocation(options: WorkerOptions): { args: string[]; env: NodeJS.ProcessEnv } {
    return {
      args: [
        '--install-root', options.installRoot,
        '--server', this.serverUrl,
        '--channel', options.channel ?? 'stable',
        '--trusted-key', this.releasePublicKey,
        '--check-interval', String(options.checkIntervalSeconds ?? 2),
        ...(options.extraArgs ?? []),
      ],
      // The token goes by environment, never on the command line where `ps` shows it.
      // Debug level logs every finished unit of work, which the tests and the demo count.
      env: {
        ...process.env,
        LOG_LEVEL: 'debug',
        ...(options.token !== undefined ? { BYTEBIOTA_WORKER_TOKEN: options.token } : {}),
        ...(options.enrollmentToken !== undefined ? { BYTEBIOTA_ENROLLMENT_TOKEN: options.enrollmentToken } : {}),
        ...options.env,
      },
    };
  }

  /** Start `supervise` from the install root's launcher (the last proven version), as a service manager would. */
  startSupervisor(name: string, options: WorkerOptions & { ownProcessGroup?: boolean }): ManagedProcess {
    const { args, env } = this.workerInvocation(options);
    const executable = join(options.installRoot, 'launcher', 'bytebiota-worker');
    const supervise = ['supervise', ...args, '--health-window', String(options.healthWindowSeconds ?? 15)];
    return this.track(
      new ManagedProcess(name, executable, supervise, {
        env,
        onLine: this.lineSink(name),
        ...(options.ownProcessGroup ? { detached: true } : {}),
      }),
    );
  }

  /** Start `run` directly (no supervisor) from the install root's current version. */
  startRun(name: string, options: WorkerOptions): ManagedProcess {
    const { args, env } = this.workerInvocation(options);
    const executable = join(options.installRoot, 'current', 'bytebiota-worker');
    return this.track(new ManagedProcess(name, executable, ['run', ...args], { env, onLine: this.lineSink(name) }));
  }

  async metricsText(): Promise<string> {
    const response = await fetch(`${this.serverUrl}/metrics`);
    return response.text();
  }

  /** Stop everything the lab started; remove its folder unless asked to keep it. */
  async close(options: { keepFiles?: boolean } = {}): Promise<void> {
    await Promise.all([...this.processes].map((child) => child.stop(5_000)));
    if (!options.keepFiles && !this.options.dir) await rm(this.dir, { recursive: true, force: true });
  }

  private track(child: ManagedProcess): ManagedProcess {
    this.processes.add(child);
    return child;
  }

  private lineSink(source: string) {
    return (line: string, parsed: LogLine | null) => this.options.onLine?.(source, line, parsed);
  }
}

export interface FleetView {
  [key: string]: unknown;
}
