// Measures the SEA build of the test fixture: build time, size, peak memory, --version start-up
// time against a bare `node -e ""`, and whether two builds from the same inputs are identical.
// Usage: node --import tsx scripts/sea-measure.ts
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildWorker } from '../src/release/build/index.js';

const STARTUP_RUNS = 21;
const entry = fileURLToPath(new URL('../test/release/fixtures/tiny-entry.ts', import.meta.url));
const sameInputs = { version: '9.9.9', entry, commit: 'unknown', now: new Date('2025-01-01T00:00:00Z') };

function medianStartupMs(command: string, args: string[]): number {
  const samplesMs: number[] = [];
  for (let i = 0; i < STARTUP_RUNS; i += 1) {
    const startedMs = performance.now();
    execFileSync(command, args, { stdio: 'ignore' });
    samplesMs.push(performance.now() - startedMs);
  }
  samplesMs.sort((a, b) => a - b);
  return samplesMs[Math.floor(samplesMs.length / 2)] ?? Number.NaN;
}

const dir = await mkdtemp(join(tmpdir(), 'bytebiota-sea-measure-'));
try {
  const startedMs = performance.now();
  const first = await buildWorker({ ...sameInputs, outDir: join(dir, 'a') });
  const buildMs = performance.now() - startedMs;
  const second = await buildWorker({ ...sameInputs, outDir: join(dir, 'b') });

  console.log(`build:            ${Math.round(buildMs)} ms`);
  console.log(`size:             ${first.size} bytes (${(first.size / 1024 ** 2).toFixed(1)} MiB)`);
  // maxRSS covers the postject worker thread too: it shares this process.
  console.log(`peak RSS:         ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`);
  console.log(`reproducible:     ${first.sha256 === second.sha256} (${first.sha256})`);
  const seaStartupMs = medianStartupMs(first.path, ['--version']);
  const nodeStartupMs = medianStartupMs(process.execPath, ['-e', '']);
  console.log(`SEA --version:    ${seaStartupMs.toFixed(1)} ms median of ${STARTUP_RUNS}`);
  console.log(`node -e "":       ${nodeStartupMs.toFixed(1)} ms median of ${STARTUP_RUNS}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
