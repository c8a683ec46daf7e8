/**
 * The worker's HTTP client against real servers on loopback: an HTTPS server whose certificate
 * comes from a private CA (trusted only through --ca-file), and a real forward proxy (plain
 * requests in absolute form, HTTPS through CONNECT) named by HTTP_PROXY / HTTPS_PROXY / NO_PROXY.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, Socket, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { createDispatcher } from '../../../src/worker/runtime/http.js';
import { UsageError } from '../../../src/shared/errors.js';

let dir: string;
let caFile: string;
let httpsServer: Server;
let httpsUrl: string;
let plainServer: Server;
let plainUrl: string;
let proxy: Server;
let refusingProxy: Server;
let refusingProxyUrl: string;
let refusedConnects = 0;
let proxyUrl: string;
const proxied: string[] = [];

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bytebiota-http-'));
  // A private CA and a server certificate for 127.0.0.1 signed by it, made by OpenSSL.
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=ByteBiota test CA');
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  await writeFile(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
  caFile = join(dir, 'ca.pem');

  httpsServer = createHttpsServer(
    { key: await readFile(join(dir, 'server.key')), cert: await readFile(join(dir, 'server.pem')) },
    (_req, res) => res.end('origin over tls'),
  ) as unknown as Server;
  httpsUrl = `https://127.0.0.1:${await listen(httpsServer)}/api/workers/heartbeat`;

  plainServer = createHttpServer((_req, res) => res.end('origin in plain http'));
  plainUrl = `http://127.0.0.1:${await listen(plainServer)}/api/workers/register`;

  // A forward proxy: answers plain requests itself (recording the absolute URL it was asked
  // for) and tunnels CONNECT to the named host, as an egress proxy does.
  proxy = createHttpServer((req, res) => {
    proxied.push(`GET ${req.url}`);
    res.end('via proxy');
  });
  proxy.on('connect', (req, socket, head) => {
    proxied.push(`CONNECT ${req.url}`);
    const [host, port] = String(req.url).split(':');
    const upstream = connect(Number(port), host, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(socket).pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  proxyUrl = `http://127.0.0.1:${await listen(proxy)}`;

  // A proxy that will not reach the server: it accepts each CONNECT, then hangs up.
  refusingProxy = createHttpServer((_req, res) => res.end());
  refusingProxy.on('connect', (_req, socket) => {
    refusedConnects += 1;
    socket.destroy();
  });
  refusingProxyUrl = `http://127.0.0.1:${await listen(refusingProxy)}`;
});

after(async () => {
  for (const server of [httpsServer, plainServer, proxy, refusingProxy]) {
    server?.closeAllConnections();
    server?.close();
  }
  await rm(dir, { recursive: true, force: true });
});

/** Run `fn` with proxy variables set, restoring the environment afterwards. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const names = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'];
  const saved = Object.fromEntries(names.map((name) => [name, process.env[name]]));
  for (const name of names) delete process.env[name];
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const name of names) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  }
}

async function get(url: string, caFileOption?: string): Promise<string> {
  const dispatcher = await createDispatcher(caFileOption ? { caFile: caFileOption, timeoutMs: 5_000 } : { timeoutMs: 5_000 });
  try {
    const response = await request(url, { dispatcher });
    return await response.body.text();
  } finally {
    await dispatcher.close();
  }
}

describe('worker HTTP client', () => {
  test('a server certificate from a private CA is refused without --ca-file', async () => {
    await withEnv({}, async () => {
      await assert.rejects(get(httpsUrl), /certificate/i);
    });
  });

  test('--ca-file adds the private CA to the built-in roots', async () => {
    await withEnv({}, async () => {
      assert.equal(await get(httpsUrl, caFile), 'origin over tls');
    });
  });

  test('a direct connection gets TCP keepalive once connected, not while connecting (Wine 8 fails that connect)', async () => {
    const calls: Array<{ enable: boolean | undefined; delayMs: number | undefined; connecting: boolean }> = [];
    const original = Socket.prototype.setKeepAlive;
    Socket.prototype.setKeepAlive = function (this: Socket, enable?: boolean, delayMs?: number) {
      calls.push({ enable, delayMs, connecting: this.connecting });
      return original.call(this, enable, delayMs);
    };
    try {
      await withEnv({}, async () => {
        assert.equal(await get(httpsUrl, caFile), 'origin over tls');
        assert.notEqual(await get(plainUrl), '');
      });
    } finally {
      Socket.prototype.setKeepAlive = original;
    }
    assert.deepEqual(calls, [
      { enable: true, delayMs: 60_000, connecting: false },
      { enable: true, delayMs: 60_000, connecting: false },
    ]);
  });

  test('--ca-file that is missing or holds no certificate is a usage error', async () => {
    await assert.rejects(createDispatcher({ caFile: join(dir, 'absent.pem') }), UsageError);
    await assert.rejects(createDispatcher({ caFile: join(dir, 'ext.cnf') }), UsageError);
  });

  test('HTTP_PROXY carries plain requests through the proxy', async () => {
    proxied.length = 0;
    await withEnv({ HTTP_PROXY: proxyUrl }, async () => {
      const body = await get(plainUrl);
      // undici either tunnels (CONNECT, then the origin answers) or sends the absolute URL.
      assert.ok(body === 'origin in plain http' || body === 'via proxy', body);
    });
    const target = new URL(plainUrl);
    assert.ok(
      proxied.length === 1 && (proxied[0] === `CONNECT ${target.host}` || proxied[0] === `GET ${plainUrl}`),
      `the proxy saw ${JSON.stringify(proxied)}`,
    );
  });

  test('HTTPS_PROXY tunnels TLS through CONNECT, and the private CA still applies end to end', async () => {
    proxied.length = 0;
    await withEnv({ HTTPS_PROXY: proxyUrl }, async () => {
      assert.equal(await get(httpsUrl, caFile), 'origin over tls');
    });
    assert.deepEqual(proxied, [`CONNECT ${new URL(httpsUrl).host}`]);
  });

  test('NO_PROXY sends matching hosts directly', async () => {
    proxied.length = 0;
    await withEnv({ HTTPS_PROXY: proxyUrl, NO_PROXY: '127.0.0.1' }, async () => {
      assert.equal(await get(httpsUrl, caFile), 'origin over tls');
    });
    assert.deepEqual(proxied, []);
  });

  test('a proxy that drops the tunnel fails the request at once instead of being reconnected in a loop', { timeout: 15_000 }, async () => {
    refusedConnects = 0;
    const startedMs = Date.now();
    await withEnv({ HTTPS_PROXY: refusingProxyUrl }, async () => {
      await assert.rejects(get(httpsUrl, caFile), (err: Error & { code?: string }) => err.code === 'proxy_tunnel_failed');
    });
    assert.ok(Date.now() - startedMs < 5_000, 'the failure is prompt');
    assert.ok(refusedConnects <= 2, `the proxy saw ${refusedConnects} CONNECTs for one request`);
  });
});
