import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Agent } from 'undici';
import { STORE_KINDS, TestFleetStores, type StoreKind } from '../helpers/fleet-stores.js';
import { createTokenWithCli, startServerProcess, type RunningServer } from '../helpers/server-process.js';
import { makeKey } from '../helpers/trust-fixtures.js';
import { until } from '../helpers/wait.js';

/** The correlation ids of every stored report, read straight from the database. */
async function storedCorrelationIds(kind: StoreKind, db: string): Promise<Set<string>> {
  if (kind === 'postgres') {
    const client = new pg.Client({ connectionString: db });
    await client.connect();
    try {
      return new Set((await client.query<{ correlation_id: string }>('SELECT correlation_id FROM update_events')).rows.map((row) => row.correlation_id));
    } finally {
      await client.end();
    }
  }
  const reader = new Database(db, { readonly: true });
  try {
    return new Set((reader.prepare('SELECT correlation_id FROM update_events').all() as Array<{ correlation_id: string }>).map((row) => row.correlation_id));
  } finally {
    reader.close();
  }
}

for (const kind of STORE_KINDS) describe(`reports are not lost when the server is killed: ${kind}`, () => {
  let dir: string;
  const stores = new TestFleetStores();
  const running: RunningServer[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-durability-'));
    await mkdir(join(dir, 'store'));
  });
  after(async () => {
    for (const server of running) if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
    await stores.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('every report answered 202 before a SIGKILL is in the database after a restart', async () => {
    const db = await stores.location(kind);
    const token = await createTokenWithCli(db, 'worker', 'canary');
    const args = ['--store', join(dir, 'store'), '--db', db, '--release-key', makeKey().publicKeyBase64];
    const first = await startServerProcess(args);
    running.push(first);

    const dispatcher = new Agent({ connections: 32 });
    const accepted = new Set<string>();
    let sent = 0;
    let killed = false;
    const sender = async (lane: number) => {
      for (let i = 0; !killed || i < 1; i += 1) {
        const id = `lane${lane}-${i}`;
        sent += 1;
        try {
          const res = await fetch(`${first.url}/api/worker-updates/report`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({
              worker_id: `w-${lane}`,
              event: 'attempt',
              from_version: '1.0.0',
              to_version: '1.1.0',
              channel: 'stable',
              platform: 'linux-x64',
              correlation_id: id,
            }),
            // @ts-expect-error undici's dispatcher option is accepted by Node's fetch
            dispatcher,
          });
          if (res.status === 202) accepted.add(id);
          await res.arrayBuffer();
        } catch {
          if (killed) return;
        }
      }
    };
    const lanes = Array.from({ length: 32 }, (_, lane) => sender(lane));
    // Kill mid-load: once a good number of reports have been acknowledged.
    try {
      await until('1500 acknowledged reports', () => accepted.size >= 1500, 120_000, 5);
    } finally {
      first.child.kill('SIGKILL');
      killed = true;
    }
    await Promise.all(lanes);
    await first.exited;
    await dispatcher.close();
    assert.ok(sent > accepted.size, 'some requests were in flight when the server died');

    const second = await startServerProcess(args);
    running.push(second);
    const stored = await storedCorrelationIds(kind, db);
    const lost = [...accepted].filter((id) => !stored.has(id));
    assert.deepEqual(lost, [], `${lost.length} of ${accepted.size} acknowledged reports were lost`);

    // Graceful stop: SIGTERM finishes in-flight work, closes the database and exits 0.
    second.child.kill('SIGTERM');
    const [code] = await second.exited;
    assert.equal(code, 0);
    assert.ok(second.lines.some((line) => line['event'] === 'server_stopped'));
  });
});
