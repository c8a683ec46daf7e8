import { parseDurationMs } from '../../shared/duration.js';
import type { FastifyInstance } from 'fastify';
import { systemClock } from '../../shared/clock.js';
import { CodedError, UsageError, errorMessage } from '../../shared/errors.js';
import { createLogger, flushLogger } from '../../shared/logger.js';
import { openReleaseStore } from '../../store/index.js';
import { buildApp } from '../app.js';
import { resolveServeConfig, type FlagValues } from '../config.js';
import type { FleetStore } from '../fleet/fleet-store.js';
import { openFleetStore } from '../fleet/open-fleet-store.js';
import { loadReleaseKeys } from '../release-keys.js';

/**
 * `bytebiota-server serve`: the one place where real I/O is plugged in. Validates the whole
 * configuration before listening (exit 2 on any mistake), logs `server_listening` with the URL,
 * and on SIGTERM or SIGINT stops accepting, lets in-flight requests finish (a report being
 * written still gets its 202), closes the database and exits 0.
 *
 * Logs go to stdout through an asynchronous buffer (one write per 4 KiB of lines, or every
 * 250 ms), so that writing the per-request line never blocks a request. Every way out of the
 * process (stop, failed stop, an uncaught error) flushes that buffer first, so no line is lost.
 */
export async function serve(flags: FlagValues, env: Record<string, string | undefined>): Promise<void> {
  const config = await resolveServeConfig(flags, env);
  const logger = createLogger({ name: 'bytebiota-server', level: config.logLevel, buffered: {} });
  const exitAfterFlush = async (code: number): Promise<never> => {
    await flushLogger(logger);
    process.exit(code);
  };
  process.once('uncaughtException', (err) => {
    logger.fatal({ event: 'server_crashed', err: errorMessage(err), stack: err.stack }, 'uncaught error; exiting');
    void exitAfterFlush(1);
  });
  const releaseKeys = await loadReleaseKeys(config.releaseKeys, config.releaseKeyThreshold);
  const store = openReleaseStore(config.store, env);
  try {
    await store.ping();
  } catch (err) {
    throw new UsageError(`release store ${config.store} is not reachable: ${errorMessage(err)}`);
  }
  let fleet: FleetStore;
  try {
    fleet = await openFleetStore(config.db, { synchronous: config.dbSync, poolSize: config.dbPoolSize });
  } catch (err) {
    if (err instanceof CodedError && err.code !== 'usage') throw new UsageError(err.message);
    throw err;
  }

  let app: FastifyInstance;
  try {
    app = await buildApp({
      store,
      fleet,
      releaseKeys,
      releaseKeyThreshold: config.releaseKeyThreshold,
      cacheTtlSeconds: config.cacheTtlSeconds,
      heartbeatIntervalSeconds: config.heartbeatIntervalSeconds,
      clock: systemClock,
      logger,
      rateLimit: { max: config.rateLimitMax, windowSeconds: config.rateLimitWindowSeconds },
      metricsToken: config.metricsToken,
      bodyLimitBytes: config.bodyLimitBytes,
      refusePoolTokens: config.refusePoolTokens,
      credentialMaxAgeSeconds: parseDurationMs(config.credentialMaxAge) / 1000,
      enrollRateLimit: { max: config.enrollRateLimitMax, windowSeconds: config.rateLimitWindowSeconds },
      trustedProxies: config.trustedProxies,
      console: { sessionTtlSeconds: config.consoleSessionTtlSeconds, sampleIntervalSeconds: config.consoleSampleIntervalSeconds },
      replicas: { eventRetention: config.eventRetention, workerRetention: config.workerRetention },
      rollouts: {
        defaultPlan: config.defaultRolloutPlan,
        evalIntervalSeconds: config.rolloutEvalIntervalSeconds,
        halt: {
          failureRate: config.rolloutHaltPercent / 100,
          minSample: config.rolloutHaltMinSample,
          windowSeconds: config.rolloutHaltWindowSeconds,
        },
        webhookUrl: config.rolloutWebhookUrl,
      },
    });
  } catch (err) {
    await fleet.close();
    throw err;
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ event: 'server_stopping', signal }, 'stopping: finishing in-flight requests');
    void (async () => {
      try {
        await app.close();
        await fleet.close();
        logger.info({ event: 'server_stopped' }, 'stopped');
        await exitAfterFlush(0);
      } catch (err) {
        logger.error({ event: 'server_stop_failed', err: errorMessage(err) }, 'could not stop cleanly');
        await exitAfterFlush(1);
      }
    })();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));

  try {
    const url = await app.listen({ host: config.host, port: config.port });
    logger.info(
      {
        event: 'server_listening',
        url,
        store: store.location,
        db: fleet.kind,
        release_keys: releaseKeys.map((key) => key.keyid),
        release_key_threshold: config.releaseKeyThreshold,
        cache_ttl_s: config.cacheTtlSeconds,
        ...(fleet.kind === 'sqlite' ? { db_sync: config.dbSync } : { db_pool_size: config.dbPoolSize }),
        default_rollout_plan: config.defaultRolloutPlan,
        rollout_eval_interval_s: config.rolloutEvalIntervalSeconds,
        rollout_halt_percent: config.rolloutHaltPercent,
        rollout_halt_min_sample: config.rolloutHaltMinSample,
        rollout_halt_window_s: config.rolloutHaltWindowSeconds,
        rollout_webhook: config.rolloutWebhookUrl ? new URL(config.rolloutWebhookUrl).origin : null,
        refuse_pool_tokens: config.refusePoolTokens,
        enroll_rate_limit_max: config.enrollRateLimitMax,
        credential_max_age: config.credentialMaxAge,
        trusted_proxies: config.trustedProxies,
        console_session_ttl_s: config.consoleSessionTtlSeconds,
        console_sample_interval_s: config.consoleSampleIntervalSeconds,
        event_retention: config.eventRetention,
        worker_retention: config.workerRetention,
        replica: app.leader.holder,
        leader: app.leader.held,
      },
      `listening on ${url}`,
    );
    // Operators and supervisors wait for this line: it is written now, not with the next batch.
    await flushLogger(logger);
  } catch (err) {
    await fleet.close();
    await flushLogger(logger);
    throw new UsageError(`cannot listen on ${config.host}:${config.port}: ${errorMessage(err)}`);
  }
}
