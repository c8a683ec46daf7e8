import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { WorkerStateFile } from '../../../src/worker/install/state.js';
import { completedOnReady, updateStatusAtStart } from '../../../src/worker/runtime/update-status.js';

const base: WorkerStateFile = { worker_id: 'w-1', highest_serial: {}, rolled_back: {} };
const watch = { from_version: '1.0.0', correlation_id: 'c-1', channel: 'stable', started_at: '2026-11-27T12:00:00.000Z' };

describe('update status at start', () => {
  test('the version under watch says watching, then completed once it is ready', () => {
    const status = updateStatusAtStart({ ...base, pending_watch: { ...watch, to_version: '1.1.0' } }, '1.1.0');
    assert.deepEqual(status, { to_version: '1.1.0', state: 'watching' });
    assert.deepEqual(completedOnReady(status), { to_version: '1.1.0', state: 'completed' });
  });

  test('the version restarted after a rollback names the newest rolled-back version above it, with its reason', () => {
    const state: WorkerStateFile = {
      ...base,
      rolled_back: {
        '1.2.0': { reason: 'crashed_on_start', at: '2026-11-27T10:00:00.000Z' },
        '1.3.0': { reason: 'health_check_failed', at: '2026-11-27T11:00:00.000Z' },
        '0.9.0': { reason: 'crashed_on_start', at: '2026-11-27T11:30:00.000Z' },
      },
    };
    assert.deepEqual(updateStatusAtStart(state, '1.1.0'), { to_version: '1.3.0', state: 'rolled_back', reason: 'health_check_failed' });
    assert.deepEqual(completedOnReady(updateStatusAtStart(state, '1.1.0')), { to_version: '1.3.0', state: 'rolled_back', reason: 'health_check_failed' });
    // Once the worker runs a version above every rolled-back one, there is nothing to say.
    assert.equal(updateStatusAtStart(state, '1.4.0'), null);
  });

  test('a watch of another version (the one being rolled back from) is not this process', () => {
    const state: WorkerStateFile = { ...base, pending_watch: { ...watch, to_version: '1.2.0' } };
    assert.equal(updateStatusAtStart(state, '1.1.0'), null);
    assert.equal(completedOnReady(null), null);
  });
});
