import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'undici';
import { systemClock } from '../../../src/shared/clock.js';
import { ServerClient } from '../../../src/worker/runtime/connection.js';
import { claimCredential, credentialBearer, enroll, type IdentityContext } from '../../../src/worker/runtime/identity.js';
import { readCredential, writeCredential } from '../../../src/worker/install/credential.js';
import { startTestServer, type TestServer } from '../../helpers/server-app.js';
import { memoryLogger } from '../../helpers/engine-fixtures.js';
import { tempInstallRoots } from '../../helpers/install-roots.js';

/**
 * The worker's identity steps against a real listening server: the bearer read from
 * credential.json before each request (and once more after a 401), so the supervisor never
 * keeps a credential `run` rotated away; the claim of a pool-token worker, and a refused one.
 */
describe('worker identity (runtime/identity.ts)', () => {
  let server: TestServer;
  let base: string;
  const dispatcher = new Agent();
  const installRoot = tempInstallRoots('identity');

  before(async () => {
    server = await startTestServer({ enrollRateLimit: { max: 1000, windowSeconds: 60 } });
    base = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await dispatcher.close();
    await server.close();
  });

  const register = (client: ServerClient, workerId: string) => client.register({ worker_id: workerId, current_version: '1.0.0', platform: 'linux-x64', channel: 'stable' });

  test("the supervisor's client follows a rotation made by run, even in the window between confirm and rewrite", async () => {
    const layout = installRoot('follow');
    const logger = memoryLogger();
    const run = new ServerClient({ serverUrl: base, token: credentialBearer(layout, base, null), dispatcher, clock: systemClock });
    const supervisor = new ServerClient({ serverUrl: base, token: credentialBearer(layout, base, null), dispatcher, clock: systemClock });
    const ctx: IdentityContext = { client: run, layout, serverUrl: base, workerId: 'w-follow', log: logger.log };
    const enrollment = await server.addEnrollmentToken('canary');
    assert.deepEqual((await enroll(ctx, { enrollmentToken: enrollment.token, platform: 'linux-x64', channel: 'stable', replace: false })).kind, 'enrolled');
    await register(supervisor, 'w-follow');

    // run: rotate, store next_credential, confirm; killed before rewriting the file.
    const file = (await readCredential(layout))!;
    const next = (await run.rotateCredential(file.credential)).credential;
    await writeCredential(layout, { ...file, next_credential: next });
    await run.confirmCredential(next);
    // The supervisor sends the old one, gets 401, re-reads the file and succeeds with the new one.
    await register(supervisor, 'w-follow');
    assert.ok(!logger.text().includes(next) && !logger.text().includes(file.credential));
  });

  test('claim: a pool-token worker gets its own credential once; a second install with the same id is refused and keeps the pool token', async () => {
    const first = installRoot('claim-1');
    const second = installRoot('claim-2');
    const logger = memoryLogger();
    const poolClient = (layout: typeof first) => new ServerClient({ serverUrl: base, token: credentialBearer(layout, base, server.tokens.canary), dispatcher, clock: systemClock });
    const a = poolClient(first);
    await register(a, 'w-claimed');
    assert.equal(await claimCredential({ client: a, layout: first, serverUrl: base, workerId: 'w-claimed', log: logger.log }, server.tokens.canary), 'claimed');
    const stored = (await readCredential(first))!;
    assert.match(stored.credential, /^bbw_/);
    assert.equal(await a.bearer(), stored.credential, 'the credential replaces the pool token');

    const b = poolClient(second);
    assert.equal(await claimCredential({ client: b, layout: second, serverUrl: base, workerId: 'w-claimed', log: logger.log }, server.tokens.canary), 'already_enrolled');
    const refusal = logger.lines().find((line) => line['event'] === 'worker_claim_refused');
    assert.equal(refusal?.['level'], 50, 'logged at error');
    assert.equal(await readCredential(second), null);
    assert.equal(await b.bearer(), server.tokens.canary);
    assert.ok(!logger.text().includes(stored.credential) && !logger.text().includes(server.tokens.canary));
  });
});
