import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_MANIFEST_BYTES } from '../../../src/protocol/manifest.js';
import { UpdateError } from '../../../src/protocol/reason-codes.js';
import { fetchLatestManifest, latestManifestUrl, resolveArtifactUrl, type ManifestRequest } from '../../../src/worker/engine/manifest-client.js';
import { startEngineUpdateServer, type EngineUpdateServer } from '../../helpers/engine-update-server.js';

describe('manifest client', () => {
  let server: EngineUpdateServer;
  before(async () => {
    server = await startEngineUpdateServer();
  });
  after(() => server.close());

  const request = (overrides: Partial<ManifestRequest> = {}): ManifestRequest => ({
    serverUrl: server.url,
    token: 't0k',
    channel: 'stable',
    platform: 'linux-x64',
    workerId: 'w 1',
    currentVersion: '1.0.0',
    timeoutMs: 2_000,
    ...overrides,
  });

  test('the latest URL keeps a path prefix and encodes the query', () => {
    const url = latestManifestUrl({ serverUrl: 'https://u.example/prefix', channel: 'stable', platform: 'linux-x64', workerId: 'a b', currentVersion: '1.0.0' });
    assert.equal(url.toString(), 'https://u.example/prefix/api/worker-updates/latest?channel=stable&platform=linux-x64&worker_id=a+b&current_version=1.0.0');
  });

  test('200 gives the bytes, the ETag and the URL; a matching If-None-Match gives not_modified', async () => {
    server.manifest = { status: 200, body: '{"x":1}', etag: '"e1"' };
    const got = await fetchLatestManifest(request());
    assert.equal(got.kind, 'manifest');
    if (got.kind !== 'manifest') return;
    assert.equal(got.bytes.toString(), '{"x":1}');
    assert.equal(got.etag, '"e1"');
    assert.ok(got.url.startsWith(`${server.url}/api/worker-updates/latest?`));
    assert.deepEqual(await fetchLatestManifest(request({ etag: '"e1"' })), { kind: 'not_modified' });
    assert.equal(server.requests.at(-1)?.headers['authorization'], 'Bearer t0k');
  });

  test('a declared Content-Length over the limit is refused before reading: manifest_invalid', async () => {
    server.manifest = { status: 0, handler: (_req, res) => res.writeHead(200, { 'content-length': String(MAX_MANIFEST_BYTES + 1) }).end() };
    await assert.rejects(fetchLatestManifest(request()), (err) => err instanceof UpdateError && err.code === 'manifest_invalid');
  });

  test('a manifest of exactly the limit is accepted', async () => {
    server.manifest = { status: 200, body: Buffer.alloc(MAX_MANIFEST_BYTES, 0x20) };
    const got = await fetchLatestManifest(request());
    assert.equal(got.kind === 'manifest' && got.bytes.length, MAX_MANIFEST_BYTES);
  });

  const urls: Array<[string, string, string | null]> = [
    ['artifacts/1.0.0/w', 'http://127.0.0.1:8/api/worker-updates/latest?c=1', 'http://127.0.0.1:8/api/worker-updates/artifacts/1.0.0/w'],
    ['/dl/w', 'https://u.example/api/worker-updates/latest', 'https://u.example/dl/w'],
    ['https://cdn.example/w', 'http://127.0.0.1/x', 'https://cdn.example/w'],
    ['http://localhost:9/w', 'http://127.0.0.1/x', 'http://localhost:9/w'],
    ['http://[::1]:9/w', 'http://127.0.0.1/x', 'http://[::1]:9/w'],
    ['http://cdn.example/w', 'https://u.example/x', null],
    ['artifacts/w', 'http://u.example/x', null],
    ['ftp://cdn.example/w', 'https://u.example/x', null],
    ['file:///etc/passwd', 'https://u.example/x', null],
    ['https://user:pw@cdn.example/w', 'https://u.example/x', null],
  ];
  for (const [entry, base, expected] of urls) {
    test(`artifact url ${entry} against ${base} → ${expected ?? 'download_failed'}`, () => {
      if (expected === null) {
        assert.throws(() => resolveArtifactUrl(entry, base), (err) => err instanceof UpdateError && err.code === 'download_failed');
      } else {
        assert.equal(resolveArtifactUrl(entry, base), expected);
      }
    });
  }
});
