/**
 * `npm run bench:download`: the worker's download path against curl, in the same run, from the
 * real update server (`bytebiota-server serve` with a folder store, in its own process) on
 * 127.0.0.1, over the authenticated artifact route.
 * 1. Throughput, 512 MiB: the engine's download + SHA-256 verify + stage (self-test, fsync,
 *    rename) against two baselines: `curl -o` (the goal: ratio <= 1.2), and `curl -o` followed by
 *    a SHA-256 of the file and `sync FILE`, which is what the engine must do at least for safety
 *    (hash every byte, make the file durable). The hash is `openssl dgst -sha256` when openssl is
 *    installed, as it uses the same SHA-256 code (with the CPU's SHA instructions) as Node; GNU
 *    sha256sum has no such code path and is several times slower, which would flatter the engine.
 *    The engine runs in its own process, as in a worker (the bundled download-child.ts), and its
 *    time is what that process measured from the request to the staged version. Each side runs
 *    once unmeasured (warm-up: on a virtual machine the first write of fresh page-cache memory
 *    can cost several times the next ones), then RUNS times, each run after `sync`, in a rotated
 *    order so that no side always goes first; medians are reported, with every run and the
 *    engine's CPU time (user + system), which other load disturbs less than wall time.
 * 2. Memory: the peak RSS of a child process downloading and staging 256 MiB and 1 GiB
 *    artifacts (goal under 150 MB, and not growing with the size).
 * The load average is printed at the start and the end: on a shared machine it explains spread.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { storeKeys } from '../src/protocol/manifest.js';
import { artifactFileName, currentPlatform } from '../src/protocol/platform.js';
import { generateSigningKeyPair } from '../src/trust/keys.js';
import { fakeWorkerExecutable, makeTempDir } from '../test/helpers/engine-fixtures.js';
import { createTokenWithCli, startServerProcess } from '../test/helpers/server-process.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const THROUGHPUT_GOAL_RATIO = 1.2;
const PEAK_RSS_GOAL_MB = 150;
const platform = currentPlatform();

/** Write an artifact of `bytes` bytes: a working fake worker script, then random padding. */
async function writeArtifact(path: string, version: string, bytes: number): Promise<{ sha256: string; size: number }> {
  await mkdir(dirname(path), { recursive: true });
  const head = fakeWorkerExecutable(version);
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  const write = async (chunk: Buffer): Promise<void> => {
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  };
  await write(head);
  const block = randomBytes(4 * MiB);
  for (let left = bytes - head.length; left > 0; left -= block.length) await write(left >= block.length ? block : block.subarray(0, left));
  out.end();
  await once(out, 'finish');
  return { sha256: hash.digest('hex'), size: bytes };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const formatLoad = (): string => `${loadavg().map((value) => value.toFixed(2)).join(' ')} (${cpus().length} cores)`;
const mibPerSecond = (mib: number, ms: number): string => `${((mib / ms) * 1000).toFixed(0)} MiB/s`;
const runsText = (values: readonly number[]): string => values.map((value) => value.toFixed(0)).join(', ');

console.log(`load average at start: ${formatLoad()}`);
const temp = await makeTempDir('bench-download');
const storeDir = join(temp.dir, 'store');
const artifactPathOf = (version: string): string => join(storeDir, storeKeys.artifact(version, artifactFileName(version, platform)));

const version = '9.0.0';
const artifact = await writeArtifact(artifactPathOf(version), version, 512 * MiB);
const sizesMiB = [256, 1024] as const;
const childArtifacts = new Map<number, { version: string; sha256: string; size: number }>();
for (const sizeMiB of sizesMiB) {
  const childVersion = `9.1.${sizeMiB}`;
  childArtifacts.set(sizeMiB, { version: childVersion, ...(await writeArtifact(artifactPathOf(childVersion), childVersion, sizeMiB * MiB)) });
}

// The real server: a folder store, a SQLite fleet database and a worker token from the CLI.
const db = join(temp.dir, 'fleet.sqlite');
const token = await createTokenWithCli(db, 'worker', 'bench');
const server = await startServerProcess(['--store', storeDir, '--db', db, '--release-key', generateSigningKeyPair().publicKeyBase64, '--default-rollout-plan', 'immediate']);
const artifactUrl = (forVersion: string): string =>
  `${server.url}/api/worker-updates/artifacts/${forVersion}/${artifactFileName(forVersion, platform)}`;
/** The baseline's SHA-256 command: prints the hex digest first, like the engine's check needs. */
const hasher = await execFileAsync('openssl', ['version']).then(
  () => ({ label: 'openssl dgst -sha256', command: 'openssl', args: ['dgst', '-sha256', '-r'] }),
  () => ({ label: 'sha256sum', command: 'sha256sum', args: [] as string[] }),
);
// curl reads the header from a file, so the token is not on a command line.
const curlHeaderFile = join(temp.dir, 'curl-headers');
await writeFile(curlHeaderFile, `Authorization: Bearer ${token}\n`, { mode: 0o600 });

/** What download-child.ts prints. */
interface ChildResult {
  elapsedMs: number;
  downloadMs: number;
  stageMs: number;
  userCpuMs: number;
  systemCpuMs: number;
  maxRssKiB: number;
  vmHwmKiB: number | null;
}

// The engine as a worker runs it: bundled, in a process of its own.
const childScript = join(temp.dir, 'download-child.mjs');
await build({
  entryPoints: ['bench/download-child.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  outfile: childScript,
  logLevel: 'error',
  banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
});

async function runEngineChild(forVersion: string, size: number, sha256: string, root: string): Promise<ChildResult> {
  const child = spawn(process.execPath, [childScript, artifactUrl(forVersion), String(size), sha256, forVersion, root], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BYTEBIOTA_WORKER_TOKEN: token },
  });
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  await rm(root, { recursive: true, force: true });
  if (code !== 0) throw new Error(`download child for ${forVersion} exited with ${code}`);
  return JSON.parse(stdout) as ChildResult;
}

try {
  // 1. Throughput, 512 MiB.
  const url = artifactUrl(version);
  const curlOut = join(temp.dir, 'curl.out');
  const curlMs: number[] = [];
  const curlVerifiedMs: number[] = [];
  const engine: ChildResult[] = [];
  let measuring = false;

  const sides: Array<() => Promise<void>> = [
    async () => {
      const started = performance.now();
      await execFileAsync('curl', ['-s', '-f', '-H', `@${curlHeaderFile}`, '-o', curlOut, url]);
      if (measuring) curlMs.push(performance.now() - started);
      await rm(curlOut, { force: true });
    },
    async () => {
      const started = performance.now();
      await execFileAsync('curl', ['-s', '-f', '-H', `@${curlHeaderFile}`, '-o', curlOut, url]);
      const { stdout } = await execFileAsync(hasher.command, [...hasher.args, curlOut]);
      await execFileAsync('sync', [curlOut]);
      if (measuring) curlVerifiedMs.push(performance.now() - started);
      if (!stdout.startsWith(artifact.sha256)) throw new Error(`curl fetched other bytes: ${stdout}`);
      await rm(curlOut, { force: true });
    },
    async () => {
      const result = await runEngineChild(version, artifact.size, artifact.sha256, join(temp.dir, 'root'));
      if (measuring) engine.push(result);
    },
  ];
  for (let run = -1; run < RUNS; run += 1) {
    measuring = run >= 0;
    for (let turn = 0; turn < sides.length; turn += 1) {
      // Each side starts with no dirty pages of another's pending (writeback would decide the race).
      await execFileAsync('sync');
      await (sides[(Math.max(run, 0) + turn) % sides.length] as () => Promise<void>)();
    }
  }

  const engineTotals = engine.map((each) => each.elapsedMs);
  const engineMs = median(engineTotals);
  const curlMedianMs = median(curlMs);
  const curlVerifiedMedianMs = median(curlVerifiedMs);
  const row = (label: string, values: readonly number[]): void => {
    const ms = median(values);
    console.log(`  ${label.padEnd(48)} ${ms.toFixed(0).padStart(6)} ms  ${mibPerSecond(512, ms).padStart(10)}  [${runsText(values)}]`);
  };
  console.log(`512 MiB, after one warm-up run per side, median of ${RUNS} runs each (every run in ms in brackets):`);
  row('curl -o', curlMs);
  row(`curl -o + ${hasher.label} + sync FILE`, curlVerifiedMs);
  row('engine: download + SHA-256', engine.map((each) => each.downloadMs));
  row('engine: stage (self-test, fsync, rename)', engine.map((each) => each.stageMs));
  row('engine: download + verify + stage', engineTotals);
  const cpuMs = engine.map((each) => each.userCpuMs + each.systemCpuMs);
  console.log(
    `  engine CPU time: median ${median(cpuMs).toFixed(0)} ms (user ${median(engine.map((each) => each.userCpuMs)).toFixed(0)}, system ${median(engine.map((each) => each.systemCpuMs)).toFixed(0)})  [${runsText(cpuMs)}]`,
  );
  const ratio = engineMs / curlMedianMs;
  console.log(`ratio engine / curl -o: ${ratio.toFixed(2)} (goal <= ${THROUGHPUT_GOAL_RATIO}) ${ratio <= THROUGHPUT_GOAL_RATIO ? 'ok' : 'OVER'}`);
  console.log(`ratio engine / (curl -o + ${hasher.label} + sync FILE): ${(engineMs / curlVerifiedMedianMs).toFixed(2)}`);

  // 2. Peak RSS of the same child for 256 MiB and 1 GiB.
  const peaks: number[] = [];
  for (const sizeMiB of sizesMiB) {
    const info = childArtifacts.get(sizeMiB)!;
    await execFileAsync('sync');
    const result = await runEngineChild(info.version, info.size, info.sha256, join(temp.dir, `child-root-${sizeMiB}`));
    const peakMb = ((result.vmHwmKiB ?? result.maxRssKiB) * 1024) / 1e6;
    peaks.push(peakMb);
    console.log(
      `${sizeMiB} MiB in a child: ${result.elapsedMs.toFixed(0)} ms, peak RSS ${peakMb.toFixed(1)} MB (goal < ${PEAK_RSS_GOAL_MB}) ${peakMb < PEAK_RSS_GOAL_MB ? 'ok' : 'OVER'}`,
    );
  }
  const [small, large] = peaks as [number, number];
  console.log(`peak RSS 1 GiB / 256 MiB: ${(large / small).toFixed(2)} (flat means ~1.0)`);
  console.log(`load average at end: ${formatLoad()}`);
} finally {
  server.child.kill('SIGTERM');
  await server.exited;
  await temp.remove();
}
