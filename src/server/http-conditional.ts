import type { ByteRange } from '../store/release-store.js';

/**
 * HTTP conditional and range requests (RFC 9110 sections 13 and 14), the parts a resumable
 * download needs: If-None-Match, If-Range with an entity tag, and one byte range.
 */

/** True when an If-None-Match header names `etag` (weak comparison, as RFC 9110 13.1.2 says). */
export function ifNoneMatchMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const strip = (tag: string) => tag.trim().replace(/^W\//, '');
  const wanted = strip(etag);
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    return tag === '*' || strip(tag) === wanted;
  });
}

/**
 * If-Range (RFC 9110 13.1.5): the range applies only when the validator is a strong entity tag
 * equal to the current one. A date or a weak or stale tag means "send me the whole new file".
 */
export function ifRangeAllows(header: string | undefined, etag: string): boolean {
  if (header === undefined) return true;
  const tag = header.trim();
  return !tag.startsWith('W/') && tag === etag;
}

export type RangeResult = { kind: 'none' } | { kind: 'range'; range: ByteRange } | { kind: 'unsatisfiable' };

const BYTE_RANGE = /^bytes=(\d*)-(\d*)$/;

/**
 * One byte range of an object of `size` bytes. Syntax we do not serve (other units, several
 * ranges, garbage) is ignored and the whole object is sent, which RFC 9110 14.2 allows; a
 * well-formed range that misses the object is unsatisfiable (416).
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const match = BYTE_RANGE.exec(header.trim());
  if (!match) return { kind: 'none' };
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return { kind: 'none' };
  if (first.length > 16 || last.length > 16) return { kind: 'unsatisfiable' };
  if (first === '') {
    // A suffix range: the last N bytes.
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return { kind: 'none' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'range', range: { start, end } };
}
