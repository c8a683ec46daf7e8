import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { Agent } from 'undici';
import { systemClock } from '../../src/shared/clock.js';
import { createLogger } from '../../src/shared/logger.js';
import { fullJitterBackoff } from '../../src/worker/runtime/backoff.js';
import { maintainConnection, ServerClient, type ServerPolicy } from '../../src/worker/runtime/connection.js';
import { bearer, startTestServer, type TestServer } from '../helpers/server-app.js';

/**
 * A heartbeat from a worker the server does not know (its database was lost, or restored from a
 * backup older than the worker) gets 404 `unknown_worker`, and the worker registers again with
 * its channel and platform, instead of living on as a half-empty row that never re-registers.
 */
describe('a heartbeat from an unknown worker', () => {
  let server: TestServer;
  let base: string;
  before(async () => {
    server = await startTestServer();
    base = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => server.close());

  test('is answered 404 unknown_worker, and no row is made', async () => {
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/workers/heartbeat',
      headers: bearer(server.tokens.canary),
      payload: { worker_id: 'never-registered', current_version: '1.0.0', state: 'working' },
    });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().error.code, 'unknown_worker');
    assert.equal(await server.fleet.getWorker('never-registered'), null);
  });

  test("the worker's own connection code registers again, with its channel and platform", async () => {
    const dispatcher = new Agent();
    const controller = new AbortController();
    const policies: ServerPolicy[] = [];
    let forgotten = false;
    const log = createLogger({ name: 'test', level: 'silent', destination: new Writable({ write: (_c, _e, done) => done() }) });
    try {
      await maintainConnection(
        {
          client: new ServerClient({ serverUrl: base, token: server.tokens.canary, dispatcher, clock: systemClock }),
          backoff: fullJitterBackoff({ baseDelayMs: 1, maxDelayMs: 10, random: () => 0 }),
          log,
          sleep: async () => {
            if (policies.length === 1 && !forgotten) {
              // The server's database is restored from a backup that predates this worker.
              const db = new Database(server.dbPath);
              db.prepare('DELETE FROM workers WHERE id = ?').run('w-lost');
              db.close();
              forgotten = true;
            }
            if (policies.length >= 2) controller.abort();
          },
          registerBody: () => ({ worker_id: 'w-lost', current_version: '1.3.0', platform: 'linux-x64', channel: 'stable' }),
          heartbeatBody: () => ({ worker_id: 'w-lost', current_version: '1.3.0', state: 'working' }),
          onPolicy: (policy) => policies.push(policy),
        },
        controller.signal,
      );
    } finally {
      await dispatcher.close();
    }
    assert.equal(forgotten, true);
    const row = await server.fleet.getWorker('w-lost');
    assert.equal(row?.channel, 'stable', 'registered again, with its channel');
    assert.equal(row?.platform, 'linux-x64');
    const lines = server.logs().filter((line) => line['worker_id'] === 'w-lost');
    assert.ok(lines.some((line) => line['result'] === 'unknown_worker'));
    assert.equal(lines.filter((line) => line['event'] === 'worker_registered').length, 2);
  });
});
