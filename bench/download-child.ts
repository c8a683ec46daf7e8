/**
 * One download in its own process, as a worker does it, for `npm run bench:download`: downloads,
 * verifies and stages an artifact, then prints one JSON line with the time of each step, the CPU
 * time the process spent on them and its peak RSS.
 * Usage: download-child <url> <size> <sha256> <version> <install-root>, with the worker token
 * in BYTEBIOTA_WORKER_TOKEN (sent as the bearer token, as the worker does).
 */
import { readFile } from 'node:fs/promises';
import { currentPlatform } from '../src/protocol/platform.js';
import { downloadArtifact } from '../src/worker/engine/download.js';
import { installLayout } from '../src/worker/install/install-layout.js';
import { stageVersion } from '../src/worker/install/installer.js';
import { partialDownloadPath } from '../src/worker/engine/updater.js';

const [url, sizeText, sha256, version, root] = process.argv.slice(2);
const token = process.env['BYTEBIOTA_WORKER_TOKEN'];
if (!url || !sizeText || !sha256 || !version || !root || !token) {
  console.error('usage: BYTEBIOTA_WORKER_TOKEN=<token> download-child <url> <size> <sha256> <version> <install-root>');
  process.exit(2);
}
const size = Number(sizeText);
const platform = currentPlatform();
const layout = installLayout(root, platform);
const startedMs = performance.now();
const cpuBefore = process.cpuUsage();
const { path, verified } = await downloadArtifact({
  url,
  partialPath: partialDownloadPath(layout, version, platform),
  sha256,
  size,
  headers: { authorization: `Bearer ${token}` },
});
const downloadedMs = performance.now();
await stageVersion({ layout, sourcePath: path, version, sha256, size, moveSource: true, verified });
const elapsedMs = performance.now() - startedMs;
const cpu = process.cpuUsage(cpuBefore);

/** VmHWM is the kernel's record of the peak resident set; maxRSS is the same from getrusage. */
async function vmHwmKiB(): Promise<number | null> {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(await readFile('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
console.log(
  JSON.stringify({
    elapsedMs,
    downloadMs: downloadedMs - startedMs,
    stageMs: elapsedMs - (downloadedMs - startedMs),
    userCpuMs: cpu.user / 1000,
    systemCpuMs: cpu.system / 1000,
    maxRssKiB: process.resourceUsage().maxRSS,
    vmHwmKiB: await vmHwmKiB(),
  }),
);
