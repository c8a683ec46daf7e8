import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SignedChunkIndex } from '../../../src/protocol/chunk-index.js';
import { UpdateError } from '../../../src/protocol/reason-codes.js';
import { installLayout, type InstallLayout } from '../../../src/worker/install/install-layout.js';
import { LOCAL_CHUNKS_FILE } from '../../../src/worker/install/local-chunks.js';
import { readPointer } from '../../../src/worker/install/pointer.js';
import { loadState } from '../../../src/worker/install/state.js';
import { runUpdateOnce, type UpdaterContext } from '../../../src/worker/engine/updater.js';
import {
  artifactEntryFor,
  installFakeVersion,
  makeTempDir,
  releaseFor,
  runVersionOf,
  sha256Hex,
  testKeys,
  updaterContext,
  type RecordingUpdaterContext,
} from '../../helpers/engine-fixtures.js';
import { chunkIndexFor, releasePair, signedChunkIndexBytes } from '../../helpers/chunk-index-fixtures.js';
import { signedManifestBytes } from '../../helpers/trust-fixtures.js';
import { startEngineUpdateServer, type ArtifactSource, type EngineUpdateServer } from '../../helpers/engine-update-server.js';
import { until } from '../../helpers/wait.js';

const SEED = Number(process.env['TEST_SEED'] ?? 20261201);
console.log(`delta-download seed ${SEED} (TEST_SEED to replay)`);

const TOKEN = 'worker-token-secret-delta';
const OLD_VERSION = '1.0.0';
const NEW_VERSION = '1.0.1';
const ARTIFACT_PATH = `/api/worker-updates/artifacts/${NEW_VERSION}/bytebiota-worker-${NEW_VERSION}-linux-x64`;
const INDEX_PATH = `${ARTIFACT_PATH}.chunks.json`;
const RELATIVE_URL = `artifacts/${NEW_VERSION}/bytebiota-worker-${NEW_VERSION}-linux-x64`;

describe('differential download', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: EngineUpdateServer;
  let layout: InstallLayout;
  let n = 0;
  const keys = testKeys(1);
  const strangerKeys = testKeys(1);
  const { oldBytes, newBytes } = releasePair(SEED, OLD_VERSION, NEW_VERSION);
  const index = chunkIndexFor(newBytes, NEW_VERSION);

  before(async () => {
    temp = await makeTempDir('delta');
    server = await startEngineUpdateServer();
  });
  after(async () => {
    await server.close();
    await temp.remove();
  });
  beforeEach(async () => {
    n += 1;
    layout = installLayout(join(temp.dir, `root${n}`), 'linux-x64');
    await installFakeVersion(layout, OLD_VERSION, temp.dir, oldBytes);
    server.requests.length = 0;
    server.artifacts.clear();
    serve({ bytes: newBytes, etag: '"n1"' }, signedChunkIndexBytes(index, keys.privateKeys));
    const signed = releaseFor({ version: NEW_VERSION, serial: 2, artifacts: { 'linux-x64': artifactEntryFor(newBytes, RELATIVE_URL) } });
    server.manifest = { status: 200, body: signedManifestBytes(signed, keys.privateKeys), etag: `"m-${n}"` };
  });

  function serve(artifact: ArtifactSource, indexBytes: Buffer | null): void {
    server.artifacts.set(ARTIFACT_PATH, artifact);
    if (indexBytes) server.artifacts.set(INDEX_PATH, { bytes: indexBytes, etag: '"i1"' });
    else server.artifacts.delete(INDEX_PATH);
  }

  function context(overrides: Partial<UpdaterContext> = {}): RecordingUpdaterContext {
    return updaterContext({ layout, serverUrl: server.url, token: TOKEN, trustedKeys: keys.publicKeys, correlationId: `corr-${n}` }, overrides);
  }

  const artifactRequests = () => server.requests.filter((r) => r.path === ARTIFACT_PATH);

  /** The new version is in versions/ whole and verified, and nothing else was left behind. */
  async function assertStagedIntact(): Promise<void> {
    assert.equal(sha256Hex(await readFile(layout.executablePath(NEW_VERSION))), sha256Hex(newBytes), 'no wrong byte reaches versions/');
    assert.equal(await runVersionOf(layout.executablePath(NEW_VERSION)), NEW_VERSION);
    assert.equal(await readPointer(layout, 'current'), OLD_VERSION, 'the running version is untouched');
    assert.deepEqual(await readdir(layout.tmpDir), [], 'no partial file or sidecar is left');
  }

  test('fetches only the chunks the installed version lacks, as single ranges, and verifies the result', async () => {
    const ctx = context();
    assert.deepEqual(await runUpdateOnce(ctx), { kind: 'staged', version: NEW_VERSION, serial: 2 });
    await assertStagedIntact();

    const state = await loadState(layout, () => 'unused');
    const download = state.pending_switch?.download;
    assert.equal(download?.mode, 'delta');
    assert.ok(download && download.bytes_fetched > 0 && download.bytes_fetched < newBytes.length * 0.1, `fetched ${download?.bytes_fetched} of ${newBytes.length}`);
    const requests = artifactRequests();
    assert.ok(requests.length >= 2, 'the changed middle and the appended tail are separate ranges');
    for (const request of requests) {
      assert.match(String(request.headers['range']), /^bytes=\d+-\d+$/, 'one closed range per request');
      assert.equal(request.headers['authorization'], `Bearer ${TOKEN}`, 'the bearer goes to the server origin');
    }
    const fetched = requests.reduce((sum, r) => {
      const [, from, to] = /^bytes=(\d+)-(\d+)$/.exec(String(r.headers['range'])) ?? [];
      return sum + Number(to) - Number(from) + 1;
    }, 0);
    const indexBytes = server.artifacts.get(INDEX_PATH)!.bytes!.length;
    assert.equal(fetched + indexBytes, download?.bytes_fetched, 'the report counts exactly the bytes asked for, the index included');
    const logged = ctx.logs.lines().find((line) => line['event'] === 'worker_update_downloaded');
    assert.equal(logged?.['mode'], 'delta');
    assert.equal(Number(logged?.['reused_bytes']) + Number(logged?.['bytes_fetched']) - Number(logged?.['index_bytes']), newBytes.length);
    assert.ok(!ctx.logs.text().includes(TOKEN), 'the token never reaches a log line');
    // The new version's chunks are kept with it, from the verified index: the next update reads nothing first.
    const cache = JSON.parse(await readFile(join(layout.versionDir(NEW_VERSION), LOCAL_CHUNKS_FILE), 'utf8')) as { sha256: string; chunk_sha256: string[] };
    assert.equal(cache.sha256, sha256Hex(newBytes));
    assert.deepEqual(cache.chunk_sha256, index.chunk_sha256);
    const percents = ctx.progress.filter((p) => p.state === 'downloading').map((p) => p.download_percent);
    assert.equal(percents.at(-1), 100, 'progress counts the bytes to fetch, up to all of them');
  });

  const tamperedSignature = (signed: SignedChunkIndex): Buffer => {
    const bytes = signedChunkIndexBytes(signed, keys.privateKeys);
    // The first chunk hash changed after signing: the document no longer verifies.
    const text = bytes.toString('utf8').replace(signed.chunk_sha256[0]!, 'f'.repeat(64));
    return Buffer.from(text, 'utf8');
  };
  const fallbackRows: Array<{ name: string; reason: string; arrange(): Promise<void> | void }> = [
    { name: 'no index next to the artifact (a release from before)', reason: 'index_missing', arrange: () => serve({ bytes: newBytes, etag: '"n1"' }, null) },
    {
      name: 'an index the server fails to serve (500)',
      reason: 'index_unavailable',
      arrange: () => {
        serve({ bytes: newBytes, etag: '"n1"' }, null);
        // No body comes with the 500: nothing of the index counts as fetched.
        server.artifacts.set(INDEX_PATH, { bytes: Buffer.alloc(0), etag: '"i1"', failOnRequest: { request: 1, status: 500 } });
      },
    },
    { name: 'an index altered after signing', reason: 'index_invalid', arrange: () => serve({ bytes: newBytes, etag: '"n1"' }, tamperedSignature(index)) },
    { name: 'an index signed by a key the worker does not trust', reason: 'index_invalid', arrange: () => serve({ bytes: newBytes, etag: '"n1"' }, signedChunkIndexBytes(index, strangerKeys.privateKeys)) },
    {
      name: 'a signed index of another artifact (replayed from an older release)',
      reason: 'index_invalid',
      arrange: () => serve({ bytes: newBytes, etag: '"n1"' }, signedChunkIndexBytes(chunkIndexFor(oldBytes, NEW_VERSION), keys.privateKeys)),
    },
    {
      name: 'a signed index whose chunks point outside the file',
      reason: 'index_invalid',
      arrange: () => {
        const outside = { ...index, chunk_lengths: [...index.chunk_lengths.slice(0, -1), index.chunk_lengths.at(-1)! + 4096] };
        serve({ bytes: newBytes, etag: '"n1"' }, signedChunkIndexBytes(outside, keys.privateKeys));
      },
    },
    { name: 'a server that answers a range request with the whole file', reason: 'range_not_supported', arrange: () => serve({ bytes: newBytes, etag: '"n1"', ignoreRange: true }, signedChunkIndexBytes(index, keys.privateKeys)) },
    {
      name: 'a proxy that refuses range requests (403) but serves the whole file',
      reason: 'range_not_supported',
      arrange: () => serve({ bytes: newBytes, etag: '"n1"', failOnRequest: { request: 1, status: 403 } }, signedChunkIndexBytes(index, keys.privateKeys)),
    },
    { name: 'a chunk served with wrong bytes', reason: 'chunk_mismatch', arrange: () => serve({ bytes: newBytes, etag: '"n1"', corruptRanges: true }, signedChunkIndexBytes(index, keys.privateKeys)) },
    {
      name: 'an installed executable whose bytes changed under its chunk cache',
      reason: 'chunk_mismatch',
      arrange: async () => {
        const damaged = Buffer.from(oldBytes);
        for (let at = 200_000; at < 1_200_000; at += 50_000) damaged[at] = (damaged[at] ?? 0) ^ 0x55;
        await writeFile(layout.executablePath(OLD_VERSION), damaged);
      },
    },
    {
      name: 'an installed executable that no longer matches its install, with no chunk cache',
      reason: 'local_unreadable',
      arrange: async () => {
        const damaged = Buffer.from(oldBytes);
        damaged[300_000] = (damaged[300_000] ?? 0) ^ 0x55;
        await writeFile(layout.executablePath(OLD_VERSION), damaged);
        await rm(join(layout.versionDir(OLD_VERSION), LOCAL_CHUNKS_FILE));
      },
    },
    {
      name: 'an installed version that shares almost nothing',
      reason: 'delta_not_smaller',
      arrange: async () => {
        // Another 1.0.0, properly installed, whose chunk cache is damaged too (cut again, once).
        layout = installLayout(join(temp.dir, `root${n}-other`), 'linux-x64');
        await installFakeVersion(layout, OLD_VERSION, temp.dir, releasePair(SEED + 1, OLD_VERSION, NEW_VERSION).oldBytes);
        await writeFile(join(layout.versionDir(OLD_VERSION), LOCAL_CHUNKS_FILE), 'not json');
      },
    },
  ];
  for (const row of fallbackRows) {
    test(`falls back to the verified full download: ${row.name} (${row.reason})`, async () => {
      await row.arrange();
      const indexBytes = server.artifacts.get(INDEX_PATH)?.bytes?.length ?? 0;
      const ctx = context();
      assert.deepEqual(await runUpdateOnce(ctx), { kind: 'staged', version: NEW_VERSION, serial: 2 });
      await assertStagedIntact();
      const state = await loadState(layout, () => 'unused');
      // The index counts as fetched too, usable or not.
      assert.deepEqual(state.pending_switch?.download, { mode: 'full', bytes_fetched: indexBytes + newBytes.length, delta_fallback: row.reason });
      const fallback = ctx.logs.lines().filter((line) => line['event'] === 'worker_delta_fallback');
      assert.equal(fallback.length, 1, 'one log line says why');
      assert.equal(fallback[0]?.['reason'], row.reason);
      const whole = artifactRequests().at(-1);
      assert.equal(whole?.headers['range'], undefined, 'the last request is the plain full download');
    });
  }

  /** A first attempt whose second range (the appended tail) dies after 10 KiB: download_failed. */
  async function attemptWithBrokenSecondRange(): Promise<void> {
    serve({ bytes: newBytes, etag: '"n1"', dropOnRequest: { request: 2, afterBytes: 10 * 1024 } }, signedChunkIndexBytes(index, keys.privateKeys));
    const attempt = runUpdateOnce(context());
    await until('the second range to be held open', () => (server.artifacts.get(ARTIFACT_PATH)?.served ?? 0) >= 2);
    server.dropHeld();
    await assert.rejects(attempt, (err: unknown) => err instanceof UpdateError && err.code === 'download_failed');
  }

  test('a range that breaks off is resumed at the next attempt from the last verified chunk', async () => {
    await attemptWithBrokenSecondRange();
    const kept = await readdir(layout.tmpDir);
    assert.ok(kept.some((name) => name.endsWith('.delta.partial')) && kept.some((name) => name.endsWith('.delta.partial.json')), `kept ${kept.join(', ')}`);
    const sidecar = JSON.parse(await readFile(join(layout.tmpDir, kept.find((name) => name.endsWith('.json'))!), 'utf8')) as { assembled_bytes: number };
    assert.ok(sidecar.assembled_bytes > 0, 'the pieces before the broken range are kept');

    server.requests.length = 0;
    const second = context();
    assert.deepEqual(await runUpdateOnce(second), { kind: 'staged', version: NEW_VERSION, serial: 2 });
    await assertStagedIntact();
    const resumed = second.logs.lines().find((line) => line['event'] === 'worker_update_downloaded');
    assert.equal(resumed?.['resumed_from_bytes'], sidecar.assembled_bytes);
    for (const request of artifactRequests()) {
      const [, from] = /^bytes=(\d+)-/.exec(String(request.headers['range'])) ?? [];
      assert.ok(Number(from) >= sidecar.assembled_bytes, 'nothing before the kept prefix is fetched again');
    }
  });

  test('half-done downloads of superseded releases are removed from tmp/; nothing of this release is', async () => {
    await mkdir(layout.tmpDir, { recursive: true });
    const stale = ['0.9.0-linux-x64.partial', '0.9.0-linux-x64.partial.json', '0.9.5-rc.1-linux-x64.delta.partial', '0.9.5-rc.1-linux-x64.delta.partial.json'];
    for (const name of stale) await writeFile(join(layout.tmpDir, name), Buffer.alloc(1000));
    // Not a download of this platform: left alone.
    await writeFile(join(layout.tmpDir, 'notes.txt'), 'keep');
    const ctx = context();
    assert.deepEqual(await runUpdateOnce(ctx), { kind: 'staged', version: NEW_VERSION, serial: 2 });
    assert.deepEqual(await readdir(layout.tmpDir), ['notes.txt']);
    const discarded = ctx.logs.lines().find((line) => line['event'] === 'worker_partials_discarded');
    assert.deepEqual([...(discarded?.['files'] as string[])].sort(), [...stale].sort());
    assert.equal(discarded?.['bytes_freed'], 4000);
  });

  test("the server's rate limit is waited out: a 429 on a range is sent again after its Retry-After", async () => {
    serve({ bytes: newBytes, etag: '"n1"', failOnRequest: { request: 2, status: 429, retryAfter: '0' } }, signedChunkIndexBytes(index, keys.privateKeys));
    const ctx = context();
    assert.deepEqual(await runUpdateOnce(ctx), { kind: 'staged', version: NEW_VERSION, serial: 2 });
    await assertStagedIntact();
    assert.equal((await loadState(layout, () => 'unused')).pending_switch?.download?.mode, 'delta');
    const ranges = artifactRequests().map((request) => request.headers['range']);
    assert.equal(ranges[1], ranges[2], 'the refused range is asked for again');
  });

  test('an HTTP error on a range fails the attempt (download_failed), keeps what was assembled, and is not a fallback', async () => {
    serve({ bytes: newBytes, etag: '"n1"', failOnRequest: { request: 2, status: 503 } }, signedChunkIndexBytes(index, keys.privateKeys));
    const ctx = context();
    await assert.rejects(runUpdateOnce(ctx), (err: unknown) => err instanceof UpdateError && err.code === 'download_failed' && /HTTP 503/.test(err.message));
    assert.equal(ctx.logs.lines().filter((line) => line['event'] === 'worker_delta_fallback').length, 0);
    assert.ok((await readdir(layout.tmpDir)).some((name) => name.endsWith('.delta.partial.json')), 'kept for the next attempt');
    await assert.rejects(access(layout.versionDir(NEW_VERSION)));
    assert.equal(await runVersionOf(join(layout.root, 'current', 'bytebiota-worker')), OLD_VERSION, 'the previous version still runs');
  });

  test('kept bytes that no longer hash right are fetched again on resume, not trusted', async () => {
    await attemptWithBrokenSecondRange();
    const partial = (await readdir(layout.tmpDir)).find((name) => name.endsWith('.delta.partial'))!;
    const sidecar = JSON.parse(await readFile(join(layout.tmpDir, `${partial}.json`), 'utf8')) as { assembled_bytes: number };
    // A byte near the end of the kept prefix changed on disk (a power cut before it was flushed, say).
    const bytes = await readFile(join(layout.tmpDir, partial));
    bytes[sidecar.assembled_bytes - 100] = (bytes[sidecar.assembled_bytes - 100] ?? 0) ^ 0xff;
    await writeFile(join(layout.tmpDir, partial), bytes);

    const second = context();
    assert.deepEqual(await runUpdateOnce(second), { kind: 'staged', version: NEW_VERSION, serial: 2 });
    await assertStagedIntact();
    const downloaded = second.logs.lines().find((line) => line['event'] === 'worker_update_downloaded');
    assert.equal(downloaded?.['mode'], 'delta');
    const resumed = Number(downloaded?.['resumed_from_bytes']);
    assert.ok(resumed > 0 && resumed < sidecar.assembled_bytes, `kept ${resumed} of the ${sidecar.assembled_bytes} claimed`);
  });

  test('ranges that fail attempt after attempt give way to the whole file (ranges_failing)', async () => {
    serve({ bytes: newBytes, etag: '"n1"', failRangeStatus: 502 }, signedChunkIndexBytes(index, keys.privateKeys));
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      await assert.rejects(runUpdateOnce(context()), (err: unknown) => err instanceof UpdateError && err.code === 'download_failed', `attempt ${attempt}`);
    }
    const ctx = context();
    assert.deepEqual(await runUpdateOnce(ctx), { kind: 'staged', version: NEW_VERSION, serial: 2 });
    await assertStagedIntact();
    const state = await loadState(layout, () => 'unused');
    assert.equal(state.pending_switch?.download?.delta_fallback, 'ranges_failing');
    assert.equal(ctx.logs.lines().find((line) => line['event'] === 'worker_delta_fallback')?.['reason'], 'ranges_failing');
  });

  test('a full disk is disk_full, before a byte is written', async () => {
    const ctx = context({ statfs: async () => ({ bavail: 10n, bsize: 4096n }) });
    await assert.rejects(runUpdateOnce(ctx), (err: unknown) => err instanceof UpdateError && err.code === 'disk_full');
    await assert.rejects(access(layout.versionDir(NEW_VERSION)));
    assert.equal(await runVersionOf(join(layout.root, 'current', 'bytebiota-worker')), OLD_VERSION, 'the previous version still runs');
  });
});
