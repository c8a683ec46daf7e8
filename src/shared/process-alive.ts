import { isErrnoCode } from './errors.js';

/** `process.kill`'s shape; injectable so that tests can produce EPERM as any user. */
export type SendSignal = (pid: number, signal: 0) => void;

/**
 * Whether a process with this id exists. Signal 0 checks without signalling; EPERM means the
 * process exists but belongs to another user, so it is alive too.
 */
export function isProcessAlive(pid: number, sendSignal: SendSignal = (target, signal) => process.kill(target, signal)): boolean {
  try {
    sendSignal(pid, 0);
    return true;
  } catch (err) {
    return isErrnoCode(err, 'EPERM');
  }
}
