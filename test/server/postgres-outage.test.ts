/**
 * The PostgreSQL database goes away under a running server and comes back: requests that need it
 * fail with a clear 503 `database_unavailable` (never a crash or a hang), `/readyz` says so, and
 * once the database is back the server carries on by itself, its change notifications included
 * (a token revoked after the outage is refused within the bound).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startPostgresCluster, type PostgresCluster } from '../helpers/postgres-cluster.js';
import { createTokenWithCli, runServerCommand, startServerProcess, type RunningServer } from '../helpers/server-process.js';
import { makeKey } from '../helpers/trust-fixtures.js';
import { until } from '../helpers/wait.js';

describe('a PostgreSQL outage under a running server', () => {
  let cluster: PostgresCluster;
  let server: RunningServer;
  let dir: string;
  let db: string;
  let token: string;

  const heartbeat = () =>
    fetch(`${server.url}/api/workers/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ worker_id: 'w-1', current_version: '1.0.0', state: 'working' }),
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-pg-outage-'));
    await mkdir(join(dir, 'store'));
    cluster = await startPostgresCluster();
    db = await cluster.createDatabase();
    token = await createTokenWithCli(db, 'worker', 'canary');
    server = await startServerProcess(['--store', join(dir, 'store'), '--db', db, '--release-key', makeKey().publicKeyBase64]);
    const registered = await fetch(`${server.url}/api/workers/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ worker_id: 'w-1', current_version: '1.0.0', platform: 'linux-x64', channel: 'stable' }),
    });
    assert.equal(registered.status, 200);
  });
  after(async () => {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('503 database_unavailable while it is down, and back to work once it returns', async () => {
    assert.equal((await heartbeat()).status, 200);
    await cluster.kill();

    const down = await heartbeat();
    assert.equal(down.status, 503);
    assert.equal(((await down.json()) as { error: { code: string } }).error.code, 'database_unavailable');
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { error: { code: string } }).error.code, 'database_unavailable');
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the process itself is alive');
    assert.equal(server.child.exitCode, null);

    await cluster.restart();
    await until('heartbeats to succeed again', async () => (await heartbeat()).status === 200, 30_000, 100);
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
  });

  test('a token revoked after the outage is refused: the server listens for changes again', async () => {
    // A token is `<prefix>_<id>_<secret>`.
    const id = token.split('_')[1]!;
    // The listening connection is back within its retry delay (1 s) of the database.
    await until('the token to be cached again', async () => (await heartbeat()).status === 200);
    const revoked = await runServerCommand(['token', 'revoke', '--db', db, id]);
    assert.equal(revoked.code, 0, revoked.stderr);
    await until('the revoked token to be refused', async () => (await heartbeat()).status === 401, 5000, 20);
  });
});
