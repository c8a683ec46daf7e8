import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { publishRelease, releaseFor } from '../helpers/server-fixtures.js';
import { makeKey } from '../helpers/trust-fixtures.js';
import { createTokenWithCli, runServerCommand, startServerProcess, type RunningServer } from '../helpers/server-process.js';

describe('bytebiota-server command line', () => {
  let dir: string;
  let db: string;
  let storeDir: string;
  const key = makeKey();
  const running: RunningServer[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-cli-'));
    db = join(dir, 'fleet.sqlite');
    storeDir = join(dir, 'store');
    await mkdir(storeDir);
  });
  after(async () => {
    for (const server of running) if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  test('token create / list / revoke; the created token works until revoked', async () => {
    const workerToken = await createTokenWithCli(db, 'worker', 'canary');
    assert.match(workerToken, /^bbt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const adminToken = await createTokenWithCli(db, 'admin');
    const id = workerToken.split('_')[1]!;

    const list = await runServerCommand(['token', 'list', '--db', db, '--json']);
    assert.equal(list.code, 0);
    const rows = list.stdout.trim().split('\n').map((line) => JSON.parse(line) as { id: string; role: string; pool: string | null });
    assert.deepEqual(rows.map((r) => [r.role, r.pool]).sort(), [['admin', null], ['worker', 'canary']]);
    // The secret by position (`bbt_` + 16 hex + `_`): base64url has `_` in its alphabet, so splitting on it could test a fragment.
    assert.equal(list.stdout.includes(workerToken.slice('bbt_0123456789abcdef_'.length)), false, 'no secret in the listing');

    await publishRelease(storeDir, releaseFor({ released_at: '2026-01-01T00:00:00Z', expires: '2099-01-01T00:00:00Z' }), [key]);
    const server = await startServerProcess(['--store', storeDir, '--db', db, '--release-key', key.publicKeyBase64]);
    running.push(server);
    const latest = `${server.url}/api/worker-updates/latest?channel=stable`;
    assert.equal((await fetch(latest, { headers: { authorization: `Bearer ${workerToken}` } })).status, 200);
    assert.equal((await fetch(`${server.url}/api/admin/fleet`, { headers: { authorization: `Bearer ${adminToken}` } })).status, 200);

    const revoke = await runServerCommand(['token', 'revoke', '--db', db, id]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.equal((await fetch(latest, { headers: { authorization: `Bearer ${workerToken}` } })).status, 401);
    const again = await runServerCommand(['token', 'revoke', '--db', db, id]);
    assert.equal(again.code, 2);

    // The token never appears in the server's logs.
    assert.equal(JSON.stringify(server.lines).includes(workerToken.slice('bbt_0123456789abcdef_'.length)), false);
    server.child.kill('SIGINT');
    const [code] = await server.exited;
    assert.equal(code, 0);
  });

  test('enrollment tokens: create with --role enroll, list, enroll a worker against a server with --refuse-pool-tokens, revoke', async () => {
    const enrollDb = join(dir, 'enroll.sqlite');
    const created = await runServerCommand(['token', 'create', '--db', enrollDb, '--role', 'enroll', '--pool', 'rack7', '--expires-in', '7d', '--max-uses', '2', '--label', 'rack 7']);
    assert.equal(created.code, 0, created.stderr);
    const enrollmentToken = created.stdout.trim().split('\n').at(-1)!;
    assert.match(enrollmentToken, /^bbe_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const poolToken = await createTokenWithCli(enrollDb, 'worker', 'rack7');

    const list = await runServerCommand(['token', 'list', '--db', enrollDb, '--json']);
    const rows = list.stdout.trim().split('\n').map((line) => JSON.parse(line) as { id: string; role: string; pool: string; max_uses: number | null; uses: number; expires_at: string | null });
    const row = rows.find((r) => r.role === 'enroll');
    assert.deepEqual({ pool: row?.pool, max_uses: row?.max_uses, uses: row?.uses }, { pool: 'rack7', max_uses: 2, uses: 0 });
    const expiresInMs = new Date(row!.expires_at!).getTime() - Date.now();
    assert.ok(expiresInMs > 6.9 * 86_400_000 && expiresInMs <= 7 * 86_400_000, String(row?.expires_at));
    assert.equal(list.stdout.includes(enrollmentToken.slice('bbe_0123456789abcdef_'.length)), false, 'no secret in the listing');

    const server = await startServerProcess(['--store', storeDir, '--db', enrollDb, '--release-key', key.publicKeyBase64, '--refuse-pool-tokens']);
    running.push(server);
    const post = (path: string, body: unknown, bearer?: string) =>
      fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
        body: JSON.stringify(body),
      });
    const registration = { worker_id: 'w-rack7', current_version: '1.0.0', platform: 'linux-x64', channel: 'stable' };
    const refused = await post('/api/workers/register', registration, poolToken);
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'pool_token_refused');
    const enrolled = await post('/api/workers/enroll', { enrollment_token: enrollmentToken, worker_id: 'w-rack7' });
    assert.equal(enrolled.status, 200);
    const { credential } = (await enrolled.json()) as { credential: string };
    assert.equal((await post('/api/workers/register', registration, credential)).status, 200);

    const revoke = await runServerCommand(['token', 'revoke', '--db', enrollDb, row!.id]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(revoke.stdout, /revoked enrollment token/);
    const afterRevoke = await post('/api/workers/enroll', { enrollment_token: enrollmentToken, worker_id: 'w-other' });
    assert.equal(((await afterRevoke.json()) as { error: { code: string } }).error.code, 'enrollment_token_revoked');
    const text = JSON.stringify(server.lines);
    assert.equal(text.includes(enrollmentToken), false);
    assert.equal(text.includes(credential), false);
    server.child.kill('SIGINT');
    await server.exited;

    for (const [name, args, stderr] of [
      ['enroll without pool', ['--role', 'enroll'], /--pool/],
      ['zero uses', ['--role', 'enroll', '--pool', 'p', '--max-uses', '0'], /--max-uses/],
      ['bad duration', ['--role', 'enroll', '--pool', 'p', '--expires-in', '7 days'], /duration/],
      ['limits on a worker token', ['--role', 'worker', '--pool', 'p', '--max-uses', '3'], /--role enroll/],
    ] as Array<[string, string[], RegExp]>) {
      const result = await runServerCommand(['token', 'create', '--db', enrollDb, ...args]);
      assert.equal(result.code, 2, name);
      assert.match(result.stderr, stderr, name);
    }
  });

  test('bad commands and configuration exit 2 with a message', async () => {
    const configFile = join(dir, 'server.json');
    await writeFile(configFile, JSON.stringify({ store: storeDir, db, release_keys: [key.publicKeyBase64], port: 'x' }));
    const cases: Array<{ name: string; args: string[]; env?: Record<string, string>; stderr: RegExp }> = [
      { name: 'worker token without pool', args: ['token', 'create', '--db', db, '--role', 'worker'], stderr: /--pool/ },
      { name: 'unknown role', args: ['token', 'create', '--db', db, '--role', 'root'], stderr: /--role/ },
      { name: 'token without db', args: ['token', 'list'], stderr: /--db/ },
      { name: 'bad port', args: ['serve', '--port', '123456', '--store', storeDir, '--db', db, '--release-key', key.publicKeyBase64], stderr: /--port/ },
      { name: 'unreadable store', args: ['--store', join(dir, 'missing'), '--db', db, '--release-key', key.publicKeyBase64], stderr: /not reachable/ },
      { name: 'unknown key format', args: ['--store', storeDir, '--db', db, '--release-key', 'AAAA'], stderr: /release key/ },
      { name: 'missing release key', args: ['--store', storeDir, '--db', db], stderr: /release-key/ },
      // Nothing listens on port 1: the database is named in the message, never its password.
      {
        name: 'unreachable postgres',
        args: ['--store', storeDir, '--db', 'postgres://bytebiota:hunter2@127.0.0.1:1/fleet', '--release-key', key.publicKeyBase64],
        stderr: /cannot use the PostgreSQL database postgres:\/\/bytebiota:\*\*\*@127\.0\.0\.1:1\/fleet/,
      },
      { name: 'bad config file value', args: ['--config', configFile], stderr: /port/ },
      { name: 'bad env value', args: ['--store', storeDir, '--db', db, '--release-key', key.publicKeyBase64], env: { BYTEBIOTA_CACHE_TTL: 'soon' }, stderr: /BYTEBIOTA_CACHE_TTL/ },
      { name: 'unknown flag', args: ['--bogus'], stderr: /unknown option/ },
    ];
    for (const c of cases) {
      const result = await runServerCommand(c.args, c.env);
      assert.equal(result.code, 2, `${c.name}: ${result.stderr}`);
      assert.match(result.stderr, c.stderr, c.name);
    }
  });

  test('the environment and a config file configure serve', async () => {
    const configFile = join(dir, 'env-server.json');
    await writeFile(configFile, JSON.stringify({ db, release_keys: [key.publicKeyBase64], heartbeat_interval: 7 }));
    const server = await startServerProcess(['--config', configFile], { BYTEBIOTA_STORE: storeDir });
    running.push(server);
    const token = await createTokenWithCli(db, 'worker', 'envpool');
    const res = await fetch(`${server.url}/api/workers/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ worker_id: 'w-env', current_version: '1.0.0', platform: 'linux-x64', channel: 'stable' }),
    });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { heartbeat_interval_s: number }).heartbeat_interval_s, 7);
    server.child.kill('SIGTERM');
    assert.equal((await server.exited)[0], 0);
  });
});
