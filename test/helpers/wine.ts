/**
 * Windows programs under Wine (Debian 12: package wine64, Wine 8), for the tests of the worker's
 * win32 path on Linux. One fresh prefix (a private C: drive, registry and wineserver) per test
 * file: createWinePrefix() before the tests, removeWinePrefix() after them.
 *
 * What this works around, all measured with Node 20.20.2's node.exe under Wine 8.0:
 * - A new 64-bit-only prefix claims to be Windows 7, and node.exe refuses to start there
 *   ("Node.js is only supported on Windows 8.1 ... or higher", exit 216). The prefix is switched
 *   to Windows 10 (`winecfg -v win10`) rather than setting NODE_SKIP_PLATFORM_CHECK, which every
 *   process the worker starts would also need.
 * - With stdout on a Unix pipe, node.exe dies at its first write to it (`Error: open EBADF` in
 *   createWritableStdioStream): libuv sees a pipe and opens it as a Windows named pipe, which
 *   Wine's stand-in does not support. Regular files work, so runWindowsProgram() sends stdout
 *   and stderr to files and reads them back.
 * - Wine passes the Unix environment through, except HOME and PATH (PATH becomes C:\windows...);
 *   exit codes reach Linux modulo 256, as for any Unix process.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import type { LogLine } from './log-lines.js';

/** Debian's wine64 package keeps its loader off PATH (the `wine` package adds /usr/bin/wine). */
const DEBIAN_WINE64 = '/usr/lib/wine/wine64';
/** wineboot on a 2-core machine takes a few seconds; this only bounds a hang. */
const TOOL_TIMEOUT_MS = 120_000;
const DEFAULT_RUN_TIMEOUT_MS = 60_000;
/** How long one `wineserver -k` gets to end the programs started here before it is sent again. */
const KILL_ROUND_MS = 3_000;
/** After this long, what is left of the prefix's processes is SIGKILLed from Linux. */
const KILL_DEADLINE_MS = 30_000;

export interface WineTools {
  /** Starts a Windows program: `wine <program.exe> args...`. */
  wine: string;
  /** The prefix's server: `-k` kills every Wine process of a prefix, `-w` waits for them. */
  wineserver: string;
}

export interface WinePrefix {
  tools: WineTools;
  /** WINEPREFIX: drive_c/, the registry, dosdevices/ (z: is the Linux root). */
  dir: string;
  /** What every Wine process of this prefix runs with; tests add their own variables on top. */
  env: Record<string, string>;
  /** How long creating and booting the prefix took. */
  bootMs: number;
  /** Removes the temp folder holding the prefix and its home; removeWinePrefix() calls it. */
  removeDir(): Promise<void>;
  /** The wine processes started through this helper that have not exited yet. */
  running: Set<ChildProcess>;
  /**
   * Set by removeWinePrefix(). A test that timed out goes on running after its file's `after`
   * hook; were it to start a program now, Wine would make a new prefix at the removed path and
   * the program would outlive the test file, holding the whole test run open.
   */
  removed: boolean;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && isExecutable(join(dir, command))) return join(dir, command);
  }
  return undefined;
}

/** wine64 or wine on PATH, else Debian's wine64 loader; wineserver beside it or on PATH. Undefined when Wine is not installed. */
export function findWine(): WineTools | undefined {
  const wine = onPath('wine64') ?? onPath('wine') ?? (isExecutable(DEBIAN_WINE64) ? DEBIAN_WINE64 : undefined);
  if (wine === undefined) return undefined;
  const beside = join(dirname(wine), 'wineserver');
  const wineserver = isExecutable(beside) ? beside : onPath('wineserver');
  return wineserver === undefined ? undefined : { wine, wineserver };
}

/** Why the Wine tests cannot run here, for `skip`; undefined when they can. */
export function wineMissingReason(): string | undefined {
  return findWine() ? undefined : 'Wine is not installed (apt-get install --no-install-recommends wine64)';
}

/** A Linux path as a Windows program under Wine sees it: drive Z: is the Linux root. */
export function windowsPath(linuxPath: string): string {
  return `Z:${linuxPath.replaceAll('/', '\\')}`;
}

interface ProcessEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function waitForExit(child: ReturnType<typeof spawn>): Promise<ProcessEnd> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** A Wine tool (wineboot, winecfg, wineserver) whose output only matters when it fails: its stderr is kept. */
async function runWineTool(prefix: Pick<WinePrefix, 'env'>, command: string, args: string[]): Promise<ProcessEnd & { stderr: string }> {
  const child = spawn(command, args, { env: prefix.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const timer = setTimeout(() => child.kill('SIGKILL'), TOOL_TIMEOUT_MS);
  try {
    return { ...(await waitForExit(child)), stderr };
  } finally {
    clearTimeout(timer);
  }
}

async function bootStep(prefix: WinePrefix, args: string[]): Promise<void> {
  const end = await runWineTool(prefix, prefix.tools.wine, args);
  if (end.code !== 0) throw new Error(`wine ${args.join(' ')} exited with ${end.code ?? end.signal}: ${end.stderr}`);
}

/**
 * A new prefix in a temp folder, booted and set to Windows 10. HOME and TMPDIR point into the
 * same temp folder: Wine links the prefix's Desktop/Documents/... to $HOME and would write menu
 * entries under it, and Debian's Wine makes the server's socket folder (wine-XXXXXX) in $TMPDIR
 * and leaves it behind when the server exits. mscoree and mshtml are disabled so the boot does not offer to download Mono and
 * Gecko (there is no network), winemenubuilder so it writes no .desktop files at all.
 */
export async function createWinePrefix(tools: WineTools | undefined = findWine()): Promise<WinePrefix> {
  if (!tools) throw new Error(wineMissingReason());
  const startedMs = performance.now();
  const root = await mkdtemp(join(tmpdir(), 'bytebiota-wine-'));
  const dir = join(root, 'prefix');
  const home = join(root, 'home');
  const unixTemp = join(root, 'tmp');
  await Promise.all([mkdir(home), mkdir(unixTemp)]);
  // Only what Wine needs: the test runner's own variables (NODE_TEST_CONTEXT, NODE_OPTIONS)
  // would otherwise reach every Windows node started in the prefix.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    TMPDIR: unixTemp,
    WINEPREFIX: dir,
    WINEDEBUG: '-all',
    WINEDLLOVERRIDES: 'mscoree,mshtml=;winemenubuilder.exe=d',
  };
  const prefix: WinePrefix = { tools, dir, env, bootMs: 0, removeDir: () => rm(root, { recursive: true, force: true }), running: new Set(), removed: false };
  try {
    await bootStep(prefix, ['wineboot', '--init']);
    await bootStep(prefix, ['winecfg', '-v', 'win10']);
  } catch (err) {
    await removeWinePrefix(prefix);
    throw err;
  }
  prefix.bootMs = performance.now() - startedMs;
  return prefix;
}

/**
 * Kill every Wine process of the prefix (`wineserver -k`): what a crash test pulls the plug
 * with. Killing one wine process is not enough for that: the Windows processes it started are
 * not its Unix children (their Linux parent is pid 1), and only those it started without
 * `detached` die with it (libuv puts them in a kill-on-close job object). The exit status a
 * wine process reports after `-k` varies (0, 1 or SIGQUIT seen): do not assert it.
 *
 * Returns once every program started through this helper has exited. `-k` only reaches the
 * processes already connected to the prefix's server: a program caught while its loader is
 * still starting connects afterwards (starting a new server if need be) and runs on. So `-k` is
 * sent again every few seconds until they are all gone, and whatever is left of the prefix after
 * KILL_DEADLINE_MS is SIGKILLed from Linux (said on stderr, since a test then saw Wine do
 * something new). Without this bound one missed kill left a test waiting forever.
 */
export async function killWineProcesses(prefix: WinePrefix): Promise<void> {
  const deadline = performance.now() + KILL_DEADLINE_MS;
  for (;;) {
    const end = await runWineTool(prefix, prefix.tools.wineserver, ['-k']);
    // Exit code 1: no server was running for this prefix, so there was nothing to kill.
    if (end.code !== 0 && end.code !== 1) throw new Error(`wineserver -k exited with ${end.code ?? end.signal}: ${end.stderr}`);
    if (await allExited(prefix.running, Math.min(KILL_ROUND_MS, deadline - performance.now()))) return;
    if (performance.now() >= deadline) break;
  }
  const killed = await killPrefixProcesses(prefix);
  console.error(`wineserver -k left ${prefix.running.size} program(s) of ${prefix.dir} running for ${KILL_DEADLINE_MS} ms; SIGKILLed pids ${killed.join(', ')}`);
  for (const child of prefix.running) child.kill('SIGKILL');
  if (!(await allExited(prefix.running, KILL_ROUND_MS))) throw new Error(`wine processes of ${prefix.dir} survived SIGKILL`);
}

/** Whether every one of `children` exits within `timeoutMs`. */
async function allExited(children: ReadonlySet<ChildProcess>, timeoutMs: number): Promise<boolean> {
  const exits = [...children].map((child) => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  }));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs))));
  try {
    return await Promise.race([Promise.all(exits).then(() => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** SIGKILL every Linux process whose environment names this prefix (Windows processes, wineserver); returns their pids. */
async function killPrefixProcesses(prefix: WinePrefix): Promise<number[]> {
  const marker = `\0WINEPREFIX=${prefix.dir}\0`;
  const killed: number[] = [];
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    if (!`\0${environ}`.includes(marker)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // Gone already.
    }
  }
  return killed;
}

/** Kill the prefix's processes and delete it; nothing can be started in it afterwards. */
export async function removeWinePrefix(prefix: WinePrefix): Promise<void> {
  prefix.removed = true;
  await killWineProcesses(prefix);
  await prefix.removeDir();
}

/** Start `wine <args>` in the prefix and keep track of it until it exits. */
function spawnWine(prefix: WinePrefix, args: readonly string[], options: SpawnOptions): ChildProcess {
  if (prefix.removed) throw new Error(`the Wine prefix ${prefix.dir} was removed: nothing more runs in it`);
  const child = spawn(prefix.tools.wine, args, options);
  prefix.running.add(child);
  child.once('exit', () => prefix.running.delete(child));
  child.once('error', () => prefix.running.delete(child));
  return child;
}

export interface WindowsRunOptions {
  /** Added to the prefix's environment. */
  env?: Record<string, string>;
  /** A Linux directory; the program sees it as Z:\... */
  cwd?: string;
  /** The wine process is SIGKILLed after this long and the result says timedOut. */
  timeoutMs?: number;
}

export interface WindowsRunResult {
  /** The Windows exit code modulo 256; null when the process was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/**
 * Run a Windows program (a Linux path to a .exe) with arguments and wait for it. stdout and
 * stderr go to files in a temp folder (see the pipe quirk above) and are returned as text;
 * stdin is /dev/null.
 */
export async function runWindowsProgram(prefix: WinePrefix, program: string, args: readonly string[], options: WindowsRunOptions = {}): Promise<WindowsRunResult> {
  const outputDir = await mkdtemp(join(tmpdir(), 'bytebiota-wine-run-'));
  try {
    const stdoutFile = join(outputDir, 'stdout');
    const stderrFile = join(outputDir, 'stderr');
    const startedMs = performance.now();
    let timedOut = false;
    const end = await withFiles([stdoutFile, stderrFile], async ([stdoutFd, stderrFd]) => {
      const child = spawnWine(prefix, [program, ...args], {
        env: { ...prefix.env, ...options.env },
        cwd: options.cwd,
        stdio: ['ignore', stdoutFd, stderrFd],
      });
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS);
      return waitForExit(child).finally(() => clearTimeout(timer));
    });
    const elapsedMs = performance.now() - startedMs;
    const [stdout, stderr] = await Promise.all([readFile(stdoutFile, 'utf8'), readFile(stderrFile, 'utf8')]);
    return { ...end, timedOut, stdout, stderr, elapsedMs };
  } finally {
    await rm(outputDir, { recursive: true, force: true });
  }
}

/** Open files for writing, hand their descriptors to `use`, and close them whatever happens. */
async function withFiles<T>(paths: readonly string[], use: (fds: number[]) => Promise<T>): Promise<T> {
  const handles = await Promise.all(paths.map((path) => open(path, 'w')));
  try {
    return await use(handles.map((handle) => handle.fd));
  } finally {
    await Promise.all(handles.map((handle) => handle.close()));
  }
}

export interface RunningWindowsProgram {
  /** What the program has written to stdout and stderr so far (files: see the pipe quirk above). */
  output(): Promise<{ stdout: string; stderr: string }>;
  /** Settles when the wine process exits; after killWineProcesses() its status varies (see there). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /**
   * The Linux pid of the program (the wine loader becomes the Windows process). A SIGINT sent to
   * it reaches that one process as a console Ctrl+C, which Node on Windows raises as SIGINT.
   */
  pid: number | undefined;
}

/** The JSON log lines a running program has written so far; a line still being written is left for the next read. */
export async function windowsLogLines(program: RunningWindowsProgram): Promise<LogLine[]> {
  const lines: LogLine[] = [];
  for (const text of (await program.output()).stdout.split('\n')) {
    if (!text.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      // Cut off mid-line: read whole at the next poll.
    }
  }
  return lines;
}

/**
 * Start a Windows program and leave it running (a supervisor); its stdout and stderr go to
 * files in `outputDir`, read back with output(). Stop it with killWineProcesses(): killing the
 * wine process alone would leave the Windows processes it started running.
 */
export async function startWindowsProgram(
  prefix: WinePrefix,
  program: string,
  args: readonly string[],
  outputDir: string,
  options: Omit<WindowsRunOptions, 'timeoutMs'> = {},
): Promise<RunningWindowsProgram> {
  const stdoutFile = join(outputDir, 'stdout');
  const stderrFile = join(outputDir, 'stderr');
  const handles = await Promise.all([open(stdoutFile, 'w'), open(stderrFile, 'w')]);
  try {
    const child = spawnWine(prefix, [program, ...args], {
      env: { ...prefix.env, ...options.env },
      cwd: options.cwd,
      stdio: ['ignore', handles[0].fd, handles[1].fd],
    });
    const exited = waitForExit(child);
    return {
      output: async () => {
        const [stdout, stderr] = await Promise.all([readFile(stdoutFile, 'utf8'), readFile(stderrFile, 'utf8')]);
        return { stdout, stderr };
      },
      exited,
      pid: child.pid,
    };
  } finally {
    // The child has its own copies of the descriptors once spawned.
    await Promise.all(handles.map((handle) => handle.close()));
  }
}
