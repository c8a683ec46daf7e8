import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { currentPlatform } from '../../protocol/platform.js';
import type { ReasonCode } from '../../protocol/reason-codes.js';
import type { Clock } from '../../shared/clock.js';
import { errorMessage } from '../../shared/errors.js';
import { enroll } from '../runtime/identity.js';
import type { Logger } from '../../shared/logger.js';
import { sleep as defaultSleep, type Sleep } from '../runtime/backoff.js';
import { childRunInvocation, type SuperviseConfig } from '../config.js';
import { openServerLink, type ServerLink } from '../runtime/server-link.js';
import { askChildToStop } from './child-stop.js';
import { noteRunEnded, NO_CRASHES, type CrashLoopState } from './crash-loop.js';
import { decideAfterExit, decideAfterWatch, decideRound, decideSwitch, type PendingWatch } from './decisions.js';
import { childExited, HEALTHY_RUN_RESET_MS, watchHealth, type ChildExit } from './health.js';
import { failureReasonOf } from '../install/failure-reason.js';
import { installLayout } from '../install/install-layout.js';
import { describeVersionStatus, inspectVersion, readPointerOrNull, recoverInstallRoot, rollbackToPrevious, switchCurrent } from '../install/installer.js';
import { pruneVersions } from '../install/pruning.js';
import { serveMetrics, WorkerMetrics, type MetricsServer } from '../telemetry/metrics.js';
import { EXIT_CODES } from '../runtime/policy.js';
import { readPointer, writePointer } from '../install/pointer.js';
import { acceptsFromState } from '../runtime/server-accepts.js';
import { loadState, updateState } from '../install/state.js';
import { isUpdateEventMessage, UpdateTelemetry } from '../telemetry/telemetry.js';
import { buildInfo } from '../build-info.js';
import { WindowsServiceUpdater } from './windows-service.js';

export interface SupervisorDependencies {
  log: Logger;
  clock: Clock;
  random?: () => number;
  sleep?: Sleep;
  /** Where the child's output passes through to (the supervisor's own stdout and stderr). */
  stdout: Writable;
  stderr: Writable;
  signals?: NodeJS.EventEmitter;
  env?: NodeJS.ProcessEnv;
}

interface RunningChild {
  process: ChildProcess;
  version: string;
  startedAtMs: number;
  exited: Promise<ChildExit>;
  /** The attempt log while a health watch runs; null otherwise. */
  attemptLogPath: string | null;
  /** Stop copying output to the attempt log, and delete it (success) or keep it (failure). */
  endAttemptLog(keep: boolean): Promise<void>;
}

/** File-name-safe timestamp for logs/<version>-<timestamp>.log. */
function fileTimestamp(at: Date): string {
  return at.toISOString().replace(/[:.]/g, '-');
}

/**
 * `bytebiota-worker supervise`: the production entry point. It runs `versions/<current>/…`
 * (never itself, so it keeps working after `current` changes), switches into a staged version
 * when the worker exits 75, watches the new version's health, and rolls back. Every step that
 * must survive a kill -9 is recorded in state.json before it is taken.
 */
export async function supervise(config: SuperviseConfig, deps: SupervisorDependencies): Promise<number> {
  const { clock } = deps;
  const random = deps.random ?? Math.random;
  const wait = deps.sleep ?? defaultSleep;
  const signals = deps.signals ?? process;
  const layout = installLayout(config.installRoot);
  await recoverInstallRoot(layout, { log: deps.log });
  // Created here, before any child runs, so that two processes never race to make the id.
  const initialState = await loadState(layout, randomUUID);
  const workerId = config.workerId ?? initialState.worker_id;
  const platform = currentPlatform();
  const log = deps.log.child({ worker_id: workerId, role: 'supervisor' });
  const healthWindowMs = Math.round(config.healthWindowS * 1000);
  const stopTimeoutMs = Math.round(config.stopTimeoutS * 1000);
  const stopAll = new AbortController();
  // Bounded disk: also at start, to retry what the last prune could not remove.
  await pruneVersions(layout, { keepVersions: config.keepVersions }, { log, signal: stopAll.signal });
  const service =
    config.windowsService === null
      ? null
      : new WindowsServiceUpdater({ serviceName: config.windowsService, layout, ownVersion: buildInfo().version, log, now: () => clock.now() });
  // Before any child runs: a supervisor of another version than the proven one (the launcher) hands over to it first.
  if (service !== null && (await service.atStart(await readPointerOrNull(layout, 'launcher')))) return EXIT_CODES.restartIntoLauncher;

  const metrics = new WorkerMetrics();
  let metricsServer: MetricsServer | null = null;
  if (config.metricsPort !== null) {
    metricsServer = await serveMetrics(metrics, config.metricsPort, config.metricsHost);
    log.info({ event: 'worker_metrics_listening', url: metricsServer.url }, 'serving metrics');
  }
  let link: ServerLink | null = null;
  if (config.serverUrl !== null) {
    const serverUrl = config.serverUrl;
    link = await openServerLink({
      serverUrl,
      token: config.token,
      caFile: config.caFile,
      layout,
      // The supervisor never registers: what the server accepts is what it last told `run`.
      accepts: async () => acceptsFromState(await loadState(layout, randomUUID), serverUrl),
      log,
      clock,
      random,
      ...(deps.sleep ? { sleep: deps.sleep } : {}),
    });
  }
  // Enrolled here, before any child runs, so the child starts with the credential. The supervisor
  // never rotates: it reads credential.json before each request, and `run` owns rotation.
  if (link !== null && config.serverUrl !== null && config.enrollmentToken !== null) {
    const identity = { client: link.client, layout, serverUrl: config.serverUrl, workerId, log };
    await enroll(identity, { enrollmentToken: config.enrollmentToken, platform, channel: config.channel, replace: false }).catch((err: unknown) => {
      const serverCode = (err as { serverCode?: string | null }).serverCode ?? null;
      log.error(
        { event: 'worker_enroll_failed', code: (err as { code?: string }).code, server_code: serverCode, error: errorMessage(err) },
        `enrollment failed${serverCode ? ` (${serverCode})` : ''}; the worker will try again when it starts`,
      );
    });
  }
  const telemetry = new UpdateTelemetry({ log, workerId, platform, metrics, queue: link?.queue ?? null });

  let stopping = false;
  let child: RunningChild | null = null;
  let killTimer: NodeJS.Timeout | null = null;

  function stopChild(target: RunningChild): Promise<ChildExit> {
    askChildToStop(target.process);
    const timer = setTimeout(() => target.process.kill('SIGKILL'), stopTimeoutMs);
    return target.exited.finally(() => clearTimeout(timer));
  }

  const onStopSignal = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'worker_supervisor_stopping', signal }, 'stopping: asking the worker to stop after its current unit');
    stopAll.abort();
    if (child) {
      askChildToStop(child.process);
      killTimer = setTimeout(() => child?.process.kill('SIGKILL'), stopTimeoutMs);
    }
  };
  const onSigterm = (): void => onStopSignal('SIGTERM');
  const onSigint = (): void => onStopSignal('SIGINT');
  signals.on('SIGTERM', onSigterm);
  signals.on('SIGINT', onSigint);

  async function startChild(version: string, options: { forceUpdate: boolean; watched: boolean }): Promise<RunningChild> {
    const { args, env } = childRunInvocation(config, { forceUpdate: options.forceUpdate, baseEnv: deps.env ?? process.env });
    let attemptLog: WriteStream | null = null;
    let attemptLogPath: string | null = null;
    if (options.watched) {
      await mkdir(layout.logsDir, { recursive: true });
      attemptLogPath = join(layout.logsDir, `${version}-${fileTimestamp(clock.now())}.log`);
      attemptLog = createWriteStream(attemptLogPath, { flags: 'a' });
    }
    const proc = spawn(layout.executablePath(version), args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env });
    const exited = childExited(proc);
    proc.stdout?.on('data', (chunk: Buffer) => {
      deps.stdout.write(chunk);
      attemptLog?.write(chunk);
    });
    proc.stderr?.on('data', (chunk: Buffer) => {
      deps.stderr.write(chunk);
      attemptLog?.write(chunk);
    });
    proc.on('message', (message: unknown) => {
      if (isUpdateEventMessage(message)) metrics.recordUpdateEvent(message.event, message.reason);
    });
    metrics.setCurrentVersion(version);
    log.info({ event: 'worker_child_started', pid: proc.pid, child_version: version, watched: options.watched }, 'worker started');
    return {
      process: proc,
      version,
      startedAtMs: clock.now().getTime(),
      exited,
      attemptLogPath,
      async endAttemptLog(keep) {
        const stream = attemptLog;
        attemptLog = null;
        if (!stream) return;
        await new Promise<void>((resolve) => stream.end(resolve));
        if (!keep && attemptLogPath) await rm(attemptLogPath, { force: true });
      },
    };
  }

  /** Restart protocol step 2, first half: exit 75 means "switch me into the staged version". */
  async function switchToStaged(requestedWithForce: boolean): Promise<void> {
    const state = await loadState(layout, randomUUID);
    const pending = state.pending_switch;
    if (!pending) {
      log.warn({ event: 'worker_restart_without_staged_version' }, 'the worker asked for a restart but nothing is staged');
      return;
    }
    const reportFailure = (reason: ReasonCode): Promise<void> =>
      telemetry.record({
        event: 'failure',
        correlationId: pending.correlation_id,
        fromVersion: pending.from_version,
        toVersion: pending.to_version,
        channel: pending.channel,
        reason,
        ...(pending.serial !== undefined ? { serial: pending.serial } : {}),
      });
    const reject = async (reason: ReasonCode, message: string): Promise<void> => {
      await updateState(layout, (s) => {
        delete s.pending_switch;
        // The release was never installed: the next check must fetch its manifest again, not get a 304.
        if (s.manifest_etags?.[pending.channel] !== undefined) {
          const { [pending.channel]: _forgotten, ...others } = s.manifest_etags;
          s.manifest_etags = others;
        }
      });
      log.error({ event: 'worker_update_switch_refused', correlation_id: pending.correlation_id, to_version: pending.to_version, detail: message }, message);
      await reportFailure(reason);
    };
    const staged = await inspectVersion(layout, pending.to_version);
    const decision = decideSwitch({
      pendingSwitch: pending,
      rolledBack: state.rolled_back[pending.to_version] !== undefined,
      requestedWithForce,
      stagedProblem: staged.kind === 'complete' ? null : describeVersionStatus(pending.to_version, staged),
    });
    if (decision.kind === 'refuse') {
      await reject(decision.reason, decision.message);
      return;
    }
    // The watch is recorded before `current` changes: a crash right after the switch is then
    // resumed as a watch; a crash before it finds current == from_version and just clears it.
    const watch: PendingWatch = { ...pending, started_at: clock.now().toISOString() };
    await updateState(layout, (s) => {
      s.pending_watch = watch;
      delete s.pending_switch;
    });
    try {
      await switchCurrent(layout, pending.to_version);
    } catch (err) {
      await updateState(layout, (s) => {
        delete s.pending_watch;
      });
      const reason = failureReasonOf(err);
      log.error({ event: 'worker_update_switch_failed', correlation_id: pending.correlation_id, to_version: pending.to_version, reason, error: errorMessage(err) }, 'the switch failed; the old version stays current');
      await reportFailure(reason);
      return;
    }
    log.info({ event: 'worker_update_switched', correlation_id: pending.correlation_id, from_version: pending.from_version, to_version: pending.to_version }, 'switched current; watching the new version');
  }

  /** The new version failed its watch: current := previous, remember the version, report. */
  async function rollBack(watch: PendingWatch, reason: ReasonCode, attemptLogPath: string | null): Promise<boolean> {
    const durationMs = clock.now().getTime() - Date.parse(watch.started_at);
    let rolledBack = true;
    try {
      await rollbackToPrevious(layout);
    } catch (err) {
      rolledBack = false;
      log.error({ event: 'worker_rollback_error', correlation_id: watch.correlation_id, error: errorMessage(err) }, 'rollback failed');
    }
    await updateState(layout, (s) => {
      s.rolled_back[watch.to_version] = { reason, at: clock.now().toISOString() };
      delete s.pending_watch;
    });
    const common = {
      correlationId: watch.correlation_id,
      fromVersion: watch.from_version,
      toVersion: watch.to_version,
      channel: watch.channel,
      ...(watch.serial !== undefined ? { serial: watch.serial } : {}),
    };
    if (rolledBack) {
      await telemetry.record({ event: 'rollback', ...common, reason, ...(Number.isFinite(durationMs) ? { durationMs } : {}) });
    } else {
      await telemetry.record({ event: 'failure', ...common, reason: 'rollback_failed' });
    }
    if (attemptLogPath) log.info({ event: 'worker_attempt_log_kept', path: attemptLogPath, to_version: watch.to_version }, 'output of the failed attempt kept');
    return rolledBack;
  }


  /**
   * A proven version keeps crashing (crash-loop.ts): report it once, as a failure with reason
   * crash_loop, naming the serial it was installed from when known. No rollback here: the
   * server halts the rollout on it, and the operator's signed rollback release brings the worker
   * back at its first update check after a start.
   */
  async function reportCrashLoop(version: string, shortCrashes: number, lastRunMs: number, restartInMs: number): Promise<void> {
    const state = await loadState(layout, randomUUID);
    const serial = state.proven?.version === version ? state.proven.serial : undefined;
    const fromVersion = (await readPointerOrNull(layout, 'previous')) ?? version;
    log.error(
      {
        event: 'worker_crash_loop',
        child_version: version,
        from_version: fromVersion,
        crashes: shortCrashes,
        each_run_under_ms: HEALTHY_RUN_RESET_MS,
        last_run_ms: lastRunMs,
        restart_in_ms: restartInMs,
        ...(serial !== undefined ? { serial } : {}),
      },
      `version ${version} passed its health watch and has crashed ${shortCrashes} times in a row; reporting crash_loop and restarting it`,
    );
    await telemetry.record({
      event: 'failure',
      correlationId: randomUUID(),
      fromVersion,
      toVersion: version,
      channel: config.channel,
      reason: 'crash_loop',
      ...(serial !== undefined ? { serial } : {}),
    });
  }

  /** The new version said ready in time: from now on it is what the service manager starts. */
  async function proveVersion(watch: PendingWatch, running: RunningChild): Promise<void> {
    await writePointer(layout, 'launcher', watch.to_version);
    await updateState(layout, (s) => {
      delete s.pending_watch;
      // Remembered for a crash_loop report, should the proven version keep crashing later.
      if (watch.serial !== undefined) s.proven = { version: watch.to_version, serial: watch.serial };
      else delete s.proven;
    });
    await running.endAttemptLog(false);
    const durationMs = clock.now().getTime() - Date.parse(watch.started_at);
    await telemetry.record({
      event: 'success',
      correlationId: watch.correlation_id,
      fromVersion: watch.from_version,
      toVersion: watch.to_version,
      channel: watch.channel,
      ...(Number.isFinite(durationMs) ? { durationMs } : {}),
      ...(watch.serial !== undefined ? { serial: watch.serial } : {}),
      ...(watch.download !== undefined ? { download: watch.download } : {}),
    });
    // Bounded disk: the versions no pointer names go, now that the new one is proven.
    await pruneVersions(layout, { keepVersions: config.keepVersions }, { log, signal: stopAll.signal });
  }

  let forceUpdateNext = config.forceUpdate;
  let crashes = 0;
  let crashLoop: CrashLoopState = NO_CRASHES;
  let firstRound = true;
  let exitCode: number = EXIT_CODES.ok;
  try {
    while (!stopping) {
      const state = await loadState(layout, randomUUID);
      const round = decideRound({
        firstRound,
        current: await readPointer(layout, 'current'),
        // Unreadable counts as none here: it must not stop a watch or a recorded switch.
        launcher: await readPointerOrNull(layout, 'launcher'),
        pendingSwitch: state.pending_switch ?? null,
        pendingWatch: state.pending_watch ?? null,
      });
      firstRound = false;
      if (round.kind === 'not_installed') {
        log.error({ event: 'worker_not_installed', install_root: layout.root }, 'no current version: run `bytebiota-worker install --install-root DIR` first');
        exitCode = EXIT_CODES.usage;
        break;
      }
      if (round.kind === 'carry_out_switch') {
        await switchToStaged(false);
        continue;
      }
      if (round.kind === 'redo_switch') {
        const { watch } = round;
        log.warn({ event: 'worker_update_switch_not_done', correlation_id: watch.correlation_id, to_version: watch.to_version }, 'the recorded switch never happened; carrying it out now');
        const { started_at: _startedAt, ...pending } = watch;
        await updateState(layout, (s) => {
          delete s.pending_watch;
          s.pending_switch = pending;
        });
        // Refused, the ETag is forgotten so that the next check fetches the release again.
        await switchToStaged(false);
        continue;
      }
      const { watch } = round;
      if (round.adoptLauncher) await writePointer(layout, 'launcher', round.version);
      if (watch) {
        log.info({ event: 'worker_update_watch', correlation_id: watch.correlation_id, to_version: watch.to_version, health_window_ms: healthWindowMs }, 'watching the new version');
      }

      // A stop signal may have come during the awaits above, when there was no child to forward it to.
      if (stopping) break;
      const requestedWithForce = forceUpdateNext;
      const running = await startChild(round.version, { forceUpdate: forceUpdateNext, watched: watch !== null });
      forceUpdateNext = false;
      child = running;
      // Or while the child was being started: it must get the SIGTERM the others got.
      if (stopping) void stopChild(running);

      if (watch) {
        const verdict = decideAfterWatch(await watchHealth(running.process, running.exited, healthWindowMs), stopping);
        if (verdict.kind === 'proven') {
          await proveVersion(watch, running);
          crashes = 0;
          if (service !== null && (await service.moveTo(watch.to_version))) {
            // The worker finishes its unit first; the service then starts the new supervisor, which starts it again.
            await stopChild(running);
            child = null;
            exitCode = EXIT_CODES.restartIntoLauncher;
            break;
          }
        } else if (verdict.kind === 'stopped_mid_watch') {
          await running.exited;
          await running.endAttemptLog(true);
          break;
        } else {
          if (verdict.stopChildFirst) {
            log.warn({ event: 'worker_health_timeout', to_version: watch.to_version, health_window_ms: healthWindowMs }, 'no ready within the health window; stopping it');
            await stopChild(running);
          }
          await running.endAttemptLog(true);
          await rollBack(watch, verdict.reason, running.attemptLogPath);
          child = null;
          continue;
        }
      }

      const exit = await running.exited;
      child = null;
      if (stopping) break;
      const ranMs = clock.now().getTime() - running.startedAtMs;
      const next = decideAfterExit({ exit, ranMs, crashes });
      if (next.kind === 'switch_to_staged') {
        crashLoop = noteRunEnded(crashLoop, { version: running.version, ranMs, crashed: false, proven: false }).state;
        await switchToStaged(requestedWithForce);
        continue;
      }
      if (next.kind === 'stop') {
        // The configuration is wrong, or the server's minimum version needs an operator
        // (docs/runbooks/worker-force-update.md). Pass the reason on.
        log.error({ event: 'worker_child_fatal', exit_code: next.exitCode, child_version: running.version }, 'the worker cannot run; the supervisor stops');
        exitCode = next.exitCode;
        break;
      }
      crashes = next.crashes;
      log.error(
        { event: 'worker_child_exited', exit_code: exit.code, signal: exit.signal, spawn_error: exit.error?.message, child_version: running.version, restart_in_ms: next.delayMs },
        'the worker exited; restarting it',
      );
      // Proven: it passed its health watch (the launcher names it) and no new watch is pending.
      const proven = next.crashed && (await readPointerOrNull(layout, 'launcher')) === running.version && (await loadState(layout, randomUUID)).pending_watch === undefined;
      const noted = noteRunEnded(crashLoop, { version: running.version, ranMs, crashed: next.crashed, proven });
      crashLoop = noted.state;
      if (noted.report) await reportCrashLoop(running.version, crashLoop.shortCrashes, ranMs, next.delayMs);
      await wait(next.delayMs, stopAll.signal);
    }
  } finally {
    if (killTimer) clearTimeout(killTimer);
    signals.off('SIGTERM', onSigterm);
    signals.off('SIGINT', onSigint);
    stopAll.abort();
    await metricsServer?.close();
    await link?.close();
  }
  log.info({ event: 'worker_supervisor_stopped', exit_code: exitCode }, 'supervisor stopped');
  return exitCode;
}

