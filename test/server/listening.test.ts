import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { after, before, describe, test } from 'node:test';
import { bearer, startTestServer, type TestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor, writeArtifact } from '../helpers/server-fixtures.js';

describe('a real listening server over loopback HTTP', () => {
  let server: TestServer;
  let base: string;
  const artifact = randomBytes(3 * 1024 * 1024 + 17);
  const artifactPath = '/api/worker-updates/artifacts/1.4.0/bytebiota-worker-1.4.0-linux-x64';

  before(async () => {
    server = await startTestServer();
    await publishRelease(server.storeDir, releaseFor({ serial: 2 }), [server.key]);
    await writeArtifact(server.storeDir, '1.4.0', 'bytebiota-worker-1.4.0-linux-x64', artifact);
    base = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => server.close());

  test('a download resumed in pieces with Range and If-Range reassembles byte-identical', async () => {
    const first = await fetch(`${base}${artifactPath}`, { headers: { ...bearer(server.tokens.canary), range: 'bytes=0-999999' } });
    assert.equal(first.status, 206);
    const etag = first.headers.get('etag')!;
    const pieces = [Buffer.from(await first.arrayBuffer())];
    let offset = pieces[0]!.length;
    while (offset < artifact.length) {
      const end = Math.min(offset + 777_777, artifact.length) - 1;
      const res = await fetch(`${base}${artifactPath}`, {
        headers: { ...bearer(server.tokens.canary), range: `bytes=${offset}-${end}`, 'if-range': etag },
      });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get('content-range'), `bytes ${offset}-${end}/${artifact.length}`);
      const piece = Buffer.from(await res.arrayBuffer());
      assert.equal(piece.length, end - offset + 1);
      pieces.push(piece);
      offset += piece.length;
    }
    assert.ok(Buffer.concat(pieces).equals(artifact));
  });

  test('a download cut off mid-body is resumed from where it stopped', async () => {
    const controller = new AbortController();
    const res = await fetch(`${base}${artifactPath}`, { headers: bearer(server.tokens.canary), signal: controller.signal });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String(artifact.length));
    const etag = res.headers.get('etag')!;
    const received: Buffer[] = [];
    let count = 0;
    const reader = res.body!.getReader();
    while (count < 1024 * 1024) {
      const { value, done } = await reader.read();
      if (done) break;
      received.push(Buffer.from(value));
      count += value.length;
    }
    controller.abort();
    await reader.cancel().catch(() => undefined);
    const rest = await fetch(`${base}${artifactPath}`, { headers: { ...bearer(server.tokens.canary), range: `bytes=${count}-`, 'if-range': etag } });
    assert.equal(rest.status, 206);
    received.push(Buffer.from(await rest.arrayBuffer()));
    assert.ok(Buffer.concat(received).equals(artifact));
  });

  test('latest with 200 then 304, and the request id on every response', async () => {
    const url = `${base}/api/worker-updates/latest?channel=stable&platform=linux-x64`;
    const res = await fetch(url, { headers: { ...bearer(server.tokens.canary), 'x-request-id': 'live-1' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-request-id'), 'live-1');
    await res.arrayBuffer();
    const again = await fetch(url, { headers: { ...bearer(server.tokens.canary), 'if-none-match': res.headers.get('etag')! } });
    assert.equal(again.status, 304);
    assert.ok(again.headers.get('x-request-id'));
    const notFound = await fetch(`${base}/missing`);
    assert.equal(notFound.status, 404);
    assert.ok(notFound.headers.get('x-request-id'));
    assert.equal(((await notFound.json()) as { error: { code: string } }).error.code, 'not_found');
  });

  test('a report posted over HTTP gets 202 and is in the database', async () => {
    const res = await fetch(`${base}/api/worker-updates/report`, {
      method: 'POST',
      headers: { ...bearer(server.tokens.canary), 'content-type': 'application/json' },
      body: JSON.stringify({ worker_id: 'live-w', event: 'success', from_version: '1.3.0', to_version: '1.4.0', channel: 'stable', platform: 'linux-x64' }),
    });
    assert.equal(res.status, 202);
    const db = new Database(server.dbPath, { readonly: true });
    try {
      const row = db.prepare("SELECT event, to_version FROM update_events WHERE worker_id = 'live-w'").get();
      assert.deepEqual({ ...(row as object) }, { event: 'success', to_version: '1.4.0' });
    } finally {
      db.close();
    }
  });
});
