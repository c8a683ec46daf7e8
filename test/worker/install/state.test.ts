import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { loadState, updateState, StateFileError, WorkerStateFileSchema } from '../../../src/worker/install/state.js';
import { failureReasonOf } from '../../../src/worker/install/failure-reason.js';
import { tempInstallRoots } from '../../helpers/install-roots.js';

describe('state', () => {
  const installRoot = tempInstallRoots('state');

  test('created with a new worker id when missing, then read back unchanged', async () => {
    const layout = installRoot('a');
    let calls = 0;
    const first = await loadState(layout, () => {
      calls += 1;
      return 'worker-1';
    });
    assert.deepEqual(first, { worker_id: 'worker-1', highest_serial: {}, rolled_back: {} });
    const second = await loadState(layout, () => 'worker-2');
    assert.equal(second.worker_id, 'worker-1');
    assert.equal(calls, 1);
    assert.equal((await stat(layout.statePath)).mode & 0o777, 0o600);
  });

  test('updateState is read-modify-write; concurrent updates are not lost', async () => {
    const layout = installRoot('b');
    await loadState(layout, () => 'w');
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        updateState(layout, (state) => {
          state.highest_serial[`ch${i}`] = i + 1;
        }),
      ),
    );
    const state = await loadState(layout, () => 'unused');
    assert.equal(Object.keys(state.highest_serial).length, 20);
    const written = await updateState(layout, (s) => {
      s.rolled_back['2.0.0'] = { reason: 'crashed_on_start', at: '2026-01-01T00:00:00Z' };
    });
    assert.equal(written.rolled_back['2.0.0']?.reason, 'crashed_on_start');
    assert.equal(JSON.parse(await readFile(layout.statePath, 'utf8')).rolled_back['2.0.0'].reason, 'crashed_on_start');
  });

  test('a corrupt file is an error naming the file, and is left as it was', async () => {
    const layout = installRoot('c');
    await loadState(layout, () => 'w');
    for (const text of ['{not json', JSON.stringify({ worker_id: 'w', highest_serial: { stable: -1 }, rolled_back: {} })]) {
      await writeFile(layout.statePath, text);
      await assert.rejects(
        loadState(layout, () => 'fresh'),
        (err) => err instanceof StateFileError && err.code === 'state_corrupt' && err.message.includes(layout.statePath),
      );
      await assert.rejects(updateState(layout, () => undefined), StateFileError);
      assert.equal(await readFile(layout.statePath, 'utf8'), text);
    }
  });

  test('refuses to write a state that breaks the schema: a bug of the program (install_failed), not a damaged file', async () => {
    const layout = installRoot('d');
    await loadState(layout, () => 'w');
    await assert.rejects(
      updateState(layout, (s) => {
        s.rolled_back['1.0.0'] = { reason: 'not_a_reason' as never, at: 'x' };
      }),
      (err) => !(err instanceof StateFileError) && failureReasonOf(err) === 'install_failed' && (err as { code?: string }).code === 'state_write_invalid',
    );
    assert.deepEqual((await loadState(layout, () => 'x')).rolled_back, {});
  });

  test('fields added since the first version are optional all the way down, so an older worker still reads the file', () => {
    // An older version validates state.json with its own schema: it must find every field it
    // requires, and unknown ones are kept (no object in the schema is closed).
    assert.deepEqual([...(WorkerStateFileSchema.required ?? [])].sort(), ['highest_serial', 'rolled_back', 'worker_id']);
    const props = WorkerStateFileSchema.properties;
    assert.deepEqual([...(props.pending_switch.required ?? [])].sort(), ['channel', 'correlation_id', 'from_version', 'to_version']);
    assert.deepEqual([...(props.pending_watch.required ?? [])].sort(), ['channel', 'correlation_id', 'from_version', 'started_at', 'to_version']);
    const closed: string[] = [];
    const walk = (schema: unknown, path: string): void => {
      if (typeof schema !== 'object' || schema === null) return;
      if ((schema as { additionalProperties?: unknown }).additionalProperties === false) closed.push(path);
      for (const [key, value] of Object.entries(schema)) walk(value, `${path}/${key}`);
    };
    walk(WorkerStateFileSchema, '');
    assert.deepEqual(closed, []);
  });

  test('the newer fields round-trip, and a file an older version wrote (without them) still reads', async () => {
    const layout = installRoot('e');
    const older = { worker_id: 'w', highest_serial: { stable: 3 }, rolled_back: {}, pending_switch: { to_version: '1.1.0', from_version: '1.0.0', correlation_id: 'c-1', channel: 'stable' }, from_the_future: { kept: true } };
    await mkdir(layout.root, { recursive: true });
    await writeFile(layout.statePath, JSON.stringify(older));
    assert.equal((await loadState(layout, () => 'x')).pending_switch?.serial, undefined);
    await updateState(layout, (state) => {
      state.pending_switch = { ...state.pending_switch!, serial: 3 };
      state.proven = { version: '1.0.0', serial: 2 };
      state.server_accepts = { server_url: 'https://updates.example/', report_fields: ['serial'], reasons: ['crash_loop'] };
    });
    const written = JSON.parse(await readFile(layout.statePath, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(written['from_the_future'], { kept: true }, 'unknown fields are kept');
    assert.deepEqual(written['proven'], { version: '1.0.0', serial: 2 });
    assert.equal((written['pending_switch'] as { serial?: number }).serial, 3);
  });
});
