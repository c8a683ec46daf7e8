import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UpdateLab } from '../../../scripts/lib/update-lab.js';
import { spawnWorkerCli, type SpawnedProgram } from '../../helpers/worker-fixtures.js';
import { startHoldingProxy, type HoldingProxy } from '../../helpers/holding-proxy.js';
import type { LogLine } from '../../helpers/log-lines.js';
import { until } from '../../helpers/wait.js';

/**
 * Credential rotation across a kill -9 of the real server process, inside the window between
 * the worker storing its new credential and the server's answer to its confirm: once before the
 * server has seen the confirm, once after it committed it but before the answer left. Either
 * way the worker converges on the new credential, without a restart, re-enrollment or a single
 * request refused for good; the old credential ends up dead. A proxy in front of the server
 * holds the confirm so that the kill lands inside the window every time.
 */

const SERVER_ARGS = ['--heartbeat-interval', '1'];
const WORKER_VERSION_FIELDS = { current_version: '0.1.0', state: 'working' };

interface StoredCredential {
  worker_id: string;
  credential: string;
  next_credential?: string;
}

describe('credential rotation across a kill -9 of the server', { concurrency: 1, timeout: 240_000 }, () => {
  const serverOutput: string[] = [];
  const programs: SpawnedProgram[] = [];
  const dirs: string[] = [];
  const secrets = new Set<string>();
  let lab: UpdateLab;
  let proxy: HoldingProxy;
  let admin: string;

  before(async () => {
    lab = await UpdateLab.create({ onLine: (_source, line) => serverOutput.push(line) });
    await lab.startServer(SERVER_ARGS);
    proxy = await startHoldingProxy(`${lab.serverUrl}/`);
    admin = await lab.admin();
    secrets.add(admin);
  });
  after(async () => {
    for (const program of programs) program.kill('SIGKILL');
    await proxy?.close();
    await lab?.close();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  async function stored(root: string): Promise<StoredCredential> {
    const file = JSON.parse(await readFile(join(root, 'credential.json'), 'utf8')) as StoredCredential;
    secrets.add(file.credential);
    if (file.next_credential) secrets.add(file.next_credential);
    return file;
  }

  /** An enrolled `run` behind the proxy, registered. */
  async function enrolledWorker(): Promise<{ worker: SpawnedProgram; root: string; first: StoredCredential }> {
    const enrollment = await lab.createToken('enroll', 'canary');
    secrets.add(enrollment);
    const root = await mkdtemp(join(tmpdir(), 'bytebiota-rotation-kill-'));
    dirs.push(root);
    const worker = spawnWorkerCli(['run', '--server', proxy.url, '--install-root', root], {
      BYTEBIOTA_WORKER_TOKEN: '',
      BYTEBIOTA_ENROLLMENT_TOKEN: enrollment,
    });
    programs.push(worker);
    await worker.waitForLine((l) => l['event'] === 'worker_registered');
    return { worker, root, first: await stored(root) };
  }

  const heartbeatStatus = async (file: StoredCredential, credential: string): Promise<number> =>
    (await lab.api('POST', '/api/workers/heartbeat', credential, { worker_id: file.worker_id, ...WORKER_VERSION_FIELDS })).status;

  const since = (worker: SpawnedProgram, mark: number, name: string) => (line: LogLine) =>
    line['event'] === name && worker.lines.indexOf(line) >= mark;

  for (const when of ['before', 'after'] as const) {
    test(`the server killed ${when} it handles the confirm: the worker confirms once it is back and the old credential dies`, async () => {
      const { worker, root, first } = await enrolledWorker();
      proxy.hold('/api/workers/credential/confirm', when);
      assert.equal((await lab.api('POST', `/api/admin/workers/${first.worker_id}/rotate`, admin)).status, 200);
      await until(`the confirm to be held ${when} the server`, () => proxy.held() === 1, 30_000);

      await lab.killServer();
      proxy.drop();
      const failed = await worker.waitForLine((l) => l['event'] === 'worker_credential_confirm_failed');
      assert.equal(failed['code'], 'server_unreachable');
      const between = await stored(root);
      assert.equal(between.credential, first.credential, 'the old one stays current until a confirm is answered');
      assert.ok(between.next_credential, 'the new one was stored before the confirm was sent');

      const mark = worker.lines.length;
      await lab.startServer(SERVER_ARGS);
      proxy.release();
      await worker.waitForLine(since(worker, mark, 'worker_credential_rotated'), 60_000);
      const rotated = await stored(root);
      assert.deepEqual(rotated, { ...first, credential: between.next_credential });
      // Before the test sends anything with it: each such line is the worker's own.
      const credentialId = rotated.credential.split('_')[1];
      await until('the worker to heartbeat with the new credential', () =>
        serverOutput.some((line) => line.includes('"event":"worker_heartbeat"') && line.includes(`"worker_id":"${first.worker_id}"`) && line.includes(`"credential_id":"${credentialId}"`) && line.includes('"status":200')),
      );
      assert.equal(await heartbeatStatus(first, first.credential), 401, 'the old credential is dead');
      assert.equal(worker.lines.filter((l) => l['event'] === 'worker_credential_rejected').length, 0, 'never refused for good');
      assert.equal(worker.lines.filter((l) => l['event'] === 'worker_credential_rotation_abandoned').length, 0, 'the rotation was not dropped');
      worker.kill();
      await worker.exited;
    });
  }

  test('no secret appears in any worker or server output', () => {
    const text = [...serverOutput, ...programs.flatMap((p) => [...p.lines.map((line) => JSON.stringify(line)), p.stderr()])].join('\n');
    assert.ok(secrets.size >= 7, `secrets collected: ${secrets.size}`);
    for (const secret of secrets) assert.ok(!text.includes(secret), `a secret (${secret.slice(0, 20)}...) reached a log`);
  });
});
