import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UpdateError } from '../../../src/protocol/reason-codes.js';
import { CodedError } from '../../../src/shared/errors.js';
import { failureReasonOf } from '../../../src/worker/install/failure-reason.js';
import { installLayout, type InstallLayout } from '../../../src/worker/install/install-layout.js';
import { loadState, StateFileError } from '../../../src/worker/install/state.js';
import { resetUnusableState } from '../../../src/worker/install/state-reset.js';
import { installFakeVersion, makeTempDir } from '../../helpers/engine-fixtures.js';
import { readPointer, writePointer } from '../../../src/worker/install/pointer.js';

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

test('failureReasonOf: every failure ends with a reason code', () => {
  const rows: { name: string; err: unknown; expected: string }[] = [
    { name: 'an update step names its code', err: new UpdateError('checksum_mismatch', 'x'), expected: 'checksum_mismatch' },
    { name: 'ENOSPC bare', err: errno('ENOSPC'), expected: 'disk_full' },
    { name: 'EDQUOT (quota) is a full disk too', err: errno('EDQUOT'), expected: 'disk_full' },
    { name: 'ENOSPC under a step that said install_failed', err: new UpdateError('install_failed', 'copy failed', { cause: errno('ENOSPC') }), expected: 'disk_full' },
    { name: 'ENOSPC two causes down', err: new Error('outer', { cause: new Error('middle', { cause: errno('ENOSPC') }) }), expected: 'disk_full' },
    { name: 'state.json corrupt', err: new StateFileError('bad'), expected: 'state_corrupt' },
    { name: 'state.json corrupt, wrapped', err: new Error('wrapped', { cause: new StateFileError('bad') }), expected: 'state_corrupt' },
    { name: 'state.json cannot be written for want of space', err: new StateFileError('bad', { cause: errno('ENOSPC') }), expected: 'disk_full' },
    { name: 'EACCES somewhere unexpected', err: errno('EACCES'), expected: 'install_failed' },
    { name: 'a programming error', err: new TypeError('undefined is not a function'), expected: 'install_failed' },
    { name: 'a coded error that is not an update step', err: new CodedError('something_else', 'x'), expected: 'install_failed' },
    { name: 'not even an Error', err: 'a string', expected: 'install_failed' },
  ];
  for (const row of rows) assert.equal(failureReasonOf(row.err), row.expected, row.name);
  // A cause cycle ends the walk rather than looping.
  const a = new Error('a');
  const b = new Error('b', { cause: a });
  (a as { cause?: unknown }).cause = b;
  assert.equal(failureReasonOf(a), 'install_failed');
});

describe('state.json that cannot be used, and its recovery', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let n = 0;
  before(async () => {
    temp = await makeTempDir('state-recovery');
  });
  after(() => temp.remove());

  async function rootWithState(content: string | null): Promise<InstallLayout> {
    n += 1;
    const layout = installLayout(join(temp.dir, `root-${n}`), 'linux-x64');
    await mkdir(layout.root, { recursive: true });
    if (content !== null) await writeFile(layout.statePath, content);
    return layout;
  }

  test('unreadable is not missing: a state.json that cannot be read is state_corrupt, and nothing is reset', async () => {
    const layout = await rootWithState(null);
    // A directory where the file should be: readFile fails with EISDIR, as it would with EACCES or EIO.
    await mkdir(layout.statePath);
    await assert.rejects(loadState(layout, () => 'new-id'), (err) => err instanceof StateFileError && err.code === 'state_corrupt');
    assert.deepEqual(await readdir(layout.statePath), [], 'nothing was written in its place');
  });

  test('reset-state keeps every field that still matches its schema, the worker id and the rollback floor above all', async () => {
    const layout = await rootWithState(
      JSON.stringify({ worker_id: 'w-42', highest_serial: { stable: 17 }, rolled_back: 'not an object', manifest_etags: { stable: '"m17"' } }),
    );
    await assert.rejects(loadState(layout, () => 'new-id'), StateFileError);
    const reset = await resetUnusableState(layout, { now: new Date('2026-11-30T12:00:00Z') });
    assert.ok(reset.kind === 'reset');
    assert.equal(reset.workerId, 'w-42');
    assert.deepEqual(reset.salvaged, ['highest_serial', 'manifest_etags', 'worker_id']);
    assert.equal(reset.movedTo, `${layout.statePath}.unusable-2026-11-30T12-00-00-000Z`);
    assert.equal(reset.restoredCurrent, null, 'no pointers, nothing to restore');
    assert.match(await readFile(reset.movedTo, 'utf8'), /not an object/, 'the old file is kept as evidence');
    const state = await loadState(layout, () => 'new-id');
    assert.deepEqual(state, { worker_id: 'w-42', highest_serial: { stable: 17 }, rolled_back: {}, manifest_etags: { stable: '"m17"' } });
  });

  test('reset-state refusals, by code, and nothing moved by any of them', async () => {
    const garbage = await rootWithState('{"worker_id": "w-1", "highest');
    await assert.rejects(resetUnusableState(garbage, { now: new Date() }), (err) => err instanceof CodedError && err.code === 'worker_id_unknown');
    await assert.rejects(resetUnusableState(garbage, { workerId: '../etc', now: new Date() }), (err) => err instanceof CodedError && err.code === 'usage');
    assert.equal(await readFile(garbage.statePath, 'utf8'), '{"worker_id": "w-1", "highest');
    // A readable id and another one given: two machines would share an id.
    const schemaBroken = await rootWithState(JSON.stringify({ worker_id: 'w-3', highest_serial: 'x', rolled_back: {} }));
    await assert.rejects(resetUnusableState(schemaBroken, { workerId: 'w-4', now: new Date() }), (err) => err instanceof CodedError && err.code === 'worker_id_conflict');
    assert.match(await readFile(schemaBroken.statePath, 'utf8'), /"highest_serial":"x"/);
  });

  test('reset-state on a usable or missing file is a harmless no-op', async () => {
    const fine = await rootWithState(JSON.stringify({ worker_id: 'w-2', highest_serial: {}, rolled_back: {} }));
    assert.equal((await resetUnusableState(fine, { now: new Date() })).kind, 'not_needed');
    const missing = await rootWithState(null);
    assert.equal((await resetUnusableState(missing, { now: new Date() })).kind, 'not_needed');
    await assert.rejects(readFile(missing.statePath), 'nothing was created');
  });

  test('reset-state with --worker-id when the old file does not parse', async () => {
    const layout = await rootWithState('\u0000\u0000\u0000');
    const reset = await resetUnusableState(layout, { workerId: 'w-7', now: new Date('2026-11-30T12:00:00Z') });
    assert.ok(reset.kind === 'reset');
    assert.deepEqual(reset.salvaged, []);
    assert.deepEqual(await loadState(layout, () => 'new-id'), { worker_id: 'w-7', highest_serial: {}, rolled_back: {} });
  });

  test('an unproven current with its watch lost goes back to the launcher; a salvaged watch leaves it to the supervisor', async () => {
    for (const withWatch of [false, true]) {
      const watch = { correlation_id: 'c-1', from_version: '1.0.0', to_version: '1.1.0', channel: 'stable', started_at: '2026-11-30T11:59:00.000Z' };
      const layout = await rootWithState(JSON.stringify({ worker_id: 'w-9', highest_serial: 'broken', rolled_back: {}, ...(withWatch ? { pending_watch: watch } : {}) }));
      for (const version of ['1.0.0', '1.1.0']) await installFakeVersion(layout, version, temp.dir);
      await writePointer(layout, 'launcher', '1.0.0');
      await writePointer(layout, 'previous', '1.0.0');
      await writePointer(layout, 'current', '1.1.0');
      const reset = await resetUnusableState(layout, { now: new Date() });
      assert.ok(reset.kind === 'reset');
      assert.equal(reset.restoredCurrent, withWatch ? null : '1.0.0');
      assert.equal(await readPointer(layout, 'current'), withWatch ? '1.1.0' : '1.0.0');
      assert.deepEqual((await loadState(layout, () => 'x')).pending_watch, withWatch ? watch : undefined);
    }
  });
});
