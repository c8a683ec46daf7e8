import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One labelled series of the request-duration histogram. */
interface Observer {
  observe(value: number): void;
}
import { isDeltaFallbackReason } from '../../protocol/chunk-index.js';
import type { UpdateReport } from '../../protocol/messages.js';
import { ROLLOUT_STATES, type RolloutStatus } from '../../protocol/rollouts.js';
import type { FleetStore } from '../fleet/fleet-store.js';
import { MID_UPDATE_STATES, STALLED_AFTER_MS, UNSEEN_AFTER_INTERVALS, UNSEEN_HORIZON_MS } from '../fleet/liveness.js';

/** The windows of last-seen and update times the fleet gauges count in, computed at each scrape. */
export interface FleetWindows {
  /** Live workers: seen since this. */
  workersSeenSince: () => Date;
  /** Unseen workers: last seen in [since, before). */
  unseen: () => { since: Date; before: Date };
  /** Stalled updates: in a mid-update state since before this. */
  stalledBefore: () => Date;
  /**
   * True on the one replica that exports the fleet-wide gauges (the leader, LeaderLease): the
   * others export none of their series, so a sum over replicas counts the fleet once.
   */
  exportsFleetGauges: () => boolean;
}

/** Label values taken from reports are bounded: past this many distinct versions, `other`. */
const MAX_VERSION_LABELS = 500;

/**
 * The server's Prometheus metrics (docs/protocol.md, section 6), in their own Registry so that tests and
 * several apps in one process never share counters.
 *
 * Report counters are labelled by `channel` and `to_version`; failures also by `reason`.
 * A `rollback` report counts in its own `worker_update_rollback_total{channel,to_version,reason}`
 * and not as a failure: a worker that rolls back has usually reported the failure that caused it
 * already, and counting both would double the failure rate on dashboards.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status_code'>;
  private readonly attempts: Counter<'channel' | 'to_version'>;
  private readonly successes: Counter<'channel' | 'to_version'>;
  private readonly failures: Counter<'channel' | 'to_version' | 'reason'>;
  private readonly rollbacks: Counter<'channel' | 'to_version' | 'reason'>;
  private readonly updateBytes: Counter<'mode'>;
  private readonly deltaFallbacks: Counter<'reason'>;
  private readonly versionLabels = new Set<string>();
  readonly rolloutHalts: Counter<'channel' | 'trigger'>;
  readonly workerIdMismatches: Counter<'route'>;
  readonly enrollments: Counter<'route' | 'result'>;
  private readonly poolTokenRequests: Counter<'pool'>;
  private readonly poolTokenSeries = new Map<string, { inc(): void }>();
  private readonly retentionDeleted: Counter<'table'>;

  constructor(fleet: FleetStore, windows: FleetWindows, rollouts: { statuses(): Promise<RolloutStatus[]>; threshold: number }) {
    const { workersSeenSince, exportsFleetGauges } = windows;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by route and status',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    this.attempts = new Counter({
      name: 'worker_update_attempt_total',
      help: 'Update attempts reported by workers',
      labelNames: ['channel', 'to_version'],
      registers,
    });
    this.successes = new Counter({
      name: 'worker_update_success_total',
      help: 'Successful updates reported by workers',
      labelNames: ['channel', 'to_version'],
      registers,
    });
    this.failures = new Counter({
      name: 'worker_update_failure_total',
      help: 'Failed updates reported by workers, by reason code',
      labelNames: ['channel', 'to_version', 'reason'],
      registers,
    });
    this.rollbacks = new Counter({
      name: 'worker_update_rollback_total',
      help: 'Automatic rollbacks reported by workers, by reason code',
      labelNames: ['channel', 'to_version', 'reason'],
      registers,
    });
    this.updateBytes = new Counter({
      name: 'worker_update_bytes_total',
      help: 'Bytes workers fetched for updates they installed, by mode (delta: chunks of a differential update; full: the whole artifact), from success reports',
      labelNames: ['mode'],
      registers,
    });
    this.deltaFallbacks = new Counter({
      name: 'worker_update_delta_fallback_total',
      help: 'Successful updates whose differential download fell back to the whole artifact, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.rolloutHalts = new Counter({
      name: 'bytebiota_rollout_halts_total',
      help: 'Rollouts halted, by channel and trigger (automatic or operator)',
      labelNames: ['channel', 'trigger'],
      registers,
    });
    this.workerIdMismatches = new Counter({
      name: 'bytebiota_worker_id_mismatch_total',
      help: "Requests refused because a worker credential named another worker's id, by route",
      labelNames: ['route'],
      registers,
    });
    this.poolTokenRequests = new Counter({
      name: 'bytebiota_pool_token_requests_total',
      help: "Worker requests authenticated by a pool's shared worker token (deprecated) rather than a worker credential, by pool",
      labelNames: ['pool'],
      registers,
    });
    this.enrollments = new Counter({
      name: 'bytebiota_worker_enrollments_total',
      help: 'Enrollments and claims of worker credentials, by route (enroll, claim) and result (issued, or the refusal code)',
      labelNames: ['route', 'result'],
      registers,
    });
    this.retentionDeleted = new Counter({
      name: 'bytebiota_retention_deleted_total',
      help: 'Rows deleted by retention, by table (update_events, workers)',
      labelNames: ['table'],
      registers,
    });
    new Gauge({
      name: 'bytebiota_fleet_leader',
      help: '1 on the replica that does the fleet-wide work (rollout evaluation, fleet gauges, retention), 0 on the others',
      registers,
      collect() {
        this.set(exportsFleetGauges() ? 1 : 0);
      },
    });
    // Read from the fleet store on scrape, like the fleet gauges, and exported by the leader only
    // (exportsFleetGauges): the others would export the same values again.
    const statuses = { pending: null as Promise<RolloutStatus[]> | null };
    const readStatuses = (): Promise<RolloutStatus[]> => {
      statuses.pending ??= rollouts.statuses().finally(() => {
        statuses.pending = null;
      });
      return statuses.pending;
    };
    new Gauge({
      name: 'bytebiota_rollout_state',
      help: "1 for the state each channel's newest rollout is in (active, paused, halted, aborted, completed, superseded)",
      labelNames: ['channel', 'version', 'state'],
      registers,
      async collect() {
        if (!exportsFleetGauges()) return this.reset();
        const all = await readStatuses();
        this.reset();
        for (const status of all) {
          for (const state of ROLLOUT_STATES) this.set({ channel: status.channel, version: status.version, state }, status.state === state ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'bytebiota_rollout_wave',
      help: "Waves started of each channel's newest rollout",
      labelNames: ['channel', 'version'],
      registers,
      async collect() {
        if (!exportsFleetGauges()) return this.reset();
        const all = await readStatuses();
        this.reset();
        for (const status of all) this.set({ channel: status.channel, version: status.version }, status.current_wave);
      },
    });
    new Gauge({
      name: 'bytebiota_rollout_failure_rate',
      help: "Share of sampled workers failing with the release's fault, per channel's newest rollout (halts above bytebiota_rollout_failure_threshold)",
      labelNames: ['channel', 'version'],
      registers,
      async collect() {
        if (!exportsFleetGauges()) return this.reset();
        const all = await readStatuses();
        this.reset();
        for (const status of all) this.set({ channel: status.channel, version: status.version }, status.failure.rate);
      },
    });
    new Gauge({
      name: 'bytebiota_rollout_failure_threshold',
      help: 'The failure rate above which a rollout halts on its own',
      registers,
      collect() {
        if (!exportsFleetGauges()) return this.reset();
        this.set(rollouts.threshold);
      },
    });
    new Gauge({
      name: 'bytebiota_fleet_workers',
      help: 'Workers seen recently, by channel, pool and version (read from the fleet store on scrape)',
      labelNames: ['channel', 'pool', 'version'],
      registers,
      async collect() {
        if (!exportsFleetGauges()) return this.reset();
        const counts = await fleet.workerCounts(workersSeenSince());
        this.reset();
        for (const row of counts) {
          this.set({ channel: row.channel ?? 'unknown', pool: row.pool, version: row.version }, row.count);
        }
      },
    });
    new Gauge({
      name: 'bytebiota_fleet_workers_by_update_state',
      help: 'Workers seen recently, by channel and the state of their update (none: no update in progress or finished)',
      labelNames: ['channel', 'update_state'],
      registers,
      async collect() {
        if (!exportsFleetGauges()) return this.reset();
        const counts = await fleet.workerStateCounts(workersSeenSince());
        this.reset();
        const totals = new Map<string, { channel: string; update_state: string; count: number }>();
        for (const row of counts) {
          const labels = { channel: row.channel ?? 'unknown', update_state: row.update_state ?? 'none' };
          const key = `${labels.channel}\n${labels.update_state}`;
          const entry = totals.get(key) ?? { ...labels, count: 0 };
          entry.count += row.count;
          totals.set(key, entry);
        }
        for (const { count, ...labels } of totals.values()) this.set(labels, count);
      },
    });
    new Gauge({
      name: 'bytebiota_fleet_workers_unseen',
      help: `Workers last seen within ${UNSEEN_HORIZON_MS / 3600_000} hours but not within ${UNSEEN_AFTER_INTERVALS} heartbeat intervals: alive recently, quiet now`,
      labelNames: ['channel', 'pool'],
      registers,
      async collect() {
        if (!exportsFleetGauges()) return this.reset();
        const window = windows.unseen();
        const counts = await fleet.unseenWorkerCounts(window.since, window.before);
        this.reset();
        for (const row of counts) this.set({ channel: row.channel ?? 'unknown', pool: row.pool }, row.count);
      },
    });
    new Gauge({
      name: 'bytebiota_fleet_workers_update_stalled',
      help: `Workers seen recently whose update has stayed in one of ${MID_UPDATE_STATES.join(', ')} for over ${STALLED_AFTER_MS / 60_000} minutes`,
      labelNames: ['channel', 'update_state'],
      registers,
      async collect() {
        if (!exportsFleetGauges()) return this.reset();
        const counts = await fleet.stalledUpdateCounts(workersSeenSince(), windows.stalledBefore(), MID_UPDATE_STATES);
        this.reset();
        for (const row of counts) this.set({ channel: row.channel ?? 'unknown', update_state: row.update_state }, row.count);
      },
    });
  }

  /** Rows a retention pass deleted. */
  recordPruned(deleted: { events: number; workers: number }): void {
    this.retentionDeleted.inc({ table: 'update_events' }, deleted.events);
    this.retentionDeleted.inc({ table: 'workers' }, deleted.workers);
  }

  recordReport(report: UpdateReport): void {
    const labels = { channel: report.channel, to_version: this.versionLabel(report.to_version) };
    const reason = report.reason ?? 'unspecified';
    switch (report.event) {
      case 'attempt':
        this.attempts.inc(labels);
        break;
      case 'success':
        this.successes.inc(labels);
        if (report.bytes_fetched !== undefined) this.updateBytes.inc({ mode: report.delta === true ? 'delta' : 'full' }, report.bytes_fetched);
        if (report.delta_fallback !== undefined) {
          // Label values stay bounded: a reason this server does not know counts as other.
          this.deltaFallbacks.inc({ reason: isDeltaFallbackReason(report.delta_fallback) ? report.delta_fallback : 'other' });
        }
        break;
      case 'failure':
        this.failures.inc({ ...labels, reason });
        break;
      case 'rollback':
        this.rollbacks.inc({ ...labels, reason });
        break;
    }
  }

  /** One request on a worker route with a pool token; the series is looked up once per pool. */
  countPoolTokenRequest(pool: string): void {
    let series = this.poolTokenSeries.get(pool);
    if (series === undefined) {
      series = this.poolTokenRequests.labels({ pool });
      this.poolTokenSeries.set(pool, series);
    }
    series.inc();
  }

  private versionLabel(version: string): string {
    if (this.versionLabels.has(version)) return version;
    if (this.versionLabels.size >= MAX_VERSION_LABELS) return 'other';
    this.versionLabels.add(version);
    return version;
  }
}

export const metricsPlugin = fp<FleetWindows>(
  async (app, options) => {
    const metrics = new ServerMetrics(app.fleet, options, { statuses: () => app.rollouts.statuses(), threshold: app.rollouts.halt.failureRate });
    app.decorate('serverMetrics', metrics);
    // A callback hook, with the labelled series looked up by one string key: prom-client's
    // observe(labels, value) validates and hashes the label object on every call.
    const series = new Map<string, Observer>();
    app.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url ?? 'unmatched';
      const key = `${request.method} ${reply.statusCode} ${route}`;
      let observer = series.get(key);
      if (observer === undefined) {
        observer = metrics.httpDuration.labels({ method: request.method, route, status_code: reply.statusCode });
        series.set(key, observer);
      }
      observer.observe(reply.elapsedTime / 1000);
      done();
    });
  },
  { name: 'bytebiota-metrics' },
);
