import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { processCpuSeconds } from './procs.js';
import { prepareServerBenchFixture, startBenchServer, startPlainBaseline, stopChild } from './server-fixture.js';

/**
 * `npm run bench:server`: requests/s of GET /api/worker-updates/latest (200 and 304) on the real
 * server process (auth, rate limiting, pino JSON logs to a file, metrics all on), beside a plain
 * node:http server serving the same bytes with the same headers in the same run, and the ratio;
 * and beside the same plain server writing the real server's per-request JSON log line with the
 * real logger, which shows how much of the gap the one log line per request alone costs;
 * then reports/s ingested with p50 and p99 latency, with `--db-sync full` (the default: a 202
 * only after the WAL flush that covers the report) and `--db-sync normal`. Each connection is a
 * worker that sends its next report once the last one was answered, so N connections can never
 * exceed N / latency: 32 connections behind a 6 ms disk flush could not show 5,000/s whatever the
 * server did, hence 64 by default.
 *
 * Rounds alternate the three sides so that load from elsewhere on the machine hits all alike; the
 * figure per side is the median of its rounds. Each line also gives the CPU time each server
 * process spent per request (Linux /proc), which other load on the machine disturbs far less
 * than requests/s. BENCH_DURATION_S: seconds per measurement (default 5); BENCH_ROUNDS: rounds
 * per side (default 3); BENCH_CONNECTIONS: connections (default 32); BENCH_REPORT_CONNECTIONS:
 * connections for the reports (default 64: workers reporting at once, each waiting for its 202).
 */
const durationSeconds = Number(process.env['BENCH_DURATION_S'] ?? 5);
const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 32);
const reportConnections = Number(process.env['BENCH_REPORT_CONNECTIONS'] ?? 64);
const REPORT_GOAL_PER_SECOND = 5000;
const REPORT_GOAL_P99_MS = 50;
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const load = () => loadavg()[0]!.toFixed(1);

interface Measured {
  requestsPerSecond: number;
  cpuMicrosecondsPerRequest: number | null;
  result: autocannon.Result;
}

async function measure(child: ChildProcess, options: autocannon.Options): Promise<Measured> {
  const cpuBefore = processCpuSeconds(child.pid!);
  const result = await autocannon({ connections, duration: durationSeconds, pipelining: 1, ...options });
  const cpuAfter = processCpuSeconds(child.pid!);
  const requests = result.requests.total;
  return {
    requestsPerSecond: result.requests.average,
    cpuMicrosecondsPerRequest: cpuBefore === null || cpuAfter === null || requests === 0 ? null : ((cpuAfter - cpuBefore) * 1e6) / requests,
    result,
  };
}

const cpuText = (value: number | null) => (value === null ? '' : `, ${value.toFixed(0)} µs CPU/req`);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-bench-'));
  const children: ChildProcess[] = [];
  try {
    const fixture = await prepareServerBenchFixture(dir);
    const server = await startBenchServer(fixture, join(dir, 'server.log'));
    children.push(server.child);
    const plain = await startPlainBaseline(fixture.manifestFile);
    children.push(plain.child);
    const plainLogged = await startPlainBaseline(fixture.manifestFile, { logEachRequest: true, logPath: join(dir, 'plain-logged.log') });
    children.push(plainLogged.child);

    const etag = (await fetch(`${plain.url}/`)).headers.get('etag')!;
    const latestPath = '/api/worker-updates/latest?channel=stable&platform=linux-x64&worker_id=bench-1&current_version=1.3.0';
    const auth = { authorization: `Bearer ${fixture.workerToken}` };

    // Warm both up (JIT, caches) before anything is measured.
    await autocannon({ url: `${server.url}${latestPath}`, headers: auth, connections, duration: 2 });
    await autocannon({ url: `${plain.url}${latestPath}`, connections, duration: 2 });
    await autocannon({ url: `${plainLogged.url}${latestPath}`, connections, duration: 2 });

    console.log(`bytebiota-server benchmark: ${rounds} alternating rounds of ${durationSeconds}s per side, ${connections} connections, loopback`);
    for (const variant of [
      { name: 'latest 200', status: 200, headers: {} as Record<string, string> },
      { name: 'latest 304', status: 304, headers: { 'if-none-match': etag } },
    ]) {
      const ours: Measured[] = [];
      const baseline: Measured[] = [];
      const logged: Measured[] = [];
      const loads: string[] = [];
      for (let round = 0; round < rounds; round += 1) {
        loads.push(load());
        baseline.push(await measure(plain.child, { url: `${plain.url}${latestPath}`, headers: variant.headers }));
        logged.push(await measure(plainLogged.child, { url: `${plainLogged.url}${latestPath}`, headers: variant.headers }));
        const measured = await measure(server.child, { url: `${server.url}${latestPath}`, headers: { ...auth, ...variant.headers } });
        const answered = measured.result.statusCodeStats?.[String(variant.status)]?.count ?? 0;
        if (measured.result.errors > 0 || answered !== measured.result.requests.total) {
          throw new Error(`${variant.name}: ${measured.result.errors} errors, ${measured.result.requests.total - answered} answers other than ${variant.status}`);
        }
        ours.push(measured);
      }
      const rate = (side: Measured[]) => median(side.map((m) => m.requestsPerSecond));
      const cpu = (side: Measured[]) =>
        side.every((m) => m.cpuMicrosecondsPerRequest !== null) ? median(side.map((m) => m.cpuMicrosecondsPerRequest!)) : null;
      const plainRate = rate(baseline);
      const side = (label: string, measured: Measured[]) =>
        `${label} ${rate(measured).toFixed(0).padStart(6)} req/s${cpuText(cpu(measured))}`;
      console.log(
        `${variant.name.padEnd(11)} ${side('server', ours)}   ${side('plain node:http', baseline)}   ratio ${(rate(ours) / plainRate).toFixed(2)} (goal >= 0.80)   load ${loads.join(' ')}`,
      );
      console.log(
        `${''.padEnd(11)} ${side('plain node:http + one JSON log line per request', logged)}   ratio ${(rate(logged) / plainRate).toFixed(2)} (nothing else: a ceiling for any server that logs each request)`,
      );
    }
    await stopChild(server.child);

    // Every report its own correlation id: the server stores a repeated one only once, and this
    // measures reports that are stored.
    let reportCount = 0;
    const report = () =>
      JSON.stringify({
        worker_id: 'bench-1',
        event: 'attempt',
        from_version: '1.3.0',
        to_version: '1.4.0',
        channel: 'stable',
        platform: 'linux-x64',
        correlation_id: `bench-${(reportCount += 1)}`,
      });
    for (const dbSync of ['full', 'normal']) {
      const countRows = () => {
        const reader = new Database(fixture.dbPath, { readonly: true });
        try {
          return (reader.prepare('SELECT COUNT(*) AS n FROM update_events').get() as { n: number }).n;
        } finally {
          reader.close();
        }
      };
      const rowsBefore = countRows();
      const ingest = await startBenchServer(fixture, join(dir, `server-${dbSync}.log`), ['--db-sync', dbSync]);
      children.push(ingest.child);
      const startLoad = load();
      const post = {
        url: `${ingest.url}/api/worker-updates/report`,
        method: 'POST' as const,
        headers: { ...auth, 'content-type': 'application/json' },
        requests: [{ setupRequest: (request: autocannon.Request) => ({ ...request, body: report() }) }],
      };
      // Each connection is a worker that sends its next report once the last one was answered.
      const measured = await measure(ingest.child, { ...post, connections: reportConnections });
      await stopChild(ingest.child);
      const accepted = measured.result.statusCodeStats?.['202']?.count ?? 0;
      const stored = countRows() - rowsBefore;
      if (accepted !== measured.result.requests.total) throw new Error(`${measured.result.requests.total - accepted} reports were not accepted`);
      const met = measured.requestsPerSecond >= REPORT_GOAL_PER_SECOND && measured.result.latency.p99 < REPORT_GOAL_P99_MS;
      console.log(
        `reports --db-sync ${dbSync.padEnd(6)} ${measured.requestsPerSecond.toFixed(0)} req/s, p50 ${measured.result.latency.p50} ms, p99 ${measured.result.latency.p99} ms${cpuText(measured.cpuMicrosecondsPerRequest)} (goal >= ${REPORT_GOAL_PER_SECOND} req/s, p99 < ${REPORT_GOAL_P99_MS} ms) ${met ? 'ok' : 'MISSED'}; ${reportConnections} connections; ${accepted} acknowledged, ${stored} rows stored (in-flight ones at the end are stored too); load ${startLoad}`,
      );
    }
  } finally {
    for (const child of children) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
