import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ServerAccepts, UpdateProgress, UpdateReport } from '../../../src/protocol/messages.js';
import { LEGACY_REASON_CODES, REASON_CODES, type ReasonCode } from '../../../src/protocol/reason-codes.js';
import { ConnectionError } from '../../../src/worker/runtime/connection.js';
import {
  acceptsFromState,
  adaptedReportSender,
  adaptForServer,
  NEWER_REPORT_FIELDS,
  OLDER_REASON,
  reasonForServer,
  rememberAccepts,
} from '../../../src/worker/runtime/server-accepts.js';
import { loadState } from '../../../src/worker/install/state.js';
import { memoryLogger } from '../../helpers/engine-fixtures.js';
import { tempInstallRoots } from '../../helpers/install-roots.js';

const report: UpdateReport = {
  worker_id: 'w-1',
  event: 'failure',
  from_version: '1.0.0',
  to_version: '1.1.0',
  channel: 'stable',
  platform: 'linux-x64',
  correlation_id: 'c-1',
};
const rolloutAware: ServerAccepts = { report_fields: ['serial'], reasons: [...REASON_CODES] };
const deltaAware: ServerAccepts = { report_fields: ['serial', 'bytes_fetched', 'delta', 'delta_fallback'], reasons: [...REASON_CODES] };
const fieldsOnly: ServerAccepts = { report_fields: ['serial'], reasons: [...LEGACY_REASON_CODES] };
const codesOnly: ServerAccepts = { report_fields: [], reasons: [...REASON_CODES] };
/** A server of the staged-rollout release: it lists the codes up to crash_loop, not state_corrupt. */
const rolloutRelease: ServerAccepts = { report_fields: ['serial'], reasons: REASON_CODES.slice(0, REASON_CODES.indexOf('crash_loop') + 1) };

describe('adapting reports and heartbeats to what the server accepts', () => {
  const reportRows: Array<{ name: string; accepts: ServerAccepts | null; sent: Partial<UpdateReport>; expected: Partial<UpdateReport> | null }> = [
    { name: 'first-protocol report, older server: as is', accepts: null, sent: { reason: 'checksum_mismatch' }, expected: { reason: 'checksum_mismatch' } },
    { name: 'serial, older server: left out', accepts: null, sent: { serial: 7 }, expected: {} },
    { name: 'serial, a server that lists it: kept', accepts: rolloutAware, sent: { serial: 7 }, expected: { serial: 7 } },
    { name: 'serial, a server that lists other things only: left out', accepts: codesOnly, sent: { serial: 7, reason: 'crash_loop' }, expected: { reason: 'crash_loop' } },
    { name: 'self_test_failed, older server: install_failed', accepts: null, sent: { reason: 'self_test_failed', serial: 4 }, expected: { reason: 'install_failed' } },
    { name: 'self_test_failed, a server without the new codes: install_failed, serial kept', accepts: fieldsOnly, sent: { reason: 'self_test_failed', serial: 4 }, expected: { reason: 'install_failed', serial: 4 } },
    { name: 'self_test_failed, a server that takes it: as is', accepts: rolloutAware, sent: { reason: 'self_test_failed', serial: 4 }, expected: { reason: 'self_test_failed', serial: 4 } },
    { name: 'state_corrupt, older server: install_failed', accepts: null, sent: { reason: 'state_corrupt' }, expected: { reason: 'install_failed' } },
    { name: 'state_corrupt, a server of the rollout release: install_failed', accepts: rolloutRelease, sent: { reason: 'state_corrupt', serial: 4 }, expected: { reason: 'install_failed', serial: 4 } },
    { name: 'state_corrupt, a server that takes it: as is', accepts: rolloutAware, sent: { reason: 'state_corrupt', serial: 4 }, expected: { reason: 'state_corrupt', serial: 4 } },
    { name: 'crash_loop, older server: not sent', accepts: null, sent: { reason: 'crash_loop', serial: 4 }, expected: null },
    { name: 'crash_loop, a server without the new codes: not sent', accepts: fieldsOnly, sent: { reason: 'crash_loop' }, expected: null },
    { name: 'crash_loop, a server that takes it: as is', accepts: rolloutAware, sent: { reason: 'crash_loop', serial: 4 }, expected: { reason: 'crash_loop', serial: 4 } },
    { name: 'a server that takes neither the new code nor its fallback: not sent', accepts: { report_fields: [], reasons: ['checksum_mismatch'] }, sent: { reason: 'self_test_failed' }, expected: null },
    { name: 'no reason, older server: as is', accepts: null, sent: { event: 'success', duration_ms: 1200 }, expected: { event: 'success', duration_ms: 1200 } },
    {
      name: 'download fields, a server of the rollout release (serial only): left out',
      accepts: rolloutAware,
      sent: { event: 'success', serial: 5, bytes_fetched: 2_000_000, delta: true },
      expected: { event: 'success', serial: 5 },
    },
    { name: 'download fields, older server: left out', accepts: null, sent: { event: 'success', bytes_fetched: 90, delta: false, delta_fallback: 'index_missing' }, expected: { event: 'success' } },
    {
      name: 'download fields, a server that lists them: kept',
      accepts: deltaAware,
      sent: { event: 'success', serial: 5, bytes_fetched: 90, delta: false, delta_fallback: 'range_not_supported' },
      expected: { event: 'success', serial: 5, bytes_fetched: 90, delta: false, delta_fallback: 'range_not_supported' },
    },
  ];
  for (const row of reportRows) {
    test(`report: ${row.name}`, () => {
      const sent: UpdateReport = { ...report, ...row.sent };
      const adapted = adaptForServer('report', sent, row.accepts);
      if (row.expected === null) {
        assert.equal(adapted, null);
      } else {
        const { serial: _dropped, reason: _reason, bytes_fetched: _bytes, delta: _delta, delta_fallback: _fallback, ...base } = sent;
        assert.deepEqual(adapted, { ...base, ...row.expected });
      }
      assert.deepEqual(sent, { ...report, ...row.sent }, 'the queued report itself is not changed');
    });
  }

  const heartbeatRows: Array<{ name: string; accepts: ServerAccepts | null; update: UpdateProgress; expected: UpdateProgress }> = [
    { name: 'progress without a reason', accepts: null, update: { to_version: '1.1.0', state: 'downloading', download_percent: 40 }, expected: { to_version: '1.1.0', state: 'downloading', download_percent: 40 } },
    { name: 'self_test_failed to an older server', accepts: null, update: { to_version: '1.1.0', state: 'failed', reason: 'self_test_failed' }, expected: { to_version: '1.1.0', state: 'failed', reason: 'install_failed' } },
    { name: 'self_test_failed to a server that takes it', accepts: rolloutAware, update: { to_version: '1.1.0', state: 'failed', reason: 'self_test_failed' }, expected: { to_version: '1.1.0', state: 'failed', reason: 'self_test_failed' } },
    { name: 'crash_loop to an older server: the reason is left out, the state stays', accepts: null, update: { to_version: '1.1.0', state: 'failed', reason: 'crash_loop' }, expected: { to_version: '1.1.0', state: 'failed' } },
    { name: 'a legacy reason to an older server', accepts: null, update: { to_version: '1.2.0', state: 'rolled_back', reason: 'crashed_on_start' }, expected: { to_version: '1.2.0', state: 'rolled_back', reason: 'crashed_on_start' } },
  ];
  for (const row of heartbeatRows) {
    test(`heartbeat update: ${row.name}`, () => {
      assert.deepEqual(adaptForServer('heartbeat_update', row.update, row.accepts), row.expected);
    });
  }

  test('every code maps to one an older server takes, or has no fallback on purpose', () => {
    for (const code of REASON_CODES) {
      const legacy = reasonForServer(code, null);
      if ((LEGACY_REASON_CODES as readonly ReasonCode[]).includes(code)) assert.equal(legacy, code, code);
      else if (code === 'crash_loop') assert.equal(legacy, null, 'no older code says it passed its watch and then kept crashing');
      else assert.equal(legacy, OLDER_REASON[code], code);
    }
    assert.deepEqual([...NEWER_REPORT_FIELDS], ['serial', 'bytes_fetched', 'delta', 'delta_fallback']);
  });
});

describe('remembering what the server accepts', () => {
  const installRoot = tempInstallRoots('server-accepts');

  test('kept per server in state.json, removed when the server says nothing', async () => {
    const layout = installRoot('a');
    await loadState(layout, () => 'w-1');
    assert.equal(acceptsFromState(await loadState(layout, () => 'x'), 'http://a/'), null, 'nothing heard: an older server');
    await rememberAccepts(layout, 'http://a/', rolloutAware);
    const state = await loadState(layout, () => 'x');
    assert.deepEqual(acceptsFromState(state, 'http://a/'), rolloutAware);
    assert.equal(acceptsFromState(state, 'http://b/'), null, 'what another server said does not count');
    await rememberAccepts(layout, 'http://a/', null);
    assert.equal((await loadState(layout, () => 'x')).server_accepts, undefined);
  });
});

describe('the report sender', () => {
  type Posted = { report: UpdateReport; correlationId: string | undefined };
  function sender(accepts: ServerAccepts | null, answers: Array<Error | null> = []) {
    const posted: Posted[] = [];
    const logs = memoryLogger();
    const send = adaptedReportSender({
      post: async (sent, correlationId) => {
        posted.push({ report: sent, correlationId });
        const answer = answers.shift() ?? null;
        if (answer) throw answer;
      },
      accepts: async () => accepts,
      log: logs.log,
    });
    return { send, posted, logs };
  }
  const rejected = () => new ConnectionError('request_rejected', 'POST /api/worker-updates/report returned 400', { status: 400 });

  test('sends the adapted form, with the correlation id', async () => {
    const { send, posted } = sender(null);
    await send({ ...report, reason: 'self_test_failed', serial: 3 }, 'c-1');
    assert.deepEqual(posted, [{ report: { ...report, reason: 'install_failed' }, correlationId: 'c-1' }]);
  });

  test('a report the server cannot take is logged and handled, never posted', async () => {
    const { send, posted, logs } = sender(null);
    await send({ ...report, reason: 'crash_loop', serial: 3 }, 'c-2');
    assert.deepEqual(posted, []);
    const line = logs.lines().find((l) => l['event'] === 'worker_report_withheld');
    assert.equal(line?.['reason'], 'crash_loop');
    assert.equal(line?.['correlation_id'], 'c-2');
  });

  test('a server that listed a field but refuses it (replaced by an older one) gets the first-protocol form once', async () => {
    const { send, posted, logs } = sender(rolloutAware, [rejected()]);
    await send({ ...report, reason: 'self_test_failed', serial: 3 }, 'c-3');
    assert.deepEqual(
      posted.map((p) => p.report),
      [{ ...report, reason: 'self_test_failed', serial: 3 }, { ...report, reason: 'install_failed' }],
    );
    assert.ok(logs.lines().some((l) => l['event'] === 'worker_report_downgraded'));
  });

  const keeps: Array<{ name: string; accepts: ServerAccepts | null; sent: Partial<UpdateReport>; error: () => Error; posts: number }> = [
    { name: 'a refusal of a report already in first-protocol form', accepts: rolloutAware, sent: { reason: 'checksum_mismatch' }, error: rejected, posts: 1 },
    { name: 'a refusal by a server that never listed anything', accepts: null, sent: { serial: 3 }, error: rejected, posts: 1 },
    { name: 'a refusal of a report with no first-protocol form', accepts: rolloutAware, sent: { reason: 'crash_loop' }, error: rejected, posts: 1 },
    { name: 'a server that is down', accepts: rolloutAware, sent: { serial: 3 }, error: () => new ConnectionError('server_unreachable', 'down'), posts: 1 },
  ];
  for (const row of keeps) {
    test(`passes on to the queue: ${row.name}`, async () => {
      const error = row.error();
      const { send, posted } = sender(row.accepts, [error]);
      await assert.rejects(send({ ...report, ...row.sent }, 'c-4'), (err) => err === error);
      assert.equal(posted.length, row.posts);
    });
  }
});
