import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnWorkerCli } from '../helpers/worker-fixtures.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function rootWithState(content: string): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'bytebiota-reset-state-'));
  dirs.push(root);
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'state.json'), content);
  return root;
}

test('bytebiota-worker reset-state: the recovery runbook, end to end, and its exit codes', async () => {
  const root = await rootWithState('{"worker_id": "w-runbook", "highest_serial": {"stable": 9}, "rolled_back": 7}');
  // The worker itself refuses to start on it, and says where the recovery is.
  const refused = spawnWorkerCli(['run', '--install-root', root]);
  const fatal = await refused.waitForLine((line) => line['event'] === 'worker_fatal');
  assert.equal(fatal['code'], 'state_corrupt');
  assert.match(String(fatal['recovery']), /reset-state/);
  assert.equal((await refused.exited).code, 1);

  const reset = spawnWorkerCli(['reset-state', '--install-root', root]);
  const line = await reset.waitForLine((l) => l['event'] === 'worker_state_reset');
  assert.equal(line['worker_id'], 'w-runbook');
  assert.deepEqual(line['salvaged'], ['highest_serial', 'worker_id']);
  assert.equal((await reset.exited).code, 0);
  assert.deepEqual(JSON.parse(await readFile(join(root, 'state.json'), 'utf8')), { worker_id: 'w-runbook', highest_serial: { stable: 9 }, rolled_back: {} });
  assert.equal((await readdir(root)).filter((name) => name.startsWith('state.json.unusable-')).length, 1);

  // Twice is harmless.
  const again = spawnWorkerCli(['reset-state', '--install-root', root]);
  await again.waitForLine((l) => l['event'] === 'worker_state_reset_not_needed');
  assert.equal((await again.exited).code, 0);

  // No install root: a usage error, exit 2.
  const usage = spawnWorkerCli(['reset-state'], { BYTEBIOTA_INSTALL_ROOT: '' });
  assert.equal((await usage.exited).code, 2);
  assert.match(usage.stderr(), /reset-state needs --install-root/);
});
