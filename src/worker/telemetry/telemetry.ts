import { isDeltaFallbackReason } from '../../protocol/chunk-index.js';
import type { UpdateEvent, UpdateReport } from '../../protocol/messages.js';
import type { ReasonCode } from '../../protocol/reason-codes.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { WorkerMetrics } from './metrics.js';
import type { ReportQueue } from './report-queue.js';

/** The structured log events of docs/protocol.md, section 6; the names are stable. */
export const LOG_EVENTS = {
  attempt: 'worker_update_attempt',
  success: 'worker_update_success',
  failure: 'worker_update_failure',
  rollback: 'worker_update_rollback',
  startRefused: 'worker_start_refused',
  startForced: 'worker_start_forced',
} as const;

const EVENT_OF: Record<UpdateEvent, string> = {
  attempt: LOG_EVENTS.attempt,
  success: LOG_EVENTS.success,
  failure: LOG_EVENTS.failure,
  rollback: LOG_EVENTS.rollback,
};

export interface UpdateEventRecord {
  event: UpdateEvent;
  correlationId: string;
  fromVersion: string;
  /** Unknown when the failure came before any release was read (e.g. manifest_fetch_failed). */
  toVersion: string | null;
  channel: string;
  reason?: ReasonCode;
  durationMs?: number;
  /** The manifest serial the worker acted on, when known (a rollout is keyed by channel and serial). */
  serial?: number;
  /** On a success: how the version's bytes were downloaded (state.json's pending_switch). */
  download?: DownloadSummary;
}

/** How a version's bytes were downloaded, as state.json's pending_switch records it. */
export interface DownloadSummary {
  mode: 'delta' | 'full';
  bytes_fetched: number;
  delta_fallback?: string;
}

/** The report fields of a download summary; a fallback reason this version does not know is left out. */
function downloadFields(download: DownloadSummary | undefined): Pick<UpdateReport, 'bytes_fetched' | 'delta' | 'delta_fallback'> {
  if (!download) return {};
  const fallback = download.delta_fallback;
  return {
    bytes_fetched: download.bytes_fetched,
    delta: download.mode === 'delta',
    ...(fallback !== undefined && isDeltaFallbackReason(fallback) ? { delta_fallback: fallback } : {}),
  };
}

/** An update event as the worker forwards it to its supervisor over IPC, for the metrics. */
export interface UpdateEventMessage {
  type: 'update_event';
  event: UpdateEvent;
  reason?: ReasonCode;
}

export function isUpdateEventMessage(message: unknown): message is UpdateEventMessage {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'update_event';
}

export interface UpdateTelemetryOptions {
  log: Logger;
  workerId: string;
  platform: string;
  /** Counted here when this process serves the metrics. */
  metrics?: WorkerMetrics | null;
  /** Forwarded here when the supervisor serves them. */
  forward?: ((message: UpdateEventMessage) => void) | null;
  queue?: ReportQueue | null;
}

/**
 * One update event, three sinks: a log line (event, correlation_id, versions, reason), a
 * metric, and a report queued on disk for the server, all carrying the same correlation id.
 */
export class UpdateTelemetry {
  readonly #options: UpdateTelemetryOptions;

  constructor(options: UpdateTelemetryOptions) {
    this.#options = options;
  }

  async record(record: UpdateEventRecord): Promise<void> {
    const { log, metrics, forward, queue } = this.#options;
    const fields = {
      event: EVENT_OF[record.event],
      correlation_id: record.correlationId,
      from_version: record.fromVersion,
      to_version: record.toVersion,
      channel: record.channel,
      ...(record.reason ? { reason: record.reason } : {}),
      ...(record.durationMs !== undefined ? { duration_ms: record.durationMs } : {}),
      ...(record.serial !== undefined ? { serial: record.serial } : {}),
      ...downloadFields(record.download),
    };
    if (record.event === 'failure' || record.event === 'rollback') log.error(fields, `update ${record.event}`);
    else log.info(fields, `update ${record.event}`);

    metrics?.recordUpdateEvent(record.event, record.reason);
    forward?.({ type: 'update_event', event: record.event, ...(record.reason ? { reason: record.reason } : {}) });

    if (!queue || record.toVersion === null) return;
    const report: UpdateReport = {
      worker_id: this.#options.workerId,
      event: record.event,
      from_version: record.fromVersion,
      to_version: record.toVersion,
      channel: record.channel,
      platform: this.#options.platform,
      ...(record.reason ? { reason: record.reason } : {}),
      ...(record.durationMs !== undefined ? { duration_ms: Math.max(0, Math.round(record.durationMs)) } : {}),
      correlation_id: record.correlationId,
      // Queued as recorded; the sender leaves out what the server does not take (server-accepts.ts).
      ...(record.serial !== undefined ? { serial: record.serial } : {}),
      ...downloadFields(record.download),
    };
    try {
      await queue.enqueue(report, record.correlationId);
    } catch (err) {
      log.error({ event: 'worker_report_queue_error', correlation_id: record.correlationId, error: errorMessage(err) }, 'could not queue an update report');
    }
  }
}
