import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerMetrics } from '../../../src/worker/telemetry/metrics.js';

test('each update event counts under one metric with one meaning: a rollback as a rollback, as on the server', async () => {
  const metrics = new WorkerMetrics();
  metrics.recordUpdateEvent('attempt');
  metrics.recordUpdateEvent('attempt');
  metrics.recordUpdateEvent('success');
  metrics.recordUpdateEvent('failure', 'download_failed');
  metrics.recordUpdateEvent('rollback', 'crashed_on_start');
  metrics.recordUpdateEvent('rollback', 'health_check_failed');
  metrics.setCurrentVersion('1.2.0');
  const text = await metrics.text();
  assert.match(text, /^worker_update_attempt_total 2$/m);
  assert.match(text, /^worker_update_success_total 1$/m);
  assert.match(text, /^worker_update_failure_total\{reason="download_failed"\} 1$/m);
  assert.doesNotMatch(text, /^worker_update_failure_total\{reason="crashed_on_start"\}/m, 'a rollback is not also a failure');
  assert.match(text, /^worker_update_rollback_total\{reason="crashed_on_start"\} 1$/m);
  assert.match(text, /^worker_update_rollback_total\{reason="health_check_failed"\} 1$/m);
  assert.match(text, /^worker_version_current\{version="1\.2\.0"\} 1$/m);
});
