import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { StoreError, type ReleaseStore } from '../../src/store/release-store.js';

export interface StoreUnderTest {
  store: ReleaseStore;
  /** Remove everything the store holds and stop anything started for it. */
  close(): Promise<void>;
}

export interface SuiteOptions {
  /**
   * Whether a reader racing an overwrite must see the old or the new bytes whole. Folders
   * (temp+rename) and S3 guarantee it; s3rver, the S3 stand-in, overwrites its file in place,
   * so against it only the sequential overwrite is checked.
   */
  concurrentOverwriteIsAtomic: boolean;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function storeErrorWith(code: string) {
  return (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  };
}

/** One conformance suite for every ReleaseStore: each implementation must pass all of it. */
export function releaseStoreSuite(name: string, open: () => Promise<StoreUnderTest>, options: SuiteOptions): void {
  describe(`ReleaseStore conformance: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: ReleaseStore;
    let scratch: string;

    before(async () => {
      subject = await open();
      store = subject.store;
      scratch = await mkdtemp(join(tmpdir(), 'bytebiota-store-suite-'));
    });
    after(async () => {
      await subject.close();
      await rm(scratch, { recursive: true, force: true });
    });

    test('ping succeeds on a reachable store', async () => {
      await store.ping();
    });

    test('write then read, stat and openRead return the same bytes', async () => {
      const data = Buffer.from('{"hello":"world"}\n');
      await store.write('channels/stable/worker-release.json', data);
      assert.deepEqual(await store.read('channels/stable/worker-release.json', 1024), data);
      const info = await store.stat('channels/stable/worker-release.json');
      assert.ok(info);
      assert.equal(info.size, data.length);
      assert.ok(info.etag.length > 0);
      assert.ok(info.lastModified instanceof Date && !Number.isNaN(info.lastModified.getTime()));
      const opened = await store.openRead('channels/stable/worker-release.json');
      assert.ok(opened);
      assert.equal(opened.size, data.length);
      assert.equal(opened.etag, info.etag);
      assert.deepEqual(await readAll(opened.stream), data);
    });

    test('missing keys: stat, read and openRead return null', async () => {
      assert.equal(await store.stat('channels/nowhere/worker-release.json'), null);
      assert.equal(await store.read('channels/nowhere/worker-release.json', 1024), null);
      assert.equal(await store.openRead('artifacts/9.9.9/none'), null);
      assert.equal(await store.openRead('artifacts/9.9.9/none', { start: 0, end: 3 }), null);
      // A key below an existing object (a file used as a folder) is missing too.
      assert.equal(await store.read('channels/stable/worker-release.json/below', 1024), null);
    });

    test('writeFile streams a local file in; ranges read exactly the bytes asked for', async () => {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const source = join(scratch, 'artifact.bin');
      await writeFile(source, data);
      await store.writeFile('artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64', source);
      const info = await store.stat('artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64');
      assert.equal(info?.size, data.length);

      const whole = await store.openRead('artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64');
      assert.ok(whole);
      assert.deepEqual(await readAll(whole.stream), data);

      const ranges = [
        { start: 0, end: 0 },
        { start: 0, end: 1023 },
        { start: 1_000_000, end: 2_500_000 },
        { start: data.length - 10, end: data.length - 1 },
      ];
      for (const range of ranges) {
        const part = await store.openRead('artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64', range);
        assert.ok(part);
        // size is the whole object's, so a Range response can state `bytes a-b/size`.
        assert.equal(part.size, data.length);
        assert.equal(part.etag, info?.etag);
        assert.deepEqual(await readAll(part.stream), data.subarray(range.start, range.end + 1), `range ${range.start}-${range.end}`);
      }
    });

    test('list returns the keys under a prefix, and only those', async () => {
      await store.write('channels/canary/history/1.json', Buffer.from('1'));
      await store.write('channels/canary/history/2.json', Buffer.from('2'));
      await store.write('channels/canary/worker-release.json', Buffer.from('2'));
      await store.write('channels/canary-b/history/1.json', Buffer.from('x'));
      assert.deepEqual((await store.list('channels/canary/history/')).sort(), [
        'channels/canary/history/1.json',
        'channels/canary/history/2.json',
      ]);
      assert.deepEqual((await store.list('channels/canary/')).sort(), [
        'channels/canary/history/1.json',
        'channels/canary/history/2.json',
        'channels/canary/worker-release.json',
      ]);
      assert.deepEqual(await store.list('channels/none/'), []);
    });

    test('read refuses an object over maxBytes with store_object_too_large', async () => {
      await store.write('channels/big/worker-release.json', Buffer.alloc(4096, 0x20));
      await assert.rejects(store.read('channels/big/worker-release.json', 4095), storeErrorWith('store_object_too_large'));
      assert.equal((await store.read('channels/big/worker-release.json', 4096))?.length, 4096);
    });

    const unsafeKeys = [
      '../x',
      'channels/../../x',
      '/etc/passwd',
      'channels\\stable\\worker-release.json',
      'channels//x',
      'channels/./x',
      '',
      'channels/stable/',
      'a'.repeat(513),
    ];
    for (const key of unsafeKeys) {
      test(`unsafe key ${JSON.stringify(key.length > 40 ? `${key.slice(0, 10)}...` : key)} is refused with store_key_invalid`, async () => {
        await assert.rejects(store.read(key, 1024), storeErrorWith('store_key_invalid'));
        await assert.rejects(store.stat(key), storeErrorWith('store_key_invalid'));
        await assert.rejects(store.openRead(key), storeErrorWith('store_key_invalid'));
        await assert.rejects(store.write(key, Buffer.from('x')), storeErrorWith('store_key_invalid'));
        await assert.rejects(store.writeFile(key, join(scratch, 'artifact.bin')), storeErrorWith('store_key_invalid'));
      });
    }

    test('overwrite replaces the whole object', async () => {
      const key = 'channels/over/worker-release.json';
      await store.write(key, Buffer.alloc(200_000, 0x61));
      await store.write(key, Buffer.alloc(100, 0x62));
      assert.deepEqual(await store.read(key, 1_000_000), Buffer.alloc(100, 0x62));
      const source = join(scratch, 'replacement.bin');
      await writeFile(source, Buffer.alloc(50, 0x63));
      await store.writeFile(key, source);
      assert.deepEqual(await store.read(key, 1_000_000), Buffer.alloc(50, 0x63));
    });

    if (options.concurrentOverwriteIsAtomic) {
      test('readers racing overwrites see the old object or the new one, whole', async () => {
        const key = 'channels/race/worker-release.json';
        const versions = [Buffer.alloc(300_000, 0x41), Buffer.alloc(200_000, 0x42), Buffer.alloc(100_000, 0x43)];
        await store.write(key, versions[0] as Buffer);
        const writes = (async () => {
          for (let round = 0; round < 20; round += 1) await store.write(key, versions[round % versions.length] as Buffer);
        })();
        let reads = 0;
        let writesDone = false;
        void writes.then(() => (writesDone = true));
        while (!writesDone || reads < 20) {
          const seen = await store.read(key, 1_000_000);
          assert.ok(seen && versions.some((version) => version.equals(seen)), `read ${reads} saw a torn object of ${seen?.length} bytes`);
          reads += 1;
        }
        await writes;
      });
    }

    test('writeFile of a missing source fails and leaves the key absent', async () => {
      await assert.rejects(store.writeFile('artifacts/2.0.0/missing', join(scratch, 'no-such-file')), (err: unknown) => {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOENT');
        return true;
      });
      assert.equal(await store.stat('artifacts/2.0.0/missing'), null);
    });
  });
}
