/**
 * Two real server processes on one real PostgreSQL database, as operators run replicas behind a
 * load balancer: rollout state, halts, tokens and serial floors hold across them, the fleet-wide
 * work and gauges are done by one of them, and when one is killed with SIGKILL under load nothing
 * it acknowledged is lost and the workers carry on through the other.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { Agent } from 'undici';
import { TestFleetStores } from '../helpers/fleet-stores.js';
import { FleetSim } from '../helpers/fleet-sim.js';
import { createTokenWithCli, startServerProcess, type RunningServer } from '../helpers/server-process.js';
import { publishRelease, releaseFor } from '../helpers/server-fixtures.js';
import { startTcpBalancer, type TcpBalancer } from '../helpers/tcp-balancer.js';
import { makeKey } from '../helpers/trust-fixtures.js';
import { until } from '../helpers/wait.js';

const CHANNEL = 'stable';
const METRICS_TOKEN = 'replicas-test-metrics-token';
const SEED = Number(process.env['REPLICAS_TEST_SEED'] ?? 20261201);

/** A release valid for 30 days from now: these servers run on the real clock. */
function release(serial: number, version: string) {
  return releaseFor({ channel: CHANNEL, serial, version, expires: new Date(Date.now() + 30 * 86_400_000).toISOString() });
}

describe('two server replicas on one PostgreSQL database', () => {
  const stores = new TestFleetStores();
  const key = makeKey();
  const running: RunningServer[] = [];
  let dir: string;
  let storeDir: string;
  let db: string;
  let workerToken: string;
  let adminToken: string;
  let a: RunningServer;
  let b: RunningServer;

  const start = async (extra: string[] = []) => {
    const server = await startServerProcess([
      '--store',
      storeDir,
      '--db',
      db,
      '--release-key',
      key.publicKeyBase64,
      '--default-rollout-plan',
      'immediate',
      '--metrics-token',
      METRICS_TOKEN,
      '--heartbeat-interval',
      '2',
      ...extra,
    ]);
    running.push(server);
    return server;
  };
  const call = async (server: { url: string }, path: string, token: string, init: { method?: string; body?: unknown } = {}) => {
    const res = await fetch(`${server.url}${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
  };
  const latest = (server: { url: string }, workerId: string, currentVersion = '1.0.0') =>
    call(server, `/api/worker-updates/latest?channel=${CHANNEL}&platform=linux-x64&worker_id=${workerId}&current_version=${currentVersion}`, workerToken);
  const register = (server: { url: string }, workerId: string) =>
    call(server, '/api/workers/register', workerToken, { method: 'POST', body: { worker_id: workerId, current_version: '1.0.0', platform: 'linux-x64', channel: CHANNEL } });
  const query = async <T extends pg.QueryResultRow>(text: string): Promise<T[]> => {
    const client = new pg.Client({ connectionString: db });
    await client.connect();
    try {
      return (await client.query<T>(text)).rows;
    } finally {
      await client.end();
    }
  };

  before(async () => {
    console.log(`replicas test seed ${SEED} (REPLICAS_TEST_SEED)`);
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-replicas-'));
    storeDir = join(dir, 'store');
    await mkdir(storeDir);
    db = await stores.location('postgres');
    workerToken = await createTokenWithCli(db, 'worker', 'canary');
    adminToken = await createTokenWithCli(db, 'admin');
    // A's manifest cache rereads the store every second, B's once an hour: what B offers can
    // only come from the database.
    [a, b] = await Promise.all([start(['--cache-ttl', '1']), start(['--cache-ttl', '3600'])]);
    const policy = await call(a, '/api/admin/pools/canary/policy', adminToken, { method: 'PUT', body: { auto_update: true } });
    assert.equal(policy.status, 200, policy.text);
  });
  after(async () => {
    for (const server of running) if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
    await stores.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a release is rolled out once, and a worker bouncing between replicas is never offered a lower serial than it was', async () => {
    await publishRelease(storeDir, release(1, '1.4.0'), [key]);
    await Promise.all([register(a, 'bounce-1'), register(b, 'bounce-2')]);
    // Both replicas read serial 1 from the store (a manifest cache refreshes off the request that
    // found it stale) and race to start its rollout.
    await until('both replicas to offer serial 1', async () => {
      const offers = await Promise.all([latest(a, 'bounce-1'), latest(b, 'bounce-2')]);
      return offers.every((res) => res.status === 200);
    });
    assert.deepEqual(await query('SELECT serial FROM rollouts'), [{ serial: 1 }]);

    await publishRelease(storeDir, release(2, '1.5.0'), [key]);
    const fromA = await until('A to offer serial 2', async () => {
      const res = await latest(a, 'bounce-1');
      return res.status === 200 && (res.json()['signed'] as { serial: number }).serial === 2 ? res : null;
    });
    assert.equal((fromA.json()['signed'] as { version: string }).version, '1.5.0');
    // B's own manifest cache still holds serial 1 for an hour; it offers what the database says.
    const fromB = await latest(b, 'bounce-1');
    assert.equal(fromB.status, 200, fromB.text);
    assert.equal((fromB.json()['signed'] as { serial: number }).serial, 2, 'B never offers the worker a lower serial than A did');
    // Each rollout was started by one replica (log lines reach us in batches: wait for serial 2's).
    await until('the start of serial 2 logged', () => [...a.lines, ...b.lines].some((line) => line['event'] === 'rollout_started' && line['serial'] === 2));
    const started = [...a.lines, ...b.lines].filter((line) => line['event'] === 'rollout_started').map((line) => line['serial']);
    assert.deepEqual(started.sort(), [1, 2]);
  });

  test('a halt and a token revocation made through one replica hold on the other at once', async () => {
    const halt = await call(a, `/api/admin/rollouts/${CHANNEL}/halt`, adminToken, { method: 'POST', body: { reason: 'replicas test' } });
    assert.equal(halt.status, 200, halt.text);
    await register(b, 'after-halt');
    const offered = await until('B to stop offering the halted release', async () => {
      const res = await latest(b, 'after-halt');
      return res.status === 200 && (res.json()['signed'] as { serial: number }).serial === 2 ? null : res;
    }, 2000, 10);
    assert.notEqual(offered.status, 500);

    const made = await call(a, '/api/admin/enrollment-tokens', adminToken, { method: 'POST', body: { pool: 'canary' } });
    assert.equal(made.status, 201, made.text);
    const enrolled = await call(b, '/api/workers/enroll', 'none', { method: 'POST', body: { enrollment_token: made.json()['token'], worker_id: 'enrolled-1' } });
    assert.equal(enrolled.status, 200, enrolled.text);
    const credential = enrolled.json()['credential'] as string;
    const heartbeat = () => call(b, '/api/workers/heartbeat', credential, { method: 'POST', body: { worker_id: 'enrolled-1', current_version: '1.0.0', state: 'working' } });
    assert.equal((await call(b, '/api/workers/register', credential, { method: 'POST', body: { worker_id: 'enrolled-1', current_version: '1.0.0', platform: 'linux-x64', channel: CHANNEL } })).status, 200);
    assert.equal((await heartbeat()).status, 200);
    const revoke = await call(a, '/api/admin/workers/enrolled-1/revoke', adminToken, { method: 'POST', body: {} });
    assert.equal(revoke.status, 200, revoke.text);
    // The notification reaches B within milliseconds; two seconds is the bound this test holds it to.
    await until('B to refuse the revoked credential', async () => (await heartbeat()).status === 401, 2000, 10);
  });

  test('one replica leads: it alone exports the fleet gauges, so a sum over replicas counts each worker once', async () => {
    const scrape = async (server: RunningServer) => (await call(server, '/metrics', METRICS_TOKEN)).text;
    const leaders = await until('one leader', async () => {
      const texts = await Promise.all([scrape(a), scrape(b)]);
      const flags = texts.map((text) => /^bytebiota_fleet_leader (\d)/m.exec(text)?.[1]);
      return flags.filter((flag) => flag === '1').length === 1 ? texts : null;
    });
    const workers = (text: string) =>
      [...text.matchAll(/^bytebiota_fleet_workers\{[^}]*\} (\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
    const live = (await query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM workers WHERE last_seen_at >= '${new Date(Date.now() - 20_000).toISOString()}'`))[0]!.n;
    assert.ok(live > 0);
    assert.equal(workers(leaders[0]!) + workers(leaders[1]!), live);
  });

  test('a replica killed with SIGKILL under load loses nothing it acknowledged, and the workers carry on through the other', async () => {
    const balancer: TcpBalancer = await startTcpBalancer([a.url, b.url]);
    const sim = new FleetSim({ serverUrl: balancer.url, tokens: [workerToken], workerCount: 40, seed: SEED, startSpreadMs: 2000 });
    const dispatcher = new Agent({ connections: 16 });
    const accepted = new Set<string>();
    let stop = false;
    const lane = async (laneId: number) => {
      for (let i = 0; !stop; i += 1) {
        const id = `kill-${laneId}-${i}`;
        try {
          const res = await fetch(`${balancer.url}/api/worker-updates/report`, {
            method: 'POST',
            headers: { authorization: `Bearer ${workerToken}`, 'content-type': 'application/json' },
            body: JSON.stringify({ worker_id: `reporter-${laneId}`, event: 'attempt', from_version: '1.0.0', to_version: '1.2.0', channel: CHANNEL, platform: 'linux-x64', correlation_id: id }),
            // @ts-expect-error undici's dispatcher option is accepted by Node's fetch
            dispatcher,
          });
          if (res.status === 202) accepted.add(id);
          await res.arrayBuffer();
        } catch {
          // The killed replica's connections are cut; the next report goes through the other.
        }
      }
    };
    try {
      sim.start();
      const lanes = Array.from({ length: 8 }, (_, i) => lane(i));
      await until('every simulated worker heard from and 300 reports acknowledged', () => sim.workersHeardFromSince(0) === 40 && accepted.size >= 300, 60_000);
      assert.ok((balancer.connections.get(a.url) ?? 0) > 0 && (balancer.connections.get(b.url) ?? 0) > 0, 'load reached both replicas');

      a.child.kill('SIGKILL');
      await a.exited;
      const killedAt = Date.now();
      const acceptedAtKill = accepted.size;
      // Every worker carries on: each has a heartbeat answered after the kill, by B.
      await until(() => `every worker heard from after the kill (${sim.workersHeardFromSince(killedAt)} of 40)`, () => sim.workersHeardFromSince(killedAt) === 40, 60_000);
      await until('reports acknowledged after the kill', () => accepted.size >= acceptedAtKill + 100, 30_000);
      stop = true;
      await Promise.all(lanes);
    } finally {
      stop = true;
      await sim.stop();
      await dispatcher.close();
      await balancer.close();
    }
    const stored = new Set((await query<{ correlation_id: string }>("SELECT correlation_id FROM update_events WHERE correlation_id LIKE 'kill-%'")).map((row) => row.correlation_id));
    const lost = [...accepted].filter((id) => !stored.has(id));
    assert.deepEqual(lost, [], `${lost.length} of ${accepted.size} acknowledged reports were lost`);
    // B takes the lead once A's lease runs out (30 s); the lease itself is tested on both stores.
  });
});
