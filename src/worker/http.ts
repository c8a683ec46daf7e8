import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { EnvHttpProxyAgent, type Dispatcher } from 'undici';
import { UsageError, errorMessage } from '../shared/errors.js';

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
  });
}
