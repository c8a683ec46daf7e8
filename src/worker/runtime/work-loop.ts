import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { WorkerState } from '../../protocol/messages.js';
import { fsyncDirectory } from '../../shared/atomic-file.js';
import type { Logger } from '../../shared/logger.js';
import type { Workload } from './workload.js';

/** One finished unit, one line of `work/units.log`. */
export interface UnitRecord {
  unit: number;
  result: string;
  version: string;
}

const TAIL_BYTES = 64 * 1024;

/**
 * The durable record of finished units: append one JSON line, fsync, and only then is the unit
 * done. The next unit number comes from the last line, so a restart (into any version) resumes
 * where the last one stopped; a line torn by power loss is cut off, and that unit is redone.
 */
export class UnitsLog {
  readonly path: string;
  #handle: FileHandle;
  #nextUnit: number;

  private constructor(path: string, handle: FileHandle, nextUnit: number) {
    this.path = path;
    this.#handle = handle;
    this.#nextUnit = nextUnit;
  }

  static async open(path: string): Promise<UnitsLog> {
    await mkdir(dirname(path), { recursive: true });
    const handle = await open(path, 'a+');
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - TAIL_BYTES);
      const tail = Buffer.alloc(size - start);
      if (tail.length > 0) await handle.read(tail, 0, tail.length, start);
      const text = tail.toString('utf8');
      const completeEnd = text.lastIndexOf('\n') + 1;
      if (completeEnd < text.length) {
        // A torn last line (power loss mid-append): that unit was never recorded as done.
        await handle.truncate(start + Buffer.byteLength(text.slice(0, completeEnd)));
        await handle.sync();
      }
      const lines = text.slice(0, completeEnd).split('\n').filter((line) => line !== '');
      const last = lines.at(-1);
      const lastUnit = last === undefined ? 0 : (JSON.parse(last) as UnitRecord).unit;
      await fsyncDirectory(dirname(path));
      return new UnitsLog(path, handle, lastUnit + 1);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  get nextUnit(): number {
    return this.#nextUnit;
  }

  async append(record: UnitRecord): Promise<void> {
    await this.#handle.appendFile(`${JSON.stringify(record)}\n`);
    await this.#handle.sync();
    this.#nextUnit = record.unit + 1;
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}

/** What the loop does after a unit: go on, stop (exit 0), or stop for a restart into a staged version (exit 75). */
export type BetweenUnits = 'continue' | 'stop' | 'restart';

export interface WorkLoopOptions {
  workload: Workload;
  unitsLog: UnitsLog;
  version: string;
  log: Logger;
  /** Called once, as the first unit begins: the loop has started (the readiness condition). */
  onStarted?(): void;
  /** Called between units, never during one; the only place an update may run. */
  betweenUnits(): Promise<BetweenUnits>;
}

/**
 * Runs units until told to stop. A stop request (SIGTERM) lets the current unit finish and be
 * recorded: units are never cut in half (docs/protocol.md, section 4).
 */
export class WorkLoop {
  readonly #options: WorkLoopOptions;
  #stopRequested = false;
  #state: WorkerState = 'starting';

  constructor(options: WorkLoopOptions) {
    this.#options = options;
  }

  get state(): WorkerState {
    return this.#state;
  }

  /** Finish the unit in progress, then stop. */
  requestStop(): void {
    this.#stopRequested = true;
    if (this.#state === 'working') this.#state = 'draining';
  }

  get stopRequested(): boolean {
    return this.#stopRequested;
  }

  async run(): Promise<'stopped' | 'restart'> {
    const { workload, unitsLog, version, log } = this.#options;
    let started = false;
    for (;;) {
      if (this.#stopRequested) {
        this.#state = 'idle';
        return 'stopped';
      }
      const unit = unitsLog.nextUnit;
      this.#state = 'working';
      if (!started) {
        started = true;
        this.#options.onStarted?.();
      }
      const result = await workload.runUnit(unit);
      await unitsLog.append({ unit, result, version });
      log.debug({ event: 'worker_unit_done', unit }, 'unit done');
      this.#state = this.#stopRequested ? 'draining' : 'idle';
      const next = await this.#options.betweenUnits();
      if (next === 'restart') {
        this.#state = 'idle';
        return 'restart';
      }
      if (next === 'stop') this.#stopRequested = true;
    }
  }
}
