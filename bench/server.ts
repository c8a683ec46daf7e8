import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { prepareServerBenchFixture, startBenchServer, startPlainBaseline, stopChild } from './server-fixture.js';

/**
 * `npm run bench:server`: requests/s of GET /api/worker-updates/latest (200 and 304) on the real
 * server process (auth, rate limiting, pino JSON logs to a file, metrics all on), beside a plain
 * node:http server serving the same bytes with the same headers in the same run, and the ratio;
 * then reports/s ingested with p99 latency, with `--db-sync full` (the default: fsync per group
 * commit) and `--db-sync normal`.
 *
 * Rounds alternate plain and ours so that load from elsewhere on the machine hits both alike; the
 * figure per side is the median of its rounds. Each line also gives the CPU time each server
 * process spent per request (Linux /proc), which other load on the machine disturbs far less
 * than requests/s. BENCH_DURATION_S: seconds per measurement (default 5); BENCH_ROUNDS: rounds
 * per side (default 3); BENCH_CONNECTIONS: connections (default 32); BENCH_REPORT_CONNECTIONS:
 * connections for the report measurement (default BENCH_CONNECTIONS).
 */
const durationSeconds = Number(process.env['BENCH_DURATION_S'] ?? 5);
const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 32);
const reportConnections = Number(process.env['BENCH_REPORT_CONNECTIONS'] ?? connections);
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const load = () => loadavg()[0]!.toFixed(1);

/** User plus system CPU seconds used so far by a process, or null off Linux. */
function cpuSeconds(child: ChildProcess): number | null {
  try {
    const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // Fields 14 and 15 of /proc/PID/stat (utime, stime), in clock ticks of 1/100 s.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

interface Measured {
  requestsPerSecond: number;
  cpuMicrosecondsPerRequest: number | null;
  result: autocannon.Result;
}

async function measure(child: ChildProcess, options: autocannon.Options): Promise<Measured> {
  const cpuBefore = cpuSeconds(child);
  const result = await autocannon({ connections, duration: durationSeconds, pipelining: 1, ...options });
  const cpuAfter = cpuSeconds(child);
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

    const etag = (await fetch(`${plain.url}/`)).headers.get('etag')!;
    const latestPath = '/api/worker-updates/latest?channel=stable&platform=linux-x64&worker_id=bench-1&current_version=1.3.0';
    const auth = { authorization: `Bearer ${fixture.workerToken}` };

    // Warm both up (JIT, caches) before anything is measured.
    await autocannon({ url: `${server.url}${latestPath}`, headers: auth, connections, duration: 2 });
    await autocannon({ url: `${plain.url}${latestPath}`, connections, duration: 2 });

    console.log(`bytebiota-server benchmark: ${rounds} alternating rounds of ${durationSeconds}s per side, ${connections} connections, loopback`);
    for (const variant of [
      { name: 'latest 200', status: 200, headers: {} as Record<string, string> },
      { name: 'latest 304', status: 304, headers: { 'if-none-match': etag } },
    ]) {
      const ours: Measured[] = [];
      const baseline: Measured[] = [];
      const loads: string[] = [];
      for (let round = 0; round < rounds; round += 1) {
        loads.push(load());
        baseline.push(await measure(plain.child, { url: `${plain.url}${latestPath}`, headers: variant.headers }));
        const measured = await measure(server.child, { url: `${server.url}${latestPath}`, headers: { ...auth, ...variant.headers } });
        const answered = measured.result.statusCodeStats?.[String(variant.status)]?.count ?? 0;
        if (measured.result.errors > 0 || answered !== measured.result.requests.total) {
          throw new Error(`${variant.name}: ${measured.result.errors} errors, ${measured.result.requests.total - answered} answers other than ${variant.status}`);
        }
        ours.push(measured);
      }
      const oursRate = median(ours.map((m) => m.requestsPerSecond));
      const plainRate = median(baseline.map((m) => m.requestsPerSecond));
      const oursCpu = ours.every((m) => m.cpuMicrosecondsPerRequest !== null) ? median(ours.map((m) => m.cpuMicrosecondsPerRequest!)) : null;
      const plainCpu = baseline.every((m) => m.cpuMicrosecondsPerRequest !== null) ? median(baseline.map((m) => m.cpuMicrosecondsPerRequest!)) : null;
      console.log(
        `${variant.name.padEnd(11)} server ${oursRate.toFixed(0).padStart(6)} req/s${cpuText(oursCpu)}   plain node:http ${plainRate.toFixed(0).padStart(6)} req/s${cpuText(plainCpu)}   ratio ${(oursRate / plainRate).toFixed(2)} (goal >= 0.80)   load ${loads.join(' ')}`,
      );
    }
    await stopChild(server.child);

    const report = JSON.stringify({
      worker_id: 'bench-1',
      event: 'attempt',
      from_version: '1.3.0',
      to_version: '1.4.0',
      channel: 'stable',
      platform: 'linux-x64',
      correlation_id: 'bench',
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
      const measured = await measure(ingest.child, {
        url: `${ingest.url}/api/worker-updates/report`,
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: report,
        connections: reportConnections,
      });
      await stopChild(ingest.child);
      const accepted = measured.result.statusCodeStats?.['202']?.count ?? 0;
      const stored = countRows() - rowsBefore;
      if (accepted !== measured.result.requests.total) throw new Error(`${measured.result.requests.total - accepted} reports were not accepted`);
      console.log(
        `reports --db-sync ${dbSync.padEnd(6)} ${measured.requestsPerSecond.toFixed(0)} req/s, p50 ${measured.result.latency.p50} ms, p99 ${measured.result.latency.p99} ms${cpuText(measured.cpuMicrosecondsPerRequest)} (goal >= 5000 req/s, p99 < 50 ms); ${reportConnections} connections; ${accepted} acknowledged, ${stored} rows stored (in-flight ones at the end are stored too); load ${startLoad}`,
      );
    }
  } finally {
    for (const child of children) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
