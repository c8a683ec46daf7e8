import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bearer, startTestServer, type TestServer } from '../../helpers/server-app.js';
import { spawnWorkerCli, type SpawnedProgram } from '../../helpers/worker-fixtures.js';
import { startHoldingProxy, type HoldingProxy } from '../../helpers/holding-proxy.js';
import { until } from '../../helpers/wait.js';

/**
 * Worker identity with real worker processes (`bytebiota-worker enroll` and `run`) against a real
 * listening server: enrollment and its exit codes, revocation of one worker while another of its
 * pool carries on, and rotation surviving a kill -9 of the worker, or the loss of the server,
 * between storing the new credential and confirming it. Every secret seen is then searched for
 * in every line the workers and the server wrote.
 */

interface StoredCredential {
  worker_id: string;
  server_url: string;
  credential: string;
  next_credential?: string;
}

const dirs: string[] = [];
const programs: SpawnedProgram[] = [];
const secrets = new Set<string>();

async function freshRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'bytebiota-identity-'));
  dirs.push(root);
  return root;
}

function spawn(args: string[], env: NodeJS.ProcessEnv = {}): SpawnedProgram {
  const program = spawnWorkerCli(args, { BYTEBIOTA_WORKER_TOKEN: '', BYTEBIOTA_ENROLLMENT_TOKEN: '', ...env });
  programs.push(program);
  return program;
}

async function stored(root: string): Promise<StoredCredential> {
  const file = JSON.parse(await readFile(join(root, 'credential.json'), 'utf8')) as StoredCredential;
  secrets.add(file.credential);
  if (file.next_credential) secrets.add(file.next_credential);
  return file;
}

const event = (name: string) => (line: Record<string, unknown>) => line['event'] === name;

describe('worker identity, worker processes', { concurrency: 1 }, () => {
  let server: TestServer;
  let proxy: HoldingProxy;

  before(async () => {
    server = await startTestServer({ heartbeatIntervalSeconds: 1, enrollRateLimit: { max: 1000, windowSeconds: 60 } });
    const base = await server.app.listen({ host: '127.0.0.1', port: 0 });
    proxy = await startHoldingProxy(base);
    secrets.add(server.tokens.canary).add(server.tokens.admin);
  });
  after(async () => {
    for (const program of programs) program.kill('SIGKILL');
    await proxy?.close();
    await server?.close();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  const heartbeatStatus = async (workerId: string, credential: string): Promise<number> =>
    (
      await server.app.inject({
        method: 'POST',
        url: '/api/workers/heartbeat',
        headers: bearer(credential),
        payload: { worker_id: workerId, current_version: '1.0.0', state: 'working' },
      })
    ).statusCode;

  const heartbeatsOf = (workerId: string): number => server.logs().filter((l) => l['event'] === 'worker_heartbeat' && l['worker_id'] === workerId && l['statusCode'] === undefined && l['result'] === undefined).length;

  test('enroll: stores a 0600 credential for the id in state.json; exit 1 with the server code on a refusal; 2 on a usage error', async () => {
    const once = await server.addEnrollmentToken('canary', { maxUses: 1 });
    secrets.add(once.token);
    const root = await freshRoot();
    const ok = spawn(['enroll', '--server', proxy.url, '--install-root', root], { BYTEBIOTA_ENROLLMENT_TOKEN: once.token });
    await ok.waitForLine(event('worker_enrolled'));
    assert.equal((await ok.exited).code, 0, ok.stderr());
    const file = await stored(root);
    const state = JSON.parse(await readFile(join(root, 'state.json'), 'utf8')) as { worker_id: string };
    assert.equal(file.worker_id, state.worker_id);
    assert.equal(file.server_url, proxy.url);
    assert.equal((await stat(join(root, 'credential.json'))).mode & 0o777, 0o600);

    const cases: Array<{ name: string; token: string; code: string; root: string }> = [
      { name: 'used up', token: once.token, code: 'enrollment_token_used_up', root: await freshRoot() },
      { name: 'unknown', token: `bbe_${'0'.repeat(16)}_${'A'.repeat(43)}`, code: 'invalid_enrollment_token', root: await freshRoot() },
      { name: 'id already enrolled', token: (await server.addEnrollmentToken('canary')).token, code: 'worker_already_enrolled', root },
    ];
    for (const c of cases) {
      secrets.add(c.token);
      const refused = spawn(['enroll', '--server', proxy.url, '--install-root', c.root, '--enrollment-token', c.token]);
      const line = await refused.waitForLine(event('worker_enroll_failed'));
      assert.equal(line['server_code'], c.code, c.name);
      assert.equal((await refused.exited).code, 1, c.name);
    }
    assert.equal((await stored(root)).credential, file.credential, 'a refused enrollment leaves the stored credential alone');

    const usage = spawn(['enroll', '--server', proxy.url, '--install-root', await freshRoot()]);
    assert.equal((await usage.exited).code, 2);
    assert.match(usage.stderr(), /enroll needs an enrollment token/);
  });

  test('revoke: the revoked worker gets 401 at its next request and never falls back to the pool token; another worker of the pool carries on', async () => {
    const enrollment = await server.addEnrollmentToken('canary');
    secrets.add(enrollment.token);
    const [rootA, rootB] = [await freshRoot(), await freshRoot()];
    // Both also hold the pool token: a revoked credential must not fall back to it.
    const env = { BYTEBIOTA_ENROLLMENT_TOKEN: enrollment.token, BYTEBIOTA_WORKER_TOKEN: server.tokens.canary };
    const a = spawn(['run', '--server', proxy.url, '--install-root', rootA], env);
    const b = spawn(['run', '--server', proxy.url, '--install-root', rootB], env);
    await a.waitForLine(event('worker_registered'));
    await b.waitForLine(event('worker_registered'));
    const [fileA, fileB] = [await stored(rootA), await stored(rootB)];
    assert.ok(a.lines.some(event('worker_enrolled')), 'enrolled automatically at start');

    const revoked = await server.app.inject({ method: 'POST', url: `/api/admin/workers/${fileA.worker_id}/revoke`, headers: bearer(server.tokens.admin) });
    assert.equal(revoked.statusCode, 200);
    const failed = await a.waitForLine((l) => l['event'] === 'worker_heartbeat_failed' && l['code'] === 'auth_rejected');
    const said = await a.waitForLine(event('worker_credential_rejected'));
    assert.equal(said['level'], 'error');
    assert.match(String(failed['error']), /401 \(invalid_token\)/);
    const bBefore = heartbeatsOf(fileB.worker_id);
    await until('worker B heartbeats on', () => heartbeatsOf(fileB.worker_id) >= bBefore + 2);
    await a.waitForLine((l) => l['event'] === 'worker_heartbeat_failed' && l !== failed);
    const poolTokenUses = server.logs().filter((l) => l['worker_id'] === fileA.worker_id && l['token_id'] === server.tokens.canaryId);
    assert.equal(poolTokenUses.length, 0, JSON.stringify(poolTokenUses));
    assert.equal((await stored(rootA)).credential, fileA.credential);
    assert.equal(a.lines.filter(event('worker_credential_rejected')).length, 1, 'said once, not at every heartbeat');
    a.kill();
    b.kill();
    await Promise.all([a.exited, b.exited]);
  });

  test('rotation: a kill -9 of the worker between storing the new credential and confirming it; it converges on restart', async () => {
    const enrollment = await server.addEnrollmentToken('canary');
    secrets.add(enrollment.token);
    const root = await freshRoot();
    const env = { BYTEBIOTA_ENROLLMENT_TOKEN: enrollment.token };
    const first = spawn(['run', '--server', proxy.url, '--install-root', root], env);
    await first.waitForLine(event('worker_registered'));
    const before = await stored(root);

    proxy.hold('/api/workers/credential/confirm');
    const asked = await server.app.inject({ method: 'POST', url: `/api/admin/workers/${before.worker_id}/rotate`, headers: bearer(server.tokens.admin) });
    assert.equal(asked.statusCode, 200);
    await first.waitForLine(event('worker_credential_stored'));
    await until('the confirm to be on its way', () => proxy.held() === 1);
    first.kill('SIGKILL');
    await first.exited;
    proxy.drop();
    proxy.release();

    const between = await stored(root);
    assert.equal(between.credential, before.credential);
    assert.ok(between.next_credential, 'the new credential was stored before confirming');
    assert.equal(await heartbeatStatus(before.worker_id, before.credential), 200, 'the old one still works: nothing was confirmed');

    const second = spawn(['run', '--server', proxy.url, '--install-root', root], env);
    await second.waitForLine(event('worker_credential_rotated'));
    const after = await stored(root);
    assert.equal(after.credential, between.next_credential);
    assert.equal(after.next_credential, undefined);
    assert.equal(await heartbeatStatus(before.worker_id, before.credential), 401, 'the old one stopped working');
    const beats = heartbeatsOf(before.worker_id);
    await until('heartbeats with the new credential', () => heartbeatsOf(before.worker_id) >= beats + 2);
    second.kill();
    await second.exited;
  });

  test('rotation: the server lost before it commits the confirm; the worker keeps both, works with the old one, and confirms later', async () => {
    const enrollment = await server.addEnrollmentToken('canary');
    secrets.add(enrollment.token);
    const root = await freshRoot();
    const worker = spawn(['run', '--server', proxy.url, '--install-root', root], { BYTEBIOTA_ENROLLMENT_TOKEN: enrollment.token });
    await worker.waitForLine(event('worker_registered'));
    const before = await stored(root);

    proxy.hold('/api/workers/credential/confirm');
    await server.app.inject({ method: 'POST', url: `/api/admin/workers/${before.worker_id}/rotate`, headers: bearer(server.tokens.admin) });
    await until('the confirm to be held', () => proxy.held() === 1);
    // The server dies with the confirm unhandled: the worker sees its connection reset.
    proxy.drop();
    await worker.waitForLine(event('worker_credential_confirm_failed'));
    const between = await stored(root);
    assert.equal(between.credential, before.credential);
    assert.ok(between.next_credential);
    assert.equal(await heartbeatStatus(before.worker_id, before.credential), 200);

    // The server is back: the next heartbeat still asks for rotation, and the stored one is confirmed.
    proxy.release();
    await worker.waitForLine(event('worker_credential_rotated'));
    const after = await stored(root);
    assert.equal(after.credential, between.next_credential, 'the stored pending credential is the one confirmed, not a third');
    assert.equal(await heartbeatStatus(before.worker_id, before.credential), 401);
    worker.kill();
    await worker.exited;
  });

  test('a database restored from a backup that predates the rotation: the pending credential is unknown, the worker keeps the old one', async () => {
    const enrollment = await server.addEnrollmentToken('canary');
    secrets.add(enrollment.token);
    const root = await freshRoot();
    const enroll = spawn(['enroll', '--server', proxy.url, '--install-root', root], { BYTEBIOTA_ENROLLMENT_TOKEN: enrollment.token });
    assert.equal((await enroll.exited).code, 0);
    const before = await stored(root);
    // What a kill -9 after storing leaves, with a server whose database has no trace of the rotation.
    const unknown = `bbw_${'a'.repeat(16)}_${'B'.repeat(43)}`;
    secrets.add(unknown);
    const { writeCredential } = await import('../../../src/worker/install/credential.js');
    const { installLayout } = await import('../../../src/worker/install/install-layout.js');
    await writeCredential(installLayout(root), { ...before, next_credential: unknown });
    const worker = spawn(['run', '--server', proxy.url, '--install-root', root]);
    await worker.waitForLine(event('worker_credential_rotation_abandoned'));
    await worker.waitForLine(event('worker_registered'));
    const after = await stored(root);
    assert.deepEqual(after, { worker_id: before.worker_id, server_url: before.server_url, credential: before.credential });
    worker.kill();
    await worker.exited;
  });

  test('migration in band: a worker with only the pool token claims its credential once after registering, then sends it', async () => {
    const root = await freshRoot();
    const worker = spawn(['run', '--server', proxy.url, '--install-root', root], { BYTEBIOTA_WORKER_TOKEN: server.tokens.canary });
    await worker.waitForLine(event('worker_credential_claimed'));
    const file = await stored(root);
    const credentialId = file.credential.split('_')[1];
    await until('a heartbeat with the claimed credential', () =>
      server.logs().some((l) => l['event'] === 'worker_heartbeat' && l['worker_id'] === file.worker_id && l['credential_id'] === credentialId),
    );
    worker.kill();
    await worker.exited;

    // A second install with the same id (a copied machine) is refused and keeps the pool token.
    const copy = await freshRoot();
    const twin = spawn(['run', '--server', proxy.url, '--install-root', copy, '--worker-id', file.worker_id], { BYTEBIOTA_WORKER_TOKEN: server.tokens.canary });
    const refused = await twin.waitForLine(event('worker_claim_refused'));
    assert.equal(refused['level'], 'error');
    await assert.rejects(readFile(join(copy, 'credential.json')), { code: 'ENOENT' });
    twin.kill();
    await twin.exited;
  });

  for (const after of ['the worker retries', 'the worker is killed -9 and restarted'] as const) {
    test(`migration in band: a claim whose answer is lost is repeated with its stored key, and ${after}: the worker gets its credential, no refusal`, async () => {
      const root = await freshRoot();
      const env = { BYTEBIOTA_WORKER_TOKEN: server.tokens.canary };
      let worker = spawn(['run', '--server', proxy.url, '--install-root', root], env);
      proxy.hold('/api/workers/claim', 'after');
      await until('the claim to be answered by the server and held', () => proxy.held() === 1);
      const claimKey = (JSON.parse(await readFile(join(root, 'claim.json'), 'utf8')) as { claim_key: string }).claim_key;
      secrets.add(claimKey);
      assert.equal((await stat(join(root, 'claim.json'))).mode & 0o777, 0o600);
      if (after === 'the worker is killed -9 and restarted') {
        worker.kill('SIGKILL');
        await worker.exited;
        proxy.drop();
        proxy.release();
        worker = spawn(['run', '--server', proxy.url, '--install-root', root], env);
      } else {
        proxy.drop();
        const failed = await worker.waitForLine(event('worker_claim_failed'));
        assert.equal(failed['code'], 'server_unreachable');
        proxy.release();
      }
      await worker.waitForLine(event('worker_credential_claimed'));
      const file = await stored(root);
      const issued = server.logs().filter((l) => l['event'] === 'worker_claimed' && l['worker_id'] === file.worker_id);
      assert.equal(issued.length, 1, 'claimed once');
      assert.equal(file.credential.split('_')[1], issued[0]!['credential_id'], 'the credential of the first claim');
      assert.ok(server.logs().some((l) => l['event'] === 'worker_claim_repeated' && l['worker_id'] === file.worker_id));
      assert.equal(worker.lines.filter(event('worker_claim_refused')).length, 0);
      assert.equal(server.logs().filter((l) => l['event'] === 'worker_claim_refused' && l['worker_id'] === file.worker_id).length, 0, 'no false alarm');
      await assert.rejects(stat(join(root, 'claim.json')), { code: 'ENOENT' }, 'the key is forgotten once the credential is stored');
      const credentialId = file.credential.split('_')[1];
      await until('a heartbeat with the claimed credential', () =>
        server.logs().some((l) => l['event'] === 'worker_heartbeat' && l['worker_id'] === file.worker_id && l['credential_id'] === credentialId),
      );
      worker.kill();
      await worker.exited;
    });
  }

  test('no secret appears in any worker or server output', () => {
    const text = [
      ...programs.flatMap((p) => p.lines.map((line) => JSON.stringify(line))),
      ...programs.map((p) => p.stderr()),
      ...server.logs().map((line) => JSON.stringify(line)),
    ].join('\n');
    assert.ok(secrets.size >= 10, `secrets collected: ${secrets.size}`);
    for (const secret of secrets) assert.ok(!text.includes(secret), `a secret (${secret.slice(0, 20)}...) reached a log`);
  });
});
