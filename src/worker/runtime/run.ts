import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { HeartbeatRequest, RegisterRequest, ServerAccepts, UpdateProgress } from '../../protocol/messages.js';
import { currentPlatform } from '../../protocol/platform.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import type { Clock } from '../../shared/clock.js';
import { CodedError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { fullJitterBackoff, type Sleep } from './backoff.js';
import { buildInfo } from '../build-info.js';
import type { RunConfig } from '../config.js';
import { maintainConnection, registerOnce, type ConnectionError, type RegisterOutcome, type ServerPolicy } from './connection.js';
import { openServerLink, type ServerLink } from './server-link.js';
import { installLayout } from '../install/install-layout.js';
import { serveMetrics, WorkerMetrics, type MetricsServer } from '../telemetry/metrics.js';
import { autoUpdateAllowed, decideStart, EXIT_CODES } from './policy.js';
import { UpdateSchedule, type CheckOutcome } from './update-schedule.js';
import { failureReasonOf } from '../install/failure-reason.js';
import { acceptsFromState, adaptForServer, rememberAccepts } from './server-accepts.js';
import { loadState } from '../install/state.js';
import { recheckBeforeSwitch } from '../engine/switch-recheck.js';
import { completedOnReady, updateStatusAtStart } from './update-status.js';
import { LOG_EVENTS, UpdateTelemetry, type UpdateEventMessage } from '../telemetry/telemetry.js';
import { runUpdateOnce, type UpdaterContext } from '../engine/updater.js';
import { isStopMessage } from './stop-request.js';
import { UnitsLog, WorkLoop, type BetweenUnits } from './work-loop.js';
import { hashChainWorkload, type Workload } from './workload.js';
import { claimCredential, confirmPendingCredential, enroll, rotateCredential, type IdentityContext } from './identity.js';

/** What the worker tells its supervisor over the IPC channel. */
export interface ReadyMessage {
  type: 'ready';
  version: string;
}

/** The IPC channel to the supervisor, when there is one (`process.send`). */
export interface SupervisorChannel {
  send(message: ReadyMessage | UpdateEventMessage): void;
  /** Called when the supervisor goes away: the worker stops after the current unit. */
  onDisconnect(listener: () => void): void;
  /** Called when the supervisor asks the worker to stop (Windows, where SIGTERM cannot be handled). */
  onStopRequest(listener: () => void): void;
}

export interface RunDependencies {
  log: Logger;
  clock: Clock;
  random?: () => number;
  sleep?: Sleep;
  workload?: Workload;
  channel?: SupervisorChannel | null;
  /** Where SIGTERM and SIGINT arrive; the process itself in production. */
  signals?: NodeJS.EventEmitter;
}

/**
 * The process's own IPC channel when a supervisor spawned it with one. It listens from the moment
 * it is made (the first thing `run` does): a stop sent while the worker is still starting is
 * kept and handed to the work loop when it starts listening, instead of being dropped and left
 * to the supervisor's kill after --stop-timeout.
 */
export function processSupervisorChannel(): SupervisorChannel | null {
  if (typeof process.send !== 'function' || !process.connected) return null;
  let stopRequested = false;
  const stopListeners: Array<() => void> = [];
  // The listener keeps the channel referenced, so the process stays up until it exits itself
  // (main.ts ends with process.exit).
  process.on('message', (message: unknown) => {
    if (!isStopMessage(message)) return;
    stopRequested = true;
    for (const listener of stopListeners) listener();
  });
  return {
    send: (message) => {
      if (process.connected) process.send?.(message);
    },
    onDisconnect: (listener) => {
      process.once('disconnect', listener);
    },
    onStopRequest: (listener) => {
      stopListeners.push(listener);
      if (stopRequested) listener();
    },
  };
}

/**
 * At start, before the handshake: enroll when there is an enrollment token and no credential for
 * this server, and finish a rotation a kill left half done (docs/protocol.md, section 3). Neither
 * stops the worker: it works on, and logs what the operator must do.
 */
async function startIdentity(identity: IdentityContext, config: RunConfig, facts: { platform: string }): Promise<{ confirmPending: boolean }> {
  if (config.enrollmentToken !== null) {
    try {
      await enroll(identity, { enrollmentToken: config.enrollmentToken, platform: facts.platform, channel: config.channel, replace: false });
    } catch (err) {
      const serverCode = (err as { serverCode?: string | null }).serverCode ?? null;
      identity.log.error(
        { event: 'worker_enroll_failed', code: (err as { code?: string }).code, server_code: serverCode, error: errorMessage(err) },
        `enrollment failed${serverCode ? ` (${serverCode})` : ''}: working on${config.token !== null ? ' with the pool token' : ' without a credential'}`,
      );
    }
  }
  try {
    return { confirmPending: (await confirmPendingCredential(identity)) === 'retry' };
  } catch (err) {
    // Only file trouble reaches here (confirmPendingCredential answers the server's own failures).
    identity.log.warn({ event: 'worker_identity_failed', error: errorMessage(err) }, 'credential.json could not be read or written at start; will try again (a damaged file: docs/runbooks/worker-identity.md)');
    return { confirmPending: true };
  }
}

/** One update attempt: whether it staged a version, and how the schedule should take it. */
interface AttemptResult {
  staged: boolean;
  outcome: CheckOutcome;
}

export const UNITS_LOG_PATH = join('work', 'units.log');

/**
 * `bytebiota-worker run`: handshake, start-up policy, then units of work with update checks
 * between them. Resolves to the exit code: 0 stopped, 3 refused to start, 75 restart me into
 * the staged version (restart protocol step 1).
 */
export async function runWorker(config: RunConfig, deps: RunDependencies): Promise<number> {
  const random = deps.random ?? Math.random;
  const clock = deps.clock;
  const signals = deps.signals ?? process;
  const channel = deps.channel ?? null;
  const layout = installLayout(config.installRoot);
  await mkdir(layout.root, { recursive: true });
  const state = await loadState(layout, randomUUID);
  const workerId = config.workerId ?? state.worker_id;
  const { version } = buildInfo();
  const platform = currentPlatform();
  const log = deps.log.child({ worker_id: workerId, version });
  const stopAll = new AbortController();
  const background: Promise<unknown>[] = [];

  let metricsServer: MetricsServer | null = null;
  // Under a supervisor, it serves the metrics (it outlives this process); this one forwards.
  const metrics = channel === null ? new WorkerMetrics() : null;
  metrics?.setCurrentVersion(version);
  if (metrics && config.metricsPort !== null) {
    metricsServer = await serveMetrics(metrics, config.metricsPort, config.metricsHost);
    log.info({ event: 'worker_metrics_listening', url: metricsServer.url }, 'serving metrics');
  }

  // What the server takes beyond the first protocol: from its last handshake or heartbeat, and
  // until this process has heard from it, what it said to the last one (state.json).
  let serverAccepts: ServerAccepts | null = config.serverUrl !== null ? acceptsFromState(state, config.serverUrl) : null;
  let persistedAccepts: ServerAccepts | null | undefined = serverAccepts;
  let acceptsWrite: Promise<void> = Promise.resolve();
  const noteAccepts = (accepts: ServerAccepts | null): void => {
    serverAccepts = accepts;
    const serverUrl = config.serverUrl;
    if (serverUrl === null || isDeepStrictEqual(accepts, persistedAccepts)) return;
    persistedAccepts = accepts;
    log.info(
      { event: 'worker_server_accepts', report_fields: accepts?.report_fields ?? null, reasons: accepts?.reasons.length ?? null },
      accepts ? 'the server says what it accepts (rollout-aware)' : 'the server says nothing of what it accepts: first protocol only',
    );
    // Persisted for the supervisor, which sends reports without ever registering.
    acceptsWrite = acceptsWrite
      .then(() => rememberAccepts(layout, serverUrl, accepts))
      .catch((err: unknown) => {
        persistedAccepts = undefined;
        log.warn({ event: 'worker_state_write_failed', field: 'server_accepts', error: errorMessage(err) }, 'could not remember what the server accepts');
      });
  };

  let link: ServerLink | null = null;
  if (config.serverUrl !== null) {
    link = await openServerLink({
      serverUrl: config.serverUrl,
      token: config.token,
      caFile: config.caFile,
      layout,
      accepts: () => serverAccepts,
      log,
      clock,
      random,
      ...(deps.sleep ? { sleep: deps.sleep } : {}),
    });
  } else {
    log.warn({ event: 'worker_offline', reason: 'no server configured' }, 'no server configured: working offline, never updating');
  }
  const client = link?.client ?? null;
  const dispatcher = link?.dispatcher ?? null;
  const identity: IdentityContext | null =
    client !== null && config.serverUrl !== null ? { client, layout, serverUrl: config.serverUrl, workerId, log } : null;
  const identityAtStart = identity !== null ? await startIdentity(identity, config, { platform }) : { confirmPending: false };
  const telemetry = new UpdateTelemetry({ log, workerId, platform, metrics, forward: channel ? (m) => channel.send(m) : null, queue: link?.queue ?? null });

  const updatesConfigured = client !== null && config.trustedKeys.length > 0;
  if (client !== null && !updatesConfigured) {
    log.warn({ event: 'worker_updates_disabled', reason: 'no trusted key' }, 'no --trusted-key given: this worker will never update');
  }

  let policy: ServerPolicy | null = null;
  // What the heartbeats say about the update: the supervisor's watch or rollback, then our own attempts.
  let currentUpdate: UpdateProgress | null = updateStatusAtStart(state, version);
  let loop: WorkLoop | null = null;

  /** One check-download-stage pass (engine/updater.ts, runUpdateOnce), with its telemetry. */
  async function attemptUpdate(force: boolean): Promise<AttemptResult> {
    if (client === null || config.serverUrl === null) return { staged: false, outcome: { kind: 'done' } };
    // The credential (or pool token) as stored now: a rotation during the attempt fails one
    // download at worst, resumed at the next check.
    // A damaged credential.json: no check until it is repaired (the connection loop says why).
    const bearer = await client.bearer().catch(() => null);
    if (bearer === null) return { staged: false, outcome: { kind: 'done' } };
    const correlationId = randomUUID();
    let attemptedVersion: string | null = null;
    // The release the verified manifest names: its serial goes into this attempt's reports.
    let verifiedRelease: { version: string; serial: number } | null = null;
    const serialOf = (toVersion: string | null): { serial?: number } =>
      verifiedRelease !== null && verifiedRelease.version === toVersion ? { serial: verifiedRelease.serial } : {};
    // The version a failure concerns: the one being installed, else the release that verified.
    const failedVersion = (): string | null => attemptedVersion ?? verifiedRelease?.version ?? policy?.latestVersion ?? null;
    const recordAttempt = async (toVersion: string): Promise<void> => {
      if (attemptedVersion !== null) return;
      attemptedVersion = toVersion;
      await telemetry.record({ event: 'attempt', correlationId, fromVersion: version, toVersion, channel: config.channel, ...serialOf(toVersion) });
    };
    const pendingRecords: Promise<void>[] = [];
    const ctx: UpdaterContext = {
      layout,
      serverUrl: config.serverUrl,
      token: bearer,
      channel: config.channel,
      platform,
      workerId,
      currentVersion: version,
      trustedKeys: config.trustedKeys,
      threshold: config.trustedKeyThreshold,
      downloadTimeoutMs: config.downloadTimeoutS * 1000,
      clock,
      ...(dispatcher ? { dispatcher } : {}),
      force,
      correlationId,
      onProgress: (progress) => {
        currentUpdate = progress;
        pendingRecords.push(recordAttempt(progress.to_version));
      },
      onManifestVerified: (release) => {
        verifiedRelease = release;
      },
      log: log.child({ correlation_id: correlationId }),
    };
    try {
      const result = await runUpdateOnce(ctx);
      await Promise.all(pendingRecords);
      if (result.kind === 'staged') {
        await recordAttempt(result.version);
        // A rollout-aware server may have stopped offering the release while it was staged: ask
        // again before switching. An older server has no rollouts to ask about.
        if (serverAccepts !== null && (await recheckBeforeSwitch(ctx, result)).action === 'cancel') {
          currentUpdate = null;
          return { staged: false, outcome: { kind: 'done' } };
        }
        currentUpdate = { to_version: result.version, state: 'restarting' };
        return { staged: true, outcome: { kind: 'done' } };
      }
      currentUpdate = null;
      log.info({ event: 'worker_update_check', correlation_id: correlationId, result: result.kind, ...('version' in result ? { skipped_version: result.version } : {}) }, 'update check done');
      return { staged: false, outcome: { kind: 'done' } };
    } catch (err) {
      await Promise.all(pendingRecords);
      if (err instanceof CodedError && err.code === 'update_in_progress') {
        log.info({ event: 'worker_update_skipped', reason: 'update_in_progress' }, 'another process is updating this install root');
        return { staged: false, outcome: { kind: 'busy' } };
      }
      // Every failed attempt ends with a reason code: in the report, the metric and this log line.
      const reason = failureReasonOf(err);
      const toVersion = failedVersion();
      if (toVersion !== null) currentUpdate = { to_version: toVersion, state: 'failed', reason };
      await telemetry.record({ event: 'failure', correlationId, fromVersion: version, toVersion, channel: config.channel, reason, ...serialOf(toVersion) });
      if (err instanceof UpdateError && reason === err.code) {
        log.warn({ event: 'worker_update_failure_detail', correlation_id: correlationId, reason, error: err.message }, 'update failed');
      } else {
        // Not one of the update steps' own errors: the cause goes to the log in full.
        log.error({ event: 'worker_update_error', correlation_id: correlationId, reason, error: errorMessage(err), stack: err instanceof Error ? err.stack : undefined }, 'update failed unexpectedly');
      }
      return { staged: false, outcome: { kind: 'failed', reason } };
    }
  }

  const registerBody = (): RegisterRequest => ({ worker_id: workerId, current_version: version, platform, channel: config.channel });
  const heartbeatBody = (): HeartbeatRequest => ({
    worker_id: workerId,
    current_version: version,
    state: loop?.state ?? 'starting',
    // In the form this server takes: a reason code it does not know would make it refuse the heartbeat.
    ...(currentUpdate ? { update: adaptForServer('heartbeat_update', currentUpdate, serverAccepts) } : {}),
  });

  async function cleanUp(): Promise<void> {
    stopAll.abort();
    await Promise.allSettled(background);
    await acceptsWrite;
    await metricsServer?.close();
    await link?.close();
  }

  // Start-up: the handshake decides whether this version may work at all (docs/protocol.md, section 4).
  let outcome: RegisterOutcome | null = null;
  let startAuthRejected: ConnectionError | null = null;
  if (client !== null) {
    outcome = await registerOnce(client, registerBody());
    if (outcome.kind === 'registered') {
      policy = outcome.policy;
      noteAccepts(policy.accepts);
      log.info({ event: 'worker_registered', minimum_version: policy.minimumVersion, auto_update: policy.poolAutoUpdate }, 'registered with the server');
    } else {
      log.warn({ event: 'worker_register_failed', code: outcome.error.code, error: outcome.error.message }, 'first registration failed; working and retrying');
      if (outcome.kind === 'auth_rejected') startAuthRejected = outcome.error;
    }
  }
  const decision = decideStart({
    currentVersion: version,
    minimumVersion: policy?.minimumVersion ?? null,
    autoUpdateEnabled: config.autoUpdateEnabled,
    poolAutoUpdate: policy?.poolAutoUpdate ?? false,
    forceUpdate: config.forceUpdate,
    forceStart: config.forceStart,
    updatesConfigured,
  });
  if (decision.updateFirst && (await attemptUpdate(config.forceUpdate)).staged) {
    await cleanUp();
    return EXIT_CODES.restartIntoStaged;
  }
  if (decision.otherwise === 'refuse') {
    log.error(
      { event: LOG_EVENTS.startRefused, current_version: version, minimum_version: policy?.minimumVersion },
      `version ${version} is below the server's minimum ${policy?.minimumVersion ?? ''}; refusing to start (--force-start overrides)`,
    );
    await cleanUp();
    return EXIT_CODES.refusedToStart;
  }
  if (decision.otherwise === 'start_forced') {
    log.warn({ event: LOG_EVENTS.startForced, current_version: version, minimum_version: policy?.minimumVersion }, 'starting below the minimum version (--force-start)');
  }

  // Readiness (restart protocol step 2): the loop has started and the handshake is done, or the
  // server is unreachable or refuses our token, neither of which a new version could fix.
  let registered = outcome === null || outcome.kind !== 'rejected';
  let loopStarted = false;
  let readySent = false;
  const maybeSendReady = (): void => {
    if (readySent || !loopStarted || !registered) return;
    readySent = true;
    channel?.send({ type: 'ready', version });
    currentUpdate = completedOnReady(currentUpdate);
    log.info({ event: 'worker_ready' }, 'worker ready');
  };

  const checksAllowed = (): boolean =>
    autoUpdateAllowed({ updatesConfigured, autoUpdateEnabled: config.autoUpdateEnabled, poolAutoUpdate: policy?.poolAutoUpdate ?? false });
  // The first periodic check comes right after the first unit (unless one was just made). This is
  // also what brings back a worker whose proven version crash-loops: the supervisor reports
  // crash_loop, the server halts the rollout, and the operator's signed rollback release is
  // picked up here, after one unit, before the next crash (docs/worker-updates.md).
  const schedule = new UpdateSchedule({
    checkIntervalS: config.checkIntervalS,
    currentVersion: version,
    random,
    nowMs: clock.now().getTime(),
    checkedAtStart: decision.updateFirst,
    announcedLatest: policy?.latestVersion ?? null,
    minimumVersion: policy?.minimumVersion ?? null,
  });

  // Identity after each handshake and heartbeat: the one claim of a worker with only its pool
  // token, rotation when the server asks, and the confirm of a rotation whose answer was lost (the
  // server may have committed it and no longer asks: until confirmed, every request would first
  // try the old credential). One at a time, never overlapping.
  let identityBusy = false;
  let claimTried = false;
  let confirmPending = identityAtStart.confirmPending;
  const afterPolicy = (next: ServerPolicy): void => {
    if (identity === null || identityBusy) return;
    const claim = !claimTried && config.token !== null && (next.accepts?.identity?.includes('claim') ?? false);
    const rotate = next.rotateCredential && (next.accepts?.identity?.includes('rotate') ?? false);
    if (!claim && !rotate && !confirmPending) return;
    identityBusy = true;
    const work = (async () => {
      if (claim && config.token !== null) {
        claimTried = (await claimCredential(identity, config.token)) !== 'retry';
      } else if (rotate) {
        log.info({ event: 'worker_credential_rotation_requested' }, 'the server asks for a new credential; rotating');
        confirmPending = (await rotateCredential(identity)) === 'retry';
      } else {
        confirmPending = (await confirmPendingCredential(identity)) === 'retry';
      }
    })()
      .catch((err: unknown) => log.warn({ event: 'worker_identity_failed', error: errorMessage(err) }, 'claim or rotation failed; will try again'))
      .finally(() => {
        identityBusy = false;
      });
    background.push(work);
  };

  // A refused credential (revoked, or unknown after the server's database was restored from an
  // older backup), or a damaged credential.json: said once at error, with what to do. The worker
  // works on offline and retries, and counts as ready (a new version would not fix this, so the
  // supervisor must not roll back over it); it neither re-enrolls by itself (that would undo a
  // revocation) nor falls back to the pool token.
  let authRejectedSaid = false;
  const onAuthRejected = (err: ConnectionError): void => {
    if (authRejectedSaid) return;
    authRejectedSaid = true;
    if (err.code === 'credential_unusable') {
      log.error(
        { event: 'worker_credential_unusable', code: err.code, error: err.message },
        'credential.json is damaged: working offline and retrying; revoke this worker and re-enroll it (docs/runbooks/worker-identity.md)',
      );
      return;
    }
    log.error(
      { event: 'worker_credential_rejected', status: err.status, server_code: err.serverCode },
      'the server refuses this worker\'s credential or token (revoked, or unknown after a database restore): working offline and retrying; re-enroll it (docs/runbooks/worker-identity.md)',
    );
  };

  const onPolicy = (next: ServerPolicy): void => {
    policy = next;
    authRejectedSaid = false;
    noteAccepts(next.accepts);
    afterPolicy(next);
    if (!registered) {
      registered = true;
      maybeSendReady();
    }
    // A heartbeat announcing another release, or a new minimum above us, brings the check forward.
    if (schedule.onPolicy(clock.now().getTime(), next, checksAllowed()) === 'below_minimum') {
      log.warn({ event: 'worker_below_minimum', current_version: version, minimum_version: next.minimumVersion }, 'now below the minimum version; updating');
    }
  };

  if (policy !== null) afterPolicy(policy);
  if (startAuthRejected !== null) onAuthRejected(startAuthRejected);
  if (client !== null) {
    const connectionClient = client;
    background.push(
      maintainConnection(
        {
          client: connectionClient,
          backoff: fullJitterBackoff({ baseDelayMs: 1000, maxDelayMs: 300_000, random }),
          log,
          ...(deps.sleep ? { sleep: deps.sleep } : {}),
          registerBody,
          heartbeatBody,
          onPolicy,
          onAuthRejected,
        },
        stopAll.signal,
        policy ?? undefined,
      ),
    );
  }

  const unitsLog = await UnitsLog.open(join(layout.root, UNITS_LOG_PATH));
  const workLoop = new WorkLoop({
    workload: deps.workload ?? hashChainWorkload(),
    unitsLog,
    version,
    log,
    onStarted: () => {
      loopStarted = true;
      maybeSendReady();
    },
    betweenUnits: async (): Promise<BetweenUnits> => {
      const step = schedule.nextStep(clock.now().getTime(), { stopRequested: workLoop.stopRequested, checksAllowed: checksAllowed() });
      if (step !== 'check') return step;
      schedule.checkStarted(clock.now().getTime());
      const attempt = await attemptUpdate(false);
      schedule.checkFinished(clock.now().getTime(), attempt.outcome);
      return attempt.staged ? 'restart' : 'continue';
    },
  });
  loop = workLoop;

  // SIGTERM: finish the unit in progress, record it, exit 0. A supervisor that goes away (its
  // IPC channel closes) is treated the same, so an orphan never keeps running beside a new one;
  // and so is the supervisor's 'stop' message, its only way to ask on Windows (stop-request.ts).
  // `via` says which way the request came first: on Windows the test of the IPC path reads it.
  const stopVia = (via: 'SIGTERM' | 'SIGINT' | 'supervisor_gone' | 'stop_message') => (): void => {
    if (!workLoop.stopRequested) log.info({ event: 'worker_stopping', via }, 'stopping after the current unit');
    workLoop.requestStop();
  };
  const onSigterm = stopVia('SIGTERM');
  const onSigint = stopVia('SIGINT');
  signals.on('SIGTERM', onSigterm);
  signals.on('SIGINT', onSigint);
  channel?.onDisconnect(stopVia('supervisor_gone'));
  channel?.onStopRequest(stopVia('stop_message'));
  try {
    const result = await workLoop.run();
    return result === 'restart' ? EXIT_CODES.restartIntoStaged : EXIT_CODES.ok;
  } finally {
    signals.off('SIGTERM', onSigterm);
    signals.off('SIGINT', onSigint);
    await unitsLog.close();
    await cleanUp();
  }
}
