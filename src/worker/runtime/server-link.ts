import type { Dispatcher } from 'undici';
import type { ServerAccepts } from '../../protocol/messages.js';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { InstallLayout } from '../install/install-layout.js';
import { ReportQueue } from '../telemetry/report-queue.js';
import { fullJitterBackoff, type Sleep } from './backoff.js';
import { ServerClient } from './connection.js';
import { createDispatcher } from './http.js';
import { adaptedReportSender } from './server-accepts.js';
import { credentialBearer } from './identity.js';

/** Report retries: 1 s doubling to 5 min, full jitter, as every other retry to the server. */
const REPORT_BACKOFF = { baseDelayMs: 1000, maxDelayMs: 300_000 };

export interface ServerLinkOptions {
  serverUrl: string;
  /** The pool token, when configured; the credential in credential.json goes first. */
  token: string | null;
  caFile: string | null;
  layout: InstallLayout;
  /** What the server accepts, for each report as it is sent (docs/protocol.md, section 7). */
  accepts: () => ServerAccepts | null | Promise<ServerAccepts | null>;
  log: Logger;
  clock: Clock;
  random: () => number;
  sleep?: Sleep;
}

/** The connection to the update server that `run` and `supervise` both hold. */
export interface ServerLink {
  dispatcher: Dispatcher;
  client: ServerClient;
  /** The on-disk report queue (reports/), sent in the background until `close`. */
  queue: ReportQueue;
  /** Stop sending, wait for the sender, close the connections. */
  close(): Promise<void>;
}

/**
 * One wiring for both programs: an HTTP dispatcher (with the operator's CA file and proxy), the
 * API client, and the report queue sending through it in the form the server takes. The client
 * reads credential.json before every request (falling back to the pool token only while there is
 * no credential), so that neither program keeps a credential the other has rotated away.
 */
export async function openServerLink(options: ServerLinkOptions): Promise<ServerLink> {
  const dispatcher = await createDispatcher(options.caFile !== null ? { caFile: options.caFile } : {});
  const client = new ServerClient({
    serverUrl: options.serverUrl,
    token: credentialBearer(options.layout, options.serverUrl, options.token),
    dispatcher,
    clock: options.clock,
  });
  const queue = new ReportQueue({
    dir: options.layout.reportsDir,
    send: adaptedReportSender({ post: (report, correlationId) => client.postReport(report, correlationId), accepts: options.accepts, log: options.log }),
    backoff: fullJitterBackoff({ ...REPORT_BACKOFF, random: options.random }),
    log: options.log,
    clock: options.clock,
    ...(options.sleep ? { sleep: options.sleep } : {}),
  });
  const stopSending = new AbortController();
  const sender = queue.runSender(stopSending.signal);
  return {
    dispatcher,
    client,
    queue,
    async close() {
      stopSending.abort();
      await Promise.allSettled([sender]);
      await dispatcher.close().catch(() => undefined);
    },
  };
}
