/**
 * `npm run demo`: the whole update story on this machine, through the real programs only.
 * A server on the embedded defaults, a signing key, worker 1.0.0 built, published, installed and
 * supervised; 1.1.0 published and adopted; a 1.2.0 that crashes at start, rolled back on its own.
 * Prints a timeline, stops everything it started, and exits 0 (non-zero when a step failed).
 *
 *   npm run demo                 the story, then clean up
 *   npm run demo -- --keep       leave the server running; print its URL and an admin token
 *   npm run demo -- --verbose    also print every log line of the server and the worker
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UpdateLab } from './lib/update-lab.js';
import type { LogLine, ManagedProcess } from './lib/processes.js';

const keep = process.argv.includes('--keep');
const verbose = process.argv.includes('--verbose');
const startedAt = Date.now();
const STEP_TIMEOUT_MS = 60_000;

interface TimelineEntry {
  seconds: string;
  step: string;
  running: string;
}
const timeline: TimelineEntry[] = [];
let runningVersion = '-';

function elapsed(): string {
  return ((Date.now() - startedAt) / 1000).toFixed(1).padStart(5);
}

function record(step: string, running = runningVersion): void {
  runningVersion = running;
  const entry = { seconds: elapsed(), step, running };
  timeline.push(entry);
  console.log(`[${entry.seconds}s] ${step}${running === '-' ? '' : `  (running ${running})`}`);
}

function waitFor(worker: ManagedProcess, from: number, event: string, match: (line: LogLine) => boolean = () => true) {
  return worker.waitForEvent((line) => line.event === event && match(line), STEP_TIMEOUT_MS, from);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-demo-'));
  const lab = await UpdateLab.create({
    dir,
    onLine: verbose ? (source, line) => console.log(`    ${source}: ${line}`) : undefined,
  });
  try {
    record(`release key made in ${lab.keyDir} (public key ${lab.releasePublicKey.slice(0, 12)}...)`);
    const url = await lab.startServer();
    record(`server listening at ${url} (SQLite ${lab.dbPath}, folder store ${lab.storeDir})`);

    const v100 = await lab.buildWorker('1.0.0');
    record('built worker 1.0.0: one executable with its version embedded');
    await lab.publish('1.0.0', v100);
    record('published 1.0.0 to channel stable');

    const pool = 'canary';
    const token = await lab.createToken('worker', pool);
    await lab.setPoolPolicy(pool, true);
    record(`worker token made for pool ${pool}; pool policy auto_update=on`);

    const installRoot = join(dir, 'worker');
    await lab.installWorker(v100, installRoot);
    const worker = lab.startSupervisor('worker', { installRoot, token, checkIntervalSeconds: 2, healthWindowSeconds: 15 });
    await waitFor(worker, 0, 'worker_ready');
    record('worker installed and started under the supervisor', '1.0.0');

    const v110 = await lab.buildWorker('1.1.0');
    record('built worker 1.1.0');
    let mark = worker.events.length;
    await lab.publish('1.1.0', v110);
    record('published 1.1.0');
    const attempt = await waitFor(worker, mark, 'worker_update_attempt', (line) => line['to_version'] === '1.1.0');
    record(`worker found 1.1.0 (correlation id ${String(attempt['correlation_id'])}); downloading and verifying`);
    await waitFor(worker, mark, 'worker_update_staged', (line) => line['version'] === '1.1.0' || line['to_version'] === '1.1.0');
    record('1.1.0 verified (signature, size, SHA-256) and staged; switching');
    await waitFor(worker, mark, 'worker_update_success', (line) => line['to_version'] === '1.1.0');
    record('1.1.0 became ready within the health window; success reported', '1.1.0');

    const v120 = await lab.brokenWorker('1.2.0');
    mark = worker.events.length;
    await lab.publish('1.2.0', v120);
    record('published 1.2.0, a build that crashes at start');
    await waitFor(worker, mark, 'worker_update_attempt', (line) => line['to_version'] === '1.2.0');
    record('worker found 1.2.0; downloading and verifying');
    await waitFor(worker, mark, 'worker_update_switched', (line) => line['to_version'] === '1.2.0');
    record('1.2.0 verified and switched to; the supervisor watches it', '1.2.0');
    const rollback = await waitFor(worker, mark, 'worker_update_rollback', (line) => line['to_version'] === '1.2.0' || line['from_version'] === '1.2.0');
    record(`1.2.0 crashed at start: rolled back automatically (reason ${String(rollback['reason'])})`, '1.1.0');
    await waitFor(worker, mark, 'worker_ready');
    record('worker running again on the previous version', '1.1.0');

    const fleet = await waitForFleet(lab);
    record(`fleet view: ${fleet}`);

    console.log('\nTimeline (seconds, version running, step)');
    for (const entry of timeline) {
      const step = entry.step.length > 100 ? `${entry.step.slice(0, 97)}...` : entry.step;
      console.log(`  ${entry.seconds}  ${entry.running.padEnd(6)}  ${step}`);
    }

    if (keep) {
      await worker.stop();
      console.log(`\nThe server keeps running (pid ${lab.server?.child.pid}); stop it with Ctrl-C.`);
      console.log(`  URL:         ${lab.serverUrl}`);
      console.log(`  admin token: ${await lab.admin()}`);
      console.log(`  try:         curl -H "Authorization: Bearer <admin token>" ${lab.serverUrl}/api/admin/fleet`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
  } finally {
    await lab.close({ keepFiles: false });
    if (!keep) console.log(`\nStopped everything the demo started. ${elapsed()}s in all.`);
  }
}

/** Poll the fleet view until the rollback shows in it (reports are sent asynchronously). */
async function waitForFleet(lab: UpdateLab): Promise<string> {
  // Reports travel through the worker's on-disk queue, so the fleet view may lag a moment.
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const fleet = (await lab.fleet()) as FleetSummary;
    const text = JSON.stringify(fleet);
    if (text.includes('crashed_on_start') || Date.now() > deadline) return summarizeFleet(fleet);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

interface FleetSummary {
  workers?: Array<{ worker_id: string; pool: string; version: string; state: string }>;
  recent_failures?: Array<{ event: string; from_version: string; to_version: string; reason?: string }>;
}

function summarizeFleet(fleet: FleetSummary): string {
  const workers = (fleet.workers ?? []).map((w) => `${w.pool}/${w.worker_id.slice(0, 8)} on ${w.version} (${w.state})`);
  const failures = (fleet.recent_failures ?? []).map((f) => `${f.event} ${f.from_version} -> ${f.to_version} (${f.reason ?? 'no reason'})`);
  return `workers: ${workers.join(', ') || 'none'}; recent failures: ${failures.join(', ') || 'none'}`;
}

main().catch((err: unknown) => {
  console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
