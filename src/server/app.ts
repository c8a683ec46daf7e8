import cookie from '@fastify/cookie';
import rateLimit from '@fastify/rate-limit';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import fp from 'fastify-plugin';
import type { Logger } from 'pino';
import type { Clock } from '../shared/clock.js';
import { parseDurationMs } from '../shared/duration.js';
import type { ReleaseStore } from '../store/release-store.js';
import type { PublicKey } from '../trust/keys.js';
import type { FleetStore } from './fleet/fleet-store.js';
import { HttpError } from './http-error.js';
import { ManifestCache } from './manifest-cache.js';
import { defaultConsoleAssetsDir } from './console/assets.js';
import { consolePlugin } from './console/console-plugin.js';
import { LeaderLease } from './fleet/leader-lease.js';
import { STALLED_AFTER_MS, unseenWindow } from './fleet/liveness.js';
import { DEFAULT_EVENT_RETENTION, DEFAULT_WORKER_RETENTION, Retention } from './fleet/retention.js';
import { DEFAULT_CONSOLE_SESSION_SECONDS } from './console/sessions.js';
import { DEFAULT_SAMPLE_INTERVAL_SECONDS } from './console/version-sampler.js';
import { accessLogPlugin } from './plugins/access-log.js';
import { authPlugin } from './plugins/auth.js';
import { describeError, errorHandlerPlugin } from './plugins/error-handler.js';
import { metricsPlugin } from './plugins/metrics.js';
import { openapiPlugin } from './plugins/openapi.js';
import { requestIdFrom, requestIdPlugin } from './plugins/request-id.js';
import { DEFAULT_PLANS, type DefaultPlanName } from './rollout/plan.js';
import type { HaltSettings } from './rollout/failure-rate.js';
import { RolloutService } from './rollout/rollout-service.js';
import { adminRoutes } from './routes/admin.js';
import { adminIdentityRoutes } from './routes/admin-identity.js';
import { rolloutRoutes } from './routes/rollouts.js';
import { artifactRoutes } from './routes/artifacts.js';
import { healthRoutes } from './routes/health.js';
import { manifestRoutes } from './routes/manifest.js';
import { metricsRoutes } from './routes/metrics.js';
import { reportRoutes } from './routes/reports.js';
import { workerRoutes } from './routes/workers.js';
import { workerIdentityRoutes } from './routes/worker-identity.js';
import './types.js';

export interface RateLimitSettings {
  /** Requests allowed per token (or per client address without a token) in each window. */
  max: number;
  windowSeconds: number;
}

/** Everything the app needs from outside; main.ts is the one place real I/O is plugged in. */
export interface AppDeps {
  store: ReleaseStore;
  fleet: FleetStore;
  releaseKeys: readonly PublicKey[];
  releaseKeyThreshold: number;
  cacheTtlSeconds: number;
  heartbeatIntervalSeconds: number;
  clock: Clock;
  logger: Logger;
  rateLimit: RateLimitSettings;
  metricsToken?: string | undefined;
  bodyLimitBytes?: number;
  /** Workers not seen for this long leave the fleet gauge and the rollouts' shares; default 10 heartbeat intervals. */
  workerStaleAfterSeconds?: number;
  /** Staged rollouts; every field has a default (docs/runbooks/rollout.md). */
  rollouts?: RolloutSettings;
  /** Enrollments per client address (`POST /api/workers/enroll` takes no bearer); default 10 a minute. */
  enrollRateLimit?: RateLimitSettings;
  /** Refuse pool tokens on worker routes (401 `pool_token_refused`); `--refuse-pool-tokens`. */
  refusePoolTokens?: boolean;
  /** Ask workers to rotate credentials older than this (`--credential-max-age`); default 90 days. */
  credentialMaxAgeSeconds?: number;
  /** Reverse proxies whose X-Forwarded-For gives the client address (`--trusted-proxy`); default none. */
  trustedProxies?: readonly string[];
  /** The fleet console (docs/console.md); every field has a default. */
  console?: ConsoleSettings;
  /** Several replicas and retention (docs/server.md); every field has a default. */
  replicas?: ReplicaSettings;
}

export interface ReplicaSettings {
  /** This replica's name in the leader lease; default host:pid:random. */
  replicaId?: string;
  /** The leader lease's TTL: how long a dead leader's work waits for another replica. Default 30 s. */
  leaseTtlMs?: number;
  /** `--event-retention`, `--worker-retention`: durations (shared/duration.ts); 90d and 30d by default. */
  eventRetention?: string;
  workerRetention?: string;
  /** Prune on a timer (the default); false leaves it to `app.retention.prune()` (tests). */
  pruneOnTimer?: boolean;
}

export interface ConsoleSettings {
  /** A console session lasts this long (`--console-session-ttl`); default 8 hours. */
  sessionTtlSeconds?: number;
  /** The version distribution is sampled this often (`--console-sample-interval`); default 5 minutes. */
  sampleIntervalSeconds?: number;
  sampleOnTimer?: boolean;
  /** Where the built page is; default the package's dist/console. */
  assetsDir?: string;
}

export const DEFAULT_CREDENTIAL_MAX_AGE_SECONDS = 90 * 86_400;

export const DEFAULT_ENROLL_RATE_LIMIT: RateLimitSettings = { max: 10, windowSeconds: 60 };

export interface RolloutSettings {
  /** The plan of a channel that has none of its own: `staged` (the default) or `immediate`. */
  defaultPlan?: DefaultPlanName;
  evalIntervalSeconds?: number;
  halt?: HaltSettings;
  webhookUrl?: string | undefined;
  webhookRetryDelaysMs?: readonly number[];
  /** Evaluate on a timer (the default); false leaves it to `app.rollouts.evaluate()` (tests). */
  evaluateOnTimer?: boolean;
}

export const DEFAULT_BODY_LIMIT_BYTES = 64 * 1024;

/** The whole server as one plugin: decorators, hooks and routes, no listen. */
export const bytebiotaServer = fp<AppDeps>(
  async (app, deps) => {
    const workerStaleAfterSeconds = deps.workerStaleAfterSeconds ?? deps.heartbeatIntervalSeconds * 10;
    // JSON only: a text/plain body is refused with 415 instead of reaching a schema as a string.
    app.removeContentTypeParser('text/plain');
    app.decorate('fleet', deps.fleet);
    app.decorate('releaseStore', deps.store);
    app.decorate('clock', deps.clock);
    app.decorate('settings', {
      heartbeatIntervalSeconds: deps.heartbeatIntervalSeconds,
      workerStaleAfterSeconds,
      credentialMaxAgeSeconds: deps.credentialMaxAgeSeconds ?? DEFAULT_CREDENTIAL_MAX_AGE_SECONDS,
    });
    app.decorate(
      'manifests',
      new ManifestCache({
        store: deps.store,
        trustedKeys: deps.releaseKeys,
        threshold: deps.releaseKeyThreshold,
        cacheTtlSeconds: deps.cacheTtlSeconds,
        clock: deps.clock,
        logger: deps.logger,
        servedSerials: deps.fleet,
      }),
    );

    const rolloutSettings = deps.rollouts ?? {};
    const rollouts = new RolloutService({
      fleet: deps.fleet,
      manifests: app.manifests,
      clock: deps.clock,
      logger: deps.logger,
      defaultPlan: DEFAULT_PLANS[rolloutSettings.defaultPlan ?? 'staged'],
      workerStaleAfterSeconds,
      evalIntervalSeconds: rolloutSettings.evalIntervalSeconds,
      halt: rolloutSettings.halt,
      webhookUrl: rolloutSettings.webhookUrl,
      ...(rolloutSettings.webhookRetryDelaysMs ? { webhookRetryDelaysMs: rolloutSettings.webhookRetryDelaysMs } : {}),
      onHalt: (event) => app.serverMetrics.rolloutHalts.inc({ channel: event.channel, trigger: event.trigger }),
    });
    app.decorate('rollouts', rollouts);

    const replicaSettings = deps.replicas ?? {};
    const leader = new LeaderLease({
      fleet: deps.fleet,
      clock: deps.clock,
      logger: deps.logger,
      ...(replicaSettings.replicaId !== undefined ? { holder: replicaSettings.replicaId } : {}),
      ...(replicaSettings.leaseTtlMs !== undefined ? { ttlMs: replicaSettings.leaseTtlMs } : {}),
    });
    app.decorate('leader', leader);
    const retention = new Retention({
      fleet: deps.fleet,
      clock: deps.clock,
      logger: deps.logger,
      eventRetentionMs: parseDurationMs(replicaSettings.eventRetention ?? DEFAULT_EVENT_RETENTION),
      workerRetentionMs: parseDurationMs(replicaSettings.workerRetention ?? DEFAULT_WORKER_RETENTION),
      isLeader: () => leader.held,
      onPruned: (deleted) => app.serverMetrics.recordPruned(deleted),
    });
    app.decorate('retention', retention);
    // In this order: the first lease attempt is done before the timers that ask who leads start.
    app.addHook('onReady', async () => {
      await leader.start();
      if (rolloutSettings.evaluateOnTimer ?? true) rollouts.start(() => leader.held);
      if (replicaSettings.pruneOnTimer ?? true) retention.start();
    });
    app.addHook('onClose', async () => {
      await rollouts.stop();
      await retention.stop();
      await leader.stop();
    });

    await app.register(requestIdPlugin);
    await app.register(accessLogPlugin);
    await app.register(errorHandlerPlugin);
    await app.register(metricsPlugin, {
      workersSeenSince: () => new Date(deps.clock.now().getTime() - workerStaleAfterSeconds * 1000),
      unseen: () => unseenWindow(deps.clock.now(), deps.heartbeatIntervalSeconds),
      stalledBefore: () => new Date(deps.clock.now().getTime() - STALLED_AFTER_MS),
      exportsFleetGauges: () => leader.held,
    });
    await app.register(authPlugin, { metricsToken: deps.metricsToken, refusePoolTokens: deps.refusePoolTokens ?? false });
    await app.register(cookie);
    // After auth (preHandler), so the key is the verified token or credential id; per address otherwise.
    await app.register(rateLimit, {
      global: true,
      hook: 'preHandler',
      max: deps.rateLimit.max,
      timeWindow: deps.rateLimit.windowSeconds * 1000,
      keyGenerator: (request) => (request.auth ? `${request.auth.kind}:${request.auth.tokenId}` : `ip:${request.ip}`),
      errorResponseBuilder: (_request, context) =>
        new HttpError(429, 'rate_limited', `too many requests; retry after ${context.after}`),
    });
    await app.register(openapiPlugin);

    await app.register(healthRoutes);
    await app.register(metricsRoutes);
    await app.register(manifestRoutes);
    await app.register(artifactRoutes);
    await app.register(reportRoutes);
    await app.register(workerRoutes);
    await app.register(workerIdentityRoutes, { enrollRateLimit: deps.enrollRateLimit ?? DEFAULT_ENROLL_RATE_LIMIT });
    await app.register(adminRoutes);
    await app.register(adminIdentityRoutes);
    await app.register(rolloutRoutes);
    const consoleSettings = deps.console ?? {};
    await app.register(consolePlugin, {
      assetsDir: consoleSettings.assetsDir ?? defaultConsoleAssetsDir(),
      sessionTtlSeconds: consoleSettings.sessionTtlSeconds ?? DEFAULT_CONSOLE_SESSION_SECONDS,
      sampleIntervalSeconds: consoleSettings.sampleIntervalSeconds ?? DEFAULT_SAMPLE_INTERVAL_SECONDS,
      sampleOnTimer: consoleSettings.sampleOnTimer ?? true,
    });
  },
  { name: 'bytebiota-server', fastify: '5.x' },
);

/** A ready Fastify instance with the server registered; the caller listens or injects. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger,
    // One line per request is written by the access-log plugin; the id is logged as correlation_id.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'correlation_id' }),
    genReqId: requestIdFrom,
    requestIdHeader: false,
    bodyLimit: deps.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    // request.ip, which the rate limits and the logged client addresses use: the TCP peer unless
    // it is a trusted proxy, whose X-Forwarded-For is then followed to the first untrusted hop.
    trustProxy: deps.trustedProxies !== undefined && deps.trustedProxies.length > 0 ? [...deps.trustedProxies] : false,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    // Strict validation: a field the schema does not know is refused, never silently dropped,
    // and nothing is coerced into a type it was not sent as.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Errors Fastify raises before routing (a malformed URL) get the same error body as the rest.
    frameworkErrors: (error, _request, reply) => {
      const { status, body } = describeError(error);
      void (reply as unknown as FastifyReply).code(status).type('application/json; charset=utf-8').send(body);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  await app.register(bytebiotaServer, deps);
  await app.ready();
  return app as unknown as FastifyInstance;
}
