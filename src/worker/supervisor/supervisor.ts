import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { currentPlatform } from '../../protocol/platform.js';
import { UpdateError, type ReasonCode } from '../../protocol/reason-codes.js';
import type { Clock } from '../../shared/clock.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { fullJitterBackoff, sleep as defaultSleep, type Sleep } from '../runtime/backoff.js';
import { childRunInvocation, type SuperviseConfig } from '../config.js';
import { ServerClient } from '../runtime/connection.js';
import { noteRunEnded, NO_CRASHES, type CrashLoopState } from './crash-loop.js';
import { childExited, crashBackoffMs, HEALTHY_RUN_RESET_MS, watchHealth, type ChildExit } from './health.js';
import { createDispatcher } from '../runtime/http.js';
import { installLayout } from '../install/install-layout.js';
import { isCompleteVersion, recoverInstallRoot, rollbackToPrevious, switchCurrent } from '../install/installer.js';
import { serveMetrics, WorkerMetrics, type MetricsServer } from '../telemetry/metrics.js';
import { EXIT_CODES } from '../runtime/policy.js';
import { PointerError, readPointer, writePointer, type PointerName } from '../install/pointer.js';
import { ReportQueue } from '../telemetry/report-queue.js';
import { acceptsFromState, adaptedReportSender } from '../runtime/server-accepts.js';
import { loadState, updateState, type WorkerStateFile } from '../install/state.js';
import { isUpdateEventMessage, UpdateTelemetry } from '../telemetry/telemetry.js';

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

type PendingWatch = NonNullable<WorkerStateFile['pending_watch']>;

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
  await recoverInstallRoot(layout);
  // Created here, before any child runs, so that two processes never race to make the id.
  const initialState = await loadState(layout, randomUUID);
  const workerId = config.workerId ?? initialState.worker_id;
  const platform = currentPlatform();
  const log = deps.log.child({ worker_id: workerId, role: 'supervisor' });
  const healthWindowMs = Math.round(config.healthWindowS * 1000);
  const stopTimeoutMs = Math.round(config.stopTimeoutS * 1000);
  const stopAll = new AbortController();
  const background: Promise<unknown>[] = [];

  const metrics = new WorkerMetrics();
  let metricsServer: MetricsServer | null = null;
  if (config.metricsPort !== null) {
    metricsServer = await serveMetrics(metrics, config.metricsPort, config.metricsHost);
    log.info({ event: 'worker_metrics_listening', url: metricsServer.url }, 'serving metrics');
  }
  let queue: ReportQueue | null = null;
  const dispatcher = config.serverUrl !== null ? await createDispatcher(config.caFile !== null ? { caFile: config.caFile } : {}) : null;
  if (dispatcher && config.serverUrl !== null && config.token !== null) {
    const serverUrl = config.serverUrl;
    const client = new ServerClient({ serverUrl, token: config.token, dispatcher, clock });
    queue = new ReportQueue({
      dir: layout.reportsDir,
      // The supervisor never registers: what the server accepts is what it last told `run`.
      send: adaptedReportSender({
        post: (report, correlationId) => client.postReport(report, correlationId),
        accepts: async () => acceptsFromState(await loadState(layout, randomUUID), serverUrl),
        log,
      }),
      backoff: fullJitterBackoff({ baseDelayMs: 1000, maxDelayMs: 300_000, random }),
      log,
      clock,
      ...(deps.sleep ? { sleep: deps.sleep } : {}),
    });
    background.push(queue.runSender(stopAll.signal));
  }
  const telemetry = new UpdateTelemetry({ log, workerId, platform, metrics, queue });

  let stopping = false;
  let child: RunningChild | null = null;
  let killTimer: NodeJS.Timeout | null = null;

  function stopChild(target: RunningChild): Promise<ChildExit> {
    target.process.kill('SIGTERM');
    const timer = setTimeout(() => target.process.kill('SIGKILL'), stopTimeoutMs);
    return target.exited.finally(() => clearTimeout(timer));
  }

  const onStopSignal = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'worker_supervisor_stopping', signal }, 'stopping: forwarding SIGTERM to the worker');
    stopAll.abort();
    if (child) {
      child.process.kill('SIGTERM');
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
    // Defence in depth: a version rolled back here is not tried again unless forced.
    if (state.rolled_back[pending.to_version] && !requestedWithForce) {
      await reject('install_failed', `version ${pending.to_version} was rolled back on this worker; not switching to it without --force-update`);
      return;
    }
    if (!(await isCompleteVersion(layout, pending.to_version))) {
      await reject('install_failed', `staged version ${pending.to_version} is not complete; not switching`);
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
      await reportFailure(err instanceof UpdateError ? err.code : 'install_failed');
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

  /** A pointer that cannot be read names no version. */
  async function pointerOrNull(which: PointerName): Promise<string | null> {
    try {
      return await readPointer(layout, which);
    } catch (err) {
      if (err instanceof PointerError) return null;
      throw err;
    }
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
    const fromVersion = (await pointerOrNull('previous')) ?? version;
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

  let forceUpdateNext = config.forceUpdate;
  let crashes = 0;
  let crashLoop: CrashLoopState = NO_CRASHES;
  let firstRound = true;
  let exitCode: number = EXIT_CODES.ok;
  try {
    while (!stopping) {
      let state = await loadState(layout, randomUUID);
      // A switch recorded but not carried out before the supervisor stopped is carried out now.
      if (firstRound && state.pending_switch && !state.pending_watch) {
        await switchToStaged(false);
        state = await loadState(layout, randomUUID);
      }
      firstRound = false;
      const current = await readPointer(layout, 'current');
      if (current === null) {
        log.error({ event: 'worker_not_installed', install_root: layout.root }, 'no current version: run `bytebiota-worker install --install-root DIR` first');
        exitCode = EXIT_CODES.usage;
        break;
      }
      const watch = state.pending_watch ?? null;
      if (!watch && (await readPointer(layout, 'launcher')) === null) {
        // An install root from before the launcher pointer: current, not under watch, is proven.
        await writePointer(layout, 'launcher', current);
      }
      if (watch && watch.to_version !== current) {
        // The supervisor stopped after recording the watch but before the switch: nothing changed
        // yet, and the staged version is still wanted. Dropping it would leave this worker on the
        // old version for good: its remembered ETag says the release was handled, so its checks
        // get 304. So the switch is recorded again and carried out now (or refused, and then the
        // ETag is forgotten: see switchToStaged).
        log.warn({ event: 'worker_update_switch_not_done', correlation_id: watch.correlation_id, to_version: watch.to_version, current }, 'the recorded switch never happened; carrying it out now');
        const { started_at: _startedAt, ...pending } = watch;
        await updateState(layout, (s) => {
          delete s.pending_watch;
          s.pending_switch = pending;
        });
        await switchToStaged(false);
        continue;
      } else if (watch) {
        log.info({ event: 'worker_update_watch', correlation_id: watch.correlation_id, to_version: watch.to_version, health_window_ms: healthWindowMs }, 'watching the new version');
      }

      // A stop signal may have come during the awaits above, when there was no child to forward it to.
      if (stopping) break;
      const requestedWithForce = forceUpdateNext;
      const running = await startChild(current, { forceUpdate: forceUpdateNext, watched: watch !== null });
      forceUpdateNext = false;
      child = running;
      // Or while the child was being started: it must get the SIGTERM the others got.
      if (stopping) void stopChild(running);

      if (watch) {
        const outcome = await watchHealth(running.process, running.exited, healthWindowMs);
        if (outcome.kind === 'ready') {
          // The version proved itself: from now on it is what the service manager starts.
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
          });
          crashes = 0;
        } else if (stopping) {
          // Stopped by the operator mid-watch: not the version's fault. The watch stays recorded
          // and resumes, with a fresh window, when the supervisor starts again.
          await running.exited;
          await running.endAttemptLog(true);
          break;
        } else {
          if (outcome.kind === 'timeout') {
            log.warn({ event: 'worker_health_timeout', to_version: watch.to_version, health_window_ms: healthWindowMs }, 'no ready within the health window; stopping it');
            await stopChild(running);
          }
          await running.endAttemptLog(true);
          await rollBack(watch, outcome.kind === 'timeout' ? 'health_check_failed' : 'crashed_on_start', running.attemptLogPath);
          child = null;
          continue;
        }
      }

      const exit = await running.exited;
      child = null;
      if (stopping) break;
      const ranMs = clock.now().getTime() - running.startedAtMs;
      if (exit.code === EXIT_CODES.restartIntoStaged) {
        crashLoop = noteRunEnded(crashLoop, { version: running.version, ranMs, crashed: false, proven: false }).state;
        await switchToStaged(requestedWithForce);
        continue;
      }
      if (exit.code === EXIT_CODES.usage || exit.code === EXIT_CODES.refusedToStart) {
        // Restarting cannot help: the configuration is wrong, or the server's minimum version
        // needs an operator (docs/runbooks/worker-force-update.md). Pass the reason on.
        log.error({ event: 'worker_child_fatal', exit_code: exit.code, child_version: running.version }, 'the worker cannot run; the supervisor stops');
        exitCode = exit.code;
        break;
      }
      // Crash loop protection: 1 s doubling to 5 min; a long healthy run starts over.
      if (ranMs >= HEALTHY_RUN_RESET_MS) crashes = 0;
      const delayMs = crashBackoffMs(crashes);
      crashes += 1;
      log.error(
        { event: 'worker_child_exited', exit_code: exit.code, signal: exit.signal, spawn_error: exit.error?.message, child_version: running.version, restart_in_ms: delayMs },
        'the worker exited; restarting it',
      );
      const crashed = exit.error === undefined && exit.code !== 0;
      // Proven: it passed its health watch (the launcher names it) and no new watch is pending.
      const proven = crashed && (await pointerOrNull('launcher')) === running.version && (await loadState(layout, randomUUID)).pending_watch === undefined;
      const noted = noteRunEnded(crashLoop, { version: running.version, ranMs, crashed, proven });
      crashLoop = noted.state;
      if (noted.report) await reportCrashLoop(running.version, crashLoop.shortCrashes, ranMs, delayMs);
      await wait(delayMs, stopAll.signal);
    }
  } finally {
    if (killTimer) clearTimeout(killTimer);
    signals.off('SIGTERM', onSigterm);
    signals.off('SIGINT', onSigint);
    stopAll.abort();
    await Promise.allSettled(background);
    await metricsServer?.close();
    await dispatcher?.close().catch(() => undefined);
  }
  log.info({ event: 'worker_supervisor_stopped', exit_code: exitCode }, 'supervisor stopped');
  return exitCode;
}

