import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { ensureFreeSpace, freeBytes, MIN_RESERVE_BYTES, reserveBytesFor } from '../../../src/worker/engine/disk-space.js';
import { UpdateError } from '../../../src/protocol/reason-codes.js';

const MiB = 1024 * 1024;
const statfsWith = (freeBytesAvailable: number) => async () => ({ bavail: BigInt(freeBytesAvailable / 4096), bsize: 4096n });

describe('disk space', () => {
  test('reserve is the larger of 64 MiB and 10%', () => {
    assert.equal(reserveBytesFor(10 * MiB), MIN_RESERVE_BYTES);
    assert.equal(reserveBytesFor(1000 * MiB), 100 * MiB);
  });

  test('enough room passes; too little is disk_full', async () => {
    await ensureFreeSpace('/x', 10 * MiB, 10 * MiB, statfsWith(74 * MiB));
    await assert.rejects(
      ensureFreeSpace('/x', 10 * MiB, 10 * MiB, statfsWith(74 * MiB - 4096)),
      (err) => err instanceof UpdateError && err.code === 'disk_full',
    );
  });

  test('reads the real filesystem by default', async () => {
    assert.ok((await freeBytes(tmpdir())) > 0);
  });
});
