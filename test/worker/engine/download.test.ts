import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UpdateError, type ReasonCode } from '../../../src/protocol/reason-codes.js';
import { downloadArtifact, sidecarPathOf, type DownloadRequest } from '../../../src/worker/engine/download.js';
import { WRITE_BATCH_BYTES, type OpenPartialFile } from '../../../src/worker/engine/hashing-writer.js';
import { makeTempDir, sha256Hex, exists } from '../../helpers/engine-fixtures.js';
import { startEngineUpdateServer, type EngineUpdateServer } from '../../helpers/engine-update-server.js';

const execFileAsync = promisify(execFile);
const plentyOfSpace = async () => ({ bavail: 1n << 30n, bsize: 4096n });
const ARTIFACT_BYTES = 256 * 1024;

function isCode(code: ReasonCode) {
  return (err: unknown) => err instanceof UpdateError && err.code === code;
}


describe('downloadArtifact', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: EngineUpdateServer;
  let counter = 0;
  const artifact = randomBytes(ARTIFACT_BYTES);

  before(async () => {
    temp = await makeTempDir('download');
    server = await startEngineUpdateServer();
  });
  after(async () => {
    await server.close();
    await temp.remove();
  });

  /** A fresh artifact path on the fixture and a fresh partial path, per test. */
  function setup(overrides: Partial<DownloadRequest> = {}, bytes: Buffer = artifact): DownloadRequest & { path: string } {
    counter += 1;
    const path = `/artifacts/${counter}/bytebiota-worker`;
    server.artifacts.set(path, { bytes, etag: `"v${counter}"` });
    return {
      path,
      url: `${server.url}${path}`,
      partialPath: join(temp.dir, `t${counter}`, `1.0.${counter}-linux-x64.partial`),
      sha256: sha256Hex(artifact),
      size: artifact.length,
      statfs: plentyOfSpace,
      ...overrides,
    };
  }

  const requestsTo = (path: string) => server.requests.filter((r) => r.path === path);
  /** Drop the held connection once the client has received `bytes` (see dropAfterBytes). */
  const dropAt = (bytes: number) => (received: number) => {
    if (received >= bytes) server.dropHeld();
  };

  test('streams, verifies, reports progress and keeps a sidecar for resuming', async () => {
    const req = setup();
    const seen: number[] = [];
    const result = await downloadArtifact({ ...req, headers: { authorization: 'Bearer t' }, onProgress: (n) => seen.push(n) });
    assert.deepEqual(await readFile(result.path), artifact);
    assert.equal(result.resumedFromBytes, 0);
    assert.equal(result.fetchedBytes, artifact.length);
    assert.equal(seen.at(-1), artifact.length);
    assert.equal(requestsTo(req.path)[0]?.headers['authorization'], 'Bearer t');
    const sidecar = JSON.parse(await readFile(sidecarPathOf(req.partialPath), 'utf8'));
    assert.deepEqual(sidecar, { url: req.url, sha256: req.sha256, size: req.size, validator: `"v${counter}"` });
  });

  test('a connection dropped mid-body keeps the partial; the next attempt resumes with Range and If-Range', async () => {
    const req = setup();
    const source = server.artifacts.get(req.path)!;
    source.dropAfterBytes = 100_000;
    await assert.rejects(downloadArtifact({ ...req, onProgress: dropAt(100_000) }), isCode('download_failed'));
    const kept = (await stat(req.partialPath)).size;
    assert.equal(kept, 100_000);

    const result = await downloadArtifact(req);
    const second = requestsTo(req.path)[1]!;
    assert.equal(second.headers['range'], `bytes=${kept}-`);
    assert.equal(second.headers['if-range'], source.etag);
    assert.equal(result.resumedFromBytes, kept);
    assert.equal(result.fetchedBytes, artifact.length - kept);
    assert.deepEqual(await readFile(result.path), artifact);
  });

  test('a changed validator (200 instead of 206) discards the partial and starts from zero', async () => {
    const req = setup();
    const source = server.artifacts.get(req.path)!;
    source.dropAfterBytes = 50_000;
    await assert.rejects(downloadArtifact({ ...req, onProgress: dropAt(50_000) }), isCode('download_failed'));
    source.etag = '"republished"';
    const result = await downloadArtifact(req);
    assert.ok(requestsTo(req.path)[1]!.headers['range']);
    assert.equal(result.resumedFromBytes, 0);
    assert.equal(result.fetchedBytes, artifact.length);
    assert.deepEqual(await readFile(result.path), artifact);
  });

  test('a server without range support still completes (from zero)', async () => {
    const req = setup();
    const source = server.artifacts.get(req.path)!;
    source.dropAfterBytes = 50_000;
    await assert.rejects(downloadArtifact({ ...req, onProgress: dropAt(50_000) }), isCode('download_failed'));
    source.ignoreRange = true;
    const result = await downloadArtifact(req);
    assert.equal(result.resumedFromBytes, 0);
    assert.deepEqual(await readFile(result.path), artifact);
  });

  test('a 206 whose Content-Range does not start at the offset is rejected and the partial discarded', async () => {
    const req = setup();
    const source = server.artifacts.get(req.path)!;
    source.dropAfterBytes = 50_000;
    await assert.rejects(downloadArtifact({ ...req, onProgress: dropAt(50_000) }), isCode('download_failed'));
    source.contentRangeSkewBytes = 10;
    await assert.rejects(downloadArtifact(req), (err) => isCode('download_failed')(err) && /starting at byte/.test((err as Error).message));
    assert.equal(await exists(req.partialPath), false);
  });

  test('a partial for a different artifact (another sha256) is not resumed', async () => {
    const req = setup();
    await mkdir(join(req.partialPath, '..'), { recursive: true });
    await writeFile(req.partialPath, artifact.subarray(0, 1000));
    await writeFile(sidecarPathOf(req.partialPath), JSON.stringify({ url: req.url, sha256: 'a'.repeat(64), size: req.size, validator: '"x"' }));
    const result = await downloadArtifact(req);
    assert.equal(requestsTo(req.path)[0]!.headers['range'], undefined);
    assert.equal(result.resumedFromBytes, 0);
  });

  test('a partial already complete is verified without a request', async () => {
    const req = setup();
    await downloadArtifact(req);
    const before = requestsTo(req.path).length;
    const result = await downloadArtifact(req);
    assert.equal(requestsTo(req.path).length, before);
    assert.equal(result.fetchedBytes, 0);
  });

  const failures: Array<{ name: string; code: ReasonCode; keepsPartial: boolean; arrange(): DownloadRequest }> = [
    { name: 'longer than signed (Content-Length)', code: 'size_mismatch', keepsPartial: false, arrange: () => setup({}, Buffer.concat([artifact, Buffer.from('x')])) },
    {
      name: 'longer than signed (chunked: cut off while streaming)',
      code: 'size_mismatch',
      keepsPartial: false,
      arrange: () => {
        const req = setup({}, Buffer.concat([artifact, randomBytes(4096)]));
        server.artifacts.get((req as { path: string }).path)!.chunked = true;
        return req;
      },
    },
    { name: 'shorter than signed (Content-Length)', code: 'size_mismatch', keepsPartial: false, arrange: () => setup({}, artifact.subarray(1)) },
    {
      name: 'shorter than signed (chunked: found at the end)',
      code: 'size_mismatch',
      keepsPartial: false,
      arrange: () => {
        const req = setup({}, artifact.subarray(1));
        server.artifacts.get((req as { path: string }).path)!.chunked = true;
        return req;
      },
    },
    { name: 'same size, other bytes', code: 'checksum_mismatch', keepsPartial: false, arrange: () => setup({}, randomBytes(ARTIFACT_BYTES)) },
    { name: 'HTTP 404', code: 'download_failed', keepsPartial: false, arrange: () => ({ ...setup(), url: `${server.url}/artifacts/none` }) },
    { name: 'connection refused', code: 'download_failed', keepsPartial: false, arrange: () => ({ ...setup(), url: 'http://127.0.0.1:1/x' }) },
    {
      name: 'body stalls past the idle timeout',
      code: 'download_failed',
      keepsPartial: true,
      arrange: () => {
        const req = setup({ bodyIdleTimeoutMs: 300 });
        server.artifacts.get(req.path)!.stallAfterBytes = 10_000;
        return req;
      },
    },
  ];
  for (const row of failures) {
    test(`fails with ${row.code}: ${row.name}`, async () => {
      const req = row.arrange();
      await assert.rejects(downloadArtifact(req), isCode(row.code));
      assert.equal(await exists(req.partialPath), row.keepsPartial);
    });
  }

  test('disk_full from statfs before any byte is written or requested', async () => {
    const req = setup({ statfs: async () => ({ bavail: 10, bsize: 4096 }) });
    await assert.rejects(downloadArtifact(req), isCode('disk_full'));
    assert.equal(requestsTo(req.path).length, 0);
    assert.equal(await exists(req.partialPath), false);
  });

  test('ENOSPC while writing is disk_full, partial removed', async (t) => {
    // Real ENOSPC: a 128 KiB tmpfs, when this runs as root and mount works (statfs is injected to
    // say there is room, so the write itself must fail). Elsewhere the partial file is injected
    // to fail its writes with ENOSPC, which exercises the same error path.
    const req = setup();
    const mountPoint = join(temp.dir, 'tiny-fs');
    await mkdir(mountPoint, { recursive: true });
    let mounted = false;
    if (process.getuid?.() === 0) {
      mounted = await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mountPoint]).then(
        () => true,
        () => false,
      );
    }
    t.diagnostic(mounted ? 'real ENOSPC on a tmpfs' : 'injected ENOSPC (no root or no mount)');
    try {
      const partialPath = join(mountPoint, 'x.partial');
      const injected: Partial<DownloadRequest> = mounted
        ? {}
        : {
            openPartialFile: async () => ({
              writev: async () => {
                throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
              },
              close: async () => undefined,
            }),
          };
      await assert.rejects(downloadArtifact({ ...req, partialPath, ...injected }), isCode('disk_full'));
      assert.equal(await exists(partialPath), false);
    } finally {
      if (mounted) await execFileAsync('umount', [mountPoint]);
    }
  });

  /** An artifact spanning several write batches, ending mid-batch. */
  const large = randomBytes(3 * WRITE_BATCH_BYTES + 12_345);
  const setupLarge = (overrides: Partial<DownloadRequest> = {}) =>
    setup({ sha256: sha256Hex(large), size: large.length, ...overrides }, large);

  /** The real file, behind a writev that fails with `code` on the call for which `failWhen` is true. */
  const failingWrites =
    (code: string, failWhen: (call: number, bytesBefore: number, bytesInCall: number) => boolean): OpenPartialFile =>
    async (path, flags) => {
      const handle = await open(path, flags);
      let calls = 0;
      let bytesBefore = 0;
      return {
        writev: async (buffers) => {
          calls += 1;
          const bytesInCall = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
          if (failWhen(calls, bytesBefore, bytesInCall)) throw Object.assign(new Error(`${code}: injected, writev`), { code, syscall: 'write' });
          const result = await handle.writev(buffers);
          bytesBefore += result.bytesWritten;
          return result;
        },
        close: () => handle.close(),
      };
    };

  test('an artifact of several write batches, chunked, arrives whole and verified', async () => {
    const req = setupLarge();
    server.artifacts.get(req.path)!.chunked = true;
    const result = await downloadArtifact(req);
    assert.deepEqual(await readFile(result.path), large);
    assert.equal(result.verified.sha256, sha256Hex(large));
    assert.equal(result.fetchedBytes, large.length);
  });

  test('short writes are continued until every byte is on disk', async () => {
    const req = setupLarge();
    let calls = 0;
    const result = await downloadArtifact({
      ...req,
      openPartialFile: async (path, flags) => {
        const handle = await open(path, flags);
        return {
          // At most 1000 bytes per call, often ending inside a buffer.
          writev: async (buffers) => {
            calls += 1;
            const first = buffers[0]!;
            return handle.writev([first.subarray(0, Math.min(first.length, 1000))]);
          },
          close: () => handle.close(),
        };
      },
    });
    assert.deepEqual(await readFile(result.path), large);
    assert.ok(calls >= Math.ceil(large.length / 1000));
  });

  test('a connection dropped mid-batch keeps every byte received (the queued batch is written out)', async () => {
    const req = setupLarge();
    const dropAfter = 2 * WRITE_BATCH_BYTES + 500_000;
    server.artifacts.get(req.path)!.dropAfterBytes = dropAfter;
    await assert.rejects(downloadArtifact({ ...req, onProgress: dropAt(dropAfter) }), isCode('download_failed'));
    assert.equal((await stat(req.partialPath)).size, dropAfter);
    assert.deepEqual(await readFile(req.partialPath), large.subarray(0, dropAfter));

    const result = await downloadArtifact(req);
    assert.equal(result.resumedFromBytes, dropAfter);
    assert.equal(requestsTo(req.path)[1]!.headers['range'], `bytes=${dropAfter}-`);
    assert.deepEqual(await readFile(result.path), large);
  });

  const localFailures: Array<{ name: string; code: ReasonCode; openPartialFile: OpenPartialFile }> = [
    { name: 'ENOSPC on a later write', code: 'disk_full', openPartialFile: failingWrites('ENOSPC', (call) => call === 2) },
    { name: 'EIO on the first write', code: 'download_failed', openPartialFile: failingWrites('EIO', (call) => call === 1) },
    {
      name: 'EIO on the write that completes the file',
      code: 'download_failed',
      openPartialFile: failingWrites('EIO', (_call, before, inCall) => before + inCall === large.length),
    },
    {
      name: 'the partial file cannot be opened',
      code: 'download_failed',
      openPartialFile: async () => {
        throw Object.assign(new Error('EACCES: injected, open'), { code: 'EACCES', syscall: 'open' });
      },
    },
  ];
  for (const row of localFailures) {
    test(`a local failure is ${row.code} and removes the partial and its sidecar: ${row.name}`, async () => {
      const req = setupLarge({ openPartialFile: row.openPartialFile });
      await assert.rejects(downloadArtifact(req), isCode(row.code));
      assert.equal(await exists(req.partialPath), false);
      assert.equal(await exists(sidecarPathOf(req.partialPath)), false);
    });
  }
});
