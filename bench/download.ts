/**
 * `npm run bench:download`: the worker's download path against `curl -o`, in the same run, from
 * the same range-capable server on 127.0.0.1.
 * 1. Throughput: download + SHA-256 verify + stage (self-test, fsync, rename) of a 512 MiB
 *    artifact, against curl fetching the same file to disk; prints the ratio (goal ≤ 1.2).
 * 2. Memory: the peak RSS of a child process downloading and staging 256 MiB and 1 GiB
 *    artifacts (goal under 150 MB, and not growing with the size).
 * Each timing is the best of a few alternating runs, so that one scheduling hiccup does not decide it.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { installLayout } from '../src/worker/install-layout.js';
import { downloadArtifact } from '../src/worker/fetcher.js';
import { stageVersion } from '../src/worker/installer.js';
import { partialDownloadPath } from '../src/worker/updater.js';
import { fakeWorkerExecutable, makeTempDir } from '../test/helpers/engine-fixtures.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const RUNS = 5;
const THROUGHPUT_GOAL_RATIO = 1.2;
const PEAK_RSS_GOAL_MB = 150;

/** Write an artifact of `bytes` bytes: a working fake worker script, then random padding. */
async function writeArtifact(path: string, version: string, bytes: number): Promise<{ sha256: string; size: number }> {
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

/** Start the file server in its own process; it stops when its stdin closes. */
async function startServer(files: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/download-server.ts', ...Object.entries(files).map(([p, f]) => `${p}=${f}`)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [first] = (await once(child.stdout, 'data')) as [Buffer];
  return {
    url: first.toString().trim(),
    stop: async () => {
      const exited = once(child, 'exit');
      child.stdin.end();
      await exited;
    },
  };
}

const temp = await makeTempDir('bench-download');
const version = '9.0.0';
const artifactPath = join(temp.dir, 'artifact-512');
const artifact = await writeArtifact(artifactPath, version, 512 * MiB);
const sizesMiB = [256, 1024] as const;
const childArtifacts = new Map<number, { path: string; version: string; sha256: string; size: number }>();
for (const sizeMiB of sizesMiB) {
  const path = join(temp.dir, `artifact-${sizeMiB}`);
  const childVersion = `9.1.${sizeMiB}`;
  childArtifacts.set(sizeMiB, { path, version: childVersion, ...(await writeArtifact(path, childVersion, sizeMiB * MiB)) });
}
const server = await startServer({
  '/a/512': artifactPath,
  ...Object.fromEntries(sizesMiB.map((sizeMiB) => [`/a/${sizeMiB}`, childArtifacts.get(sizeMiB)!.path])),
});
try {
  // 1. Throughput, 512 MiB.
  const url = `${server.url}/a/512`;

  // Runs alternate curl and engine, each after `sync`, so that neither inherits the other's
  // dirty pages (writeback throttling would otherwise decide the comparison).
  const curlTimes: number[] = [];
  const engineTimes: Array<{ totalMs: number; downloadMs: number; stageMs: number }> = [];
  for (let run = 1; run <= RUNS; run += 1) {
    const out = join(temp.dir, 'curl.out');
    await execFileAsync('sync');
    let started = performance.now();
    await execFileAsync('curl', ['-s', '-f', '-o', out, url]);
    curlTimes.push(performance.now() - started);
    await rm(out, { force: true });

    const layout = installLayout(join(temp.dir, `root-${run}`), 'linux-x64');
    await execFileAsync('sync');
    started = performance.now();
    const { path, verified } = await downloadArtifact({ url, partialPath: partialDownloadPath(layout, version, 'linux-x64'), ...artifact });
    const downloadedAt = performance.now();
    await stageVersion({ layout, sourcePath: path, version, ...artifact, moveSource: true, verified });
    const stagedAt = performance.now();
    engineTimes.push({ totalMs: stagedAt - started, downloadMs: downloadedAt - started, stageMs: stagedAt - downloadedAt });
    await rm(layout.root, { recursive: true, force: true });
  }
  const curlMs = Math.min(...curlTimes);
  const bestEngine = engineTimes.reduce((a, b) => (b.totalMs < a.totalMs ? b : a));
  const engineMs = bestEngine.totalMs;
  console.log(`512 MiB: download + SHA-256 ${bestEngine.downloadMs.toFixed(0)} ms, stage (self-test, fsync, rename) ${bestEngine.stageMs.toFixed(0)} ms`);
  const ratio = engineMs / curlMs;
  console.log(`512 MiB: curl -o ${curlMs.toFixed(0)} ms (${((512 / curlMs) * 1000).toFixed(0)} MiB/s)`);
  console.log(`512 MiB: download + verify + stage ${engineMs.toFixed(0)} ms (${((512 / engineMs) * 1000).toFixed(0)} MiB/s)`);
  console.log(`ratio engine / curl: ${ratio.toFixed(2)} (goal <= ${THROUGHPUT_GOAL_RATIO}) ${ratio <= THROUGHPUT_GOAL_RATIO ? 'ok' : 'OVER'}`);

  // 2. Peak RSS of a child, bundled as the worker is, for 256 MiB and 1 GiB.
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
  const peaks: number[] = [];
  for (const sizeMiB of sizesMiB) {
    const info = childArtifacts.get(sizeMiB)!;
    const childVersion = info.version;
    const child = spawn(
      process.execPath,
      [childScript, `${server.url}/a/${sizeMiB}`, String(info.size), info.sha256, childVersion, join(temp.dir, `child-root-${sizeMiB}`)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`download child for ${sizeMiB} MiB exited with ${code}`);
    const result = JSON.parse(stdout) as { elapsedMs: number; maxRssKiB: number; vmHwmKiB: number | null };
    const peakMb = ((result.vmHwmKiB ?? result.maxRssKiB) * 1024) / 1e6;
    peaks.push(peakMb);
    console.log(
      `${sizeMiB} MiB in a child: ${result.elapsedMs.toFixed(0)} ms, peak RSS ${peakMb.toFixed(1)} MB (goal < ${PEAK_RSS_GOAL_MB}) ${peakMb < PEAK_RSS_GOAL_MB ? 'ok' : 'OVER'}`,
    );
    await rm(join(temp.dir, `child-root-${sizeMiB}`), { recursive: true, force: true });
  }
  const [small, large] = peaks as [number, number];
  console.log(`peak RSS 1 GiB / 256 MiB: ${(large / small).toFixed(2)} (flat means ~1.0)`);
} finally {
  await server.stop();
  await temp.remove();
}
