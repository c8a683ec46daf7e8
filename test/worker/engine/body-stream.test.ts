import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { pumpBody } from '../../../src/worker/engine/body-stream.js';

describe('pumpBody', () => {
  const chunks = (count: number) => Array.from({ length: count }, (_, index) => Buffer.from([index]));

  test('delivers every chunk in order and delivers none while a returned promise is pending', async () => {
    const body = Readable.from(chunks(50), { objectMode: false });
    const seen: number[] = [];
    let waiting = false;
    await pumpBody(body, (chunk) => {
      assert.equal(waiting, false, 'a chunk arrived while the previous one was still being taken');
      seen.push(chunk[0]!);
      if (seen.length % 7 !== 0) return undefined;
      waiting = true;
      return new Promise((resolve) =>
        setTimeout(() => {
          waiting = false;
          resolve();
        }, 5),
      );
    });
    assert.deepEqual(seen, [...Array(50).keys()]);
  });

  test('waits for the last pending promise before resolving', async () => {
    let finished = false;
    await pumpBody(Readable.from(chunks(1)), () => new Promise<void>((resolve) => setTimeout(() => ((finished = true), resolve()), 20)));
    assert.equal(finished, true);
  });

  test('a throw or a rejection from the consumer rejects and stops delivery', async () => {
    let calls = 0;
    await assert.rejects(
      pumpBody(Readable.from(chunks(20)), () => {
        calls += 1;
        if (calls === 3) throw new Error('too much');
        return undefined;
      }),
      /too much/,
    );
    assert.equal(calls, 3);
    await assert.rejects(
      pumpBody(Readable.from(chunks(20)), () => Promise.reject(new Error('disk gone'))),
      /disk gone/,
    );
  });

  test("the body's error rejects, and a body destroyed before its end rejects too", async () => {
    const broken = new PassThrough();
    const pumping = pumpBody(broken, () => undefined);
    broken.write(Buffer.from('abc'));
    broken.destroy(new Error('connection reset'));
    await assert.rejects(pumping, /connection reset/);

    const cut = new PassThrough();
    const cutPumping = pumpBody(cut, () => undefined);
    cut.write(Buffer.from('abc'));
    cut.destroy();
    await assert.rejects(cutPumping, /closed before its end/);
  });
});
