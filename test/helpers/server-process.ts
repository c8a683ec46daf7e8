import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { eventIs, watchLogLines, type LogLine } from './log-lines.js';

/** The real `bytebiota-server` program, run from source, as an operator would run it. */
export const SERVER_MAIN = 'src/server/main.ts';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command of the server program to completion. */
export async function runServerCommand(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER_MAIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** Create a token with the CLI and return it (the last line of its output). */
export async function createTokenWithCli(db: string, role: 'worker' | 'admin', pool?: string): Promise<string> {
  const result = await runServerCommand(['token', 'create', '--db', db, '--role', role, ...(pool ? ['--pool', pool] : [])]);
  if (result.code !== 0) throw new Error(`token create failed: ${result.stderr}`);
  return result.stdout.trim().split('\n').at(-1)!;
}

export interface RunningServer {
  child: ChildProcessWithoutNullStreams;
  url: string;
  /** Log lines seen so far, parsed. */
  lines: LogLine[];
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

/** How long a server from source (tsx compiling on the way) may take to listen. */
const LISTEN_TIMEOUT_MS = 120_000;

/** Start `serve` on port 0 and wait for its `server_listening` line. */
export async function startServerProcess(args: string[], env: Record<string, string> = {}): Promise<RunningServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER_MAIN, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const log = watchLogLines(child, () => `server stderr: ${stderr}`);
  const listening = await log.waitForLine(eventIs('server_listening'), LISTEN_TIMEOUT_MS);
  return { child, url: String(listening['url']), lines: log.lines, exited };
}
