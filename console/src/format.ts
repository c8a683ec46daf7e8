/** Words and numbers as the pages show them; times are LocalTime's job (components/local-time.tsx). */

const DURATION_UNITS = [
  ['d', 86_400],
  ['h', 3_600],
  ['m', 60],
] as const;

/** Seconds in the largest unit that divides them exactly, as the admin CLI writes a soak: `30m`, `1h`, `90s`. */
export function formatDuration(seconds: number): string {
  for (const [unit, size] of DURATION_UNITS) {
    if (seconds > 0 && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/** A fraction (0.125) as a percentage (`12.5 %`). */
export function formatPercent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)} %`;
}

/** `1 worker`, `3 workers`. */
export function countOf(count: number, noun: string): string {
  return `${count.toLocaleString()} ${noun}${count === 1 ? '' : 's'}`;
}

/** Versions in a sensible order (1.10.0 after 1.9.0), for legends and lists. */
export function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** An update state, or `none`, in words. */
export function updateStateLabel(state: string): string {
  return state === 'none' ? 'none' : state.replace(/_/g, ' ');
}
