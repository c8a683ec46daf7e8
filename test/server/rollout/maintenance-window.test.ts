import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  formatMaintenanceWindow,
  isWithinWindows,
  MaintenanceWindowError,
  nextWindowChange,
  parseMaintenanceWindow,
  WEEKDAYS,
  type MaintenanceWindow,
  type MaintenanceWindowPart,
} from '../../../src/server/rollout/maintenance-window.js';
import { CodedError } from '../../../src/shared/errors.js';

// Reference dates, 2026. June: 06-01 is a Monday; Berlin is UTC+2, New York UTC-4, Tokyo UTC+9.
// DST: Europe/Berlin springs forward 03-29 at 01:00Z (02:00 -> 03:00) and falls back 10-25 at
// 01:00Z (03:00 -> 02:00); America/New_York springs forward 03-08 at 07:00Z (02:00 -> 03:00) and
// falls back 11-01 at 06:00Z (02:00 -> 01:00).

const MINUTE_MS = 60_000;

function windows(...texts: string[]): MaintenanceWindow[] {
  return texts.map(parseMaintenanceWindow);
}

/** Open periods seen by asking isWithinWindows at every minute of [fromIso, toIso). */
function openSpansByScan(ws: readonly MaintenanceWindow[], fromIso: string, toIso: string): Array<[string, string]> {
  const spans: Array<[string, string]> = [];
  const toMs = Date.parse(toIso);
  let openedMs: number | null = null;
  for (let t = Date.parse(fromIso); t < toMs; t += MINUTE_MS) {
    const open = isWithinWindows(ws, new Date(t));
    if (open && openedMs === null) openedMs = t;
    if (!open && openedMs !== null) {
      spans.push([new Date(openedMs).toISOString(), new Date(t).toISOString()]);
      openedMs = null;
    }
  }
  if (openedMs !== null) spans.push([new Date(openedMs).toISOString(), toIso]);
  return spans;
}

/** Open periods seen by following nextWindowChange from fromIso, checking each step against isWithinWindows. */
function openSpansByChanges(ws: readonly MaintenanceWindow[], fromIso: string, toIso: string): Array<[string, string]> {
  const spans: Array<[string, string]> = [];
  const toMs = Date.parse(toIso);
  let now = new Date(fromIso);
  let openedMs: number | null = null;
  for (;;) {
    const { open, changesAt } = nextWindowChange(ws, now);
    assert.equal(open, isWithinWindows(ws, now), `open at ${now.toISOString()}`);
    if (open && openedMs === null) openedMs = now.getTime();
    if (changesAt === null || changesAt.getTime() >= toMs) break;
    assert.equal(isWithinWindows(ws, new Date(changesAt.getTime() - 1)), open, `still ${open} just before ${changesAt.toISOString()}`);
    if (open) {
      spans.push([new Date(openedMs!).toISOString(), changesAt.toISOString()]);
      openedMs = null;
    }
    now = changesAt;
  }
  if (openedMs !== null) spans.push([new Date(openedMs).toISOString(), toIso]);
  return spans;
}

describe('parseMaintenanceWindow', () => {
  test('valid windows and their canonical text', () => {
    const all = [...WEEKDAYS];
    const cases: Array<[string, MaintenanceWindow, string]> = [
      ['Mon-Thu 09:00-17:00 Europe/Berlin', { days: ['Mon', 'Tue', 'Wed', 'Thu'], startMinute: 540, endMinute: 1020, timeZone: 'Europe/Berlin' }, 'Mon-Thu 09:00-17:00 Europe/Berlin'],
      ['Sat,Sun 22:00-06:00 America/New_York', { days: ['Sat', 'Sun'], startMinute: 1320, endMinute: 360, timeZone: 'America/New_York' }, 'Sat,Sun 22:00-06:00 America/New_York'],
      ['Mon 00:00-24:00 UTC', { days: ['Mon'], startMinute: 0, endMinute: 1440, timeZone: 'UTC' }, 'Mon 00:00-24:00 UTC'],
      ['daily 01:00-05:00 Asia/Tokyo', { days: all, startMinute: 60, endMinute: 300, timeZone: 'Asia/Tokyo' }, 'daily 01:00-05:00 Asia/Tokyo'],
      ['Fri-Mon 23:00-01:00 UTC', { days: ['Mon', 'Fri', 'Sat', 'Sun'], startMinute: 1380, endMinute: 60, timeZone: 'UTC' }, 'Fri-Mon 23:00-01:00 UTC'],
      ['  mon , wed - FRI   08:30 - 12:00   europe/berlin ', { days: ['Mon', 'Wed', 'Thu', 'Fri'], startMinute: 510, endMinute: 720, timeZone: 'Europe/Berlin' }, 'Mon,Wed-Fri 08:30-12:00 Europe/Berlin'],
      ['Mon-Sun 00:00-00:00 Etc/UTC', { days: all, startMinute: 0, endMinute: 0, timeZone: 'Etc/UTC' }, 'daily 00:00-00:00 Etc/UTC'],
      ['Thu-Thu 12:00-13:00 utc', { days: ['Thu'], startMinute: 720, endMinute: 780, timeZone: 'UTC' }, 'Thu 12:00-13:00 UTC'],
      ['Tue,Mon,Tue 12:00-13:00 UTC', { days: ['Mon', 'Tue'], startMinute: 720, endMinute: 780, timeZone: 'UTC' }, 'Mon,Tue 12:00-13:00 UTC'],
      ['Sat-Mon,Wed 12:00-13:00 UTC', { days: ['Mon', 'Wed', 'Sat', 'Sun'], startMinute: 720, endMinute: 780, timeZone: 'UTC' }, 'Wed,Sat-Mon 12:00-13:00 UTC'],
      ['Sun,Mon 22:00-22:00 Australia/Sydney', { days: ['Mon', 'Sun'], startMinute: 1320, endMinute: 1320, timeZone: 'Australia/Sydney' }, 'Sun,Mon 22:00-22:00 Australia/Sydney'],
      ['DAILY 23:59-24:00 Pacific/Auckland', { days: all, startMinute: 1439, endMinute: 1440, timeZone: 'Pacific/Auckland' }, 'daily 23:59-24:00 Pacific/Auckland'],
      // An alias stays as written, although ICU would call it Europe/Kiev.
      ['Wed 10:00-11:00 Europe/Kyiv', { days: ['Wed'], startMinute: 600, endMinute: 660, timeZone: 'Europe/Kyiv' }, 'Wed 10:00-11:00 Europe/Kyiv'],
    ];
    for (const [text, expected, canonical] of cases) {
      const parsed = parseMaintenanceWindow(text);
      assert.deepEqual(parsed, expected, text);
      assert.equal(formatMaintenanceWindow(parsed), canonical, text);
      assert.deepEqual(parseMaintenanceWindow(canonical), parsed, `${text}: canonical text parses back`);
    }
  });

  test('invalid windows are invalid_maintenance_window errors naming the wrong part', () => {
    const cases: Array<[string, MaintenanceWindowPart]> = [
      ['', 'text'],
      ['   ', 'text'],
      ['Mon 09:00-17:00', 'text'],
      ['09:00-17:00 UTC', 'text'],
      ['Mon 09:00-17:00 UTC extra', 'text'],
      ['Mo 09:00-17:00 UTC', 'days'],
      ['Monday 09:00-17:00 UTC', 'days'],
      ['Mon-Funday 09:00-17:00 UTC', 'days'],
      ['Mon,,Tue 09:00-17:00 UTC', 'days'],
      ['Sat-,Sun 09:00-17:00 UTC', 'days'],
      ['Mon-Tue-Wed 09:00-17:00 UTC', 'days'],
      ['daily,Mon 09:00-17:00 UTC', 'days'],
      ['weekdays 09:00-17:00 UTC', 'days'],
      ['Mon 9:00-17:00 UTC', 'time'],
      ['Mon 09:00-17:60 UTC', 'time'],
      ['Mon 24:00-01:00 UTC', 'time'],
      ['Mon 09:00-24:01 UTC', 'time'],
      ['Mon 25:00-26:00 UTC', 'time'],
      ['Mon 09:00 UTC', 'time'],
      ['Mon 0900-1700 UTC', 'time'],
      ['Mon 09:00-17:00am UTC', 'time'],
      ['Mon 09:00-17:00 Mars/Olympus_Mons', 'zone'],
      ['Mon 09:00-17:00 +01:00', 'zone'],
      ['Mon 09:00-17:00 local', 'zone'],
      ['Mon 09:00-17:00 Europe/Berlin2', 'zone'],
    ];
    for (const [text, part] of cases) {
      assert.throws(
        () => parseMaintenanceWindow(text),
        (err: unknown) => {
          assert.ok(err instanceof MaintenanceWindowError, `${JSON.stringify(text)}: ${String(err)}`);
          assert.ok(err instanceof CodedError);
          assert.equal(err.code, 'invalid_maintenance_window', text);
          assert.equal(err.part, part, `${JSON.stringify(text)}: ${err.message}`);
          assert.ok(err.message.length > 0);
          return true;
        },
      );
    }
  });
});

describe('isWithinWindows', () => {
  test('no windows is always open', () => {
    assert.equal(isWithinWindows([], new Date('2026-06-01T12:00:00Z')), true);
  });

  test('open and closed around the edges: start inclusive, end exclusive', () => {
    const cases: Array<[string[], string, boolean]> = [
      // Same-day window in a DST zone, summer (UTC+2) and winter (UTC+1).
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-01T06:59:59.999Z', false],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-01T07:00:00.000Z', true],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-01T14:59:59.999Z', true],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-01T15:00:00.000Z', false],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-04T07:00:00.000Z', true],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-05T07:00:00.000Z', false],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-05-31T07:00:00.000Z', false],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-01-05T07:59:59.999Z', false],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-01-05T08:00:00.000Z', true],
      // Crossing midnight: Sat 22:00 to Sun 06:00 and Sun 22:00 to Mon 06:00 New York time.
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-07T01:59:59.999Z', false],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-07T02:00:00.000Z', true],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-07T09:59:59.999Z', true],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-07T10:00:00.000Z', false],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-08T02:00:00.000Z', true],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-08T09:59:59.999Z', true],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-08T10:00:00.000Z', false],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-06T07:00:00.000Z', false],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-06T03:00:00.000Z', false],
      // Sunday -> Monday wrap of the week.
      [['Sun 22:00-06:00 UTC'], '2026-06-07T21:59:59.999Z', false],
      [['Sun 22:00-06:00 UTC'], '2026-06-07T22:00:00.000Z', true],
      [['Sun 22:00-06:00 UTC'], '2026-06-08T05:59:59.999Z', true],
      [['Sun 22:00-06:00 UTC'], '2026-06-08T06:00:00.000Z', false],
      [['Sun 22:00-06:00 UTC'], '2026-06-07T03:00:00.000Z', false],
      [['Fri-Mon 23:00-01:00 UTC'], '2026-06-01T23:30:00.000Z', true],
      [['Fri-Mon 23:00-01:00 UTC'], '2026-06-02T00:59:59.999Z', true],
      [['Fri-Mon 23:00-01:00 UTC'], '2026-06-02T01:00:00.000Z', false],
      [['Fri-Mon 23:00-01:00 UTC'], '2026-06-02T23:30:00.000Z', false],
      [['Fri-Mon 23:00-01:00 UTC'], '2026-06-04T23:30:00.000Z', false],
      [['Fri-Mon 23:00-01:00 UTC'], '2026-06-05T00:30:00.000Z', false],
      [['Fri-Mon 23:00-01:00 UTC'], '2026-06-05T23:30:00.000Z', true],
      [['Fri-Mon 23:00-01:00 UTC'], '2026-06-06T00:59:00.000Z', true],
      // A whole day, ending at 24:00.
      [['Mon 00:00-24:00 UTC'], '2026-05-31T23:59:59.999Z', false],
      [['Mon 00:00-24:00 UTC'], '2026-06-01T00:00:00.000Z', true],
      [['Mon 00:00-24:00 UTC'], '2026-06-01T23:59:59.999Z', true],
      [['Mon 00:00-24:00 UTC'], '2026-06-02T00:00:00.000Z', false],
      [['daily 01:00-05:00 Asia/Tokyo'], '2026-06-01T15:59:59.999Z', false],
      [['daily 01:00-05:00 Asia/Tokyo'], '2026-06-01T16:00:00.000Z', true],
      [['daily 01:00-05:00 Asia/Tokyo'], '2026-06-01T19:59:59.999Z', true],
      [['daily 01:00-05:00 Asia/Tokyo'], '2026-06-01T20:00:00.000Z', false],
      // Several windows in one pool, in different zones.
      [['Mon-Fri 01:00-02:00 UTC', 'Sat,Sun 10:00-12:00 Asia/Tokyo'], '2026-06-01T01:30:00.000Z', true],
      [['Mon-Fri 01:00-02:00 UTC', 'Sat,Sun 10:00-12:00 Asia/Tokyo'], '2026-06-01T02:00:00.000Z', false],
      [['Mon-Fri 01:00-02:00 UTC', 'Sat,Sun 10:00-12:00 Asia/Tokyo'], '2026-06-05T01:59:59.999Z', true],
      [['Mon-Fri 01:00-02:00 UTC', 'Sat,Sun 10:00-12:00 Asia/Tokyo'], '2026-06-06T01:30:00.000Z', true],
      [['Mon-Fri 01:00-02:00 UTC', 'Sat,Sun 10:00-12:00 Asia/Tokyo'], '2026-06-06T03:00:00.000Z', false],
      [['Mon-Fri 01:00-02:00 UTC', 'Sat,Sun 10:00-12:00 Asia/Tokyo'], '2026-06-07T02:59:59.999Z', true],
      [['Mon-Fri 01:00-02:00 UTC', 'Sat,Sun 10:00-12:00 Asia/Tokyo'], '2026-06-08T00:59:59.999Z', false],
      // One instant, several zones: Mon 09:30 Berlin, 03:30 New York, 16:30 Tokyo.
      [['Mon 09:00-10:00 Europe/Berlin'], '2026-06-01T07:30:00.000Z', true],
      [['Mon 03:00-04:00 America/New_York'], '2026-06-01T07:30:00.000Z', true],
      [['Mon 16:00-17:00 Asia/Tokyo'], '2026-06-01T07:30:00.000Z', true],
      [['Mon 07:00-08:00 UTC'], '2026-06-01T07:30:00.000Z', true],
      [['Mon 07:00-08:00 Europe/Berlin'], '2026-06-01T07:30:00.000Z', false],
      // The day is the zone's day: Mon 23:30 UTC is Tue 08:30 in Tokyo, Mon 19:30 in New York.
      [['Tue 08:00-09:00 Asia/Tokyo'], '2026-06-01T23:30:00.000Z', true],
      [['Mon 08:00-09:00 Asia/Tokyo'], '2026-06-01T23:30:00.000Z', false],
      [['Mon 19:00-20:00 America/New_York'], '2026-06-01T23:30:00.000Z', true],
      [['Tue 01:00-02:00 Europe/Berlin'], '2026-06-01T23:30:00.000Z', true],
    ];
    for (const [texts, iso, expected] of cases) {
      assert.equal(isWithinWindows(windows(...texts), new Date(iso)), expected, `${texts.join(' + ')} at ${iso}`);
    }
  });

  test('daylight saving: windows follow the wall clock', () => {
    const cases: Array<[string, string, string, Array<[string, string]>]> = [
      // Europe/Berlin spring forward 2026-03-29: 02:00-02:59 does not exist.
      ['daily 02:00-03:00 Europe/Berlin', '2026-03-27T12:00:00.000Z', '2026-03-28T12:00:00.000Z', [['2026-03-28T01:00:00.000Z', '2026-03-28T02:00:00.000Z']]],
      ['daily 02:00-03:00 Europe/Berlin', '2026-03-28T12:00:00.000Z', '2026-03-29T12:00:00.000Z', []],
      ['daily 01:00-05:00 Europe/Berlin', '2026-03-28T12:00:00.000Z', '2026-03-29T12:00:00.000Z', [['2026-03-29T00:00:00.000Z', '2026-03-29T03:00:00.000Z']]],
      ['daily 02:30-04:00 Europe/Berlin', '2026-03-28T12:00:00.000Z', '2026-03-29T12:00:00.000Z', [['2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z']]],
      // Europe/Berlin fall back 2026-10-25: 02:00-02:59 happens twice.
      ['daily 02:00-03:00 Europe/Berlin', '2026-10-24T12:00:00.000Z', '2026-10-25T12:00:00.000Z', [['2026-10-25T00:00:00.000Z', '2026-10-25T02:00:00.000Z']]],
      ['daily 01:00-05:00 Europe/Berlin', '2026-10-24T12:00:00.000Z', '2026-10-25T12:00:00.000Z', [['2026-10-24T23:00:00.000Z', '2026-10-25T04:00:00.000Z']]],
      ['daily 02:30-05:00 Europe/Berlin', '2026-10-24T12:00:00.000Z', '2026-10-25T12:00:00.000Z', [
        ['2026-10-25T00:30:00.000Z', '2026-10-25T01:00:00.000Z'],
        ['2026-10-25T01:30:00.000Z', '2026-10-25T04:00:00.000Z'],
      ]],
      // America/New_York spring forward 2026-03-08.
      ['daily 02:00-03:00 America/New_York', '2026-03-07T12:00:00.000Z', '2026-03-08T18:00:00.000Z', []],
      ['daily 01:00-05:00 America/New_York', '2026-03-07T12:00:00.000Z', '2026-03-08T18:00:00.000Z', [['2026-03-08T06:00:00.000Z', '2026-03-08T09:00:00.000Z']]],
      ['Sat 22:00-06:00 America/New_York', '2026-03-07T12:00:00.000Z', '2026-03-08T18:00:00.000Z', [['2026-03-08T03:00:00.000Z', '2026-03-08T10:00:00.000Z']]],
      // America/New_York fall back 2026-11-01: 01:00-01:59 happens twice.
      ['daily 01:00-02:00 America/New_York', '2026-10-31T12:00:00.000Z', '2026-11-01T18:00:00.000Z', [['2026-11-01T05:00:00.000Z', '2026-11-01T07:00:00.000Z']]],
      ['Sat 22:00-06:00 America/New_York', '2026-10-31T12:00:00.000Z', '2026-11-01T18:00:00.000Z', [['2026-11-01T02:00:00.000Z', '2026-11-01T11:00:00.000Z']]],
    ];
    for (const [text, fromIso, toIso, expected] of cases) {
      assert.deepEqual(openSpansByScan(windows(text), fromIso, toIso), expected, `${text} from ${fromIso}`);
    }
  });
});

describe('nextWindowChange', () => {
  test('state now and the next change, at and around edges', () => {
    const cases: Array<[string[], string, boolean, string | null]> = [
      [[], '2026-06-01T12:00:00.000Z', true, null],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-01T06:59:59.999Z', false, '2026-06-01T07:00:00.000Z'],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-01T07:00:00.000Z', true, '2026-06-01T15:00:00.000Z'],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-01T14:59:59.999Z', true, '2026-06-01T15:00:00.000Z'],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-01T15:00:00.000Z', false, '2026-06-02T07:00:00.000Z'],
      [['Mon-Thu 09:00-17:00 Europe/Berlin'], '2026-06-04T15:00:00.000Z', false, '2026-06-08T07:00:00.000Z'],
      // Always open: no change to report, across a DST change too.
      [['daily 00:00-24:00 UTC'], '2026-06-01T12:00:00.000Z', true, null],
      [['daily 00:00-24:00 Europe/Berlin'], '2026-03-28T12:00:00.000Z', true, null],
      [['Mon-Sun 07:00-07:00 America/New_York'], '2026-03-05T12:00:00.000Z', true, null],
      // Windows that touch or overlap are one.
      [['Mon 09:00-12:00 UTC', 'Mon 12:00-15:00 UTC'], '2026-06-01T10:00:00.000Z', true, '2026-06-01T15:00:00.000Z'],
      [['Mon 09:00-12:00 UTC', 'Mon 13:00-15:00 Europe/Berlin'], '2026-06-01T10:00:00.000Z', true, '2026-06-01T13:00:00.000Z'],
      [['Mon 09:00-12:00 UTC', 'Mon 13:00-15:00 Europe/Berlin'], '2026-06-01T08:00:00.000Z', false, '2026-06-01T09:00:00.000Z'],
      // Crossing midnight, and the Sunday -> Monday wrap.
      [['Sun 22:00-06:00 UTC'], '2026-06-07T23:00:00.000Z', true, '2026-06-08T06:00:00.000Z'],
      [['Sun 22:00-06:00 UTC'], '2026-06-08T06:00:00.000Z', false, '2026-06-14T22:00:00.000Z'],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-07T09:00:00.000Z', true, '2026-06-07T10:00:00.000Z'],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-07T10:00:00.000Z', false, '2026-06-08T02:00:00.000Z'],
      [['Sat,Sun 22:00-06:00 America/New_York'], '2026-06-08T02:00:00.000Z', true, '2026-06-08T10:00:00.000Z'],
      // Europe/Berlin spring forward: Sunday 02:00-03:00 does not happen on 03-29, so the
      // next opening after 03-22 is 04-05, past the 8-day horizon.
      [['Sun 02:00-03:00 Europe/Berlin'], '2026-03-22T02:00:00.000Z', false, null],
      [['Sun 02:00-03:00 Europe/Berlin'], '2026-03-28T01:00:00.000Z', false, '2026-04-05T00:00:00.000Z'],
      [['daily 02:00-03:00 Europe/Berlin'], '2026-03-28T02:00:00.000Z', false, '2026-03-30T00:00:00.000Z'],
      [['daily 02:30-04:00 Europe/Berlin'], '2026-03-29T00:00:00.000Z', false, '2026-03-29T01:00:00.000Z'],
      [['daily 02:30-04:00 Europe/Berlin'], '2026-03-29T01:00:00.000Z', true, '2026-03-29T02:00:00.000Z'],
      [['daily 01:00-05:00 Europe/Berlin'], '2026-03-29T00:30:00.000Z', true, '2026-03-29T03:00:00.000Z'],
      // Europe/Berlin fall back.
      [['daily 02:00-03:00 Europe/Berlin'], '2026-10-24T23:59:59.999Z', false, '2026-10-25T00:00:00.000Z'],
      [['daily 02:00-03:00 Europe/Berlin'], '2026-10-25T00:00:00.000Z', true, '2026-10-25T02:00:00.000Z'],
      [['daily 02:00-03:00 Europe/Berlin'], '2026-10-25T00:59:59.999Z', true, '2026-10-25T02:00:00.000Z'],
      [['daily 02:00-03:00 Europe/Berlin'], '2026-10-25T01:00:00.000Z', true, '2026-10-25T02:00:00.000Z'],
      [['daily 02:30-05:00 Europe/Berlin'], '2026-10-25T00:30:00.000Z', true, '2026-10-25T01:00:00.000Z'],
      [['daily 02:30-05:00 Europe/Berlin'], '2026-10-25T01:00:00.000Z', false, '2026-10-25T01:30:00.000Z'],
      [['daily 02:30-05:00 Europe/Berlin'], '2026-10-25T01:30:00.000Z', true, '2026-10-25T04:00:00.000Z'],
      // America/New_York.
      [['Sun 01:00-05:00 America/New_York'], '2026-03-08T05:00:00.000Z', false, '2026-03-08T06:00:00.000Z'],
      [['Sun 01:00-05:00 America/New_York'], '2026-03-08T06:00:00.000Z', true, '2026-03-08T09:00:00.000Z'],
      [['Sat 22:00-06:00 America/New_York'], '2026-03-07T12:00:00.000Z', false, '2026-03-08T03:00:00.000Z'],
      [['Sat 22:00-06:00 America/New_York'], '2026-03-08T03:00:00.000Z', true, '2026-03-08T10:00:00.000Z'],
      [['daily 01:00-02:00 America/New_York'], '2026-11-01T04:59:00.000Z', false, '2026-11-01T05:00:00.000Z'],
      [['daily 01:00-02:00 America/New_York'], '2026-11-01T05:00:00.000Z', true, '2026-11-01T07:00:00.000Z'],
    ];
    for (const [texts, iso, open, changesAt] of cases) {
      const change = nextWindowChange(windows(...texts), new Date(iso));
      assert.deepEqual(
        { open: change.open, changesAt: change.changesAt?.toISOString() ?? null },
        { open, changesAt },
        `${texts.join(' + ')} at ${iso}`,
      );
    }
  });

  test('following the changes gives the same open periods as checking every minute, across DST', () => {
    const cases: Array<[string[], string, string]> = [
      [['daily 02:30-05:00 Europe/Berlin', 'Sat,Sun 22:00-02:00 America/New_York'], '2026-10-22T00:00:00.000Z', '2026-10-28T00:00:00.000Z'],
      [['daily 02:00-03:00 Europe/Berlin', 'Mon-Fri 01:00-05:00 America/New_York', 'Sun 22:00-06:00 UTC'], '2026-03-05T00:00:00.000Z', '2026-03-11T00:00:00.000Z'],
      [['daily 02:00-03:00 Europe/Berlin', 'Fri-Mon 01:30-03:30 Europe/Berlin', 'Sun 02:30-02:00 America/New_York'], '2026-03-26T00:00:00.000Z', '2026-04-01T00:00:00.000Z'],
      [['daily 01:00-02:00 America/New_York', 'Fri-Mon 23:00-01:00 Asia/Tokyo'], '2026-10-29T00:00:00.000Z', '2026-11-04T00:00:00.000Z'],
    ];
    for (const [texts, fromIso, toIso] of cases) {
      const ws = windows(...texts);
      const byScan = openSpansByScan(ws, fromIso, toIso);
      assert.ok(byScan.length > 0, 'the case has open periods');
      assert.deepEqual(openSpansByChanges(ws, fromIso, toIso), byScan, texts.join(' + '));
    }
  });

  test('is fast: well under 5 ms a call with several zones', () => {
    const ws = windows('Mon-Thu 09:00-17:00 Europe/Berlin', 'Sat,Sun 22:00-06:00 America/New_York', 'daily 01:00-05:00 Asia/Tokyo');
    const startMs = Date.parse('2026-03-01T00:00:00.000Z');
    nextWindowChange(ws, new Date(startMs));
    const calls = 200;
    const began = performance.now();
    for (let i = 0; i < calls; i++) nextWindowChange(ws, new Date(startMs + i * 97 * MINUTE_MS));
    const perCallMs = (performance.now() - began) / calls;
    assert.ok(perCallMs < 5, `${perCallMs.toFixed(3)} ms per call`);
  });
});
