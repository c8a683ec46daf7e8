import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fixedClock } from '../../../src/shared/clock.js';
import type { ArtifactEntry, SignedRelease } from '../../../src/protocol/manifest.js';
import type { UpdateProgress } from '../../../src/protocol/messages.js';
import { UpdateError, type ReasonCode } from '../../../src/protocol/reason-codes.js';
import { installLayout, type InstallLayout } from '../../../src/worker/install/install-layout.js';
import { rollbackToPrevious } from '../../../src/worker/install/installer.js';
import { acquireUpdateLock } from '../../../src/worker/install/lock.js';
import { failureReasonOf } from '../../../src/worker/install/failure-reason.js';
import { readPointer } from '../../../src/worker/install/pointer.js';
import { loadState, updateState } from '../../../src/worker/install/state.js';
import { checkForUpdate, runUpdateOnce, type UpdaterContext } from '../../../src/worker/engine/updater.js';
import {
  artifactEntryFor,
  fakeWorkerExecutable,
  installFakeVersion,
  makeTempDir,
  releaseFor,
  runVersionOf,
  sha256Hex,
  testKeys,
  updaterContext,
  type RecordingUpdaterContext,
} from '../../helpers/engine-fixtures.js';
import { signedManifestBytes } from '../../helpers/trust-fixtures.js';
import { startEngineUpdateServer, type EngineUpdateServer } from '../../helpers/engine-update-server.js';

const TOKEN = 'worker-token-secret-123';
const NEW_VERSION = '1.1.0';
const ARTIFACT_PATH = `/api/worker-updates/artifacts/${NEW_VERSION}/bytebiota-worker-${NEW_VERSION}-linux-x64`;
const RELATIVE_URL = `artifacts/${NEW_VERSION}/bytebiota-worker-${NEW_VERSION}-linux-x64`;

describe('updater', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: EngineUpdateServer;
  let mirror: EngineUpdateServer;
  let layout: InstallLayout;
  let n = 0;
  const keys = testKeys(1);
  const otherKeys = testKeys(1);
  const newBytes = fakeWorkerExecutable(NEW_VERSION);

  before(async () => {
    temp = await makeTempDir('updater');
    server = await startEngineUpdateServer();
    mirror = await startEngineUpdateServer();
  });
  after(async () => {
    await server.close();
    await mirror.close();
    await temp.remove();
  });
  beforeEach(async () => {
    n += 1;
    layout = installLayout(join(temp.dir, `root${n}`), 'linux-x64');
    await installFakeVersion(layout, '1.0.0', temp.dir);
    server.requests.length = 0;
    server.artifacts.clear();
    server.artifacts.set(ARTIFACT_PATH, { bytes: newBytes, etag: '"a1"' });
    publish(releaseFor({ version: NEW_VERSION, serial: 3, artifacts: { 'linux-x64': artifactEntryFor(newBytes, RELATIVE_URL) } }));
  });

  function publish(signed: SignedRelease, signWith = keys.privateKeys, etag = `"m${signed.serial}-${n}"`): void {
    server.manifest = { status: 200, body: signedManifestBytes(signed, signWith), etag };
  }

  function context(overrides: Partial<UpdaterContext> = {}): RecordingUpdaterContext {
    return updaterContext({ layout, serverUrl: server.url, token: TOKEN, trustedKeys: keys.publicKeys, correlationId: `corr-${n}` }, overrides);
  }

  const artifactRequests = () => server.requests.filter((r) => r.path === ARTIFACT_PATH);

  async function assertPreviousStillCurrent(): Promise<void> {
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
    assert.equal(await runVersionOf(join(layout.root, 'current', 'bytebiota-worker')), '1.0.0');
    const state = await loadState(layout, () => 'unused');
    assert.equal(state.pending_switch, undefined);
    await (await acquireUpdateLock(layout))();
  }

  test('stages a new version: verified download, versions/<v> complete, pending_switch set, current untouched', async () => {
    const ctx = context();
    const result = await runUpdateOnce(ctx);
    assert.deepEqual(result, { kind: 'staged', version: NEW_VERSION, serial: 3 });
    assert.deepEqual(ctx.verified, [{ version: NEW_VERSION, serial: 3 }], 'the release it acts on, once the manifest verified');
    assert.equal(await runVersionOf(layout.executablePath(NEW_VERSION)), NEW_VERSION);
    assert.equal(await readPointer(layout, 'current'), '1.0.0');
    const state = await loadState(layout, () => 'unused');
    // The serial travels to the supervisor, whose success and rollback reports name it.
    // This server has no chunk index: the whole artifact, and the success report will say why.
    assert.deepEqual(state.pending_switch, {
      to_version: NEW_VERSION,
      from_version: '1.0.0',
      correlation_id: ctx.correlationId,
      channel: 'stable',
      serial: 3,
      download: { mode: 'full', bytes_fetched: newBytes.length, delta_fallback: 'index_missing' },
    });
    assert.equal(state.highest_serial['stable'], 3);
    assert.deepEqual(await readdir(layout.tmpDir), []);

    const latest = server.requests[0]!;
    assert.match(latest.path, /^\/api\/worker-updates\/latest\?channel=stable&platform=linux-x64&worker_id=worker-1&current_version=1.0.0$/);
    assert.equal(latest.headers['authorization'], `Bearer ${TOKEN}`);
    assert.equal(artifactRequests()[0]?.headers['authorization'], `Bearer ${TOKEN}`);
    assert.deepEqual(
      ctx.progress.map((p) => p.state).filter((s, i, all) => all.indexOf(s) === i),
      ['downloading', 'verifying', 'staging'],
    );
    assert.equal(ctx.progress.filter((p) => p.state === 'downloading').at(-1)?.download_percent, 100);
    assert.ok(!ctx.logs.text().includes(TOKEN), 'the token never reaches a log line');
    assert.ok(ctx.logs.lines().some((line) => line['event'] === 'worker_update_staged' && line['correlation_id'] === ctx.correlationId));
    assert.equal(latest.headers['x-bytebiota-force-update'], undefined, 'only a forced check asks to bypass the rollout');
    assert.ok(!ctx.logs.lines().some((line) => line['event'] === 'worker_update_forced'));

    // The same manifest again: If-None-Match with the remembered ETag, 304, nothing to do.
    assert.deepEqual(await runUpdateOnce(context()), { kind: 'not_modified' });
    assert.equal(server.requests.at(-1)?.headers['if-none-match'], server.manifest.etag);
  });

  test('harmless outcomes are results: no_release, up_to_date', async () => {
    server.manifest = { status: 404, body: JSON.stringify({ error: { code: 'no_release', message: 'none' } }) };
    assert.deepEqual(await runUpdateOnce(context()), { kind: 'no_release' });
    publish(releaseFor({ version: '1.0.0', serial: 4, artifacts: { 'linux-x64': artifactEntryFor(newBytes, RELATIVE_URL) } }));
    assert.deepEqual(await runUpdateOnce(context()), { kind: 'up_to_date' });
    assert.equal((await loadState(layout, () => 'x')).highest_serial['stable'], 4);
    await assertPreviousStillCurrent();
  });

  test('a version rolled back here is skipped until forced or a newer one appears', async () => {
    await updateState(layout, (state) => {
      state.rolled_back[NEW_VERSION] = { reason: 'crashed_on_start', at: '2026-05-01T00:00:00Z' };
    });
    assert.deepEqual(await runUpdateOnce(context()), { kind: 'skipped_rolled_back', version: NEW_VERSION });
    assert.equal(artifactRequests().length, 0);
    assert.equal(server.requests.at(-1)?.headers['x-bytebiota-force-update'], undefined);
    // Forced: no If-None-Match (a 304 would hide it), the server is asked to bypass its rollout
    // (an older one ignores the header), and the version is installed after all.
    const forced = context({ force: true });
    assert.deepEqual(await runUpdateOnce(forced), { kind: 'staged', version: NEW_VERSION, serial: 3 });
    const request = server.requests.filter((r) => r.path.startsWith('/api/worker-updates/latest')).at(-1);
    assert.equal(request?.headers['if-none-match'], undefined);
    assert.equal(request?.headers['x-bytebiota-force-update'], '1');
    assert.ok(forced.logs.lines().some((line) => line['event'] === 'worker_update_forced' && line['correlation_id'] === forced.correlationId));
  });

  test('a newer version after a rolled-back one is installed', async () => {
    await updateState(layout, (state) => {
      state.rolled_back['1.0.5'] = { reason: 'health_check_failed', at: '2026-05-01T00:00:00Z' };
    });
    assert.equal((await runUpdateOnce(context())).kind, 'staged');
  });

  test('the bearer token goes only to the server origin, not to a mirror', async () => {
    mirror.artifacts.set('/mirror/w', { bytes: newBytes, etag: '"m"' });
    publish(releaseFor({ version: NEW_VERSION, serial: 5, artifacts: { 'linux-x64': artifactEntryFor(newBytes, `${mirror.url}/mirror/w`) } }));
    assert.equal((await runUpdateOnce(context())).kind, 'staged');
    const request = mirror.requests.find((r) => r.path === '/mirror/w');
    assert.ok(request);
    assert.equal(request.headers['authorization'], undefined);
  });

  test('a signed fleet rollback to a version still installed needs no download', async () => {
    await installFakeVersion(layout, '1.2.0', temp.dir);
    const oldBytes = fakeWorkerExecutable('1.0.0');
    publish(
      releaseFor({ version: '1.0.0', serial: 9, allow_downgrade: true, artifacts: { 'linux-x64': artifactEntryFor(oldBytes, 'artifacts/1.0.0/x') } }),
    );
    const result = await runUpdateOnce(context({ currentVersion: '1.2.0' }));
    assert.deepEqual(result, { kind: 'staged', version: '1.0.0', serial: 9 });
    assert.equal(server.requests.filter((r) => r.path.includes('/artifacts/')).length, 0);
    assert.equal((await loadState(layout, () => 'x')).pending_switch?.to_version, '1.0.0');
    assert.equal((await loadState(layout, () => 'x')).pending_switch?.serial, 9);
  });

  test('another update holding the lock: update_in_progress, nothing fetched', async () => {
    const release = await acquireUpdateLock(layout);
    try {
      await assert.rejects(runUpdateOnce(context()), (err) => (err as { code?: string }).code === 'update_in_progress');
      assert.equal(server.requests.length, 0);
    } finally {
      await release();
    }
  });

  test('the highest serial is persisted only from a manifest that verified', async () => {
    publish(releaseFor({ version: NEW_VERSION, serial: 99, artifacts: { 'linux-x64': artifactEntryFor(newBytes, RELATIVE_URL) } }), otherKeys.privateKeys);
    await assert.rejects(checkForUpdate(context()), (err) => err instanceof UpdateError && err.code === 'signature_invalid');
    assert.equal((await loadState(layout, () => 'x')).highest_serial['stable'], undefined);
  });

  const entry = (): ArtifactEntry => artifactEntryFor(newBytes, RELATIVE_URL);
  const hang = (_req: IncomingMessage, _res: ServerResponse): void => undefined;
  const failures: Array<{ code: ReasonCode; name: string; arrange(): Promise<Partial<UpdaterContext> | void> | Partial<UpdaterContext> | void; act?: () => Promise<unknown> }> = [
    { code: 'manifest_fetch_failed', name: 'server answers 503', arrange: () => void (server.manifest = { status: 503, body: '{"error":{"code":"unavailable","message":"x"}}' }) },
    { code: 'manifest_fetch_failed', name: 'server answers 401', arrange: () => void (server.manifest = { status: 401, body: '{}' }) },
    { code: 'manifest_fetch_failed', name: 'headers never come (timeout)', arrange: () => ((server.manifest = { status: 0, handler: hang }), { manifestTimeoutMs: 300 }) },
    {
      code: 'manifest_fetch_failed',
      name: 'body stalls (timeout)',
      arrange: () => ((server.manifest = { status: 0, handler: (_req, res) => res.writeHead(200).write('{"signed":') }), { manifestTimeoutMs: 300 }),
    },
    { code: 'manifest_fetch_failed', name: 'connection refused', arrange: () => ({ serverUrl: 'http://127.0.0.1:1' }) },
    { code: 'manifest_fetch_failed', name: '404 that is not no_release', arrange: () => void (server.manifest = { status: 404, body: 'not here' }) },
    { code: 'manifest_invalid', name: 'not JSON', arrange: () => void (server.manifest = { status: 200, body: '<html>' }) },
    {
      code: 'manifest_invalid',
      name: 'over the size limit while streaming (no Content-Length)',
      arrange: () =>
        void (server.manifest = {
          status: 0,
          handler: (_req, res) => {
            res.writeHead(200, { 'content-type': 'application/json' });
            const chunk = Buffer.alloc(64 * 1024, 0x20);
            let sent = 0;
            const pump = (): void => {
              while (sent < 40 && res.write(chunk)) sent += 1;
              if (sent < 40) res.once('drain', pump);
              else res.end();
            };
            res.on('error', () => undefined);
            pump();
          },
        }),
    },
    { code: 'signature_invalid', name: 'signed by an untrusted key', arrange: () => publish(releaseFor({ version: NEW_VERSION, serial: 3, artifacts: { 'linux-x64': entry() } }), otherKeys.privateKeys) },
    { code: 'manifest_expired', name: 'expired', arrange: () => ({ clock: fixedClock('2027-01-01T00:00:00Z') }) },
    {
      code: 'manifest_rollback',
      name: 'serial lower than accepted before',
      arrange: async () => {
        await updateState(layout, (state) => {
          state.highest_serial['stable'] = 5;
        });
      },
    },
    { code: 'channel_mismatch', name: 'manifest for another channel', arrange: () => publish(releaseFor({ channel: 'canary', version: NEW_VERSION, serial: 3, artifacts: { 'linux-x64': entry() } })) },
    { code: 'downgrade_refused', name: 'older version without allow_downgrade', arrange: () => publish(releaseFor({ version: '0.9.0', serial: 3, artifacts: { 'linux-x64': entry() } })) },
    { code: 'no_artifact_for_platform', name: 'only darwin-arm64', arrange: () => publish(releaseFor({ version: NEW_VERSION, serial: 3, artifacts: { 'darwin-arm64': entry() } })) },
    {
      code: 'download_failed',
      name: 'plain http to a non-loopback host',
      arrange: () => publish(releaseFor({ version: NEW_VERSION, serial: 3, artifacts: { 'linux-x64': { ...entry(), url: 'http://updates.example.com/w' } } })),
    },
    {
      code: 'download_failed',
      name: 'a scheme other than http(s)',
      arrange: () => publish(releaseFor({ version: NEW_VERSION, serial: 3, artifacts: { 'linux-x64': { ...entry(), url: 'file:///etc/passwd' } } })),
    },
    { code: 'download_failed', name: 'artifact missing (404)', arrange: () => void server.artifacts.clear() },
    {
      code: 'download_failed',
      name: 'connection dropped mid-download',
      arrange: () => {
        server.artifacts.get(ARTIFACT_PATH)!.dropAfterBytes = 100;
        return { onProgress: (p: UpdateProgress) => (p.download_percent ?? 0) > 0 && server.dropHeld() };
      },
    },
    { code: 'size_mismatch', name: 'served size differs from signed size', arrange: () => publish(releaseFor({ version: NEW_VERSION, serial: 3, artifacts: { 'linux-x64': { ...entry(), size: newBytes.length + 7 } } })) },
    { code: 'checksum_mismatch', name: 'served bytes differ from the signed hash', arrange: () => publish(releaseFor({ version: NEW_VERSION, serial: 3, artifacts: { 'linux-x64': { ...entry(), sha256: sha256Hex(Buffer.from('other')) } } })) },
    { code: 'disk_full', name: 'statfs reports too little space', arrange: () => ({ statfs: async () => ({ bavail: 100, bsize: 4096 }) }) },
    {
      code: 'self_test_failed',
      name: 'the artifact reports another version in its self-test',
      arrange: () => {
        const liar = fakeWorkerExecutable(NEW_VERSION, { reportVersion: '6.6.6' });
        server.artifacts.set(ARTIFACT_PATH, { bytes: liar, etag: '"liar"' });
        publish(releaseFor({ version: NEW_VERSION, serial: 3, artifacts: { 'linux-x64': artifactEntryFor(liar, RELATIVE_URL) } }));
      },
    },
    { code: 'rollback_failed', name: 'rollback with no previous version', arrange: () => undefined, act: () => rollbackToPrevious(layout) },
  ];

  for (const [name, breakState] of [
    ['does not parse', (path: string) => writeFile(path, '{"worker_id": "w-1", "highest')],
    ['cannot be read (a directory in its place, as EACCES or EIO would)', async (path: string) => (await rm(path, { force: true }), mkdir(path))],
  ] as const) {
    test(`fails with state_corrupt: state.json ${name}; nothing staged, 1.0.0 stays current and runs, the file is left for the operator`, async () => {
      await breakState(layout.statePath);
      await assert.rejects(runUpdateOnce(context()), (err) => failureReasonOf(err) === 'state_corrupt');
      assert.equal(await readPointer(layout, 'current'), '1.0.0');
      assert.equal(await runVersionOf(join(layout.root, 'current', 'bytebiota-worker')), '1.0.0');
      await access(layout.versionDir(NEW_VERSION)).then(
        () => assert.fail('nothing may enter versions/ after a failure'),
        () => undefined,
      );
      await assert.rejects(loadState(layout, () => 'unused'), (err) => failureReasonOf(err) === 'state_corrupt', 'it is not reset: the operator decides');
      await (await acquireUpdateLock(layout))();
    });
  }

  for (const row of failures) {
    test(`fails with ${row.code}: ${row.name}; 1.0.0 stays current and runs`, async () => {
      const overrides = (await row.arrange()) ?? {};
      const ctx = context(overrides);
      await assert.rejects(row.act?.() ?? runUpdateOnce(ctx), (err) => err instanceof UpdateError && err.code === row.code);
      await assertPreviousStillCurrent();
      await access(layout.versionDir(NEW_VERSION)).then(
        () => assert.fail('nothing may enter versions/ after a failure'),
        () => undefined,
      );
      if (row.act === undefined && ctx.progress.some((p) => p.state === 'downloading')) {
        assert.equal(ctx.progress.at(-1)?.state, 'failed');
        assert.equal(ctx.progress.at(-1)?.reason, row.code);
      }
    });
  }

  test('every reason code the engine produces has a row', () => {
    const covered = new Set(failures.map((row) => row.code));
    for (const code of [
      'manifest_fetch_failed', 'manifest_invalid', 'signature_invalid', 'manifest_expired', 'manifest_rollback', 'channel_mismatch',
      'downgrade_refused', 'no_artifact_for_platform', 'download_failed', 'size_mismatch', 'checksum_mismatch', 'disk_full',
      'self_test_failed', 'rollback_failed',
    ] as const) {
      assert.ok(covered.has(code), code);
    }
  });

  test('a dropped download resumes on the next attempt with a Range request', async () => {
    server.artifacts.get(ARTIFACT_PATH)!.dropAfterBytes = 100;
    // The first progress report after bytes arrived drops the held connection.
    const ctx = context({ onProgress: (p) => p.state === 'downloading' && (p.download_percent ?? 0) > 0 && server.dropHeld() });
    await assert.rejects(runUpdateOnce(ctx), (err) => err instanceof UpdateError && err.code === 'download_failed');
    assert.deepEqual((await readdir(layout.tmpDir)).sort(), [`${NEW_VERSION}-linux-x64.partial`, `${NEW_VERSION}-linux-x64.partial.json`]);
    assert.deepEqual(await runUpdateOnce(context()), { kind: 'staged', version: NEW_VERSION, serial: 3 });
    assert.match(String(artifactRequests()[1]?.headers['range']), /^bytes=\d+-$/);
  });
});
