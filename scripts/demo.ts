/**
 * `npm run demo`: the whole update story on this machine, through the real programs only.
 * A server on the embedded defaults with a staged rollout plan (canary first), a signing key,
 * worker 1.0.0 built, published, installed and supervised in three workers; 1.1.0 published and
 * walked through the canary wave to the stable pool; a 1.2.0 that crashes at start, rolled back
 * on the canary on its own, and its rollout halted by the server before stable ever sees it.
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
    defaultRolloutPlan: 'staged',
    onLine: verbose ? (source, line) => console.log(`    ${source}: ${line}`) : undefined,
  });
  try {
    record(`release key made in ${lab.keyDir} (public key ${lab.releasePublicKey.slice(0, 12)}...)`);
    const url = await lab.startServer(['--rollout-eval-interval', '1', '--heartbeat-interval', '2']);
    record(`server listening at ${url} (SQLite ${lab.dbPath}, folder store ${lab.storeDir})`);
    const server = lab.server!;

    const v100 = await lab.buildWorker('1.0.0');
    record('built worker 1.0.0: one executable with its version embedded');
    await lab.publish('1.0.0', v100);
    record('published 1.0.0 to channel stable');

    const tokens: Record<string, string> = {};
    for (const pool of ['canary', 'stable']) {
      // Each worker spends its pool's enrollment token once, at start, for its own credential.
      tokens[pool] = await lab.createToken('enroll', pool);
      await lab.setPoolPolicy(pool, true);
    }
    record('enrollment tokens made for pools canary and stable (each worker enrolls for its own credential); both pools auto_update=on');
    const plan = {
      immediate: false,
      waves: [
        { pools: ['canary'], percent: 100, soak_s: 5, min_healthy: 1 },
        { pools: ['stable'], percent: 100, soak_s: 5, min_healthy: 1 },
      ],
    };
    const planSet = await lab.api('PUT', '/api/admin/channels/stable/plan', await lab.admin(), plan);
    if (planSet.status !== 200) throw new Error(`plan refused: ${JSON.stringify(planSet.json)}`);
    record('rollout plan for channel stable: canary 100 % (soak 5 s, 1 healthy), then stable 100 %');

    const layout: Array<[string, string]> = [
      ['canary-1', 'canary'],
      ['stable-1', 'stable'],
      ['stable-2', 'stable'],
    ];
    const workers = await Promise.all(
      layout.map(async ([name, pool]) => {
        const installRoot = join(dir, name);
        await lab.installWorker(v100, installRoot);
        const process = lab.startSupervisor(name, { installRoot, enrollmentToken: tokens[pool]!, checkIntervalSeconds: 2, healthWindowSeconds: 15 });
        return { name, pool, process };
      }),
    );
    await Promise.all(workers.map((w) => waitFor(w.process, 0, 'worker_ready')));
    record('3 workers installed and started under their supervisors: canary-1, stable-1, stable-2', '1.0.0');
    const canary = workers[0]!.process;

    const v110 = await lab.buildWorker('1.1.0');
    record('built worker 1.1.0');
    let mark = canary.events.length;
    let serverMark = server.events.length;
    await lab.publish('1.1.0', v110);
    record('published 1.1.0: its rollout starts with the canary wave');
    const attempt = await waitFor(canary, mark, 'worker_update_attempt', (line) => line['to_version'] === '1.1.0');
    record(`canary-1 found 1.1.0 (correlation id ${String(attempt['correlation_id'])}); downloading and verifying`);
    await waitFor(canary, mark, 'worker_update_success', (line) => line['to_version'] === '1.1.0');
    record('canary-1 switched; 1.1.0 became ready within the health window; success reported', '1.1.0');
    await waitFor(server, serverMark, 'rollout_wave_started', (line) => line['version'] === '1.1.0' && line['wave'] === 2);
    record('canary wave soaked with 1 healthy update: wave 2 (stable 100 %) started');
    await Promise.all(workers.slice(1).map((w) => waitFor(w.process, 0, 'worker_update_success', (line) => line['to_version'] === '1.1.0')));
    record('stable-1 and stable-2 updated to 1.1.0', '1.1.0');

    const v120 = await lab.brokenWorker('1.2.0');
    mark = canary.events.length;
    serverMark = server.events.length;
    await lab.publish('1.2.0', v120);
    record('published 1.2.0, a build that crashes at start');
    await waitFor(canary, mark, 'worker_update_switched', (line) => line['to_version'] === '1.2.0');
    record('canary-1 verified 1.2.0 and switched to it; the supervisor watches it', '1.2.0');
    const rollback = await waitFor(canary, mark, 'worker_update_rollback', (line) => line['to_version'] === '1.2.0' || line['from_version'] === '1.2.0');
    record(`1.2.0 crashed at start on canary-1: rolled back automatically (reason ${String(rollback['reason'])})`, '1.1.0');
    const halt = await waitFor(server, serverMark, 'rollout_halted', (line) => line['version'] === '1.2.0');
    const rate = (Number(halt['failure_rate']) * 100).toFixed(0);
    const threshold = (Number(halt['threshold']) * 100).toFixed(0);
    record(
      `server halted the 1.2.0 rollout on its own: ${String(halt['failed_workers'])} of ${String(halt['sample_workers'])} workers failed (${rate} % > ${threshold} %, minimum sample ${String(halt['min_sample'])}); stable never offered it`,
    );
    await waitFor(canary, mark, 'worker_ready');
    const stableTried = workers.slice(1).some((w) => w.process.events.some((line) => line['to_version'] === '1.2.0'));
    if (stableTried) throw new Error('a stable worker attempted 1.2.0 after the halt');
    record('canary-1 running again on 1.1.0; stable-1 and stable-2 never attempted 1.2.0', '1.1.0');

    const fleet = await waitForFleet(lab);
    record(`fleet view: ${fleet}`);

    console.log('\nTimeline (seconds, version running on canary-1, step)');
    for (const entry of timeline) {
      const step = entry.step.length > 140 ? `${entry.step.slice(0, 137)}...` : entry.step;
      console.log(`  ${entry.seconds}  ${entry.running.padEnd(6)}  ${step}`);
    }

    if (keep) {
      await Promise.all(workers.map((w) => w.process.stop()));
      console.log(`\nThe server keeps running (pid ${lab.server?.child.pid}); stop it with Ctrl-C.`);
      console.log(`  URL:         ${lab.serverUrl}`);
      console.log(`  admin token: ${await lab.admin()}`);
      console.log(`  console:     ${lab.serverUrl.replace(/\/$/, '')}/console/ (sign in with the admin token)`);
      console.log(`  try:         BYTEBIOTA_SERVER_URL=${lab.serverUrl} BYTEBIOTA_ADMIN_TOKEN=<admin token> npx bytebiota-admin rollout status`);
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
