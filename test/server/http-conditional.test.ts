import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ifNoneMatchMatches, ifRangeAllows, parseRange } from '../../src/server/http-conditional.js';

test('parseRange: one byte range of a 1000-byte object', () => {
  const cases: Array<[string | undefined, ReturnType<typeof parseRange>]> = [
    [undefined, { kind: 'none' }],
    ['bytes=0-99', { kind: 'range', range: { start: 0, end: 99 } }],
    ['bytes=900-', { kind: 'range', range: { start: 900, end: 999 } }],
    ['bytes=900-5000', { kind: 'range', range: { start: 900, end: 999 } }],
    ['bytes=-100', { kind: 'range', range: { start: 900, end: 999 } }],
    ['bytes=-5000', { kind: 'range', range: { start: 0, end: 999 } }],
    ['bytes=1000-', { kind: 'unsatisfiable' }],
    ['bytes=-0', { kind: 'unsatisfiable' }],
    ['bytes=99999999999999999-', { kind: 'unsatisfiable' }],
    ['bytes=5-1', { kind: 'none' }],
    ['bytes=0-1,5-9', { kind: 'none' }],
    ['items=0-1', { kind: 'none' }],
    ['bytes=-', { kind: 'none' }],
    ['garbage', { kind: 'none' }],
  ];
  for (const [header, expected] of cases) assert.deepEqual(parseRange(header, 1000), expected, String(header));
});

test('If-None-Match and If-Range comparisons', () => {
  assert.equal(ifNoneMatchMatches('"abc"', '"abc"'), true);
  assert.equal(ifNoneMatchMatches('W/"abc"', '"abc"'), true);
  assert.equal(ifNoneMatchMatches('"x", "abc"', '"abc"'), true);
  assert.equal(ifNoneMatchMatches('*', '"abc"'), true);
  assert.equal(ifNoneMatchMatches('"abd"', '"abc"'), false);
  assert.equal(ifNoneMatchMatches(undefined, '"abc"'), false);
  assert.equal(ifRangeAllows(undefined, '"abc"'), true);
  assert.equal(ifRangeAllows('"abc"', '"abc"'), true);
  assert.equal(ifRangeAllows('W/"abc"', '"abc"'), false);
  assert.equal(ifRangeAllows('"old"', '"abc"'), false);
  assert.equal(ifRangeAllows('Wed, 21 Oct 2015 07:28:00 GMT', '"abc"'), false);
});
