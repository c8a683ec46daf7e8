import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installLayout, type InstallLayout } from '../../src/worker/install/install-layout.js';
import { digestFile } from '../../src/shared/file-digest.js';
import { stageVersion, switchCurrent } from '../../src/worker/install/installer.js';
import { loadState, updateState } from '../../src/worker/install/state.js';
import { watchLogLines, type LogLines } from './log-lines.js';

/**
 * Stand-in worker executables for supervisor tests: node scripts that answer `--version --json`
 * (so the real installer's self-test accepts them) and then behave one way under `run`:
 * - ready: say ready over IPC and work until SIGTERM or the supervisor goes away; whenever
 *   `<root>/fixture-restart-request` appears, delete it and exit 75 (a staged update)
 * - exit-at-start: exit 1 at once
 * - never-ready: run without ever saying ready
 * - ready-then-crash: say ready, then exit 1 after CRASH_AFTER_READY_MS (a version that passes
 *   its health watch and then crashes)
 * Each run appends `{version, pid, args, token}` to `<root>/fixture-runs.log`.
 */
export type FixtureBehaviour = 'ready' | 'exit-at-start' | 'never-ready' | 'ready-then-crash';

export const CRASH_AFTER_READY_MS = 300;

export const RESTART_REQUEST_FILE = 'fixture-restart-request';
export const RUNS_LOG_FILE = 'fixture-runs.log';

function fixtureSource(version: string, behaviour: FixtureBehaviour): string {
  return `#!${process.execPath}
const { appendFileSync, existsSync, rmSync } = require('node:fs');
const { join } = require('node:path');
const args = process.argv.slice(2);
if (args[0] === '--version') {
  process.stdout.write(JSON.stringify({ version: ${JSON.stringify(version)}, commit: 'fixture', built_at: '2026-01-01T00:00:00.000Z', platform: process.platform + '-' + process.arch }) + '\\n');
  process.exit(0);
}
const root = args[args.indexOf('--install-root') + 1];
appendFileSync(join(root, ${JSON.stringify(RUNS_LOG_FILE)}), JSON.stringify({ version: ${JSON.stringify(version)}, pid: process.pid, args, token: process.env.BYTEBIOTA_WORKER_TOKEN ?? null }) + '\\n');
console.log(JSON.stringify({ event: 'fixture_started', version: ${JSON.stringify(version)} }));
const behaviour = ${JSON.stringify(behaviour)};
if (behaviour === 'exit-at-start') {
  console.error('fixture ${version}: crashing on start');
  process.exit(1);
}
const request = join(root, ${JSON.stringify(RESTART_REQUEST_FILE)});
// Between "units", a ready fixture looks for a restart request, as run does for a staged update.
const keepAlive = setInterval(() => {
  if (behaviour === 'ready' && existsSync(request)) {
    rmSync(request);
    process.exit(75);
  }
}, 50);
const stop = () => { clearInterval(keepAlive); process.exit(0); };
process.on('SIGTERM', stop);
process.on('disconnect', stop);
if ((behaviour === 'ready' || behaviour === 'ready-then-crash') && process.send) process.send({ type: 'ready', version: ${JSON.stringify(version)} });
if (behaviour === 'ready-then-crash') {
  setTimeout(() => {
    console.error('fixture ${version}: crashing after ready');
    process.exit(1);
  }, ${CRASH_AFTER_READY_MS});
}
`;
}

export interface FixtureRoot {
  root: string;
  layout: InstallLayout;
  /** Install a fixture as versions/<version>, through the real installer (self-test included). */
  install(version: string, behaviour: FixtureBehaviour): Promise<void>;
  makeCurrent(version: string): Promise<void>;
  /** What `run` records after it staged a version: the supervisor acts on it at exit 75. */
  stage(toVersion: string, fromVersion: string): Promise<string>;
  requestRestart(): Promise<void>;
  runs(): Promise<{ version: string; pid: number; args: string[]; token: string | null }[]>;
  remove(): Promise<void>;
}

export async function makeFixtureRoot(): Promise<FixtureRoot> {
  const root = await mkdtemp(join(tmpdir(), 'bytebiota-worker-fixture-'));
  const layout = installLayout(root);
  const sources = join(root, 'fixture-sources');
  return {
    root,
    layout,
    async install(version, behaviour) {
      await mkdir(sources, { recursive: true });
      const source = join(sources, `${version}.js`);
      await writeFile(source, fixtureSource(version, behaviour));
      await chmod(source, 0o755);
      const { sha256, sizeBytes: size } = await digestFile(source);
      await stageVersion({ layout, sourcePath: source, version, sha256, size });
    },
    async makeCurrent(version) {
      await switchCurrent(layout, version);
    },
    async stage(toVersion, fromVersion) {
      const correlationId = randomUUID();
      await loadState(layout, randomUUID);
      await updateState(layout, (state) => {
        state.pending_switch = { to_version: toVersion, from_version: fromVersion, correlation_id: correlationId, channel: 'stable' };
      });
      return correlationId;
    },
    async requestRestart() {
      await writeFile(join(root, RESTART_REQUEST_FILE), '');
    },
    async runs() {
      try {
        return (await readFile(join(root, RUNS_LOG_FILE), 'utf8'))
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as { version: string; pid: number; args: string[]; token: string | null });
      } catch {
        return [];
      }
    },
    async remove() {
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A program spawned from source, with its JSON log lines collected as they arrive. */
export interface SpawnedProgram extends LogLines {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

export function spawnWorkerCli(args: string[], env: NodeJS.ProcessEnv = {}): SpawnedProgram {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/worker/main.ts', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
  });
  let stderrText = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderrText += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    ...watchLogLines(child, () => `stderr: ${stderrText}`),
    child,
    stderr: () => stderrText,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}
