import { UsageError } from './errors.js';

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000 } as const;
/** Ten years: a validity that outlives that is a typo. */
const MAX_DURATION_MS = 3650 * UNIT_MS.d;

/**
 * `30d`, `12h`, `90m` in milliseconds: the `--expires-in` flag of the release tool (a manifest's
 * validity) and of `bytebiota-server token create` (an enrollment token's).
 */
export function parseDurationMs(text: string): number {
  const match = /^(\d{1,7})([dhm])$/.exec(text.trim());
  const amount = match ? Number(match[1]) : 0;
  const unit = match?.[2] as keyof typeof UNIT_MS | undefined;
  if (!unit || amount <= 0) {
    throw new UsageError(`invalid duration ${JSON.stringify(text)}: expected a positive number and a unit, such as 30d, 12h or 90m`);
  }
  const ms = amount * UNIT_MS[unit];
  if (ms > MAX_DURATION_MS) throw new UsageError(`duration ${text} is over the 3650-day limit`);
  return ms;
}
