import type { ChildProcess } from 'node:child_process';
import { STOP_MESSAGE } from '../runtime/stop-request.js';

/** How the stop request reached the child: for the log. */
export type StopRequestPath = 'ipc' | 'signal';

/**
 * Ask a worker child to stop after its current unit. Linux and macOS: SIGTERM, which the worker
 * handles. Windows: a SIGTERM there is TerminateProcess (the worker's handler never runs), so
 * the request goes as an IPC 'stop' message (stop-request.ts); only when the channel is already
 * gone does it fall back to the signal, as nothing else could reach the child. Either way the
 * caller's stop timeout still ends in SIGKILL.
 */
export function askChildToStop(child: ChildProcess, platform: NodeJS.Platform = process.platform): StopRequestPath {
  if (platform === 'win32' && child.connected) {
    // A channel that closes meanwhile reports it here rather than as an 'error' event; the
    // child is then exiting anyway, and the stop timeout covers the rest.
    child.send(STOP_MESSAGE, () => undefined);
    return 'ipc';
  }
  child.kill('SIGTERM');
  return 'signal';
}
