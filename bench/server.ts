import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import { storeKeys } from '../src/protocol/manifest.js';
import { SqliteFleetStore } from '../src/server/fleet/sqlite-fleet-store.js';
import { generateToken } from '../src/server/tokens.js';
import { FolderStore } from '../src/store/folder-store.js';
import { generateSigningKeyPair, parsePrivateKey } from '../src/trust/keys.js';
import { serializeManifest, signManifest } from '../src/trust/sign.js';

/**
 * `npm run bench:server`: requests/s of GET /api/worker-updates/latest (200 and 304) on the real
 * server process (auth, rate limiting, pino JSON logs to a file, metrics all on), beside a plain
 * node:http server serving the same bytes in the same run, with the ratio; then reports/s
 * ingested durably (SQLite, WAL, synchronous=FULL, group commit) with p99 latency.
 * BENCH_DURATION_S sets the seconds per measurement (default 5), BENCH_ROUNDS the alternating
 * rounds per side (default 3), BENCH_CONNECTIONS the concurrent connections (default 32).
 */
const durationSeconds = Number(process.env['BENCH_DURATION_S'] ?? 5);
const connections = Number(process.env['BENCH_CONNECTIONS'] ?? 32);
const rounds = Number(process.env['BENCH_ROUNDS'] ?? 3);

async function waitForLine(child: ChildProcess, predicate: (line: string) => boolean): Promise<string> {
  const reader = createInterface({ input: child.stdout! });
  for await (const line of reader) if (predicate(line)) return line;
  throw new Error('process ended before it was ready');
}

async function waitForLogLine(path: string, event: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 400; i += 1) {
    const text = await readFile(path, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (line.includes(`"event":"${event}"`)) return JSON.parse(line) as Record<string, unknown>;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no ${event} line in ${path}`);
}

function run(options: autocannon.Options): Promise<autocannon.Result> {
  return autocannon({ connections, duration: durationSeconds, pipelining: 1, ...options });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-bench-'));
  const children: ChildProcess[] = [];
  try {
    const storeDir = join(dir, 'store');
    await mkdir(storeDir);
    const pair = generateSigningKeyPair();
    const signed = {
      _type: 'worker-release' as const,
      schema_version: 1 as const,
      channel: 'stable',
      serial: 1,
      version: '1.4.0',
      released_at: new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      expires: new Date(Date.now() + 30 * 86400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      minimum_version: '1.2.0',
      artifacts: Object.fromEntries(
        ['linux-x64', 'linux-arm64', 'darwin-arm64', 'win32-x64'].map((platform) => [
          platform,
          { url: `artifacts/1.4.0/bytebiota-worker-1.4.0-${platform}`, sha256: 'a'.repeat(64), size: 48_213_504 },
        ]),
      ),
    };
    const bytes = serializeManifest(signManifest(signed, [parsePrivateKey(pair.privateKeyPem)]));
    await new FolderStore(storeDir).write(storeKeys.manifest('stable'), bytes);
    const manifestFile = join(dir, 'manifest.json');
    await writeFile(manifestFile, bytes);

    const dbPath = join(dir, 'fleet.sqlite');
    const fleet = new SqliteFleetStore(dbPath);
    const token = generateToken();
    await fleet.createToken({ id: token.id, role: 'worker', pool: 'bench', secretSha256: token.secretSha256, label: null, createdAt: new Date(), revokedAt: null });
    await fleet.setPoolPolicy('bench', { auto_update: true }, { at: new Date(), byTokenId: token.id });
    await fleet.close();

    // The server under test, from source, logging JSON lines to a file as in production.
    const logPath = join(dir, 'server.log');
    const logFd = openSync(logPath, 'a');
    const server = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/server/main.ts', 'serve', '--host', '127.0.0.1', '--port', '0', '--store', storeDir, '--db', dbPath,
        '--release-key', pair.publicKeyBase64, '--rate-limit-max', '100000000'],
      { stdio: ['ignore', logFd, 'inherit'] },
    );
    closeSync(logFd);
    children.push(server);
    const serverUrl = String((await waitForLogLine(logPath, 'server_listening'))['url']);

    const plain = spawn(process.execPath, ['--import', 'tsx', 'bench/server-plain-baseline.ts', manifestFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(plain);
    const plainUrl = (await waitForLine(plain, (line) => line.startsWith('http://'))).trim();

    const etag = (await fetch(`${plainUrl}/`)).headers.get('etag')!;
    const latestPath = '/api/worker-updates/latest?channel=stable&platform=linux-x64&worker_id=bench-1&current_version=1.3.0';
    const auth = { authorization: `Bearer ${token.token}` };

    // Warm both up (JIT, caches), then measure each in turn.
    await run({ url: `${serverUrl}${latestPath}`, headers: auth, duration: 2 });
    await run({ url: `${plainUrl}${latestPath}`, duration: 2 });

    // Rounds alternate plain and ours so that load from elsewhere on the machine hits both alike;
    // the figure per side is the median of its rounds.
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const rows: Array<{ name: string; ours: number; plain: number }> = [];
    for (const variant of [
      { name: 'latest 200', headers: {} as Record<string, string> },
      { name: 'latest 304', headers: { 'if-none-match': etag } },
    ]) {
      const oursRounds: number[] = [];
      const plainRounds: number[] = [];
      for (let round = 0; round < rounds; round += 1) {
        plainRounds.push((await run({ url: `${plainUrl}${latestPath}`, headers: variant.headers })).requests.average);
        const ours = await run({ url: `${serverUrl}${latestPath}`, headers: { ...auth, ...variant.headers } });
        if (ours.errors > 0 || (variant.name.endsWith('200') && ours.non2xx > 0)) {
          throw new Error(`${ours.errors} errors, ${ours.non2xx} non-2xx answers from the server`);
        }
        oursRounds.push(ours.requests.average);
      }
      rows.push({ name: variant.name, ours: median(oursRounds), plain: median(plainRounds) });
    }

    const report = JSON.stringify({
      worker_id: 'bench-1',
      event: 'attempt',
      from_version: '1.3.0',
      to_version: '1.4.0',
      channel: 'stable',
      platform: 'linux-x64',
      correlation_id: 'bench',
    });
    const reports = await run({
      url: `${serverUrl}/api/worker-updates/report`,
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: report,
    });
    const stored = new Database(dbPath, { readonly: true });
    const storedReports = (stored.prepare('SELECT COUNT(*) AS n FROM update_events').get() as { n: number }).n;
    stored.close();
    if (reports.non2xx > 0) throw new Error(`${reports.non2xx} reports were not accepted`);

    console.log(`bytebiota-server benchmark: ${rounds} alternating rounds of ${durationSeconds}s, ${connections} connections, loopback; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    for (const row of rows) {
      console.log(
        `${row.name.padEnd(12)} server ${row.ours.toFixed(0).padStart(7)} req/s   plain node:http ${row.plain.toFixed(0).padStart(7)} req/s   ratio ${(row.ours / row.plain).toFixed(2)} (goal >= 0.80)`,
      );
    }
    console.log(
      `reports      ${reports.requests.average.toFixed(0)} req/s ingested durably, p50 ${reports.latency.p50} ms, p99 ${reports.latency.p99} ms (goal >= 5000 req/s, p99 < 50 ms); ${storedReports} rows in the database`,
    );
  } finally {
    for (const child of children) await stop(child);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
