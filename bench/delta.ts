/**
 * `npm run bench:delta`: what a differential (delta) update saves, on real packaged workers
 * updating through the real server on 127.0.0.1 (docs/protocol.md, section 8).
 *
 * 1. Three worker executables from the project's own build (buildWorker: esbuild bundle + Node
 *    SEA, ~100 MB each), with a fixed commit ("unknown") and build time, so the same sources give
 *    the same bytes and a build is cached under the system temp folder like the lab's:
 *      1.0.0  the repository's src/ as it is;
 *      1.0.1  the same with exactly one line of worker code changed (a constant in workload.ts);
 *      1.1.0  a changed module that imports a new dependency (ajv, compiling a small schema used
 *             on every unit) and a changed constant.
 *    All three are built from copies of src/ made the same way, one snapshot of the repository's
 *    src/ (package.json and tsconfig.json beside it, node_modules a symlink to the repository's),
 *    1.0.0's copy unchanged. Why not 1.0.0 from the repository itself: esbuild names every
 *    bundled package module by its real path relative to the entry, symlinks followed, in a
 *    comment and in the module's key (`"../../node_modules/pino/..."` in the repository,
 *    `"../../../../<the repository>/node_modules/pino/..."` in a copy), about 1,500 strings spread
 *    over the 2.1 MB bundle. Between a repository build and a copy build that alone changes
 *    nearly every chunk of the bundle (~2 % of the artifact) whatever the edit, which is not what
 *    two releases built from one checkout look like. Built this way, 1.0.0 -> 1.0.1 differs by
 *    the one edited line and nothing else.
 * 2. The real server and release CLI (scripts/lib/update-lab.ts, as `npm run demo`): a signing
 *    key, 1.0.0 published, a pool token, the pool's auto_update on. Publishing writes each
 *    artifact's signed chunk index (`<artifact>.chunks.json`) into the folder store.
 * 3. For each step (1.0.0 -> 1.0.1, then 1.0.0 -> 1.1.0, the target published just before its
 *    runs), a 1.0.0 worker freshly installed with `bytebiota-worker install` into its own
 *    install root runs `versions/1.0.0/bytebiota-worker run` (the packaged executable, no
 *    supervisor) until it has downloaded, verified and staged the update and exits 75. Twice:
 *      delta  the release as published, chunk index in the store;
 *      full   the same release with its `.chunks.json` moved out of the store folder for the run
 *             (and back after it): the worker's index request gets a 404 and it falls back to the
 *             whole artifact (`worker_delta_fallback`, reason index_missing), which is exactly
 *             what it does for a release published without an index. Equivalent to publishing the
 *             same bytes a second time without one, without a second version number.
 *    One untimed warm-up run per mode comes first (server JIT, page cache of the store and of
 *    the executables); the figures are from the runs after it.
 * Per run:
 *   - bytes fetched: `bytes_fetched` of the worker's `worker_update_downloaded` log line, as a
 *     share of the new artifact's size;
 *   - download wall time: from the worker's `worker_update_available` to its
 *     `worker_update_downloaded` line (their millisecond timestamps): the index request, the
 *     local chunk list, the ranges or the whole file, and the whole-file SHA-256 check;
 *   - worker CPU (user + system) and peak RSS of the worker process itself, exactly: a tiny
 *     CommonJS file preloaded with NODE_OPTIONS=--require (the SEA honours NODE_OPTIONS; checked
 *     at start with `--version`) writes process.resourceUsage() and VmHWM from
 *     /proc/self/status when the process exits. VmHWM, not resourceUsage().maxRSS: on Linux
 *     ru_maxrss survives exec and so starts at the RSS of the process that forked the worker
 *     (this benchmark), while VmHWM belongs to the worker's own image. Should an executable not
 *     run the preload, /proc/<pid>/stat and /proc/<pid>/status are polled every 10 ms instead,
 *     and the output says so. The CPU is the whole process: start-up, the handshake, one unit of
 *     work (the first check comes after it), the update and the staging; the self-test of the
 *     staged version is a child process and not counted. The reference rows (the same executable
 *     doing `--version`, and an idle `run` that finds no update) show the part that is not the
 *     update's.
 * Goals: 1.0.0 -> 1.0.1 delta fetches <= 5 % of the artifact, 1.0.0 -> 1.1.0 <= 15 %; delta wall
 * time <= full wall time on loopback for each step; peak RSS < 100 MB for both kinds.
 * BENCH_RUNS: measured runs per step and mode (default 1; medians when more). The load average
 * is printed at the start and the end: on a shared machine it explains spread.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { access, cp, link, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chunkIndexLocation } from '../src/protocol/chunk-index.js';
import { storeKeys } from '../src/protocol/manifest.js';
import { artifactFileName, currentPlatform } from '../src/protocol/platform.js';
import { buildWorker } from '../src/release/build/index.js';
import { isErrnoCode } from '../src/shared/errors.js';
import { installLayout } from '../src/worker/install/install-layout.js';
import { LOCAL_CHUNKS_FILE } from '../src/worker/install/local-chunks.js';
import { ManagedProcess, repoRoot, runCommand, type LogLine } from '../scripts/lib/processes.js';
import { UpdateLab } from '../scripts/lib/update-lab.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 1);
const RUN_TIMEOUT_MS = 180_000;
const RSS_GOAL_MB = 100;
const BUILD_COMMIT = 'unknown';
const BUILD_TIME = new Date('2026-01-01T00:00:00Z');
const POOL = 'bench';
const platform = currentPlatform();
const thisFile = fileURLToPath(import.meta.url);
/** Beside the lab's cache (scripts/lib/worker-builds.ts), under its own name: other inputs. */
const buildCacheRoot = join(tmpdir(), 'bytebiota-worker-builds', 'bench-delta');
const BUILD_CHILD_FLAG = '--build-child';

type Mode = 'delta' | 'full';

/** An exact text replacement in one file of a copy of src/; it must match exactly once. */
interface Edit {
  file: string;
  from: string;
  to: string;
}

interface Step {
  version: string;
  what: string;
  /** The most of the artifact a delta may fetch, as a share. */
  goalShare: number;
  edits: Edit[];
}

const WORKLOAD = 'src/worker/runtime/workload.ts';
const steps: Step[] = [
  {
    version: '1.0.1',
    what: 'one line of worker code changed',
    goalShare: 0.05,
    edits: [{ file: WORKLOAD, from: 'DEFAULT_ITERATIONS_PER_UNIT = 40_000;', to: 'DEFAULT_ITERATIONS_PER_UNIT = 40_001;' }],
  },
  {
    version: '1.1.0',
    what: 'a module changed and a dependency added (ajv)',
    goalShare: 0.15,
    edits: [
      {
        file: WORKLOAD,
        from: "import { setImmediate as yieldToEventLoop } from 'node:timers/promises';",
        to: "import { setImmediate as yieldToEventLoop } from 'node:timers/promises';\nimport Ajv from 'ajv';",
      },
      {
        file: WORKLOAD,
        from: 'export const DEFAULT_ITERATIONS_PER_UNIT = 40_000;',
        to: [
          'export const DEFAULT_ITERATIONS_PER_UNIT = 50_000;',
          '',
          '/** Every unit result is checked against its schema before the loop records it. */',
          "const validateUnitResult = new Ajv({ allErrors: true }).compile({ type: 'string', pattern: '^[0-9a-f]{32}$' });",
          '',
          'export function isUnitResult(value: unknown): value is string {',
          '  return validateUnitResult(value);',
          '}',
        ].join('\n'),
      },
      {
        file: WORKLOAD,
        from: "      return digest.toString('hex').slice(0, 32);",
        to: [
          "      const result = digest.toString('hex').slice(0, 32);",
          '      if (!isUnitResult(result)) throw new Error(`unit ${unit} gave a malformed result ${result}`);',
          '      return result;',
        ].join('\n'),
      },
    ],
  },
];

// ---------------------------------------------------------------------------------------------
// Builds

/** What the build child prints. */
interface BuildChildResult {
  path: string;
  size: number;
}

/**
 * `node --import tsx bench/delta.ts --build-child VERSION ENTRY OUT_DIR`: one build, in a process
 * of its own. A build peaks near 1 GB (postject's WebAssembly heap); done in this process, it
 * would leave the benchmark several times larger than the workers it then starts and times.
 */
async function buildChild(args: string[]): Promise<void> {
  const [version, entry, outDir] = args as [string, string, string];
  const built = await buildWorker({ version, entry, outDir, commit: BUILD_COMMIT, now: BUILD_TIME });
  const result: BuildChildResult = { path: built.path, size: built.size };
  console.log(JSON.stringify(result));
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return filesUnder(path);
      return entry.isFile() ? [path] : [];
    }),
  );
  return nested.flat().sort();
}

/** Everything that goes into the executable's bytes, so a stale cache entry cannot be served. */
async function buildInputsDigest(version: string, tree: string): Promise<string> {
  const hash = createHash('sha256');
  hash.update(process.execPath).update(process.version).update(String((await stat(process.execPath)).size));
  hash.update(version).update(BUILD_COMMIT).update(BUILD_TIME.toISOString());
  // The bundle names each package by this path (see the header): part of the bytes.
  hash.update(relative(join(tree, 'src', 'worker'), await realpath(join(tree, 'node_modules'))));
  for (const file of [...(await filesUnder(join(tree, 'src'))), join(tree, 'package.json'), join(tree, 'tsconfig.json')]) {
    hash.update(relative(tree, file)).update(await readFile(file));
  }
  hash.update(await readFile(join(repoRoot, 'package-lock.json')));
  return hash.digest('hex').slice(0, 24);
}

/** The packaged worker `version` built from `tree` (a copy of the repository), cached. */
async function cachedBuild(version: string, tree: string): Promise<{ path: string; cached: boolean }> {
  const dir = join(buildCacheRoot, await buildInputsDigest(version, tree));
  const cachedPath = join(dir, artifactFileName(version, platform));
  try {
    await access(cachedPath);
    return { path: cachedPath, cached: true };
  } catch {
    // not built yet from these inputs
  }
  await mkdir(dir, { recursive: true });
  const scratch = join(dir, `.build-${process.pid}-${Date.now()}`);
  try {
    const entry = join(tree, 'src', 'worker', 'main.ts');
    const result = await runCommand(process.execPath, ['--import', 'tsx', thisFile, BUILD_CHILD_FLAG, version, entry, scratch], {
      timeoutMs: 600_000,
    });
    if (result.code !== 0) throw new Error(`building ${version} from ${tree} failed (${result.code ?? result.signal}):\n${result.stderr}`);
    const built = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as BuildChildResult;
    // A link never replaces a file: a build another run made meanwhile is kept (same bytes).
    await link(built.path, cachedPath).catch((err: unknown) => {
      if (!isErrnoCode(err, 'EEXIST')) throw err;
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return { path: cachedPath, cached: false };
}

/**
 * A copy of the repository's sources to build from: `src/` copied (from one snapshot, so the
 * three versions differ only by their edits even while someone edits the repository), with
 * package.json and tsconfig.json (esbuild reads both: the module type, and `strict` gives the
 * bundle its "use strict"), and node_modules as a symlink to the repository's.
 */
async function sourceTree(root: string, snapshot: string, edits: readonly Edit[]): Promise<string> {
  await mkdir(root, { recursive: true });
  await cp(snapshot, join(root, 'src'), { recursive: true });
  for (const file of ['package.json', 'tsconfig.json']) await cp(join(repoRoot, file), join(root, file));
  await symlink(join(repoRoot, 'node_modules'), join(root, 'node_modules'), 'dir');
  for (const edit of edits) {
    const path = join(root, edit.file);
    const text = await readFile(path, 'utf8');
    const found = text.split(edit.from).length - 1;
    // Against a repository that moved on, a silent no-op edit would measure an unchanged build.
    if (found !== 1) throw new Error(`${edit.file}: expected ${JSON.stringify(edit.from)} exactly once, found it ${found} times`);
    // A function, not a string: `$'` in the new text (the schema's pattern) would be a replacement pattern.
    await writeFile(path, text.replace(edit.from, () => edit.to));
  }
  return root;
}

/**
 * Whether a file contains `text`. In a function of its own so the 100 MB read is garbage when it
 * returns: this process forks every worker, and a large parent makes each fork cost more.
 */
async function fileContains(path: string, text: string): Promise<boolean> {
  return (await readFile(path)).includes(text);
}

// ---------------------------------------------------------------------------------------------
// CPU and memory of a worker process

/**
 * Preloaded into the worker (and its children) with NODE_OPTIONS=--require. Each process writes
 * its own file, named by its pid: the staged version's self-test inherits the environment and
 * must not overwrite the worker's figures.
 */
const USAGE_PRELOAD = `'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const out = process.env.BYTEBIOTA_BENCH_USAGE_OUT;
const atStart = process.resourceUsage();
process.on('exit', () => {
  if (!out) return;
  let vmHwmKiB = null;
  try {
    vmHwmKiB = Number(/^VmHWM:\\s+(\\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
  } catch {}
  try {
    writeFileSync(out + '.' + process.pid + '.json', JSON.stringify({ atStart, atExit: process.resourceUsage(), vmHwmKiB }));
  } catch {}
});
`;

interface PreloadReport {
  atStart: NodeJS.ResourceUsage;
  atExit: NodeJS.ResourceUsage;
  vmHwmKiB: number | null;
}

interface ProcessUsage {
  cpuMs: number;
  /** CPU spent before the preload ran: Node's start-up, and the fork from this process. */
  cpuBeforeMainMs: number | null;
  peakRssMb: number;
  method: 'preload' | 'poll';
}

type UsageMethod = ProcessUsage['method'];

function usageEnv(preloadPath: string, outPrefix: string): NodeJS.ProcessEnv {
  const inherited = process.env['NODE_OPTIONS'];
  return {
    NODE_OPTIONS: `${inherited ? `${inherited} ` : ''}--require "${preloadPath}"`,
    BYTEBIOTA_BENCH_USAGE_OUT: outPrefix,
  };
}

async function readPreloadReport(outPrefix: string, pid: number): Promise<ProcessUsage | null> {
  try {
    const report = JSON.parse(await readFile(`${outPrefix}.${pid}.json`, 'utf8')) as PreloadReport;
    const cpu = (usage: NodeJS.ResourceUsage): number => (usage.userCPUTime + usage.systemCPUTime) / 1000;
    return {
      cpuMs: cpu(report.atExit),
      cpuBeforeMainMs: cpu(report.atStart),
      peakRssMb: ((report.vmHwmKiB ?? report.atExit.maxRSS) * 1024) / 1e6,
      method: 'preload',
    };
  } catch {
    return null;
  }
}

/** The fallback: /proc/<pid> every 10 ms while it runs; the last reading before the exit. */
function pollUsage(pid: number): () => ProcessUsage {
  // Fields 14 and 15 of /proc/PID/stat (utime, stime), in clock ticks of 1/100 s.
  let cpuMs = 0;
  let vmHwmKiB = 0;
  const read = (): void => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      cpuMs = (Number(fields[11]) + Number(fields[12])) * 10;
      vmHwmKiB = Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? vmHwmKiB);
    } catch {
      // gone already: keep the last reading
    }
  };
  const timer = setInterval(read, 10);
  return () => {
    clearInterval(timer);
    return { cpuMs, cpuBeforeMainMs: null, peakRssMb: (vmHwmKiB * 1024) / 1e6, method: 'poll' };
  };
}

// ---------------------------------------------------------------------------------------------
// Output helpers

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const formatLoad = (): string => `${loadavg().map((value) => value.toFixed(2)).join(' ')} (${cpus().length} cores)`;
const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);
const verdict = (met: boolean): string => (met ? 'ok' : 'MISSED');
const timeOf = (line: LogLine): number => Date.parse(String(line['time']));

interface RunResult {
  step: Step;
  mode: Mode;
  artifactBytes: number;
  bytesFetched: number;
  reusedBytes: number | null;
  ranges: number | null;
  downloadMs: number;
  /** From worker_update_downloaded to worker_update_staged: the self-test, fsync and rename. */
  stageMs: number;
  /** From the spawn to the exit, as seen from here. */
  processMs: number;
  usage: ProcessUsage;
  /** Whether the installed 1.0.0 had its chunk cache (versions/1.0.0/.chunks.json) before the run. */
  chunkCacheBefore: boolean;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const invokedAs = process.env['npm_lifecycle_event'] ? `npm run ${process.env['npm_lifecycle_event']}` : '';
  console.log(`command: ${[process.execPath, ...process.execArgv, ...process.argv.slice(1)].join(' ')}${invokedAs ? `  (${invokedAs})` : ''}`);
  console.log(`load average at start: ${formatLoad()}`);

  const temp = await mkdtemp(join(tmpdir(), 'bytebiota-bench-delta-'));
  const running = new Set<ManagedProcess>();
  let lab: UpdateLab | undefined;
  // A chunk index moved out of the store for a full run, to put back whatever happens.
  let movedIndex: { from: string; to: string } | undefined;
  try {
    // 1. Builds.
    const snapshot = join(temp, 'src-snapshot');
    await cp(join(repoRoot, 'src'), snapshot, { recursive: true });
    const trees = new Map<string, string>([['1.0.0', await sourceTree(join(temp, 'tree-1.0.0'), snapshot, [])]]);
    for (const step of steps) trees.set(step.version, await sourceTree(join(temp, `tree-${step.version}`), snapshot, step.edits));
    const executables = new Map<string, string>();
    for (const [version, tree] of trees) {
      const started = performance.now();
      const built = await cachedBuild(version, tree);
      executables.set(version, built.path);
      const size = (await stat(built.path)).size;
      console.log(
        `worker ${version}: ${mb(size)} MB, ${built.cached ? 'from the build cache' : `built in ${((performance.now() - started) / 1000).toFixed(1)} s`} (${built.path})`,
      );
    }
    // The dependency must really be in 1.1.0, or its step measures only a changed constant.
    if (!(await fileContains(executables.get('1.1.0')!, 'node_modules/ajv/'))) {
      throw new Error('worker 1.1.0 does not contain ajv: the edit did not add the dependency');
    }
    const v100 = executables.get('1.0.0')!;

    // Does the single executable run a NODE_OPTIONS preload? If not, poll /proc instead.
    const preloadPath = join(temp, 'usage-preload.cjs');
    await writeFile(preloadPath, USAGE_PRELOAD);
    const versionProbe = join(temp, 'usage-version');
    const versionRun = spawn(v100, ['--version'], { env: { ...process.env, ...usageEnv(preloadPath, versionProbe) }, stdio: 'ignore' });
    await once(versionRun, 'exit');
    const versionUsage = await readPreloadReport(versionProbe, versionRun.pid!);
    const method: UsageMethod = versionUsage ? 'preload' : 'poll';
    console.log(
      method === 'preload'
        ? 'CPU and peak RSS: exact, from the worker process itself (NODE_OPTIONS=--require preload: resourceUsage() and VmHWM at exit); the executable honours NODE_OPTIONS'
        : 'CPU and peak RSS: the executable ignored NODE_OPTIONS=--require; polling /proc/<pid>/stat and /proc/<pid>/status (VmHWM) every 10 ms instead',
    );

    // 2. Server, key, 1.0.0 published, the pool's token and policy.
    lab = await UpdateLab.create({ dir: join(temp, 'lab') });
    const activeLab = lab;
    await lab.startServer();
    await lab.publish('1.0.0', v100);
    const token = await lab.createToken('worker', POOL);
    await lab.setPoolPolicy(POOL, true);

    /** Until the server offers `version` (its manifest cache is short but not zero). */
    const waitForLatest = async (version: string): Promise<void> => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const { status, json } = await activeLab.api('GET', `/api/worker-updates/latest?channel=stable&platform=${platform}`, token);
        if (status === 200 && (json as { signed?: { version?: string } }).signed?.version === version) return;
        if (Date.now() > deadline) throw new Error(`the server still does not offer ${version} (last answer ${status})`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };

    /** A fresh 1.0.0 install root and its `run`, started from versions/1.0.0 with the preload. */
    let runNumber = 0;
    const startWorker = async (label: string): Promise<{ worker: ManagedProcess; installRoot: string; outPrefix: string; chunkCacheBefore: boolean }> => {
      runNumber += 1;
      const installRoot = join(temp, `worker-${runNumber}-${label}`);
      await activeLab.installWorker(v100, installRoot);
      const layout = installLayout(installRoot);
      const chunkCacheBefore = await access(join(layout.versionDir('1.0.0'), LOCAL_CHUNKS_FILE)).then(() => true, () => false);
      const outPrefix = join(temp, `usage-${runNumber}-${label}`);
      // A check interval far beyond a run: the one check after the first unit is the only one.
      const { args, env } = activeLab.workerInvocation({ installRoot, token, checkIntervalSeconds: 3600 });
      const worker = new ManagedProcess(label, layout.executablePath('1.0.0'), ['run', ...args], {
        env: { ...env, ...(method === 'preload' ? usageEnv(preloadPath, outPrefix) : {}) },
      });
      running.add(worker);
      return { worker, installRoot, outPrefix, chunkCacheBefore };
    };

    const usageOf = async (worker: ManagedProcess, outPrefix: string, polled: (() => ProcessUsage) | null): Promise<ProcessUsage> => {
      const fromPoll = polled?.();
      const usage = fromPoll ?? (await readPreloadReport(outPrefix, worker.child.pid!));
      if (!usage) throw new Error(`${worker.name} left no resource usage report (${outPrefix}.${worker.child.pid}.json)`);
      return usage;
    };

    // Reference: the same 1.0.0 worker with nothing to update to (start, register, units, one
    // check that finds nothing), stopped with SIGTERM once it has checked.
    const idle = await startWorker('idle');
    const idlePoll = method === 'poll' ? pollUsage(idle.worker.child.pid!) : null;
    await idle.worker.waitForEvent((line) => line.event === 'worker_update_check', RUN_TIMEOUT_MS);
    await idle.worker.stop(30_000);
    running.delete(idle.worker);
    const idleUsage = await usageOf(idle.worker, idle.outPrefix, idlePoll);
    await rm(idle.installRoot, { recursive: true, force: true });

    /** One update of a fresh 1.0.0 worker to `step.version`, until it exits 75. */
    const updateOnce = async (step: Step, mode: Mode): Promise<RunResult> => {
      const label = `${step.version}-${mode}`;
      const { worker, installRoot, outPrefix, chunkCacheBefore } = await startWorker(label);
      const polled = method === 'poll' ? pollUsage(worker.child.pid!) : null;
      const started = performance.now();
      const exit = await worker.waitForExit(RUN_TIMEOUT_MS);
      const processMs = performance.now() - started;
      running.delete(worker);
      const tail = (): string => worker.lines.slice(-30).join('\n');
      if (exit.code !== 75) throw new Error(`${label}: the worker exited with ${exit.code ?? exit.signal}, not 75; last output:\n${tail()}`);
      const usage = await usageOf(worker, outPrefix, polled);
      const find = (event: string): LogLine => {
        const found = worker.events.filter((line) => line.event === event);
        if (found.length !== 1) throw new Error(`${label}: expected one ${event} line, found ${found.length}; last output:\n${tail()}`);
        return found[0]!;
      };
      const available = find('worker_update_available');
      const downloaded = find('worker_update_downloaded');
      const staged = find('worker_update_staged');
      if (available['to_version'] !== step.version || downloaded['mode'] !== mode) {
        throw new Error(`${label}: the worker downloaded ${String(downloaded['to_version'])} in mode ${String(downloaded['mode'])}; last output:\n${tail()}`);
      }
      if (mode === 'full' && find('worker_delta_fallback')['reason'] !== 'index_missing') {
        throw new Error(`${label}: the full download was not the index_missing fallback; last output:\n${tail()}`);
      }
      // A check that found nothing before this one would mean more units of work in the CPU time.
      if (worker.events.some((line) => line.event === 'worker_update_check')) {
        throw new Error(`${label}: the worker checked and found no update first; last output:\n${tail()}`);
      }
      await rm(installRoot, { recursive: true, force: true });
      const numberOrNull = (value: unknown): number | null => (typeof value === 'number' ? value : null);
      return {
        step,
        mode,
        artifactBytes: Number(downloaded['bytes']),
        bytesFetched: Number(downloaded['bytes_fetched']),
        reusedBytes: numberOrNull(downloaded['reused_bytes']),
        ranges: numberOrNull(downloaded['ranges']),
        downloadMs: timeOf(downloaded) - timeOf(available),
        stageMs: timeOf(staged) - timeOf(downloaded),
        processMs,
        usage,
        chunkCacheBefore,
      };
    };

    /** A full run: the same release without its chunk index in the store, put back after. */
    const updateWithoutIndex = async (step: Step): Promise<RunResult> => {
      const artifactKey = storeKeys.artifact(step.version, artifactFileName(step.version, platform));
      movedIndex = { from: join(activeLab.storeDir, chunkIndexLocation(artifactKey)), to: join(temp, `aside-${step.version}.chunks.json`) };
      await rename(movedIndex.from, movedIndex.to);
      try {
        return await updateOnce(step, 'full');
      } finally {
        await rename(movedIndex.to, movedIndex.from);
        movedIndex = undefined;
      }
    };
    const runMode = (step: Step, mode: Mode): Promise<RunResult> => (mode === 'delta' ? updateOnce(step, mode) : updateWithoutIndex(step));

    // 3. The steps, each target published just before its runs (the latest release is the target).
    const results: RunResult[] = [];
    for (const [stepIndex, step] of steps.entries()) {
      await lab.publish(step.version, executables.get(step.version)!);
      await waitForLatest(step.version);
      await access(join(lab.storeDir, chunkIndexLocation(storeKeys.artifact(step.version, artifactFileName(step.version, platform)))));
      if (stepIndex === 0) {
        for (const mode of ['delta', 'full'] as const) await runMode(step, mode);
      }
      for (let run = 0; run < RUNS; run += 1) {
        // Alternate which mode goes first, so neither always follows the other.
        const order: Mode[] = run % 2 === 0 ? ['delta', 'full'] : ['full', 'delta'];
        for (const mode of order) results.push(await runMode(step, mode));
      }
    }

    // 4. The table and the goals.
    const rows = steps.flatMap((step) =>
      (['delta', 'full'] as const).map((mode) => ({ step, mode, runs: results.filter((r) => r.step === step && r.mode === mode) })),
    );
    type Row = (typeof rows)[number];
    const med = (row: Row, pick: (r: RunResult) => number): number => median(row.runs.map(pick));
    const rowFor = (step: Step, mode: Mode): Row => rows.find((row) => row.step === step && row.mode === mode)!;
    const share = (row: Row): number => med(row, (r) => r.bytesFetched / r.artifactBytes);

    console.log(`\none untimed warm-up run per mode first (1.0.0 -> ${steps[0]!.version}); ${RUNS === 1 ? 'then one measured run per step and mode' : `medians of ${RUNS} measured runs per step and mode`}; loopback`);
    const header = ['step', 'mode', 'bytes fetched', '% of artifact', 'download wall ms', 'worker CPU ms', 'peak RSS MB'];
    const widths = [16, 9, 13, 13, 16, 13, 11];
    const line = (cells: string[]): string => cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' | ');
    console.log(line(header));
    console.log(widths.map((width) => '-'.repeat(width)).join('-|-'));
    for (const row of rows) {
      console.log(
        line([
          `1.0.0 -> ${row.step.version}`,
          row.mode,
          med(row, (r) => r.bytesFetched).toFixed(0),
          (share(row) * 100).toFixed(2),
          med(row, (r) => r.downloadMs).toFixed(0),
          med(row, (r) => r.usage.cpuMs).toFixed(0),
          med(row, (r) => r.usage.peakRssMb).toFixed(1),
        ]),
      );
    }
    console.log(line(['reference 1.0.0', 'idle', '-', '-', '-', idleUsage.cpuMs.toFixed(0), idleUsage.peakRssMb.toFixed(1)]));
    if (versionUsage) console.log(line(['reference 1.0.0', '--version', '-', '-', '-', versionUsage.cpuMs.toFixed(0), versionUsage.peakRssMb.toFixed(1)]));

    console.log('\nevery run:');
    for (const r of results) {
      const detail = r.mode === 'delta' ? `, ${r.ranges ?? '?'} ranges, ${r.reusedBytes ?? '?'} bytes reused` : '';
      const beforeMain = r.usage.cpuBeforeMainMs === null ? '' : `, of which ${r.usage.cpuBeforeMainMs.toFixed(0)} before main`;
      console.log(
        `  1.0.0 -> ${r.step.version} ${r.mode.padEnd(5)}: ${r.bytesFetched} of ${r.artifactBytes} bytes${detail}; download ${r.downloadMs} ms, stage ${r.stageMs} ms, process ${r.processMs.toFixed(0)} ms; CPU ${r.usage.cpuMs.toFixed(0)} ms${beforeMain}; peak RSS ${r.usage.peakRssMb.toFixed(1)} MB (${r.usage.method}); 1.0.0 chunk cache before: ${r.chunkCacheBefore ? 'yes' : 'no'}`,
      );
    }
    console.log(
      `  reference idle run (start, register, units, one check that found nothing, SIGTERM): CPU ${idleUsage.cpuMs.toFixed(0)} ms, peak RSS ${idleUsage.peakRssMb.toFixed(1)} MB (${idleUsage.method})`,
    );

    console.log('\ngoals:');
    for (const step of steps) {
      const delta = rowFor(step, 'delta');
      console.log(
        `  1.0.0 -> ${step.version} (${step.what}): delta fetches ${(share(delta) * 100).toFixed(2)} % of the artifact (goal <= ${(step.goalShare * 100).toFixed(0)} %) ${verdict(share(delta) <= step.goalShare)}`,
      );
    }
    for (const step of steps) {
      const deltaMs = med(rowFor(step, 'delta'), (r) => r.downloadMs);
      const fullMs = med(rowFor(step, 'full'), (r) => r.downloadMs);
      console.log(
        `  1.0.0 -> ${step.version}: delta download wall ${deltaMs.toFixed(0)} ms <= full ${fullMs.toFixed(0)} ms on loopback: ratio delta/full ${(deltaMs / fullMs).toFixed(2)} ${verdict(deltaMs <= fullMs)}`,
      );
    }
    for (const mode of ['delta', 'full'] as const) {
      const peak = Math.max(...results.filter((r) => r.mode === mode).map((r) => r.usage.peakRssMb));
      console.log(
        `  peak RSS, ${mode} (highest of its runs): ${peak.toFixed(1)} MB (goal < ${RSS_GOAL_MB} MB) ${verdict(peak < RSS_GOAL_MB)}; ${(peak - idleUsage.peakRssMb).toFixed(1)} MB above the idle run`,
      );
    }
    // Which part of a peak is the update's: the executable alone and a worker with nothing to do.
    console.log(
      `  for scale: the same executable peaks at ${versionUsage ? `${versionUsage.peakRssMb.toFixed(1)} MB doing --version and ` : ''}${idleUsage.peakRssMb.toFixed(1)} MB in a run that finds no update`,
    );
    console.log(`load average at end: ${formatLoad()}`);
  } finally {
    await Promise.all([...running].map((worker) => worker.stop(5_000)));
    if (movedIndex) await rename(movedIndex.to, movedIndex.from).catch(() => undefined);
    await lab?.close();
    await rm(temp, { recursive: true, force: true });
  }
}

if (process.argv[2] === BUILD_CHILD_FLAG) await buildChild(process.argv.slice(3));
else await main();
