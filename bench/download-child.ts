/**
 * One download in its own process, for the memory measurement of `npm run bench:download`:
 * downloads, verifies and stages an artifact, then prints one JSON line with its peak RSS.
 * Usage: download-child <url> <size> <sha256> <version> <install-root>
 */
import { readFile } from 'node:fs/promises';
import { downloadArtifact } from '../src/worker/fetcher.js';
import { installLayout } from '../src/worker/install-layout.js';
import { stageVersion } from '../src/worker/installer.js';
import { partialDownloadPath } from '../src/worker/updater.js';

const [url, sizeText, sha256, version, root] = process.argv.slice(2);
if (!url || !sizeText || !sha256 || !version || !root) {
  console.error('usage: download-child <url> <size> <sha256> <version> <install-root>');
  process.exit(2);
}
const size = Number(sizeText);
const layout = installLayout(root, 'linux-x64');
const startedMs = performance.now();
const { path, verified } = await downloadArtifact({ url, partialPath: partialDownloadPath(layout, version, 'linux-x64'), sha256, size });
await stageVersion({ layout, sourcePath: path, version, sha256, size, moveSource: true, verified });
const elapsedMs = performance.now() - startedMs;

/** VmHWM is the kernel's record of the peak resident set; maxRSS is the same from getrusage. */
async function vmHwmKiB(): Promise<number | null> {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(await readFile('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
console.log(JSON.stringify({ elapsedMs, maxRssKiB: process.resourceUsage().maxRSS, vmHwmKiB: await vmHwmKiB() }));
