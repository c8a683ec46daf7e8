import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { ADMIN_TOKEN_ENV, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, runCli, SERVER_URL_ENV } from '../../src/admin/cli.js';
import { bearer, startTestServer, type TestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor, writeArtifact } from '../helpers/server-fixtures.js';

interface Run {
  code: number;
  out: string[];
  err: string[];
  stdout: string;
  stderr: string;
}

/** A worker's JSON body, the way the worker's connection module sends it. */
function registration(workerId: string, version: string) {
  return { worker_id: workerId, current_version: version, platform: 'linux-x64', channel: 'stable' };
}

/** A port nothing listens on: bound by the OS, then let go. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe('bytebiota-admin against a real listening server', () => {
  let server: TestServer;
  let base: string;
  let dispatcher: Agent;
  /** Every line any run printed, on either stream: the token must be in none of them. */
  const everything: string[] = [];

  async function cli(argv: readonly string[], env: Record<string, string | undefined> = { [SERVER_URL_ENV]: base, [ADMIN_TOKEN_ENV]: server.tokens.admin }): Promise<Run> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, { io: { out: (line) => out.push(line), err: (line) => err.push(line) }, env, dispatcher });
    everything.push(...out, ...err);
    return { code, out, err, stdout: out.join('\n'), stderr: err.join('\n') };
  }

  async function ok(argv: readonly string[]): Promise<string> {
    const run = await cli(argv);
    assert.equal(run.code, EXIT_OK, `${argv.join(' ')} exited ${run.code}: ${run.stderr}`);
    return run.stdout;
  }

  async function register(token: string, workerId: string, version = '1.4.0'): Promise<void> {
    const res = await fetch(`${base}/api/workers/register`, {
      method: 'POST',
      headers: { ...bearer(token), 'content-type': 'application/json' },
      body: JSON.stringify(registration(workerId, version)),
    });
    assert.equal(res.status, 200, await res.text());
  }

  /** Past the server's manifest cache TTL (300 s), so the next read sees a newly published manifest. */
  function pastManifestCache(): void {
    server.clock.set(new Date(server.clock.now().getTime() + 301_000));
  }

  before(async () => {
    server = await startTestServer();
    await publishRelease(server.storeDir, releaseFor({ serial: 1, version: '1.4.0' }), [server.key]);
    await writeArtifact(server.storeDir, '1.4.0', 'bytebiota-worker-1.4.0-linux-x64', Buffer.alloc(4096, 1));
    base = await server.app.listen({ host: '127.0.0.1', port: 0 });
    dispatcher = new Agent();
    await register(server.tokens.canary, 'canary-1');
    await register(server.tokens.stable, 'stable-1');
    await register(server.tokens.stable, 'stable-2');
  });
  after(async () => {
    await dispatcher.close();
    await server.close();
  });

  test('rollout status: the release, its state and its wave table', async () => {
    const text = await ok(['rollout', 'status']);
    assert.match(text, /^stable: 1\.4\.0 \(serial 1\)$/m);
    assert.match(text, /^ {2}state +completed$/m);
    assert.match(text, /^ {2}reason +the first release this server saw/m);
    assert.match(text, /wave +pools=percent +soak +min healthy +started at +admitted +live admitted +updated +failed +healthy needed +waiting on/);
    // The three workers registered on 1.4.0: offered it outside any wave, as already running it.
    assert.match(text, /^ {2}1 +\*=100 +0s +0 +2026-11-20T12:00:00Z +0 +0 +0 +0 +0 /m);
    assert.match(text, /^ {2}outside waves +3 already running it, 0 forced$/m);
    assert.match(text, /failures +0\.0 % \(0 of 0 workers\) vs halt threshold 10\.0 %, minimum sample \d+, window 1h/);
    const other = await cli(['rollout', 'status', '--channel', 'beta']);
    assert.equal(other.code, EXIT_OK);
    assert.equal(other.stdout, 'no rollout on channel beta');
  });

  test('plan set then plan show round-trips, per-wave overrides included', async () => {
    const defaults = await ok(['rollout', 'plan', 'show', '--channel', 'stable']);
    assert.match(defaults, /the server's default plan/);

    const set = await ok(['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'canary=100', '--wave', 'stable=10:soak=1h:min-healthy=20', '--wave', 'stable,edge=100', '--soak', '2h']);
    assert.match(set, /^channel stable: its own plan$/m);
    assert.match(set, /^ {2}2 +stable=10 +1h +20$/m);

    const shown = JSON.parse(await ok(['--json', 'rollout', 'plan', 'show', '--channel', 'stable'])) as unknown;
    assert.deepEqual(shown, {
      channel: 'stable',
      source: 'channel',
      plan: {
        immediate: false,
        waves: [
          { pools: ['canary'], percent: 100, soak_s: 7200, min_healthy: 5 },
          { pools: ['stable'], percent: 10, soak_s: 3600, min_healthy: 20 },
          { pools: ['stable', 'edge'], percent: 100, soak_s: 7200, min_healthy: 5 },
        ],
      },
    });
    const readable = await ok(['rollout', 'plan', 'show', '--channel', 'stable']);
    assert.match(readable, /^ {2}1 +canary=100 +2h +5$/m);
    assert.match(readable, /^ {2}3 +stable,edge=100 +2h +5$/m);

    const immediate = JSON.parse(await ok(['rollout', 'plan', 'set', '--channel', 'beta', '--immediate', '--json'])) as { plan: unknown };
    assert.deepEqual(immediate.plan, { immediate: true, waves: [{ pools: ['*'], percent: 100, soak_s: 0, min_healthy: 0 }] });
    const everyPool = JSON.parse(await ok(['--json', 'rollout', 'plan', 'set', '--channel', 'beta', '--wave', '*=25', '--min-healthy', '0', '--soak', '90s'])) as { plan: unknown };
    assert.deepEqual(everyPool.plan, { immediate: false, waves: [{ pools: ['*'], percent: 25, soak_s: 90, min_healthy: 0 }] });
  });

  test('a new release starts a rollout on the plan; pause then resume changes its state; a second resume is refused', async () => {
    await publishRelease(server.storeDir, releaseFor({ serial: 2, version: '1.5.0' }), [server.key]);
    pastManifestCache();
    const status = await ok(['rollout', 'status', '--channel', 'stable']);
    assert.match(status, /^stable: 1\.5\.0 \(serial 2\)$/m);
    assert.match(status, /^ {2}state +active$/m);
    assert.match(status, /^ {2}2 +stable=10 +1h +20 +- .* wave 1 to finish$/m);

    const paused = await ok(['rollout', 'pause', '--channel', 'stable']);
    assert.match(paused, /^stable: 1\.5\.0 \(serial 2\) is paused \(wave 1 of 3 started\)$/m);
    assert.match(await ok(['rollout', 'status']), /^ {2}state +paused$/m);

    const resumed = await ok(['rollout', 'resume', '--channel', 'stable', '--serial', '2']);
    assert.match(resumed, /is active/);
    assert.match(await ok(['rollout', 'status']), /^ {2}state +active$/m);

    const again = await cli(['rollout', 'resume', '--channel', 'stable']);
    assert.equal(again.code, EXIT_FAILURE);
    assert.deepEqual(again.out, []);
    assert.match(again.stderr, /^error: rollout_state_conflict: cannot resume the rollout of 1\.5\.0 \(serial 2\): it is active$/);

    const unknownSerial = await cli(['rollout', 'pause', '--channel', 'stable', '--serial', '9']);
    assert.equal(unknownSerial.code, EXIT_FAILURE);
    assert.match(unknownSerial.stderr, /^error: no_rollout: /);
  });

  test('halt with a reason: the reason and who are in the answer and in the status', async () => {
    const halted = await ok(['rollout', 'halt', '--channel', 'stable', '--reason', 'disk writes doubled on canary']);
    assert.match(halted, /is halted/);
    assert.match(halted, /reason: disk writes doubled on canary \(by [0-9a-f]+ at 2026-11-20T12:05:01Z\)/);
    const status = await ok(['rollout', 'status', '--channel', 'stable']);
    assert.match(status, /^ {2}state +halted$/m);
    assert.match(status, /^ {2}reason +disk writes doubled on canary$/m);
  });

  test('--json prints the server answer as one parseable object', async () => {
    const run = await cli(['rollout', 'status', '--json']);
    assert.equal(run.code, EXIT_OK);
    assert.equal(run.out.length, 1);
    const answer = JSON.parse(run.stdout) as { generated_at: string; rollouts: Array<{ version: string; state: string; state_reason: string; waves: unknown[] }> };
    assert.equal(answer.generated_at, '2026-11-20T12:05:01.000Z');
    assert.equal(answer.rollouts[0]?.version, '1.5.0');
    assert.equal(answer.rollouts[0]?.state, 'halted');
    assert.equal(answer.rollouts[0]?.waves.length, 3);
    for (const argv of [['pool', 'list'], ['fleet'], ['worker', 'explain', 'canary-1'], ['rollout', 'abort', '--channel', 'stable']]) {
      const each = await cli(['--json', ...argv]);
      assert.equal(each.code, EXIT_OK, each.stderr);
      assert.equal(each.out.length, 1, argv.join(' '));
      assert.equal(typeof JSON.parse(each.stdout), 'object');
    }
  });

  test('pool set keeps what is not given: auto_update across a window change, windows across an auto_update change', async () => {
    assert.match(await ok(['pool', 'set', 'canary', '--auto-update', 'on']), /^pool canary: auto_update on; windows none \(always open\)/);
    const windowed = JSON.parse(await ok(['--json', 'pool', 'set', 'canary', '--window', 'Mon-Thu 09:00-17:00 Europe/Berlin', '--window', 'Sat,Sun 22:00-06:00 UTC'])) as unknown;
    assert.deepEqual(windowed, {
      pool: 'canary',
      auto_update: true,
      maintenance_windows: ['Mon-Thu 09:00-17:00 Europe/Berlin', 'Sat,Sun 22:00-06:00 UTC'],
      updated_at: '2026-11-20T12:05:01.000Z',
    });
    // A pool with no policy yet starts from off.
    assert.match(await ok(['pool', 'set', 'stable', '--window', 'daily 01:00-05:00 UTC']), /^pool stable: auto_update off; windows daily 01:00-05:00 UTC/);

    const list = await ok(['pool', 'list']);
    // 2026-11-20 is a Friday: canary's windows are closed until Saturday 22:00 UTC; stable's opens at 01:00 UTC.
    assert.match(list, /^canary +on +Mon-Thu 09:00-17:00 Europe\/Berlin; Sat,Sun 22:00-06:00 UTC +no +2026-11-21T22:00:00Z$/m);
    assert.match(list, /^stable +off +daily 01:00-05:00 UTC +no +2026-11-21T01:00:00Z$/m);

    assert.match(await ok(['pool', 'set', 'canary', '--auto-update', 'off']), /^pool canary: auto_update off; windows Mon-Thu 09:00-17:00 Europe\/Berlin; Sat,Sun 22:00-06:00 UTC/);
    assert.match(await ok(['pool', 'set', 'canary', '--no-windows']), /^pool canary: auto_update off; windows none \(always open\)/);

    const invalid = await cli(['pool', 'set', 'canary', '--window', 'Someday 25:00']);
    assert.equal(invalid.code, EXIT_FAILURE);
    assert.match(invalid.stderr, /^error: invalid_maintenance_window: /);
    assert.match(await ok(['pool', 'list']), /^canary +off +none \(always open\) +yes +-$/m);
    await ok(['pool', 'set', 'canary', '--auto-update', 'on']);
  });

  test('worker explain: the worker, what it is offered, then every step', async () => {
    // 1.6.0 starts on the channel's plan, whose first wave is all of pool canary (auto_update on, no windows).
    await publishRelease(server.storeDir, releaseFor({ serial: 3, version: '1.6.0' }), [server.key]);
    pastManifestCache();
    await register(server.tokens.canary, 'canary-1');
    const text = await ok(['worker', 'explain', 'canary-1']);
    assert.match(text, /^worker +canary-1$/m);
    assert.match(text, /^pool +canary$/m);
    assert.match(text, /^channel +stable$/m);
    assert.match(text, /^version +1\.4\.0$/m);
    assert.match(text, /^last seen +2026-11-20T12:10:02Z$/m);
    assert.match(text, /^live +yes$/m);
    assert.match(text, /^offered +1\.6\.0 \(serial 3, active\)$/m);
    assert.match(text, /^check +ok +detail$/m);
    assert.match(text, /^live +✓ +last seen /m);
    assert.match(text, /^pool_policy +✓ +pool canary: auto_update on$/m);
    // Its registration was the poll that admitted it.
    assert.match(text, /^admitted +✓ +admitted to 1\.6\.0$/m);

    // Not seen for longer than the stale limit, in a pool that is off and outside its window.
    const stable = await ok(['worker', 'explain', 'stable-1']);
    assert.match(stable, /^live +no$/m);
    assert.match(stable, /^offered +nothing new: already runs 1\.4\.0 \(serial 1, completed\)$/m);
    assert.match(stable, /^live +✗ +not seen since /m);
    assert.match(stable, /^pool_policy +✗ +pool stable: auto_update off$/m);
    assert.match(stable, /^window +✗ +windows daily 01:00-05:00 UTC: closed now$/m);

    const unknown = await cli(['worker', 'explain', 'nobody']);
    assert.equal(unknown.code, EXIT_FAILURE);
    assert.match(unknown.stderr, /^error: unknown_worker: /);
  });

  test('fleet: totals, the groups table, recent failures', async () => {
    const text = await ok(['fleet', '--limit', '2']);
    assert.match(text, /^workers 3: 3 starting/m);
    assert.match(text, /^stable +canary +1\.4\.0 +starting +1$/m);
    assert.match(text, /^stable +stable +1\.4\.0 +starting +2$/m);
    assert.match(text, /^no recent failures$/m);
    // These workers hold only pool tokens: no credential age yet.
    assert.match(text, /^credentials \(listed workers\)$/m);
    assert.match(text, /^ {2}\S+ +(canary|stable) +pool token$/m);
    const view = JSON.parse(await ok(['fleet', '--limit', '2', '--json'])) as { total_workers: number; workers: unknown[] };
    assert.equal(view.total_workers, 3);
    assert.equal(view.workers.length, 2);
  });

  test('usage errors exit 2 before any request', async () => {
    const env = { [SERVER_URL_ENV]: base, [ADMIN_TOKEN_ENV]: server.tokens.admin };
    const cases: Array<{ name: string; argv: string[]; env?: Record<string, string | undefined>; stderr: RegExp }> = [
      { name: 'no token', argv: ['rollout', 'status'], env: { [SERVER_URL_ENV]: base }, stderr: /^error: usage: give an admin token/ },
      { name: 'no server', argv: ['rollout', 'status'], env: { [ADMIN_TOKEN_ENV]: server.tokens.admin }, stderr: /^error: usage: give the server's URL/ },
      { name: 'a server that is no http URL', argv: ['--server', 'ftp://example.net', 'fleet'], stderr: /^error: usage: invalid --server/ },
      { name: 'an unknown flag', argv: ['rollout', 'status', '--bogus'], stderr: /unknown option '--bogus'/ },
      { name: 'no subcommand', argv: ['rollout'], stderr: /Usage: bytebiota-admin rollout/ },
      { name: 'plan set without --channel', argv: ['rollout', 'plan', 'set', '--wave', 'canary=100'], stderr: /required option '--channel <channel>' not specified/ },
      { name: 'plan set with neither --wave nor --immediate', argv: ['rollout', 'plan', 'set', '--channel', 'stable'], stderr: /^error: usage: give the waves/ },
      { name: '--immediate with --wave', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--immediate', '--wave', 'canary=100'], stderr: /^error: usage: --immediate .* without --wave/ },
      { name: 'percent 0', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'canary=0'], stderr: /^error: usage: invalid percent "0" in --wave "canary=0"/ },
      { name: 'percent 101', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'canary=101'], stderr: /^error: usage: invalid percent "101"/ },
      { name: 'an upper-case pool', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'Canary=10'], stderr: /^error: usage: invalid pool "Canary"/ },
      { name: 'no share', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'canary'], stderr: /^error: usage: invalid --wave "canary": expected POOLS=PERCENT/ },
      { name: '* beside a pool', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', '*,canary=10'], stderr: /^error: usage: .*"\*" already means every pool/ },
      { name: 'a pool twice', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'a,a=10'], stderr: /^error: usage: .*names a pool twice/ },
      { name: 'a soak without unit', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'canary=10', '--soak', '30'], stderr: /^error: usage: invalid --soak "30"/ },
      { name: 'a soak over 30 days', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'canary=10:soak=31d'], stderr: /^error: usage: soak 31d in --wave/ },
      { name: 'an unknown wave setting', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'canary=10:wait=1h'], stderr: /^error: usage: .*unknown setting "wait"/ },
      { name: 'a negative min-healthy', argv: ['rollout', 'plan', 'set', '--channel', 'stable', '--wave', 'canary=10', '--min-healthy', '-1'], stderr: /^error: usage: invalid --min-healthy "-1"/ },
      { name: 'a bad channel', argv: ['rollout', 'pause', '--channel', 'Stable'], stderr: /^error: usage: invalid channel "Stable"/ },
      { name: 'serial 0', argv: ['rollout', 'halt', '--channel', 'stable', '--serial', '0'], stderr: /^error: usage: invalid --serial "0"/ },
      { name: 'auto-update maybe', argv: ['pool', 'set', 'canary', '--auto-update', 'maybe'], stderr: /argument 'maybe' is invalid/ },
      { name: 'pool set with nothing to set', argv: ['pool', 'set', 'canary'], stderr: /^error: usage: nothing to change/ },
      { name: '--window with --no-windows', argv: ['pool', 'set', 'canary', '--window', 'daily 01:00-02:00 UTC', '--no-windows'], stderr: /^error: usage: give --window or --no-windows, not both/ },
      { name: 'fleet limit 0', argv: ['fleet', '--limit', '0'], stderr: /^error: usage: invalid --limit "0"/ },
    ];
    for (const c of cases) {
      const run = await cli(c.argv, c.env ?? env);
      assert.equal(run.code, EXIT_USAGE, `${c.name}: exited ${run.code}: ${run.stderr}`);
      assert.deepEqual(run.out, [], c.name);
      assert.match(run.stderr, c.stderr, c.name);
    }
  });

  test('refusals and failures exit 1 with the code: a server that cannot be reached, a token it does not know', async () => {
    const port = await closedPort();
    const unreachable = await cli(['--server', `http://127.0.0.1:${port}`, '--token', server.tokens.admin, 'rollout', 'status'], {});
    assert.equal(unreachable.code, EXIT_FAILURE);
    assert.match(unreachable.stderr, /^error: server_unreachable: no answer from http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);

    const wrongToken = await cli(['fleet'], { [SERVER_URL_ENV]: base, [ADMIN_TOKEN_ENV]: 'bb_not_a_real_token_at_all' });
    assert.equal(wrongToken.code, EXIT_FAILURE);
    assert.match(wrongToken.stderr, /^error: invalid_token: /);

    const workerToken = await cli(['--token', server.tokens.canary, 'fleet'], { [SERVER_URL_ENV]: base });
    assert.equal(workerToken.code, EXIT_FAILURE);
    assert.match(workerToken.stderr, /^error: [a-z_]+: /);
    assert.equal(workerToken.stderr.includes(server.tokens.canary), false);
  });

  test('flags win over the environment, and a base URL with a trailing slash works', async () => {
    const run = await cli(['--server', `${base}/`, '--token', server.tokens.admin, 'rollout', 'status', '--channel', 'stable'], {
      [SERVER_URL_ENV]: 'http://127.0.0.1:1',
      [ADMIN_TOKEN_ENV]: 'not-this-one',
    });
    assert.equal(run.code, EXIT_OK, run.stderr);
    assert.match(run.stdout, /^stable: 1\.6\.0 \(serial 3\)$/m);
  });

  test('the admin token never appears in any output', () => {
    assert.ok(everything.length > 100);
    const token = server.tokens.admin;
    // `bbt_<id>_<secret>`: the id is the token's public name (rollout status shows who acted by it);
    // the secret is what must never be printed, whole or in any piece long enough to matter.
    const secret = /^bbt_[0-9a-f]{16}_(.+)$/.exec(token)?.[1];
    assert.ok(secret !== undefined && secret.length >= 32);
    assert.ok(everything.some((line) => line.includes(token.slice(4, 20))), 'the token id is shown as who acted');
    for (const line of everything) {
      assert.equal(line.includes(token), false, line);
      for (let at = 0; at + 12 <= secret.length; at += 1) assert.equal(line.includes(secret.slice(at, at + 12)), false, line);
    }
  });
});
