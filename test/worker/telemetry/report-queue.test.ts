import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent } from 'undici';
import type { UpdateReport } from '../../../src/protocol/messages.js';
import { fixedClock } from '../../../src/shared/clock.js';
import { createLogger } from '../../../src/shared/logger.js';
import { fullJitterBackoff } from '../../../src/worker/runtime/backoff.js';
import { ServerClient } from '../../../src/worker/runtime/connection.js';
import { ReportQueue } from '../../../src/worker/telemetry/report-queue.js';
import { until } from '../../helpers/wait.js';
import { json, scriptedServer } from '../../helpers/worker-http.js';

const dispatcher = new Agent();
const dirs: string[] = [];
after(async () => {
  await dispatcher.close();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});
const clock = fixedClock('2026-11-20T12:00:00Z');
const report: UpdateReport = { worker_id: 'w-1', event: 'failure', from_version: '1.0.0', to_version: '2.0.0', channel: 'stable', platform: 'linux-x64', reason: 'checksum_mismatch', correlation_id: 'c-1' };

async function queueAgainst(serverUrl: string, logLines: string[] = []) {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-reports-'));
  dirs.push(dir);
  const client = new ServerClient({ serverUrl, token: 'tok', dispatcher, clock });
  const log = createLogger({ name: 't', destination: new Writable({ write: (c, _e, done) => { logLines.push(String(c)); done(); } }) });
  const queue = new ReportQueue({
    dir,
    send: (r, id) => client.postReport(r, id),
    backoff: fullJitterBackoff({ baseDelayMs: 10, maxDelayMs: 50 }),
    log,
    clock,
  });
  return { dir, queue };
}

test('queued on disk first; kept while the server is down; sent in order and deleted after 202', async () => {
  let up = false;
  const server = await scriptedServer((_req, res) => (up ? json(res, 202, undefined) : json(res, 503, undefined, { 'retry-after': '1' })));
  try {
    const { dir, queue } = await queueAgainst(server.url);
    await queue.enqueue(report, 'c-1');
    await queue.enqueue({ ...report, correlation_id: 'c-2' }, 'c-2');
    assert.equal((await readdir(dir)).length, 2);
    const down = await queue.drainOnce();
    assert.deepEqual(down, { sent: 0, dropped: 0, pending: 2, retryAfterMs: 1000 });
    assert.equal(await queue.pendingCount(), 2, 'nothing lost while the server is down');
    up = true;
    assert.deepEqual(await queue.drainOnce(), { sent: 2, dropped: 0, pending: 0, retryAfterMs: null });
    assert.deepEqual(await readdir(dir), []);
    const posted = server.requests.filter((r) => r.url === '/api/worker-updates/report').slice(-2);
    assert.deepEqual(posted.map((r) => r.headers['x-request-id']), ['c-1', 'c-2'], 'correlation id as X-Request-Id, in order');
    assert.deepEqual(JSON.parse(posted[0]?.body ?? ''), report);
  } finally {
    await server.close();
  }
});

test('a 4xx other than 429 is logged and dropped; 401 is kept for the operator to fix the token', async () => {
  let status = 400;
  const server = await scriptedServer((_req, res) => json(res, status, { error: { code: 'bad_request', message: 'no' } }));
  try {
    const lines: string[] = [];
    const { queue } = await queueAgainst(server.url, lines);
    await queue.enqueue(report, 'c-1');
    assert.deepEqual(await queue.drainOnce(), { sent: 0, dropped: 1, pending: 0, retryAfterMs: null });
    assert.ok(lines.some((line) => line.includes('worker_report_dropped')));
    status = 401;
    await queue.enqueue(report, 'c-2');
    assert.equal((await queue.drainOnce()).pending, 1);
    assert.ok(!lines.join('').includes('tok'), 'the token never reaches the log');
  } finally {
    await server.close();
  }
});

test('a claim left by a dead process is released and sent', async () => {
  const server = await scriptedServer((_req, res) => json(res, 202, undefined));
  try {
    const { dir, queue } = await queueAgainst(server.url);
    const name = await queue.enqueue(report, 'c-1');
    await rename(join(dir, name), join(dir, `${name}.sending-999999999`));
    assert.equal((await queue.drainOnce()).sent, 0, 'a claimed file is not sent twice');
    assert.equal(await queue.releaseStaleClaims(), 1);
    assert.equal((await queue.drainOnce()).sent, 1);
  } finally {
    await server.close();
  }
});

test('the background sender sends a report soon after it is queued', async () => {
  const server = await scriptedServer((_req, res) => json(res, 202, undefined));
  const controller = new AbortController();
  try {
    const { dir, queue } = await queueAgainst(server.url);
    const sender = queue.runSender(controller.signal);
    await queue.enqueue(report, 'c-1');
    await until('the queue folder to empty', async () => (await readdir(dir)).length === 0, 5_000, 20);
    controller.abort();
    await sender;
  } finally {
    await server.close();
  }
});

test('a stop that arrives while a report is being sent ends the sender at once, not after its idle wait', async () => {
  const controller = new AbortController();
  // The server answers, but the stop comes while the request is in flight (during the drain).
  const server = await scriptedServer((_req, res) => {
    controller.abort();
    json(res, 202, undefined);
  });
  try {
    const { queue } = await queueAgainst(server.url);
    await queue.enqueue(report, 'c-1');
    const startedMs = Date.now();
    await queue.runSender(controller.signal, 60_000);
    assert.ok(Date.now() - startedMs < 5_000, `the sender took ${Date.now() - startedMs} ms to stop`);
  } finally {
    await server.close();
  }
});
