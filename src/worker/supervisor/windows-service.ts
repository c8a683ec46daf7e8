import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeFileAtomic } from '../../shared/atomic-file.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { InstallLayout } from '../install/install-layout.js';
import { describeVersionStatus, inspectVersion } from '../install/installer.js';

const run = promisify(execFile);

/** reg.exe answers in well under a second; this only bounds a hang. */
const REG_TIMEOUT_MS = 30_000;

/**
 * Where NSSM keeps a service's settings. NSSM reads `Application` afresh at every start of the
 * program, its own restarts included, so changing it is how the service is pointed at another
 * executable without stopping the service from inside.
 */
function parametersKey(serviceName: string): string {
  return `HKLM\\SYSTEM\\CurrentControlSet\\Services\\${serviceName}\\Parameters`;
}

/** The executable the service starts, or null when the service has no NSSM `Application` value. */
export async function readServiceApplication(serviceName: string): Promise<string | null> {
  try {
    const { stdout } = await run('reg.exe', ['query', parametersKey(serviceName), '/v', 'Application'], { windowsHide: true, timeout: REG_TIMEOUT_MS });
    const match = /^\s*Application\s+REG_(?:EXPAND_)?SZ\s+(.+?)\s*$/m.exec(stdout);
    return match?.[1] ?? null;
  } catch {
    // reg.exe exits 1 for a missing key or value.
    return null;
  }
}

async function setServiceApplication(serviceName: string, executable: string): Promise<void> {
  await run('reg.exe', ['add', parametersKey(serviceName), '/v', 'Application', '/t', 'REG_EXPAND_SZ', '/d', executable, '/f'], {
    windowsHide: true,
    timeout: REG_TIMEOUT_MS,
  });
}

/** Written before the supervisor exits to be restarted into `to_version`; removed once that version runs. */
interface RestartMark {
  to_version: string;
  from_version: string;
  at: string;
}

function sameWindowsPath(a: string, b: string): boolean {
  return a.replaceAll('/', '\\').toLowerCase() === b.replaceAll('/', '\\').toLowerCase();
}

export interface WindowsServiceOptions {
  serviceName: string;
  layout: InstallLayout;
  /** The version of the running supervisor (its build metadata). */
  ownVersion: string;
  log: Logger;
  now: () => Date;
}

/**
 * The supervisor's own updates on Windows (docs/runbooks/worker-service.md, "Windows"). On Linux
 * the service starts `launcher/bytebiota-worker`, a symlink that moves to each proven version.
 * On Windows `launcher` is a pointer file, so the service (NSSM) starts
 * `versions\<version>\bytebiota-worker.exe` by its full path. Once a version is proven, the
 * supervisor points the service at that version's executable and exits 75, which the service
 * restarts on: without this, a fix to the supervisor would never reach a machine that is not
 * restarted, and a service still naming a pruned version would not start at all.
 *
 * A running executable can be renamed but not deleted, so the old version stays until the next
 * prune after the restart. A restart that did not bring the new version up (the service is not
 * an NSSM service, or another program holds its settings) is noticed by the mark left behind,
 * and the supervisor carries on as it is rather than restart forever.
 */
export class WindowsServiceUpdater {
  private readonly markPath: string;

  constructor(private readonly options: WindowsServiceOptions) {
    this.markPath = join(options.layout.root, 'service-restart.json');
  }

  /**
   * At start: clear the mark of a restart that worked, and check the service starts this
   * supervisor. True when the supervisor should exit 75 at once to be restarted into `launcher`
   * (it ran before the service was pointed at the proven version, say after a crash in between).
   */
  async atStart(launcher: string | null): Promise<boolean> {
    const { ownVersion, log, serviceName } = this.options;
    const mark = await this.readMark();
    if (mark !== null && mark.to_version === ownVersion) {
      await rm(this.markPath, { force: true });
      log.info({ event: 'worker_supervisor_updated', service: serviceName, from_version: mark.from_version, version: ownVersion }, `the service now runs the ${ownVersion} supervisor`);
    } else if (mark !== null && launcher === ownVersion) {
      // The service runs the launcher's version (an operator moved both back, say): a mark left
      // by an earlier restart that did not take is stale, and must not block the next one.
      await rm(this.markPath, { force: true });
    }
    const application = await readServiceApplication(serviceName);
    if (application === null) {
      log.error(
        { event: 'worker_service_not_found', service: serviceName },
        `no NSSM service ${serviceName} with an Application value: the supervisor cannot move the service to newer versions (docs/runbooks/worker-service.md)`,
      );
      return false;
    }
    if (launcher === null || launcher === ownVersion) return false;
    return this.moveTo(launcher);
  }

  /**
   * `version` was just proven (the launcher names it). True when the service now starts its
   * executable and the supervisor should stop its worker and exit 75.
   */
  async moveTo(version: string): Promise<boolean> {
    const { layout, log, ownVersion, serviceName } = this.options;
    const executable = layout.executablePath(version);
    if (version === ownVersion) return false;
    const mark = await this.readMark();
    if (mark !== null && mark.to_version === version) {
      log.error(
        { event: 'worker_service_not_updated', service: serviceName, version: ownVersion, to_version: version, restarted_at: mark.at },
        `the service was pointed at ${version} and restarted, but still runs ${ownVersion}: carrying on with this supervisor (docs/runbooks/worker-service.md)`,
      );
      return false;
    }
    // Never point the service at an executable that is not whole: it would not start again.
    const status = await inspectVersion(layout, version);
    if (status.kind !== 'complete') {
      log.error(
        { event: 'worker_service_update_failed', service: serviceName, to_version: version, error: describeVersionStatus(version, status) },
        `not pointing the service at ${version}: ${describeVersionStatus(version, status)}`,
      );
      return false;
    }
    try {
      const application = await readServiceApplication(serviceName);
      if (application === null) throw new Error(`no NSSM service ${serviceName} with an Application value`);
      if (!sameWindowsPath(application, executable)) await setServiceApplication(serviceName, executable);
    } catch (err) {
      log.error(
        { event: 'worker_service_update_failed', service: serviceName, to_version: version, error: errorMessage(err) },
        `could not point the service at ${version}; the supervisor stays on ${ownVersion} until its next start`,
      );
      return false;
    }
    const restart: RestartMark = { to_version: version, from_version: ownVersion, at: this.options.now().toISOString() };
    await writeFileAtomic(this.markPath, `${JSON.stringify(restart)}\n`);
    log.info(
      { event: 'worker_supervisor_restart', service: serviceName, from_version: ownVersion, to_version: version, executable },
      `the service now starts ${version}; the supervisor stops its worker and exits 75 to be restarted into it`,
    );
    return true;
  }

  private async readMark(): Promise<RestartMark | null> {
    try {
      const mark = JSON.parse(await readFile(this.markPath, 'utf8')) as Partial<RestartMark>;
      return typeof mark.to_version === 'string' && typeof mark.from_version === 'string' && typeof mark.at === 'string' ? (mark as RestartMark) : null;
    } catch {
      // Missing, or torn by a crash: no restart to account for.
      return null;
    }
  }
}
