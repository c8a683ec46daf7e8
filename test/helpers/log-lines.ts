import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type LogLine = Record<string, unknown>;

/** The JSON log lines of a child's stdout, kept as they arrive, and a wait for one of them. */
export interface LogLines {
  lines: LogLine[];
  /**
   * The first line matching (already seen or still to come). Rejects after timeoutMs, or as soon
   * as the child's output has ended without one; the error shows `detail()` and every line seen.
   */
  waitForLine(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

export const DEFAULT_LINE_TIMEOUT_MS = 20_000;

/** Collect `child`'s stdout as JSON log lines; lines that are not JSON objects are skipped. */
export function watchLogLines(child: ChildProcess, detail: () => string = () => ''): LogLines {
  const lines: LogLine[] = [];
  const wakers = new Set<() => void>();
  // 'close', not 'exit': every line the child wrote has been read by then.
  let closed = false;
  if (!child.stdout) throw new Error('watchLogLines needs the child spawned with a stdout pipe');
  createInterface({ input: child.stdout }).on('line', (text) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof parsed !== 'object' || parsed === null) return;
    lines.push(parsed as LogLine);
    for (const wake of [...wakers]) wake();
  });
  child.once('close', () => {
    closed = true;
    for (const wake of [...wakers]) wake();
  });
  const context = () => `${detail()}\nlines:\n${lines.map((line) => JSON.stringify(line)).join('\n')}`;
  return {
    lines,
    waitForLine(match, timeoutMs = DEFAULT_LINE_TIMEOUT_MS) {
      return new Promise((resolve, reject) => {
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          wakers.delete(check);
          settle();
        };
        const check = () => {
          const found = lines.find(match);
          if (found) finish(() => resolve(found));
          else if (closed) finish(() => reject(new Error(`the output ended before a matching log line; ${context()}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`no matching log line within ${timeoutMs} ms; ${context()}`))), timeoutMs);
        wakers.add(check);
        check();
      });
    },
  };
}

export function eventIs(name: string): (line: LogLine) => boolean {
  return (line) => line['event'] === name;
}
