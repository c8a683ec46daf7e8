/**
 * Worker identity with real parts only: the real server process, real packaged worker
 * executables under their supervisor, real HTTP. An enrolled worker (no pool token at all)
 * updates through the real update flow with its own credential; its credential cannot act as
 * another worker; it rotates on an admin's request; and after the server's database is restored
 * from a backup older than its rotation it is refused, works on offline, and is back (without a
 * restart) once the operator revokes the old credential and re-enrolls it; a damaged
 * credential.json neither stops nor rolls back the running version, and is repaired the same
 * way. No secret appears in any line any process wrote.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import type { LogLine, ManagedProcess } from '../../scripts/lib/processes.js';
import { runCommand } from '../../scripts/lib/processes.js';
import { until } from '../helpers/wait.js';

const EVENT_TIMEOUT_MS = 60_000;

let lab: UpdateLab;
let v100: string;
let v110: string;
const output: string[] = [];

before(async () => {
  lab = await UpdateLab.create({ cacheTtlSeconds: 1, onLine: (_source, line) => output.push(line) });
  [v100, v110] = [await lab.buildWorker('1.0.0'), await lab.buildWorker('1.1.0')];
  await lab.startServer(['--heartbeat-interval', '1']);
});

after(async () => {
  await lab?.close();
});

function event(worker: ManagedProcess, name: string, match: (line: LogLine) => boolean = () => true, from = 0) {
  return worker.waitForEvent((line) => line.event === name && match(line), EVENT_TIMEOUT_MS, from);
}

async function credentialFile(root: string): Promise<{ worker_id: string; credential: string; next_credential?: string }> {
  return JSON.parse(await readFile(join(root, 'credential.json'), 'utf8')) as { worker_id: string; credential: string; next_credential?: string };
}

test('an enrolled worker updates with its own credential, rotates, and survives a database restore through re-enrollment', async () => {
  const secrets = new Set<string>();
  const admin = await lab.admin();
  secrets.add(admin);
  await lab.publish('1.0.0', v100, { channel: 'stable' });
  await lab.setPoolPolicy('canary', true);
  const enrollment = await lab.createToken('enroll', 'canary');
  secrets.add(enrollment);

  const root = join(lab.dir, 'enrolled');
  await lab.installWorker(v100, root);
  const worker = lab.startSupervisor('enrolled', { installRoot: root, enrollmentToken: enrollment, checkIntervalSeconds: 1, healthWindowSeconds: 20 });
  await event(worker, 'worker_ready');
  const first = await credentialFile(root);
  secrets.add(first.credential);

  // The real update flow, with the credential on register, manifest, artifact and reports.
  await lab.publish('1.1.0', v110, { channel: 'stable' });
  await event(worker, 'worker_update_success', (line) => line['to_version'] === '1.1.0');
  assert.equal((await readlink(join(root, 'current'))).split('/').pop(), '1.1.0');
  const serverLines = output.filter((line) => line.startsWith('{') && line.includes('"name":"bytebiota-server"')).map((line) => JSON.parse(line) as LogLine);
  const byRoute = (route: string) => serverLines.filter((l) => l['route'] === route && l['worker_id'] === first.worker_id);
  for (const route of ['/api/worker-updates/latest', '/api/worker-updates/report']) {
    assert.ok(byRoute(route).length > 0, route);
    assert.ok(byRoute(route).every((l) => l['credential_id'] !== undefined && l['token_id'] === undefined), `${route} with the credential`);
  }

  // Its credential cannot act as another worker.
  const asOther = await lab.api('POST', '/api/workers/heartbeat', first.credential, { worker_id: 'someone-else', current_version: '1.1.0', state: 'working' });
  assert.equal(asOther.status, 403);

  // Back up the database with the server stopped: the file and its WAL, if one is left, together
  // are the whole database (a close may or may not have checkpointed the WAL into the file).
  const backup = join(lab.dir, 'fleet-backup.sqlite');
  await lab.stopServer();
  // The -wal file exists only when the close did not checkpoint it.
  const copyDatabase = async (from: string, to: string): Promise<void> => {
    await copyFile(from, to);
    await copyFile(`${from}-wal`, `${to}-wal`).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  };
  await copyDatabase(lab.dbPath, backup);
  await lab.startServer(['--heartbeat-interval', '1']);
  const mark = worker.lines.length;
  assert.equal((await lab.api('POST', `/api/admin/workers/${first.worker_id}/rotate`, admin)).status, 200);
  await event(worker, 'worker_credential_rotated', () => true, mark);
  const rotated = await credentialFile(root);
  secrets.add(rotated.credential);
  assert.notEqual(rotated.credential, first.credential);
  assert.equal((await lab.api('POST', '/api/workers/heartbeat', first.credential, { worker_id: first.worker_id, current_version: '1.1.0', state: 'working' })).status, 401);

  // Restore the backup: it predates the rotation, so the worker's credential is unknown.
  await lab.stopServer();
  for (const suffix of ['', '-wal', '-shm']) await rm(`${lab.dbPath}${suffix}`, { force: true });
  await copyDatabase(backup, lab.dbPath);
  await lab.startServer(['--heartbeat-interval', '1']);
  const restored = worker.lines.length;
  await event(worker, 'worker_heartbeat_failed', (line) => line['code'] === 'auth_rejected', restored);
  // It works on, offline.
  await event(worker, 'worker_unit_done', () => true, worker.lines.length);

  // The operator: revoke the credential the backup holds, and re-enroll the machine. The running
  // worker reads credential.json before its next request: no restart.
  const revokeAndReenroll = async (): Promise<void> => {
    assert.equal((await lab.api('POST', `/api/admin/workers/${first.worker_id}/revoke`, admin)).status, 200);
    const again = await lab.createToken('enroll', 'canary');
    secrets.add(again);
    const enrolled = await runCommand(join(root, 'current', 'bytebiota-worker'), ['enroll', '--server', lab.serverUrl, '--install-root', root], {
      env: { ...process.env, BYTEBIOTA_ENROLLMENT_TOKEN: again },
    });
    assert.equal(enrolled.code, 0, enrolled.stderr);
    output.push(enrolled.stdout, enrolled.stderr);
    const renewed = await credentialFile(root);
    secrets.add(renewed.credential);
    assert.equal(renewed.worker_id, first.worker_id, 'the same worker id');
    const credentialId = renewed.credential.split('_')[1];
    await until('a heartbeat with the new credential', () =>
      output.some((line) => line.includes('"event":"worker_heartbeat"') && line.includes(`"credential_id":"${credentialId}"`) && line.includes('"status":200')),
    );
  };
  await revokeAndReenroll();

  // A damaged credential.json under the supervisor: the running version neither exits nor is
  // rolled back; it works on offline and says so once. Revoke and re-enroll repair it, no restart.
  const said = (name: string) => worker.lines.filter((line) => line.includes(`"event":"${name}"`)).length;
  const childStarts = () => said('worker_child_started');
  const startsBefore = childStarts();
  const damaged = worker.lines.length;
  await writeFile(join(root, 'credential.json'), '{"worker_id": "truncated by a disk fault', { mode: 0o600 });
  const unusable = await event(worker, 'worker_credential_unusable', () => true, damaged);
  assert.equal(unusable['level'], 'error');
  await event(worker, 'worker_heartbeat_failed', (line) => line['code'] === 'credential_unusable', damaged);
  const offline = worker.lines.length;
  await event(worker, 'worker_unit_done', () => true, offline);
  await event(worker, 'worker_heartbeat_failed', (line) => line['code'] === 'credential_unusable', offline);
  assert.equal(said('worker_credential_unusable'), 1, 'said once');
  assert.ok(startsBefore >= 1);
  await revokeAndReenroll();
  assert.equal(childStarts(), startsBefore, 'the worker ran on throughout: no restart, no rollback');
  assert.equal((await readlink(join(root, 'current'))).split('/').pop(), '1.1.0');

  const text = output.join('\n');
  for (const secret of secrets) assert.ok(!text.includes(secret), `a secret (${secret.slice(0, 16)}...) reached a log`);
});
