import { CodedError } from '../../shared/errors.js';

/**
 * Pool maintenance windows: when a staged rollout may start updates on a pool's workers. A pool
 * has zero or more windows (PoolPolicy.maintenance_windows); no windows means always open.
 *
 * Grammar of one window (fields separated by whitespace; spaces around "," and "-" are ignored;
 * day names and `daily` in any case):
 *
 *   window = days SP start "-" end SP zone
 *   days   = "daily" | item *("," item)
 *   item   = day | day "-" day     ; a range runs forward through the week and may wrap: Fri-Mon
 *   day    = "Mon" | "Tue" | "Wed" | "Thu" | "Fri" | "Sat" | "Sun"
 *   start  = HH ":" MM             ; 24-hour, 00:00..23:59
 *   end    = HH ":" MM             ; 00:00..23:59, or 24:00 for the end of the day
 *   zone   = an IANA time zone name that Intl knows (Europe/Berlin, America/New_York, UTC)
 *
 *   Mon-Thu 09:00-17:00 Europe/Berlin     Sat,Sun 22:00-06:00 America/New_York
 *   Mon 00:00-24:00 UTC                   daily 01:00-05:00 Asia/Tokyo
 *
 * Meaning: a window is open while the wall clock in its zone shows a listed day and a time in
 * [start, end), to the minute. An end at or before the start crosses midnight: the window opens on
 * each listed day at the start and closes on the following day at the end (`Sun 22:00-06:00` closes
 * on Monday at 06:00); an end equal to the start makes it 24 hours long.
 *
 * Because the test is on the wall clock, daylight-saving changes stretch and shrink windows the
 * way the local clock does:
 * - spring forward (Europe/Berlin 2026-03-29, the clock goes 02:00 -> 03:00): `02:00-03:00` is
 *   never open that day, since no local time inside it exists; `01:00-05:00` lasts 3 real hours;
 *   a window opening inside the skipped hour (`02:30-04:00`) opens when the clock jumps to 03:00.
 * - fall back (2026-10-25, 03:00 -> 02:00): 02:00-02:59 happens twice, so `02:00-03:00` lasts
 *   2 real hours and `01:00-05:00` lasts 5; a window with one edge inside the repeated hour is open
 *   in both passes through it, so `02:30-05:00` closes for the half hour between the second 02:00
 *   and the second 02:30.
 *
 * The canonical text (formatMaintenanceWindow) writes days as Mon..Sun runs (`Wed,Sat-Mon`,
 * `Sat,Sun`, `daily`) and keeps the zone as the operator spelled it, with its case fixed when
 * Intl's own name is the same one (`europe/berlin` -> `Europe/Berlin`). Aliases are kept
 * (`Europe/Kyiv` stays, although this ICU resolves it to `Europe/Kiev`). Parsing the canonical
 * text gives the same window again.
 */

export const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** A parsed window. Build these with parseMaintenanceWindow: the zone must be one Intl knows. */
export interface MaintenanceWindow {
  /** Days the window opens on, in Mon..Sun order, without repeats; never empty. */
  readonly days: readonly Weekday[];
  /** Minutes after local midnight at which it opens: 0..1439. */
  readonly startMinute: number;
  /** Minutes after local midnight at which it closes: 0..1440; at or before startMinute is the next day. */
  readonly endMinute: number;
  /** IANA zone name, as written (case fixed where Intl's name is the same). */
  readonly timeZone: string;
}

/** Which part of the text was wrong: the whole (empty, wrong number of fields), days, times or zone. */
export type MaintenanceWindowPart = 'text' | 'days' | 'time' | 'zone';

export class MaintenanceWindowError extends CodedError<'invalid_maintenance_window'> {
  readonly part: MaintenanceWindowPart;

  constructor(part: MaintenanceWindowPart, message: string, options?: { cause?: unknown }) {
    super('invalid_maintenance_window', message, options);
    this.part = part;
  }
}

export interface WindowChange {
  /** Whether the windows are open at `now`. */
  readonly open: boolean;
  /** The first instant after `now` at which `open` flips, or null if none within the horizon. */
  readonly changesAt: Date | null;
}

/** How far nextWindowChange looks ahead: a weekly window always changes within it, DST aside. */
export const WINDOW_CHANGE_HORIZON_MS = 8 * 24 * 60 * 60 * 1000;

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
const WEEK_MS = 7 * DAY_MS;
const MINUTES_PER_DAY = 24 * 60;
/** 1970-01-05 was a Monday: week positions count from local Monday 00:00. */
const FIRST_MONDAY_MS = 4 * DAY_MS;
/**
 * Spacing of the probes that find UTC-offset changes ahead of `now`. Zones change offset at most
 * a few times a year; a change is missed only if two fall within one step, which no zone does.
 */
const OFFSET_PROBE_STEP_MS = 12 * 60 * MINUTE_MS;

// ---- parsing and formatting -------------------------------------------------------------------

export function parseMaintenanceWindow(text: string): MaintenanceWindow {
  const normalized = text.trim().replace(/\s*([,-])\s*/g, '$1');
  if (normalized === '') throw new MaintenanceWindowError('text', 'maintenance window is empty');
  const fields = normalized.split(/\s+/);
  if (fields.length !== 3) {
    throw new MaintenanceWindowError(
      'text',
      `maintenance window "${text}" must be "<days> <HH:MM>-<HH:MM> <zone>", e.g. "Mon-Fri 09:00-17:00 Europe/Berlin"`,
    );
  }
  const [daysField, timesField, zoneField] = fields as [string, string, string];
  return {
    days: parseDays(daysField, text),
    ...parseTimes(timesField, text),
    timeZone: resolveTimeZone(zoneField, text),
  };
}

export function formatMaintenanceWindow(window: MaintenanceWindow): string {
  return `${formatDays(window.days)} ${formatMinute(window.startMinute)}-${formatMinute(window.endMinute)} ${window.timeZone}`;
}

function parseDays(field: string, text: string): Weekday[] {
  if (field.toLowerCase() === 'daily') return [...WEEKDAYS];
  const chosen = new Set<number>();
  for (const item of field.split(',')) {
    const ends = item.split('-');
    const first = ends.length <= 2 ? dayIndex(ends[0]) : undefined;
    const last = ends.length === 2 ? dayIndex(ends[1]) : first;
    if (first === undefined || last === undefined) {
      throw new MaintenanceWindowError(
        'days',
        `bad day "${item}" in maintenance window "${text}": use Mon..Sun, ranges like Fri-Mon, comma lists, or "daily"`,
      );
    }
    for (let day = first; ; day = (day + 1) % 7) {
      chosen.add(day);
      if (day === last) break;
    }
  }
  return WEEKDAYS.filter((_, day) => chosen.has(day));
}

function dayIndex(name: string | undefined): number | undefined {
  const index = WEEKDAYS.findIndex((day) => day.toLowerCase() === name?.toLowerCase());
  return index === -1 ? undefined : index;
}

/** Runs of consecutive days (wrapping the week) become ranges, pairs stay lists: `Wed,Sat-Mon`, `Sat,Sun`. */
function formatDays(days: readonly Weekday[]): string {
  const chosen = new Set(days.map((day) => WEEKDAYS.indexOf(day)));
  if (chosen.size === WEEKDAYS.length) return 'daily';
  const runs: string[] = [];
  for (let first = 0; first < 7; first++) {
    // A run starts on a chosen day whose previous day is not chosen, so Fri-Mon stays one run.
    if (!chosen.has(first) || chosen.has((first + 6) % 7)) continue;
    let length = 1;
    while (chosen.has((first + length) % 7)) length++;
    const last = (first + length - 1) % 7;
    const separator = length === 2 ? ',' : '-';
    runs.push(length === 1 ? WEEKDAYS[first]! : `${WEEKDAYS[first]!}${separator}${WEEKDAYS[last]!}`);
  }
  return runs.join(',');
}

function parseTimes(field: string, text: string): { startMinute: number; endMinute: number } {
  const match = /^(\d{2}):(\d{2})-(\d{2}):(\d{2})$/.exec(field);
  if (!match) {
    throw new MaintenanceWindowError(
      'time',
      `bad time range "${field}" in maintenance window "${text}": use HH:MM-HH:MM, 24-hour`,
    );
  }
  const [, startHour, startMinute, endHour, endMinute] = match.map(Number) as [number, number, number, number, number];
  const start = minuteOfDay(startHour, startMinute, false);
  const end = minuteOfDay(endHour, endMinute, true);
  if (start === undefined) {
    throw new MaintenanceWindowError('time', `bad start time in maintenance window "${text}": must be 00:00..23:59`);
  }
  if (end === undefined) {
    throw new MaintenanceWindowError('time', `bad end time in maintenance window "${text}": must be 00:00..24:00`);
  }
  return { startMinute: start, endMinute: end };
}

function minuteOfDay(hour: number, minute: number, allowEndOfDay: boolean): number | undefined {
  if (allowEndOfDay && hour === 24 && minute === 0) return MINUTES_PER_DAY;
  return hour <= 23 && minute <= 59 ? hour * 60 + minute : undefined;
}

function formatMinute(minute: number): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(Math.floor(minute / 60))}:${pad(minute % 60)}`;
}

function resolveTimeZone(zone: string, text: string): string {
  const unknown = (cause?: unknown) =>
    new MaintenanceWindowError('zone', `unknown time zone "${zone}" in maintenance window "${text}": use an IANA name such as Europe/Berlin or UTC`, { cause });
  // IANA names start with a letter; this also keeps out offsets like "+01:00" that some Intl builds take.
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(zone)) throw unknown();
  try {
    const resolved = wallClockFormat(zone).resolvedOptions().timeZone;
    // Node 20's ICU resolves current names to older aliases (Europe/Kyiv to Europe/Kiev, Asia/Kolkata
    // to Asia/Calcutta), so the operator's name is kept and only its case taken from Intl.
    return resolved.toLowerCase() === zone.toLowerCase() ? resolved : zone;
  } catch (err) {
    if (err instanceof RangeError) throw unknown(err);
    throw err;
  }
}

// ---- evaluation -------------------------------------------------------------------------------

/** True when any window is open at `now`, or when there are no windows (no windows = always open). */
export function isWithinWindows(windows: readonly MaintenanceWindow[], now: Date): boolean {
  if (windows.length === 0) return true;
  const nowMs = now.getTime();
  const offsets = new Map<string, number>();
  const offsetAt = (timeZone: string): number => {
    let offsetMs = offsets.get(timeZone);
    if (offsetMs === undefined) offsets.set(timeZone, (offsetMs = utcOffsetMs(timeZone, nowMs)));
    return offsetMs;
  };
  return windows.some((window) => spansContain(weekSpans(window), weekPosition(nowMs + offsetAt(window.timeZone))));
}

/**
 * Whether the windows are open at `now`, and the first instant after it at which that flips
 * (opens or closes), looking WINDOW_CHANGE_HORIZON_MS ahead. Windows that touch or overlap count
 * as one: there is no change where one ends as another begins. Always open (no windows, or
 * windows covering the whole week) gives `changesAt: null`.
 *
 * How: for each zone, find the instants its UTC offset changes in the horizon; between them wall
 * time is UTC plus a constant, so every instant at which a window edge shows on the wall clock can
 * be computed. The state can only flip at those instants or at an offset change, so they are
 * checked in order.
 */
export function nextWindowChange(windows: readonly MaintenanceWindow[], now: Date): WindowChange {
  if (windows.length === 0) return { open: true, changesAt: null };
  const fromMs = now.getTime();
  const toMs = fromMs + WINDOW_CHANGE_HORIZON_MS;
  const prepared = windows.map((window) => ({ window, spans: weekSpans(window) }));
  const timelines = new Map<string, OffsetSegment[]>();
  for (const { window } of prepared) {
    if (!timelines.has(window.timeZone)) timelines.set(window.timeZone, offsetTimeline(window.timeZone, fromMs, toMs));
  }
  const openAt = (instantMs: number): boolean =>
    prepared.some(({ window, spans }) => {
      const offsetMs = segmentAt(timelines.get(window.timeZone)!, instantMs).offsetMs;
      return spansContain(spans, weekPosition(instantMs + offsetMs));
    });

  const candidates: number[] = [];
  for (const [timeZone, segments] of timelines) {
    segments.forEach((segment, i) => {
      // Each segment runs until the next one starts; the last one includes the horizon's end.
      const segmentEndMs = segments[i + 1]?.fromMs ?? toMs + 1;
      candidates.push(segment.fromMs);
      for (const { window, spans } of prepared) {
        if (window.timeZone !== timeZone) continue;
        for (const edge of spanEdges(spans)) {
          addEdgeInstants(candidates, edge, segment.fromMs, segmentEndMs, segment.offsetMs);
        }
      }
    });
  }
  candidates.sort((a, b) => a - b);

  const open = openAt(fromMs);
  let previousMs = fromMs;
  for (const candidateMs of candidates) {
    if (candidateMs <= previousMs || candidateMs > toMs) continue;
    previousMs = candidateMs;
    if (openAt(candidateMs) !== open) return { open, changesAt: new Date(candidateMs) };
  }
  return { open, changesAt: null };
}

/** One day's opening of a window, in ms from local Monday 00:00; endMs may pass the week's end. */
interface WeekSpan {
  readonly startMs: number;
  readonly endMs: number;
}

function weekSpans(window: MaintenanceWindow): WeekSpan[] {
  const lengthMinutes =
    window.endMinute > window.startMinute
      ? window.endMinute - window.startMinute
      : window.endMinute + MINUTES_PER_DAY - window.startMinute;
  return window.days.map((day) => {
    const startMs = WEEKDAYS.indexOf(day) * DAY_MS + window.startMinute * MINUTE_MS;
    return { startMs, endMs: startMs + lengthMinutes * MINUTE_MS };
  });
}

function spansContain(spans: readonly WeekSpan[], positionMs: number): boolean {
  // A span crossing Sunday midnight covers the start of the week as positions past WEEK_MS.
  return spans.some(
    (span) =>
      (positionMs >= span.startMs && positionMs < span.endMs) ||
      (positionMs + WEEK_MS >= span.startMs && positionMs + WEEK_MS < span.endMs),
  );
}

/** Positions in the week, 0..WEEK_MS, at which a span opens or closes. */
function spanEdges(spans: readonly WeekSpan[]): number[] {
  return [...new Set(spans.flatMap((span) => [span.startMs % WEEK_MS, span.endMs % WEEK_MS]))];
}

/** Pushes every instant in [fromMs, endMs) whose wall time, at a constant offset, is at week position `edgeMs`. */
function addEdgeInstants(out: number[], edgeMs: number, fromMs: number, endMs: number, offsetMs: number): void {
  const localFromMs = fromMs + offsetMs;
  for (let weekStartMs = localFromMs - weekPosition(localFromMs); weekStartMs - offsetMs < endMs; weekStartMs += WEEK_MS) {
    const instantMs = weekStartMs + edgeMs - offsetMs;
    if (instantMs >= fromMs && instantMs < endMs) out.push(instantMs);
  }
}

/** Position of a wall-clock time (as ms since the epoch of wall time) within its Monday-based week. */
function weekPosition(wallMs: number): number {
  return mod(wallMs - FIRST_MONDAY_MS, WEEK_MS);
}

// ---- wall clock through Intl ------------------------------------------------------------------

/** From `fromMs` until the next segment's `fromMs`, the zone's wall time is UTC plus `offsetMs`. */
interface OffsetSegment {
  readonly fromMs: number;
  readonly offsetMs: number;
}

function offsetTimeline(timeZone: string, fromMs: number, toMs: number): OffsetSegment[] {
  const segments: OffsetSegment[] = [{ fromMs, offsetMs: utcOffsetMs(timeZone, fromMs) }];
  let probeMs = fromMs;
  let probeOffsetMs = segments[0]!.offsetMs;
  while (probeMs < toMs) {
    const nextProbeMs = Math.min(probeMs + OFFSET_PROBE_STEP_MS, toMs);
    const nextOffsetMs = utcOffsetMs(timeZone, nextProbeMs);
    if (nextOffsetMs !== probeOffsetMs) {
      segments.push({ fromMs: firstMinuteOfNewOffset(timeZone, probeMs, nextProbeMs, probeOffsetMs), offsetMs: nextOffsetMs });
    }
    probeMs = nextProbeMs;
    probeOffsetMs = nextOffsetMs;
  }
  return segments;
}

/**
 * The whole minute in (lowMs, highMs] at which the offset stops being `lowOffsetMs`, by bisection.
 * Offset changes fall on whole minutes, so the minute at or before lowMs still has the old offset
 * and the minute at or before highMs already has the new one.
 */
function firstMinuteOfNewOffset(timeZone: string, lowMs: number, highMs: number, lowOffsetMs: number): number {
  let low = Math.floor(lowMs / MINUTE_MS);
  let high = Math.floor(highMs / MINUTE_MS);
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (utcOffsetMs(timeZone, middle * MINUTE_MS) === lowOffsetMs) low = middle;
    else high = middle;
  }
  return high * MINUTE_MS;
}

function segmentAt(segments: readonly OffsetSegment[], instantMs: number): OffsetSegment {
  let found = segments[0]!;
  for (const segment of segments) if (segment.fromMs <= instantMs) found = segment;
  return found;
}

/** Wall time minus UTC at an instant in a zone, read from Intl's calendar fields. */
function utcOffsetMs(timeZone: string, instantMs: number): number {
  const fields: Record<string, number> = {};
  for (const part of wallClockFormat(timeZone).formatToParts(instantMs)) {
    if (part.type !== 'literal') fields[part.type] = Number(part.value);
  }
  const { year, month, day, hour, minute, second } = fields;
  if (year === undefined || month === undefined || day === undefined || hour === undefined || minute === undefined || second === undefined) {
    throw new Error(`Intl gave no full wall-clock date for ${timeZone}`);
  }
  const wallMs = Date.UTC(year, month - 1, day, hour, minute, second);
  return wallMs - (instantMs - mod(instantMs, 1000));
}

/**
 * Building a DateTimeFormat costs far more than using one, so one is kept per zone. Keyed in lower
 * case, as Intl reads zone names, so differently-cased input cannot grow the map.
 */
const wallClockFormats = new Map<string, Intl.DateTimeFormat>();

function wallClockFormat(timeZone: string): Intl.DateTimeFormat {
  const key = timeZone.toLowerCase();
  let format = wallClockFormats.get(key);
  if (format === undefined) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    wallClockFormats.set(key, format);
  }
  return format;
}

function mod(n: number, m: number): number {
  return ((n % m) + m) % m;
}
