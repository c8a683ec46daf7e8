import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'undici';
import { fixedClock } from '../../../src/shared/clock.js';
import { createLogger } from '../../../src/shared/logger.js';
import { fullJitterBackoff } from '../../../src/worker/runtime/backoff.js';
import { ConnectionError, maintainConnection, registerOnce, ServerClient, type ServerPolicy } from '../../../src/worker/runtime/connection.js';
import { json, scriptedServer } from '../../helpers/worker-http.js';
import { Writable } from 'node:stream';

const dispatcher = new Agent();
after(() => dispatcher.close());
const clock = fixedClock('2026-11-20T12:00:00Z');
const register = { worker_id: 'w-1', current_version: '1.0.0', platform: 'linux-x64', channel: 'stable' };
const handshake = { minimum_version: '1.0.0', recommended_version: '1.1.0', latest_version: '1.1.0', auto_update: true, heartbeat_interval_s: 1, server_time: '2026-11-20T12:00:00Z' };

function silentLog() {
  const lines: string[] = [];
  const destination = new Writable({ write: (chunk, _enc, done) => { lines.push(String(chunk)); done(); } });
  return { log: createLogger({ name: 'test', destination }), lines };
}

function clientFor(server: { url: string }, options: { requestTimeoutMs?: number } = {}): ServerClient {
  return new ServerClient({ serverUrl: server.url, token: 'tok', dispatcher, clock, ...options });
}

/**
 * maintainConnection against `server` (no jitter, sleeps recorded and skipped) until, at one of
 * its sleeps, `stopWhen` holds for the policies it has been given.
 */
async function connectUntil(server: { url: string }, stopWhen: (policies: readonly ServerPolicy[]) => boolean): Promise<{ policies: ServerPolicy[]; delays: number[] }> {
  const controller = new AbortController();
  const policies: ServerPolicy[] = [];
  const delays: number[] = [];
  await maintainConnection(
    {
      client: clientFor(server),
      backoff: fullJitterBackoff({ baseDelayMs: 10, maxDelayMs: 5000, random: () => 0 }),
      log: silentLog().log,
      sleep: async (ms) => {
        delays.push(ms);
        if (stopWhen(policies)) controller.abort();
      },
      registerBody: () => register,
      heartbeatBody: () => ({ worker_id: 'w-1', current_version: '1.0.0', state: 'working' }),
      onPolicy: (policy) => policies.push(policy),
    },
    controller.signal,
  );
  return { policies, delays };
}

describe('ServerClient', () => {
  test('register sends the handshake with the bearer token and returns the policy', async () => {
    const server = await scriptedServer((_req, res) => json(res, 200, handshake));
    try {
      const client = clientFor(server);
      assert.deepEqual(await client.register(register, 'req-1'), handshake);
      const [request] = server.requests;
      assert.equal(request?.url, '/api/workers/register');
      assert.equal(request?.headers.authorization, 'Bearer tok');
      assert.equal(request?.headers['x-request-id'], 'req-1');
      assert.deepEqual(JSON.parse(request?.body ?? ''), register);
    } finally {
      await server.close();
    }
  });

  const failures: [string, number, Record<string, string>, unknown, string, boolean, number | null][] = [
    ['429 with Retry-After seconds', 429, { 'retry-after': '7' }, { error: { code: 'rate_limited', message: 'x' } }, 'server_busy', true, 7000],
    ['503 with an HTTP date', 503, { 'retry-after': 'Fri, 20 Nov 2026 12:00:10 GMT' }, undefined, 'server_busy', true, 10_000],
    ['500', 500, {}, undefined, 'server_error', true, null],
    ['401', 401, {}, { error: { code: 'unauthorized', message: 'x' } }, 'auth_rejected', false, null],
    ['403', 403, {}, undefined, 'auth_rejected', false, null],
    ['400', 400, {}, { error: { code: 'bad_request', message: 'x' } }, 'request_rejected', false, null],
    ['a body off the schema', 200, {}, { minimum_version: 5 }, 'bad_response', false, null],
  ];
  for (const [name, status, headers, body, code, retryable, retryAfterMs] of failures) {
    test(`${name} -> ${code}`, async () => {
      const server = await scriptedServer((_req, res) => json(res, status, body, headers));
      try {
        const client = clientFor(server);
        await assert.rejects(client.register(register), (err: unknown) => {
          assert.ok(err instanceof ConnectionError);
          assert.equal(err.code, code);
          assert.equal(err.retryable, retryable);
          assert.equal(err.retryAfterMs, retryAfterMs);
          return true;
        });
      } finally {
        await server.close();
      }
    });
  }

  test('a server that is down -> server_unreachable', async () => {
    const server = await scriptedServer((_req, res) => json(res, 200, handshake));
    await server.close();
    const client = clientFor(server);
    const outcome = await registerOnce(client, register);
    assert.equal(outcome.kind, 'unreachable');
  });

  test('a slow server times out -> server_unreachable', async () => {
    const server = await scriptedServer(() => undefined);
    try {
      const client = clientFor(server, { requestTimeoutMs: 200 });
      await assert.rejects(client.register(register), (err: unknown) => err instanceof ConnectionError && err.code === 'server_unreachable');
    } finally {
      await server.close();
    }
  });

  test('registerOnce classifies auth and invalid requests', async () => {
    for (const [status, kind] of [[401, 'auth_rejected'], [400, 'rejected'], [200, 'registered']] as const) {
      const server = await scriptedServer((_req, res) => json(res, status, status === 200 ? handshake : undefined));
      try {
        const outcome = await registerOnce(clientFor(server), register);
        assert.equal(outcome.kind, kind);
      } finally {
        await server.close();
      }
    }
  });
});

test('maintainConnection retries a busy server by Retry-After, then heartbeats', async () => {
  let calls = 0;
  const server = await scriptedServer((req, res) => {
    calls += 1;
    if (req.url === '/api/workers/register' && calls <= 2) return json(res, 503, undefined, { 'retry-after': '1' });
    if (req.url === '/api/workers/register') return json(res, 200, handshake);
    return json(res, 200, { auto_update: false, minimum_version: null, latest_version: '2.0.0', heartbeat_interval_s: 1 });
  });
  let connection: Awaited<ReturnType<typeof connectUntil>>;
  try {
    connection = await connectUntil(server, (policies) => policies.length >= 2);
  } finally {
    await server.close();
  }
  const { policies, delays } = connection;
  assert.deepEqual(delays.slice(0, 2), [1000, 1000], 'Retry-After honoured over the 5 ms floor');
  assert.equal(delays[2], 1000, 'heartbeat at the server interval');
  assert.equal(policies[0]?.poolAutoUpdate, true);
  assert.equal(policies[1]?.poolAutoUpdate, false);
  assert.equal(policies[1]?.latestVersion, '2.0.0');
  const heartbeat = server.requests.find((r) => r.url === '/api/workers/heartbeat');
  assert.deepEqual(JSON.parse(heartbeat?.body ?? '{}'), { worker_id: 'w-1', current_version: '1.0.0', state: 'working' });
});

test('what the server accepts comes with the handshake and every heartbeat; a heartbeat without it is an older server', async () => {
  const accepts = { report_fields: ['serial'], reasons: ['install_failed', 'self_test_failed', 'crash_loop'] };
  const heartbeats = [
    { auto_update: true, minimum_version: null, latest_version: '1.2.0', recommended_version: '1.2.0', heartbeat_interval_s: 1, accepts: { ...accepts, report_fields: [] } },
    { auto_update: true, minimum_version: null, latest_version: '1.2.0', heartbeat_interval_s: 1 },
  ];
  const server = await scriptedServer((req, res) => {
    if (req.url === '/api/workers/register') return json(res, 200, { ...handshake, accepts });
    return json(res, 200, heartbeats.shift() ?? heartbeats[0]);
  });
  let policies: ServerPolicy[];
  try {
    ({ policies } = await connectUntil(server, (seen) => seen.length >= 3));
  } finally {
    await server.close();
  }
  assert.deepEqual(
    policies.map((policy) => policy.accepts),
    [accepts, { ...accepts, report_fields: [] }, null],
  );
  assert.equal(policies[1]?.recommendedVersion, '1.2.0', 'a heartbeat that names the recommended version updates it');
  assert.equal(policies[2]?.recommendedVersion, '1.2.0', 'one that does not leaves it');
});
