import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Agent, interceptors, type Dispatcher } from 'undici';
import { UpdateError, type ReasonCode } from '../../../src/protocol/reason-codes.js';
import { downloadArtifact, type DownloadRequest } from '../../../src/worker/engine/download.js';
import {
  followRedirects,
  isLoopbackHost,
  MAX_REDIRECTS,
  redirectTarget,
  urlForMessages,
} from '../../../src/worker/engine/redirects.js';
import { makeTempDir, sha256Hex, exists } from '../../helpers/engine-fixtures.js';
import { startEngineUpdateServer, type EngineUpdateServer } from '../../helpers/engine-update-server.js';

const plentyOfSpace = async () => ({ bavail: 1n << 30n, bsize: 4096n });
const ARTIFACT_BYTES = 64 * 1024;
/** A signed CDN URL's secret: it must never appear in an error message. */
const SECRET = 'X-Amz-Signature=s3cr3t';

function isCode(code: ReasonCode) {
  return (err: unknown) => err instanceof UpdateError && err.code === code;
}

function isDownloadFailedWithoutSecret(err: unknown): boolean {
  return isCode('download_failed')(err) && !(err as Error).message.includes('s3cr3t');
}

describe('redirectTarget: where a redirect may lead (docs/protocol.md, section 1)', () => {
  const rows: Array<{ from: string; location: string; allowed: string | null }> = [
    { from: 'https://updates.example.com/a', location: 'https://cdn.example.net/b?sig=1', allowed: 'https://cdn.example.net/b?sig=1' },
    { from: 'https://updates.example.com/a/b', location: '../c', allowed: 'https://updates.example.com/c' },
    { from: 'https://updates.example.com/a', location: '//cdn.example.net/b', allowed: 'https://cdn.example.net/b' },
    { from: 'http://127.0.0.1:8080/a', location: 'http://localhost:9090/b', allowed: 'http://localhost:9090/b' },
    { from: 'http://localhost/a', location: 'http://127.9.8.7/b', allowed: 'http://127.9.8.7/b' },
    { from: 'http://127.0.0.1/a', location: 'http://[::1]:81/b', allowed: 'http://[::1]:81/b' },
    { from: 'http://127.0.0.1/a', location: 'https://cdn.example.net/b', allowed: 'https://cdn.example.net/b' },
    { from: 'https://updates.example.com/a', location: 'http://127.0.0.1/b', allowed: null },
    { from: 'https://updates.example.com/a', location: 'http://localhost:6379/b', allowed: null },
    // Down from https to plain http on another host, or plain http anywhere but loopback.
    { from: 'https://updates.example.com/a', location: 'http://cdn.example.net/b', allowed: null },
    { from: 'https://updates.example.com/a', location: 'http://updates.example.com/a', allowed: null },
    { from: 'http://127.0.0.1/a', location: 'http://10.0.0.1/b', allowed: null },
    { from: 'http://127.0.0.1/a', location: 'http://localhost.example.net/b', allowed: null },
    { from: 'http://127.0.0.1/a', location: 'http://127.0.0.1.nip.io/b', allowed: null },
    // Another scheme.
    { from: 'https://updates.example.com/a', location: 'file:///etc/passwd', allowed: null },
    { from: 'https://updates.example.com/a', location: 'ftp://cdn.example.net/b', allowed: null },
    { from: 'https://updates.example.com/a', location: 'data:application/octet-stream;base64,AAAA', allowed: null },
    { from: 'https://updates.example.com/a', location: 'javascript:alert(1)', allowed: null },
    // Credentials in the URL, no Location, or one that is not a URL.
    { from: 'https://updates.example.com/a', location: 'https://user:pass@cdn.example.net/b', allowed: null },
    { from: 'https://updates.example.com/a', location: '', allowed: null },
    { from: 'https://updates.example.com/a', location: 'https://[::1', allowed: null },
  ];
  for (const row of rows) {
    test(`${row.from} -> ${JSON.stringify(row.location)}: ${row.allowed === null ? 'refused' : 'followed'}`, () => {
      if (row.allowed === null) {
        assert.throws(() => redirectTarget(new URL(row.from), 302, row.location), isCode('download_failed'));
      } else {
        assert.equal(redirectTarget(new URL(row.from), 302, row.location).href, row.allowed);
      }
    });
  }

  test('a refusal names the origin, never the query string', () => {
    assert.throws(
      () => redirectTarget(new URL('https://updates.example.com/a'), 302, `http://cdn.example.net/b?${SECRET}`),
      (err) => isDownloadFailedWithoutSecret(err) && (err as Error).message.includes('http://cdn.example.net'),
    );
    assert.equal(urlForMessages(`https://cdn.example.net/b/c?${SECRET}#frag`), 'https://cdn.example.net/b/c');
    assert.equal(urlForMessages('https://user:pass@cdn.example.net/b'), 'https://cdn.example.net/b');
  });

  test('loopback hosts', () => {
    for (const host of ['localhost', 'LOCALHOST', '127.0.0.1', '127.255.0.9', '[::1]', '::1']) assert.equal(isLoopbackHost(host), true, host);
    for (const host of ['10.0.0.1', '128.0.0.1', 'localhost.example.net', '127.0.0.1.nip.io', '[::2]', '0.0.0.0']) {
      assert.equal(isLoopbackHost(host), false, host);
    }
  });
});

describe('followRedirects', () => {
  /** An answer as undici gives it, with a body that records whether it was discarded. */
  function answer(statusCode: number, headers: Record<string, string> = {}): Dispatcher.ResponseData & { body: PassThrough } {
    const body = new PassThrough();
    body.write('moved');
    return { statusCode, headers, body } as unknown as Dispatcher.ResponseData & { body: PassThrough };
  }

  test('discards every intermediate body and returns the last answer with its URL', async () => {
    const answers = [answer(301, { location: '/b' }), answer(307, { location: 'https://cdn.example.net/c' }), answer(200)];
    const hops: Array<{ url: string; withCallerHeaders: boolean }> = [];
    const { response, url } = await followRedirects(new URL('https://updates.example.com/a'), async (hopUrl, withCallerHeaders) => {
      hops.push({ url: hopUrl.href, withCallerHeaders });
      return answers[hops.length - 1]!;
    });
    assert.equal(response, answers[2]);
    assert.equal(url.href, 'https://cdn.example.net/c');
    assert.deepEqual(
      answers.map((a) => a.body.destroyed),
      [true, true, false],
    );
    assert.deepEqual(hops, [
      { url: 'https://updates.example.com/a', withCallerHeaders: true },
      { url: 'https://updates.example.com/b', withCallerHeaders: true },
      { url: 'https://cdn.example.net/c', withCallerHeaders: false },
    ]);
  });

  test('once the download left the original origin, the caller headers stay behind even if it comes back', async () => {
    const answers = [answer(302, { location: 'https://cdn.example.net/b' }), answer(302, { location: 'https://updates.example.com/c' }), answer(200)];
    const withCaller: boolean[] = [];
    await followRedirects(new URL('https://updates.example.com/a'), async (_url, withCallerHeaders) => {
      withCaller.push(withCallerHeaders);
      return answers[withCaller.length - 1]!;
    });
    assert.deepEqual(withCaller, [true, false, false]);
  });

  test('300, 304 and 305 are answers, not redirects', async () => {
    for (const status of [300, 304, 305]) {
      const { response } = await followRedirects(new URL('https://updates.example.com/a'), async () => answer(status, { location: '/b' }));
      assert.equal(response.statusCode, status);
    }
  });
});

/** A server that answers each known path with a redirect, and records what it was sent. */
interface Redirector {
  url: string;
  routes: Map<string, { status: number; location: string }>;
  requests: Array<{ path: string; headers: IncomingMessage['headers'] }>;
  close(): Promise<void>;
}

async function startRedirector(host = '127.0.0.1'): Promise<Redirector> {
  const routes = new Map<string, { status: number; location: string }>();
  const requests: Redirector['requests'] = [];
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    requests.push({ path, headers: req.headers });
    const route = routes.get(path);
    if (!route) {
      res.writeHead(404).end();
      return;
    }
    // A body with the redirect, as object stores send: the client must discard it.
    res.writeHead(route.status, { location: route.location, 'content-type': 'text/html' }).end(`<a href="${route.location}">moved</a>`);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    routes,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}


describe('downloadArtifact across redirects', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let server: EngineUpdateServer;
  /** Same host and scheme as `server`, another port: another origin. */
  let redirector: Redirector;
  let counter = 0;
  const artifact = randomBytes(ARTIFACT_BYTES);

  before(async () => {
    temp = await makeTempDir('redirects');
    server = await startEngineUpdateServer();
    redirector = await startRedirector();
  });
  after(async () => {
    await redirector.close();
    await server.close();
    await temp.remove();
  });

  /**
   * The artifact on the update server, reached through `hops` redirects on the redirector
   * (`/<n>/r0` -> `/<n>/r1` -> ... -> the artifact, with a signed-URL query on the last hop).
   */
  function setup(hops: number, bytes: Buffer = artifact): DownloadRequest & { artifactPath: string; finalUrl: string; hopPath(i: number): string } {
    counter += 1;
    const artifactPath = `/artifacts/${counter}/bytebiota-worker`;
    server.artifacts.set(artifactPath, { bytes, etag: `"r${counter}"` });
    const finalUrl = `${server.url}${artifactPath}?${SECRET}`;
    const hopPath = (i: number) => `/${counter}/r${i}`;
    const statuses = [301, 302, 303, 307, 308];
    for (let i = 0; i < hops; i += 1) {
      redirector.routes.set(hopPath(i), { status: statuses[i % statuses.length]!, location: i === hops - 1 ? finalUrl : hopPath(i + 1) });
    }
    return {
      artifactPath,
      finalUrl,
      hopPath,
      url: hops === 0 ? finalUrl : `${redirector.url}${hopPath(0)}`,
      partialPath: join(temp.dir, `t${counter}`, `1.0.${counter}-linux-x64.partial`),
      sha256: sha256Hex(artifact),
      size: artifact.length,
      statfs: plentyOfSpace,
    };
  }

  const requestsTo = (path: string) => server.requests.filter((r) => new URL(r.path, 'http://x').pathname === path);
  const redirectorRequestsTo = (path: string) => redirector.requests.filter((r) => r.path === path);

  test(`a chain of ${MAX_REDIRECTS} redirects (301, 302, 303, 307, 308) is followed and the file verified`, async () => {
    const req = setup(MAX_REDIRECTS);
    const result = await downloadArtifact(req);
    assert.deepEqual(await readFile(result.path), artifact);
    assert.equal(result.verified.sha256, sha256Hex(artifact));
    for (let i = 0; i < MAX_REDIRECTS; i += 1) assert.equal(redirectorRequestsTo(req.hopPath(i)).length, 1);
    assert.equal(requestsTo(req.artifactPath).length, 1);
  });

  test(`redirect number ${MAX_REDIRECTS + 1} is refused, before its target is asked`, async () => {
    const req = setup(MAX_REDIRECTS + 1);
    await assert.rejects(downloadArtifact(req), isDownloadFailedWithoutSecret);
    assert.equal(requestsTo(req.artifactPath).length, 0);
    assert.equal(await exists(req.partialPath), false);
  });

  test('a dispatcher that follows redirects itself does not take the hops past the checks', async () => {
    const dispatcher = new Agent().compose(interceptors.redirect({ maxRedirections: 10 }));
    try {
      const req = setup(MAX_REDIRECTS + 1);
      await assert.rejects(downloadArtifact({ ...req, dispatcher }), isCode('download_failed'));
      assert.equal(requestsTo(req.artifactPath).length, 0);
    } finally {
      await dispatcher.close();
    }
  });

  const refusedTargets = [
    { name: 'a file: URL', location: 'file:///etc/passwd' },
    { name: 'an ftp: URL', location: 'ftp://127.0.0.1/bytebiota-worker' },
    { name: 'a data: URL', location: 'data:application/octet-stream;base64,AAAA' },
    // Refused before any connection is tried.
    { name: 'plain http to a host that is not loopback', location: `http://10.255.255.1/bytebiota-worker?${SECRET}` },
  ];
  for (const row of refusedTargets) {
    test(`a redirect to ${row.name} is refused`, async () => {
      const req = setup(1);
      redirector.routes.set(req.hopPath(0), { status: 302, location: row.location });
      await assert.rejects(downloadArtifact(req), isDownloadFailedWithoutSecret);
      assert.equal(await exists(req.partialPath), false);
    });
  }

  test('plain http to a loopback host under another name (localhost) is followed', async () => {
    const req = setup(1);
    const port = new URL(server.url).port;
    redirector.routes.set(req.hopPath(0), { status: 302, location: `http://localhost:${port}${req.artifactPath}` });
    const result = await downloadArtifact(req);
    assert.deepEqual(await readFile(result.path), artifact);
  });

  test('Authorization goes with a same-origin hop, never to another origin', async () => {
    const req = setup(2);
    // r0 -> r1 on the redirector itself (same origin), then r1 -> the update server (another port).
    const result = await downloadArtifact({ ...req, headers: { authorization: 'Bearer worker-token' } });
    assert.deepEqual(await readFile(result.path), artifact);
    assert.equal(redirectorRequestsTo(req.hopPath(0))[0]!.headers['authorization'], 'Bearer worker-token');
    assert.equal(redirectorRequestsTo(req.hopPath(1))[0]!.headers['authorization'], 'Bearer worker-token');
    const final = requestsTo(req.artifactPath)[0]!;
    assert.equal(final.headers['authorization'], undefined);
    assert.equal(final.headers['accept-encoding'], 'identity');
  });

  test('resuming across a redirect re-sends Range and If-Range on every hop, to the final target too', async () => {
    const req = setup(2);
    const source = server.artifacts.get(req.artifactPath)!;
    source.dropAfterBytes = 20_000;
    const dropAt = (received: number) => {
      if (received >= 20_000) server.dropHeld();
    };
    await assert.rejects(downloadArtifact({ ...req, onProgress: dropAt }), isCode('download_failed'));
    const kept = (await stat(req.partialPath)).size;
    assert.equal(kept, 20_000);

    const result = await downloadArtifact(req);
    assert.equal(result.resumedFromBytes, kept);
    assert.deepEqual(await readFile(result.path), artifact);
    const seen = [redirectorRequestsTo(req.hopPath(0))[1]!, redirectorRequestsTo(req.hopPath(1))[1]!, requestsTo(req.artifactPath)[1]!];
    for (const hop of seen) {
      assert.equal(hop.headers['range'], `bytes=${kept}-`);
      assert.equal(hop.headers['if-range'], source.etag);
    }
  });

  test('a 200 from the final target when a range was asked restarts the file', async () => {
    const req = setup(1);
    const source = server.artifacts.get(req.artifactPath)!;
    source.dropAfterBytes = 20_000;
    const dropAt = (received: number) => {
      if (received >= 20_000) server.dropHeld();
    };
    await assert.rejects(downloadArtifact({ ...req, onProgress: dropAt }), isCode('download_failed'));
    source.etag = '"republished"';
    const result = await downloadArtifact(req);
    assert.ok(requestsTo(req.artifactPath)[1]!.headers['range']);
    assert.equal(result.resumedFromBytes, 0);
    assert.deepEqual(await readFile(result.path), artifact);
  });

  test('the byte limit still holds after a redirect', async () => {
    const req = setup(2, Buffer.concat([artifact, randomBytes(4096)]));
    // Chunked: no Content-Length, so only the running count can stop the body.
    server.artifacts.get(req.artifactPath)!.chunked = true;
    await assert.rejects(downloadArtifact(req), isCode('size_mismatch'));
    assert.equal(await exists(req.partialPath), false);
  });

  test('an error answer at the end of the chain is download_failed and does not name the query', async () => {
    const req = setup(1);
    server.artifacts.delete(req.artifactPath);
    await assert.rejects(downloadArtifact(req), isDownloadFailedWithoutSecret);
  });
});
