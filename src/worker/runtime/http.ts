import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import type { Socket } from 'node:net';
import { buildConnector, EnvHttpProxyAgent, Pool, type Dispatcher } from 'undici';
import { UsageError, errorMessage } from '../../shared/errors.js';

/** A proxy accepted the connection but dropped the CONNECT tunnel (it refused the target, or speaks no CONNECT). */
export class ProxyTunnelError extends Error {
  readonly code = 'proxy_tunnel_failed';

  constructor(cause: unknown) {
    super(`the proxy closed the tunnel before it was established: ${errorMessage(cause)}`, { cause });
    this.name = 'ProxyTunnelError';
  }
}

type ConnectCallback = (err: (Error & { code?: string }) | null, socket: unknown) => void;
type Connector = (options: object, callback: ConnectCallback) => void;

/**
 * undici 7 treats a socket error while a proxy tunnel is being set up as recoverable and
 * reconnects at once, forever: thousands of CONNECTs a second to a proxy that refuses the
 * server (undici issue 3897, fixed in undici 8, which needs Node 22). Failing the connection
 * attempt with an error of another code makes undici fail the request instead; the worker's own
 * backoff then decides when to try again.
 */
function poolWithFinalConnectErrors(origin: string | URL, options: Pool.Options): Dispatcher {
  const connect = options.connect;
  if (typeof connect !== 'function') return new Pool(origin, { ...options, connect: keepAliveOnceConnected(connect ?? {}) as unknown as Pool.Options['connect'] });
  const guarded: Connector = (connectOptions, callback) =>
    (connect as Connector)(connectOptions, (err, socket) =>
      callback(err && err.code === 'UND_ERR_SOCKET' ? new ProxyTunnelError(err) : err, socket),
    );
  return new Pool(origin, { ...options, connect: guarded as unknown as Pool.Options['connect'] });
}

/** undici's own default: the first TCP keepalive probe after a minute of silence. */
const KEEPALIVE_INITIAL_DELAY_MS = 60_000;

/**
 * A direct connection with TCP keepalive switched on once the socket is connected, where undici
 * switches it on right after creating the socket. Same keepalive; the order is what Node's own
 * `net.connect({ keepAlive })` does. Why: under Wine 8, keepalive set on a socket that is still
 * connecting makes the connect fail (libuv error UNKNOWN), so no Windows worker under Wine could
 * reach its server. Real Windows accepts either order (docs/packaging.md, "Windows behaviour").
 */
function keepAliveOnceConnected(connectOptions: object): Connector {
  const connect = buildConnector({ ...connectOptions, keepAlive: false }) as unknown as Connector;
  return (options, callback) =>
    connect(options, (err, socket) => {
      if (!err) (socket as Socket).setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
      callback(err, socket);
    });
}

export interface DispatcherOptions {
  /** A PEM file of extra CA certificates (a private CA or a TLS-inspecting proxy), added to Node's roots. */
  caFile?: string;
  /** Per request: connect, first response byte and idle body. Default 30 s. */
  timeoutMs?: number;
}

/**
 * The one HTTP client of the worker. It honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY (undici's
 * EnvHttpProxyAgent reads them, upper or lower case) because fleets often sit behind an egress
 * proxy. An extra CA is *added* to the built-in roots: Node's `ca` option replaces them otherwise.
 */
export async function createDispatcher(options: DispatcherOptions = {}): Promise<Dispatcher> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  let ca: string[] | undefined;
  if (options.caFile !== undefined) {
    let pem: string;
    try {
      pem = await readFile(options.caFile, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read --ca-file ${options.caFile}: ${errorMessage(err)}`, { cause: err });
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new UsageError(`--ca-file ${options.caFile} holds no PEM certificate`);
    }
    ca = [...rootCertificates, pem];
  }
  const tls = ca ? { ca } : {};
  return new EnvHttpProxyAgent({
    connect: { ...tls, timeout: timeoutMs },
    requestTls: tls,
    proxyTls: tls,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    factory: poolWithFinalConnectErrors,
  });
}
