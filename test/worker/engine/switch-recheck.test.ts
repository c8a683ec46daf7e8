import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { join } from 'node:path';
import type { SignedRelease } from '../../../src/protocol/manifest.js';
import { installLayout, type InstallLayout } from '../../../src/worker/install/install-layout.js';
import { isCompleteVersion } from '../../../src/worker/install/installer.js';
import { readPointer } from '../../../src/worker/install/pointer.js';
import { loadState } from '../../../src/worker/install/state.js';
import { decideStagedSwitch, recheckBeforeSwitch, type RecheckAnswer, type RecheckDecision } from '../../../src/worker/engine/switch-recheck.js';
import { runUpdateOnce, type UpdaterContext } from '../../../src/worker/engine/updater.js';
import {
  artifactEntryFor,
  fakeWorkerExecutable,
  installFakeVersion,
  makeTempDir,
  releaseFor,
  testKeys,
  updaterContext,
  type RecordingUpdaterContext,
} from '../../helpers/engine-fixtures.js';
import { signedManifestBytes } from '../../helpers/trust-fixtures.js';
import { LATEST_PATH, startEngineUpdateServer, type EngineUpdateServer } from '../../helpers/engine-update-server.js';

describe('deciding the switch after staging', () => {
  const rows: Array<{ answer: RecheckAnswer; decision: RecheckDecision }> = [
    { answer: { kind: 'not_modified' }, decision: { action: 'switch', because: 'not_modified' } },
    { answer: { kind: 'verified', version: '1.1.0', serial: 3 }, decision: { action: 'switch', because: 'same_serial' } },
    { answer: { kind: 'no_release' }, decision: { action: 'cancel', cause: 'no_longer_offered' } },
    { answer: { kind: 'verified', version: '1.2.0', serial: 4 }, decision: { action: 'cancel', cause: 'superseded' } },
    { answer: { kind: 'verified', version: '1.1.0', serial: 4 }, decision: { action: 'cancel', cause: 'superseded' } },
    { answer: { kind: 'failed', reason: 'manifest_fetch_failed', detail: 'HTTP 503' }, decision: { action: 'switch', because: 'recheck_failed' } },
    { answer: { kind: 'failed', reason: 'signature_invalid', detail: 'x' }, decision: { action: 'switch', because: 'recheck_failed' } },
  ];
  for (const row of rows) {
    test(`staged serial 3, answer ${JSON.stringify(row.answer)}: ${row.decision.action}`, () => {
      assert.deepEqual(decideStagedSwitch(3, row.answer), row.decision);
    });
  }
});

const NEW_VERSION = '1.1.0';
const ARTIFACT_PATH = `/api/worker-updates/artifacts/${NEW_VERSION}/w`;

describe('asking again before the switch', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: EngineUpdateServer;
  let layout: InstallLayout;
  let n = 0;
  const keys = testKeys(1);
  const otherKeys = testKeys(1);
  const newBytes = fakeWorkerExecutable(NEW_VERSION);
  const release = (serial: number, version = NEW_VERSION): SignedRelease =>
    releaseFor({ version, serial, artifacts: { 'linux-x64': artifactEntryFor(newBytes, `artifacts/${NEW_VERSION}/w`) } });

  before(async () => {
    temp = await makeTempDir('switch-recheck');
    server = await startEngineUpdateServer();
  });
  after(async () => {
    await server.close();
    await temp.remove();
  });
  beforeEach(async () => {
    n += 1;
    layout = installLayout(join(temp.dir, `root${n}`), 'linux-x64');
    await installFakeVersion(layout, '1.0.0', temp.dir);
    server.artifacts.clear();
    server.artifacts.set(ARTIFACT_PATH, { bytes: newBytes, etag: '"a1"' });
    server.manifest = { status: 200, body: signedManifestBytes(release(3), keys.privateKeys), etag: `"m3-${n}"` };
  });

  function context(overrides: Partial<UpdaterContext> = {}): RecordingUpdaterContext {
    return updaterContext({ layout, serverUrl: server.url, token: 'tok', trustedKeys: keys.publicKeys, correlationId: `corr-${n}` }, overrides);
  }

  /** Stage 1.1.0 (serial 3) as `run` does, then change what the server answers. */
  async function staged(ctx: UpdaterContext): Promise<{ version: string; serial: number }> {
    const result = await runUpdateOnce(ctx);
    assert.equal(result.kind, 'staged');
    server.requests.length = 0;
    return { version: NEW_VERSION, serial: 3 };
  }

  const latestRequests = () => server.requests.filter((r) => r.path.startsWith(LATEST_PATH));
  const event = (ctx: ReturnType<typeof context>, name: string) => ctx.logs.lines().find((line) => line['event'] === name);

  test('unchanged (304 to the remembered ETag): switch, pending_switch kept', async () => {
    const ctx = context();
    const stagedRelease = await staged(ctx);
    assert.deepEqual(await recheckBeforeSwitch(ctx, stagedRelease), { action: 'switch', because: 'not_modified' });
    assert.equal(latestRequests()[0]?.headers['if-none-match'], `"m3-${n}"`);
    assert.equal(latestRequests()[0]?.headers['x-bytebiota-force-update'], undefined);
    assert.equal((await loadState(layout, () => 'x')).pending_switch?.to_version, NEW_VERSION);
    assert.equal(event(ctx, 'worker_update_recheck')?.['result'], 'not_modified');
  });

  test('the same serial under another ETag, verified: switch', async () => {
    const ctx = context();
    const stagedRelease = await staged(ctx);
    server.manifest = { ...server.manifest, etag: '"other"' };
    assert.deepEqual(await recheckBeforeSwitch(ctx, stagedRelease), { action: 'switch', because: 'same_serial' });
    assert.equal((await loadState(layout, () => 'x')).pending_switch?.serial, 3);
  });

  test('no longer offered (404 no_release): cancelled; the staged version is kept and reused without download when offered again', async () => {
    const ctx = context();
    const stagedRelease = await staged(ctx);
    const offered = server.manifest;
    server.manifest = { status: 404, body: JSON.stringify({ error: { code: 'no_release', message: 'halted' } }) };
    assert.deepEqual(await recheckBeforeSwitch(ctx, stagedRelease), { action: 'cancel', cause: 'no_longer_offered' });
    const state = await loadState(layout, () => 'x');
    assert.equal(state.pending_switch, undefined);
    assert.equal(state.manifest_etags?.['stable'], undefined, 'the ETag is forgotten: the same manifest offered again must not be a 304');
    assert.equal(await isCompleteVersion(layout, NEW_VERSION), true);
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
    const cancelled = event(ctx, 'worker_update_cancelled');
    assert.equal(cancelled?.['cause'], 'no_longer_offered');
    assert.equal(cancelled?.['correlation_id'], ctx.correlationId);
    assert.equal(cancelled?.['serial'], 3);

    // The rollout resumes: the same manifest, the same ETag.
    server.manifest = offered;
    server.requests.length = 0;
    assert.deepEqual(await runUpdateOnce(context()), { kind: 'staged', version: NEW_VERSION, serial: 3 });
    assert.equal(latestRequests()[0]?.headers['if-none-match'], undefined);
    assert.equal(server.requests.filter((r) => r.path === ARTIFACT_PATH).length, 0, 'no second download');
  });

  test('superseded by a newer serial: cancelled, the new release left to the next check', async () => {
    const ctx = context();
    const stagedRelease = await staged(ctx);
    server.manifest = { status: 200, body: signedManifestBytes(release(4, '1.2.0'), keys.privateKeys), etag: '"m4"' };
    assert.deepEqual(await recheckBeforeSwitch(ctx, stagedRelease), { action: 'cancel', cause: 'superseded' });
    const state = await loadState(layout, () => 'x');
    assert.equal(state.pending_switch, undefined);
    assert.equal(state.highest_serial['stable'], 3, 'the trust state moves only in a check');
    const cancelled = event(ctx, 'worker_update_cancelled');
    assert.equal(cancelled?.['cause'], 'superseded');
    assert.equal(cancelled?.['offered_serial'], 4);
  });

  const failures: Array<{ name: string; reason: string; arrange(ctx: UpdaterContext): Partial<UpdaterContext> | void }> = [
    { name: 'the server answers 503', reason: 'manifest_fetch_failed', arrange: () => void (server.manifest = { status: 503, body: '{"error":{"code":"unavailable","message":"x"}}' }) },
    { name: 'the server is unreachable', reason: 'manifest_fetch_failed', arrange: () => ({ serverUrl: 'http://127.0.0.1:1' }) },
    { name: 'the answer never comes', reason: 'manifest_fetch_failed', arrange: () => ((server.manifest = { status: 0, handler: () => undefined }), { manifestTimeoutMs: 300 }) },
    {
      name: 'a manifest that does not verify',
      reason: 'signature_invalid',
      arrange: () => void (server.manifest = { status: 200, body: signedManifestBytes(release(5), otherKeys.privateKeys), etag: '"bad"' }),
    },
  ];
  for (const row of failures) {
    test(`no usable answer (${row.name}): switch anyway, logged`, async () => {
      const first = context();
      const stagedRelease = await staged(first);
      const ctx = context({ correlationId: first.correlationId, ...(row.arrange(first) ?? {}) });
      assert.deepEqual(await recheckBeforeSwitch(ctx, stagedRelease), { action: 'switch', because: 'recheck_failed' });
      assert.equal((await loadState(layout, () => 'x')).pending_switch?.to_version, NEW_VERSION);
      const failed = event(ctx, 'worker_update_recheck_failed');
      assert.equal(failed?.['reason'], row.reason);
      assert.equal(failed?.['correlation_id'], first.correlationId);
    });
  }

  test('a forced update asks the server to bypass its rollout on the second request too', async () => {
    const ctx = context({ force: true });
    const stagedRelease = await staged(ctx);
    assert.equal((await recheckBeforeSwitch(ctx, stagedRelease)).action, 'switch');
    assert.equal(latestRequests()[0]?.headers['x-bytebiota-force-update'], '1');
  });

  test('a cancel leaves a pending_switch of another attempt alone', async () => {
    const ctx = context();
    const stagedRelease = await staged(ctx);
    server.manifest = { status: 404, body: JSON.stringify({ error: { code: 'no_release', message: 'halted' } }) };
    const other = context({ correlationId: 'someone-else' });
    assert.equal((await recheckBeforeSwitch(other, stagedRelease)).action, 'cancel');
    assert.equal((await loadState(layout, () => 'x')).pending_switch?.correlation_id, ctx.correlationId);
  });
});
