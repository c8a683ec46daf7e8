/**
 * The supervisor's "stop after the current unit" over the IPC channel. On Windows a child gets
 * no SIGTERM it could handle: `child.kill('SIGTERM')` there terminates the process at once, so
 * the unit in progress would be cut in half. The supervisor sends this message instead, and the
 * worker takes it exactly as it takes SIGTERM on Linux and macOS.
 */
export interface StopMessage {
  type: 'stop';
}

export const STOP_MESSAGE: StopMessage = { type: 'stop' };

export function isStopMessage(message: unknown): message is StopMessage {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'stop';
}
