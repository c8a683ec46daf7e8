import { randomUUID } from 'node:crypto';
import { currentPlatform } from '../../protocol/platform.js';
import type { Clock } from '../../shared/clock.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { RunConfig } from '../config.js';
import { installLayout } from '../install/install-layout.js';
import { loadState } from '../install/state.js';
import { ServerClient } from './connection.js';
import { createDispatcher } from './http.js';
import { enroll } from './identity.js';

/**
 * `bytebiota-worker enroll`: spend an enrollment token for this worker's credential, for the
 * worker id in state.json (created when new, as `run` would), and store it. Resolves to the exit
 * code: 0 enrolled, 1 refused or failed (the server's code in the log line's `server_code`).
 */
export async function enrollCommand(config: RunConfig, deps: { log: Logger; clock: Clock }): Promise<number> {
  if (config.serverUrl === null || config.enrollmentToken === null) return 2;
  const layout = installLayout(config.installRoot);
  const state = await loadState(layout, randomUUID);
  const workerId = config.workerId ?? state.worker_id;
  const log = deps.log.child({ worker_id: workerId });
  const dispatcher = await createDispatcher(config.caFile !== null ? { caFile: config.caFile } : {});
  try {
    // Enrollment sends no bearer: the enrollment token is in the body.
    const client = new ServerClient({ serverUrl: config.serverUrl, token: () => null, dispatcher, clock: deps.clock });
    await enroll(
      { client, layout, serverUrl: config.serverUrl, workerId, log },
      { enrollmentToken: config.enrollmentToken, platform: currentPlatform(), channel: config.channel, replace: true },
    );
    return 0;
  } catch (err) {
    const serverCode = (err as { serverCode?: string | null }).serverCode ?? null;
    log.error(
      { event: 'worker_enroll_failed', code: (err as { code?: string }).code, server_code: serverCode, error: errorMessage(err) },
      `enrollment failed${serverCode ? `: ${serverCode}` : ''}`,
    );
    return 1;
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
}
