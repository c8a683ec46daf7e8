import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import type { UpdateEvent } from '../../protocol/messages.js';
import type { ReasonCode } from '../../protocol/reason-codes.js';

/**
 * The worker's Prometheus metrics (docs/protocol.md, section 6). Under `supervise` the
 * supervisor serves them: it outlives each worker process and is the one that sees successes
 * and rollbacks; the worker forwards its attempts and failures to it over IPC.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly #attempts = new Counter({ name: 'worker_update_attempt_total', help: 'Update attempts started', registers: [this.registry] });
  readonly #successes = new Counter({ name: 'worker_update_success_total', help: 'Updates that passed the health watch', registers: [this.registry] });
  readonly #failures = new Counter({
    name: 'worker_update_failure_total',
    help: 'Failed updates, by reason code (rollbacks count in worker_update_rollback_total)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  // A rollback is counted as a rollback, as on the server: one meaning per metric name.
  readonly #rollbacks = new Counter({
    name: 'worker_update_rollback_total',
    help: 'Automatic rollbacks, by reason code',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly #versionCurrent = new Gauge({
    name: 'worker_version_current',
    help: 'The version running now (value 1)',
    labelNames: ['version'],
    registers: [this.registry],
  });

  recordUpdateEvent(event: UpdateEvent, reason?: ReasonCode): void {
    if (event === 'attempt') this.#attempts.inc();
    else if (event === 'success') this.#successes.inc();
    else if (event === 'rollback') this.#rollbacks.inc({ reason: reason ?? 'crashed_on_start' });
    else this.#failures.inc({ reason: reason ?? 'install_failed' });
  }

  setCurrentVersion(version: string): void {
    this.#versionCurrent.reset();
    this.#versionCurrent.set({ version }, 1);
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/** Serve GET /metrics (and nothing else) on host:port; port 0 picks a free one. */
export async function serveMetrics(metrics: WorkerMetrics, port: number, host: string): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
