import { isDeepStrictEqual } from 'node:util';
import type { ServerAccepts, UpdateProgress, UpdateReport } from '../../protocol/messages.js';
import { LEGACY_REASON_CODES, type ReasonCode } from '../../protocol/reason-codes.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { ConnectionError } from './connection.js';
import type { InstallLayout } from '../install/install-layout.js';
import type { SendReport } from '../telemetry/report-queue.js';
import { updateState, type WorkerStateFile } from '../install/state.js';

/**
 * Talking to servers older than this worker. A server's report and heartbeat schemas are strict:
 * an unknown field or reason code is a 400, and a report refused that way is dropped for good.
 * So a field or a code added after the first protocol goes only to a server that listed it in
 * `accepts` (handshake and heartbeats); a server that sent no `accepts` takes the first protocol.
 */

/** Report fields added after the first protocol; each is sent only to a server that lists it. */
export const NEWER_REPORT_FIELDS = ['serial', 'bytes_fetched', 'delta', 'delta_fallback'] as const satisfies readonly (keyof UpdateReport)[];

/**
 * The older code a newer one falls back to, for a server that does not take it. A code with no
 * entry has no fitting older code: a report carrying it is not sent to such a server at all.
 */
export const OLDER_REASON: Readonly<Partial<Record<ReasonCode, ReasonCode>>> = {
  // The new executable failed its own `--version --json`: an install failure, to an older server.
  self_test_failed: 'install_failed',
  // state.json is unreadable or corrupt: a fault of this machine's install, as install_failed is.
  state_corrupt: 'install_failed',
  // crash_loop: none. No older code says "it passed its watch and then kept crashing".
};

const LEGACY_REASONS: ReadonlySet<string> = new Set(LEGACY_REASON_CODES);

/** `reason`, or the older code it falls back to, as this server takes it; null when none fits. */
export function reasonForServer(reason: ReasonCode, accepts: ServerAccepts | null): ReasonCode | null {
  const taken = accepts === null ? LEGACY_REASONS : new Set(accepts.reasons);
  const tried = new Set<ReasonCode>();
  for (let code: ReasonCode | undefined = reason; code !== undefined && !tried.has(code); code = OLDER_REASON[code]) {
    if (taken.has(code)) return code;
    tried.add(code);
  }
  return null;
}

/**
 * Adapt a report, or a heartbeat's `update`, to what the server accepts (`null`: an older
 * server): newer report fields it does not list are left out, and a reason code it does not take
 * becomes the older code that fits. When none fits, a report is not sent (null) and a heartbeat's
 * `update` goes without its reason (the field is optional there, and the state still says what
 * happened).
 */
export function adaptForServer(kind: 'report', message: UpdateReport, accepts: ServerAccepts | null): UpdateReport | null;
export function adaptForServer(kind: 'heartbeat_update', message: UpdateProgress, accepts: ServerAccepts | null): UpdateProgress;
export function adaptForServer(
  kind: 'report' | 'heartbeat_update',
  message: UpdateReport | UpdateProgress,
  accepts: ServerAccepts | null,
): UpdateReport | UpdateProgress | null {
  const adapted: Record<string, unknown> = { ...message };
  if (kind === 'report') {
    for (const field of NEWER_REPORT_FIELDS) {
      if (!(accepts?.report_fields.includes(field) ?? false)) delete adapted[field];
    }
  }
  if (message.reason !== undefined) {
    const reason = reasonForServer(message.reason, accepts);
    if (reason !== null) adapted['reason'] = reason;
    else if (kind === 'report') return null;
    else delete adapted['reason'];
  }
  return adapted as unknown as UpdateReport | UpdateProgress;
}

/** What this server said it accepts, from state.json; null when it said nothing (or another server did). */
export function acceptsFromState(state: WorkerStateFile, serverUrl: string): ServerAccepts | null {
  const remembered = state.server_accepts;
  if (!remembered || remembered.server_url !== serverUrl) return null;
  return { report_fields: remembered.report_fields, reasons: remembered.reasons };
}

/**
 * Remember the server's latest `accepts` in state.json (removed when it sent none), so that the
 * supervisor sends in the same form. The caller writes only when the value changed.
 */
export async function rememberAccepts(layout: InstallLayout, serverUrl: string, accepts: ServerAccepts | null): Promise<void> {
  await updateState(layout, (state) => {
    if (accepts === null) delete state.server_accepts;
    else state.server_accepts = { server_url: serverUrl, report_fields: [...accepts.report_fields], reasons: [...accepts.reasons] };
  });
}

export interface AdaptedSenderOptions {
  /** Posts one report (ServerClient.postReport). */
  post: SendReport;
  /** What the server accepts now; read at each send, since the queue outlives handshakes. */
  accepts(): Promise<ServerAccepts | null> | ServerAccepts | null;
  log: Logger;
}

/**
 * The ReportQueue's send callback: each queued report (stored as recorded, whichever process
 * sends it) is adapted to the server at the moment it is sent. A report the server cannot take
 * is logged and counts as handled. A server that said it takes a newer field but refuses the
 * report as invalid may since have been replaced by an older one (a server rollback): the
 * first-protocol form is then tried once before the queue drops it.
 */
export function adaptedReportSender(options: AdaptedSenderOptions): SendReport {
  const withheld = (report: UpdateReport, correlationId: string | undefined, accepts: ServerAccepts | null): void => {
    options.log.warn(
      { event: 'worker_report_withheld', correlation_id: correlationId, report_event: report.event, reason: report.reason, server_accepts: accepts ? 'listed' : 'first_protocol' },
      `the server does not take reason ${report.reason ?? ''} and no older code fits; report not sent`,
    );
  };
  return async (report, correlationId) => {
    const accepts = await options.accepts();
    const adapted = adaptForServer('report', report, accepts);
    if (adapted === null) {
      withheld(report, correlationId, accepts);
      return;
    }
    try {
      await options.post(adapted, correlationId);
    } catch (err) {
      if (accepts === null || !(err instanceof ConnectionError) || err.code !== 'request_rejected') throw err;
      const firstProtocol = adaptForServer('report', report, null);
      if (firstProtocol === null || isDeepStrictEqual(firstProtocol, adapted)) throw err;
      options.log.warn(
        { event: 'worker_report_downgraded', correlation_id: correlationId, status: err.status, error: errorMessage(err) },
        'the server refused a report in the form it said it accepts; sending the first-protocol form',
      );
      await options.post(firstProtocol, correlationId);
    }
  };
}
