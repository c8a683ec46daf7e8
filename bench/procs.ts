import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * Linux /proc readings for the benchmarks: CPU of a process and of a process tree (PostgreSQL's
 * postmaster and its backends), bytes a process wrote to storage, how busy one core was, and
 * pinning with taskset. Every reading is null (or skipped) off Linux.
 */

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on every Linux we run on). */
const TICKS = 100;

interface StatFields {
  ppid: number;
  /** utime + stime, seconds. */
  own: number;
  /** cutime + cstime: children already waited for, seconds. */
  reaped: number;
}

function stat(pid: number): StatFields | null {
  try {
    // Fields after the command name "(...)": state is fields[0], ppid fields[1], utime fields[11].
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return {
      ppid: Number(fields[1]),
      own: (Number(fields[11]) + Number(fields[12])) / TICKS,
      reaped: (Number(fields[13]) + Number(fields[14])) / TICKS,
    };
  } catch {
    return null;
  }
}

/** User plus system CPU seconds a process has used so far, or null. */
export function processCpuSeconds(pid: number): number | null {
  return stat(pid)?.own ?? null;
}

/** The live children of `pid` (scans /proc: no CONFIG_PROC_CHILDREN needed). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    if (stat(Number(name))?.ppid === pid) children.push(Number(name));
  }
  return children;
}

/**
 * CPU seconds of a process and all its children, live ones and those already reaped (a
 * PostgreSQL backend that ended counts through the postmaster's cutime), or null.
 */
export function treeCpuSeconds(pid: number): number | null {
  const root = stat(pid);
  if (root === null) return null;
  let total = root.own + root.reaped;
  for (const child of childrenOf(pid)) total += stat(child)?.own ?? 0;
  return total;
}

/** Bytes the process caused to be written to storage (/proc/PID/io write_bytes), or null. */
export function writtenBytes(pid: number): number | null {
  try {
    return Number(/^write_bytes: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? Number.NaN);
  } catch {
    return null;
  }
}

/** Busy and total CPU seconds of one core so far (/proc/stat; busy excludes idle and iowait). */
export function coreSeconds(core: number): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`cpu${core} `));
    if (!line) return null;
    const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = values.reduce((sum, value) => sum + value, 0);
    return { busy: (total - values[3]! - values[4]!) / TICKS, total: total / TICKS };
  } catch {
    return null;
  }
}

/** Pin every thread of `pid` to `core` (its later threads and children inherit it). False when taskset failed. */
export function pin(pid: number, core: number): boolean {
  return spawnSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' }).status === 0;
}

/** Pin a process and its live children (PostgreSQL's background processes) to `core`. */
export function pinTree(pid: number, core: number): boolean {
  let ok = pin(pid, core);
  for (const child of childrenOf(pid)) ok = pin(child, core) && ok;
  return ok;
}
