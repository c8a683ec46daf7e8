import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root, whether this file runs from source or from a copy elsewhere in the tree. */
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export type ProgramName = 'server' | 'worker' | 'release';

/** How to run one of the three programs from source: Node with tsx, on src/<program>/main.ts. */
export function sourceProgram(program: ProgramName): { command: string; args: string[] } {
  return {
    command: process.execPath,
    args: ['--import', 'tsx', fileURLToPath(new URL(`../../src/${program}/main.ts`, import.meta.url))],
  };
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion and collect its output. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? repoRoot,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 120_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Run a command that must succeed; the error carries its output so a failure explains itself. */
export async function runChecked(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const result = await runCommand(command, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${[command, ...args].join(' ')} exited with ${result.code ?? result.signal}\n${result.stdout}\n${result.stderr}`,
    );
  }
  return result;
}

export type LogLine = Record<string, unknown> & { event?: string };

/**
 * A long-running child whose output lines are kept, JSON ones parsed, so callers can wait for a
 * log event instead of sleeping.
 */
export class ManagedProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly events: LogLine[] = [];
  private readonly waiters = new Set<() => void>();
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    options: SpawnOptions & { onLine?: (line: string, parsed: LogLine | null) => void } = {},
  ) {
    this.child = spawn(command, args, { cwd: repoRoot, ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (stream: NodeJS.ReadableStream | null) => {
      if (!stream) return;
      createInterface({ input: stream }).on('line', (line) => {
        this.lines.push(line);
        let parsed: LogLine | null = null;
        if (line.startsWith('{')) {
          try {
            parsed = JSON.parse(line) as LogLine;
            this.events.push(parsed);
          } catch {
            parsed = null;
          }
        }
        options.onLine?.(line, parsed);
        for (const wake of this.waiters) wake();
      });
    };
    collect(this.child.stdout);
    collect(this.child.stderr);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        resolve({ code, signal });
        for (const wake of this.waiters) wake();
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolve with the first logged event (from the start) that matches, or fail after timeoutMs. */
  waitForEvent(match: (event: LogLine) => boolean, timeoutMs: number, from = 0): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.events.slice(from).find(match);
        if (found) {
          cleanup();
          resolve(found);
          return true;
        }
        if (!this.running) {
          cleanup();
          reject(new Error(`${this.name} exited before the awaited event; last output:\n${this.lines.slice(-30).join('\n')}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for an event from ${this.name}; last output:\n${this.lines.slice(-30).join('\n')}`));
      }, timeoutMs);
      const wake = () => void check();
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
      };
      this.waiters.add(wake);
      check();
    });
  }

  waitForExit(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return Promise.race([
      this.exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`${this.name} did not exit within ${timeoutMs} ms`)), timeoutMs).unref(),
      ),
    ]);
  }

  /** SIGTERM, then SIGKILL if it has not exited within graceMs. */
  async stop(graceMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    try {
      return await this.waitForExit(graceMs);
    } catch {
      this.child.kill('SIGKILL');
      return this.exited;
    }
  }

  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }

  /**
   * SIGKILL the child and everything it started, as a power cut or an OOM kill of a service's
   * cgroup would. The child must have been spawned with `detached: true` (its own process group).
   */
  async killGroup(): Promise<void> {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // the group is already gone
    }
    await this.exited;
  }
}
