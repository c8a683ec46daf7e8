import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent } from 'undici';
import { ADMIN_TOKEN_ENV, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, runCli, SERVER_URL_ENV } from '../../src/admin/cli.js';
import { bearer, startTestServer, type TestServer } from '../helpers/server-app.js';

/** bytebiota-admin's worker identity commands against a real listening server. */
describe('bytebiota-admin: enroll-token, worker revoke and rotate', () => {
  let server: TestServer;
  let base: string;
  let dispatcher: Agent;

  async function cli(argv: readonly string[]): Promise<{ code: number; out: string[]; stderr: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, { io: { out: (line) => out.push(line), err: (line) => err.push(line) }, env: { [SERVER_URL_ENV]: base, [ADMIN_TOKEN_ENV]: server.tokens.admin }, dispatcher });
    return { code, out, stderr: err.join('\n') };
  }

  before(async () => {
    server = await startTestServer();
    base = await server.app.listen({ host: '127.0.0.1', port: 0 });
    dispatcher = new Agent();
  });
  after(async () => {
    await dispatcher.close();
    await server.close();
  });

  test('enroll-token create, list, revoke; the token enrolls a worker; worker rotate then revoke', async () => {
    const created = await cli(['--json', 'enroll-token', 'create', '--pool', 'canary', '--expires-in', '7d', '--max-uses', '2', '--label', 'rack 4']);
    assert.equal(created.code, EXIT_OK, created.stderr);
    const token = JSON.parse(created.out[0]!) as { id: string; token: string; max_uses: number; expires_at: string };
    assert.equal(token.max_uses, 2);
    assert.equal(new Date(token.expires_at).getTime() - server.clock.now().getTime(), 7 * 86_400_000);

    const enrolled = await server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload: { enrollment_token: token.token, worker_id: 'w-admin' } });
    assert.equal(enrolled.statusCode, 200);
    const credential = enrolled.json<{ credential: string }>().credential;

    const list = await cli(['enroll-token', 'list']);
    assert.equal(list.code, EXIT_OK);
    assert.ok(list.out.some((line) => line.startsWith(token.id) && line.includes('1/2')), list.out.join('\n'));
    assert.ok(!list.out.join('\n').includes(token.token), 'the secret is never listed');

    await server.app.inject({ method: 'POST', url: '/api/workers/register', headers: bearer(credential), payload: { worker_id: 'w-admin', current_version: '1.0.0', platform: 'linux-x64', channel: 'stable' } });
    const fleet = await cli(['fleet']);
    assert.match(fleet.out.join('\n'), /^ {2}w-admin +canary +0h$/m, 'the fleet view shows the credential age');
    assert.equal((await cli(['worker', 'rotate', 'w-admin'])).code, EXIT_OK);
    const heartbeat = { method: 'POST' as const, url: '/api/workers/heartbeat', headers: bearer(credential), payload: { worker_id: 'w-admin', current_version: '1.0.0', state: 'working' } };
    assert.equal((await server.app.inject(heartbeat)).json<{ rotate_credential?: boolean }>().rotate_credential, true);

    const revoke = await cli(['worker', 'revoke', 'w-admin']);
    assert.equal(revoke.code, EXIT_OK, revoke.stderr);
    assert.equal((await server.app.inject(heartbeat)).statusCode, 401);
    const again = await cli(['worker', 'revoke', 'w-admin']);
    assert.equal(again.code, EXIT_FAILURE);
    assert.match(again.stderr, /^error: no_credential:/);

    assert.equal((await cli(['enroll-token', 'revoke', token.id])).code, EXIT_OK);
    const spent = await server.app.inject({ method: 'POST', url: '/api/workers/enroll', payload: { enrollment_token: token.token, worker_id: 'w-admin-2' } });
    assert.equal(spent.statusCode, 401);
  });

  test('usage errors: exit 2', async () => {
    for (const argv of [
      ['enroll-token', 'create', '--pool', 'canary', '--expires-in', 'soon'],
      ['enroll-token', 'create'],
      ['enroll-token', 'revoke', 'nope'],
      ['worker', 'revoke', '../x'],
    ]) {
      assert.equal((await cli(argv)).code, EXIT_USAGE, argv.join(' '));
    }
  });
});
