import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { S3Store, parseS3Location, s3ClientConfigFromEnv } from '../../src/store/s3-store.js';
import { StoreError } from '../../src/store/release-store.js';
import { UsageError } from '../../src/shared/errors.js';
import { releaseStoreSuite } from './release-store-suite.js';
import { startS3, type RunningS3 } from './s3rver-server.js';

releaseStoreSuite(
  'S3Store against s3rver, under a prefix',
  async () => {
    const s3 = await startS3();
    return { store: S3Store.fromUrl(`s3://${s3.bucket}/team/prod`, s3.env), close: s3.close };
  },
  { concurrentOverwriteIsAtomic: false },
);

releaseStoreSuite(
  'S3Store against s3rver, at the bucket root',
  async () => {
    const s3 = await startS3();
    return { store: S3Store.fromUrl(`s3://${s3.bucket}`, s3.env), close: s3.close };
  },
  { concurrentOverwriteIsAtomic: false },
);

/** A port on 127.0.0.1 that nothing listens on: bind one, note it, close it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function storeErrorWith(code: string) {
  return (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  };
}

describe('S3Store specifics', () => {
  let s3: RunningS3;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.close();
  });

  test('stores under different prefixes of one bucket do not see each other', async () => {
    const a = S3Store.fromUrl(`s3://${s3.bucket}/a`, s3.env);
    const b = S3Store.fromUrl(`s3://${s3.bucket}/ab`, s3.env);
    await a.write('channels/stable/worker-release.json', Buffer.from('a'));
    await b.write('channels/stable/worker-release.json', Buffer.from('b'));
    assert.deepEqual(await a.read('channels/stable/worker-release.json', 10), Buffer.from('a'));
    assert.deepEqual(await a.list('channels/'), ['channels/stable/worker-release.json']);
    assert.deepEqual(await b.list('channels/'), ['channels/stable/worker-release.json']);
    assert.equal(a.location, `s3://${s3.bucket}/a`);
  });

  test('the ETag comes from S3 and changes with the content', async () => {
    const store = S3Store.fromUrl(`s3://${s3.bucket}/etag`, s3.env);
    await store.write('k.json', Buffer.from('one'));
    const first = await store.stat('k.json');
    await store.write('k.json', Buffer.from('two'));
    const second = await store.stat('k.json');
    // s3rver, like S3 for single-part uploads, uses the quoted MD5 of the bytes.
    assert.equal(first?.etag, '"f97c5d29941bfb1b2fdab0874906ab82"');
    assert.notEqual(first?.etag, second?.etag);
  });

  test('a missing bucket is store_unavailable, never a missing object', async () => {
    const store = S3Store.fromUrl('s3://no-such-bucket/x', s3.env);
    await assert.rejects(store.ping(), storeErrorWith('store_unavailable'));
    await assert.rejects(store.read('channels/stable/worker-release.json', 1024), storeErrorWith('store_unavailable'));
    await assert.rejects(store.openRead('artifacts/1.0.0/f'), storeErrorWith('store_unavailable'));
    await assert.rejects(store.write('channels/stable/worker-release.json', Buffer.from('x')), storeErrorWith('store_unavailable'));
  });

  test('an unreachable endpoint is store_unavailable for every operation', async () => {
    const port = await closedPort();
    const env = { ...s3.env, BYTEBIOTA_S3_ENDPOINT: `http://127.0.0.1:${port}` };
    const store = new S3Store(parseS3Location('s3://releases/x'), { ...s3ClientConfigFromEnv(env), maxAttempts: 1 });
    await assert.rejects(store.ping(), storeErrorWith('store_unavailable'));
    await assert.rejects(store.stat('k'), storeErrorWith('store_unavailable'));
    await assert.rejects(store.read('k', 10), storeErrorWith('store_unavailable'));
    await assert.rejects(store.list('channels/'), storeErrorWith('store_unavailable'));
    await assert.rejects(store.write('k', Buffer.from('x')), storeErrorWith('store_unavailable'));
  });

  test('a range past the end yields no bytes, as a file stream does', async () => {
    const store = S3Store.fromUrl(`s3://${s3.bucket}/range`, s3.env);
    await store.write('k.bin', Buffer.from('0123456789'));
    const opened = await store.openRead('k.bin', { start: 50, end: 60 });
    assert.ok(opened);
    assert.equal(opened.size, 10);
    const chunks: Buffer[] = [];
    for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
    assert.equal(Buffer.concat(chunks).length, 0);
  });
});

describe('parseS3Location', () => {
  const valid: [string, { bucket: string; prefix: string }][] = [
    ['s3://releases', { bucket: 'releases', prefix: '' }],
    ['s3://releases/', { bucket: 'releases', prefix: '' }],
    ['s3://my.bucket-1/team/prod', { bucket: 'my.bucket-1', prefix: 'team/prod' }],
    ['s3://releases/team/prod/', { bucket: 'releases', prefix: 'team/prod' }],
  ];
  for (const [location, expected] of valid) {
    test(`${location} parses`, () => assert.deepEqual(parseS3Location(location), expected));
  }
  const invalid = ['s3://', 's3:///prefix', 's3://UPPER/x', 's3://ab', 's3://releases/../x', 's3://releases/a//b', 'http://releases/x'];
  for (const location of invalid) {
    test(`${location} is a usage error`, () => assert.throws(() => parseS3Location(location), UsageError));
  }
});

describe('s3ClientConfigFromEnv', () => {
  test('a custom endpoint gets path-style addressing and required-only checksums', () => {
    const config = s3ClientConfigFromEnv({ BYTEBIOTA_S3_ENDPOINT: 'http://127.0.0.1:9000', AWS_REGION: 'eu-west-1' });
    assert.equal(config.endpoint, 'http://127.0.0.1:9000');
    assert.equal(config.region, 'eu-west-1');
    assert.equal(config.forcePathStyle, true);
    assert.equal(config.requestChecksumCalculation, 'WHEN_REQUIRED');
  });
  test('plain AWS keeps virtual-host addressing and the SDK checksums', () => {
    const config = s3ClientConfigFromEnv({ AWS_DEFAULT_REGION: 'us-west-2' });
    assert.equal(config.endpoint, undefined);
    assert.equal(config.region, 'us-west-2');
    assert.equal(config.forcePathStyle, false);
    assert.equal(config.requestChecksumCalculation, 'WHEN_SUPPORTED');
  });
  test('explicit settings win', () => {
    const config = s3ClientConfigFromEnv({
      BYTEBIOTA_S3_ENDPOINT: 'https://s3.example.com',
      BYTEBIOTA_S3_FORCE_PATH_STYLE: 'false',
      AWS_REQUEST_CHECKSUM_CALCULATION: 'when_supported',
    });
    assert.equal(config.forcePathStyle, false);
    assert.equal(config.requestChecksumCalculation, 'WHEN_SUPPORTED');
  });
});
