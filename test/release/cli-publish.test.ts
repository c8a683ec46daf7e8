import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePublicKey, keyIdOf } from '../../src/trust/keys.js';
import { verifyManifest } from '../../src/trust/verify.js';
import { verifyChunkIndex } from '../../src/trust/verify-chunk-index.js';
import type { ReleaseManifest } from '../../src/protocol/manifest.js';
import { S3Store } from '../../src/store/s3-store.js';
import { listFiles, runRelease } from './release-cli.js';
import { startS3, type RunningS3 } from '../store/s3rver-server.js';

let root: string;
const keyFile = (name: string) => join(root, 'keys', `${name}.key`);
const pubFile = (name: string) => join(root, 'keys', `${name}.pub`);
const file = (name: string) => join(root, name);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function readManifest(store: string, key: string): Promise<ReleaseManifest> {
  return JSON.parse(await readFile(join(store, key), 'utf8')) as ReleaseManifest;
}

async function ok(args: string[], env: Record<string, string> = {}) {
  const run = await runRelease(args, env);
  assert.equal(run.exitCode, 0, `${args.join(' ')}\nstderr: ${run.stderr}`);
  return run;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bytebiota-release-publish-'));
  await Promise.all(['a', 'b', 'c'].map((name) => ok(['keygen', '--out', join(root, 'keys'), '--name', name])));
  for (const name of ['w100', 'w100-arm', 'w110', 'w120']) await writeFile(file(name), randomBytes(300 * 1024));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('keygen', () => {
  test('writes a 0600 PKCS#8 private key and the base64 public key, and prints the key id', async () => {
    const run = await ok(['keygen', '--out', join(root, 'more-keys')]);
    const privateInfo = await stat(join(root, 'more-keys', 'release.key'));
    assert.equal(privateInfo.mode & 0o777, 0o600);
    assert.match(await readFile(join(root, 'more-keys', 'release.key'), 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    const publicKey = parsePublicKey(await readFile(join(root, 'more-keys', 'release.pub'), 'utf8'));
    assert.match(run.stdout, new RegExp(`^keyid ${keyIdOf(publicKey.raw)}$`, 'm'));
    assert.match(run.stdout, new RegExp(`^public_key ${publicKey.raw.toString('base64').replace(/[+/]/g, '\\$&')}$`, 'm'));
    assert.doesNotMatch(run.stdout + run.stderr, /PRIVATE KEY/);
  });
});

describe('publish and promote on a folder store', () => {
  const store = () => file('store');

  test('publish, publish again, promote twice, roll back: serials increment and history is kept', async () => {
    await ok(['publish', '--store', store(), '--channel', 'canary', '--version', '1.0.0', '--artifact', `linux-x64=${file('w100')}`, `linux-arm64=${file('w100-arm')}`, '--key', keyFile('a'), '--minimum-version', '0.9.0', '--notes', 'first']);
    await ok(['publish', '--store', store(), '--channel', 'canary', '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyFile('a'), '--expires-in', '12h']);
    await ok(['promote', '--store', store(), '--from', 'canary', '--to', 'stable', '--key', keyFile('a')]);
    await ok(['publish', '--store', store(), '--channel', 'canary', '--version', '1.2.0', '--artifact', `linux-x64=${file('w120')}`, '--key', keyFile('a')]);
    await ok(['promote', '--store', store(), '--from', 'canary', '--to', 'stable', '--key', keyFile('a')]);
    // Roll the fleet on canary back to 1.0.0: its artifacts are already stored and are reused.
    const rollback = await ok(['publish', '--store', store(), '--channel', 'canary', '--version', '1.0.0', '--artifact', `linux-x64=${file('w100')}`, '--key', keyFile('a'), '--allow-downgrade']);
    assert.match(rollback.stderr, /reused artifacts\/1\.0\.0\/bytebiota-worker-1\.0\.0-linux-x64/);

    assert.deepEqual(await listFiles(store()), [
      // Each artifact with its signed chunk index, for differential updates.
      'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-arm64',
      'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-arm64.chunks.json',
      'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64',
      'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64.chunks.json',
      'artifacts/1.1.0/bytebiota-worker-1.1.0-linux-x64',
      'artifacts/1.1.0/bytebiota-worker-1.1.0-linux-x64.chunks.json',
      'artifacts/1.2.0/bytebiota-worker-1.2.0-linux-x64',
      'artifacts/1.2.0/bytebiota-worker-1.2.0-linux-x64.chunks.json',
      'channels/canary/history/1.json',
      'channels/canary/history/2.json',
      'channels/canary/history/3.json',
      'channels/canary/history/4.json',
      'channels/canary/worker-release.json',
      'channels/stable/history/1.json',
      'channels/stable/history/2.json',
      'channels/stable/worker-release.json',
    ]);

    const publicKey = parsePublicKey(await readFile(pubFile('a'), 'utf8'));
    const expectations: [string, string, number, string, boolean][] = [
      ['canary', 'channels/canary/history/1.json', 1, '1.0.0', false],
      ['canary', 'channels/canary/history/2.json', 2, '1.1.0', false],
      ['canary', 'channels/canary/history/3.json', 3, '1.2.0', false],
      ['canary', 'channels/canary/history/4.json', 4, '1.0.0', true],
      ['stable', 'channels/stable/history/1.json', 1, '1.1.0', false],
      ['stable', 'channels/stable/history/2.json', 2, '1.2.0', false],
    ];
    for (const [channel, key, serial, version, allowDowngrade] of expectations) {
      const bytes = await readFile(join(store(), key));
      const { signed } = verifyManifest(bytes, { trustedKeys: [publicKey], channel, now: new Date() });
      assert.equal(signed.serial, serial, key);
      assert.equal(signed.version, version, key);
      assert.equal(signed.allow_downgrade, allowDowngrade, key);
      for (const [platform, entry] of Object.entries(signed.artifacts)) {
        const data = await readFile(join(store(), entry.url));
        assert.equal(entry.size, data.length, `${key} ${platform}`);
        assert.equal(entry.sha256, sha256(data), `${key} ${platform}`);
      }
    }
    // The current manifest is the newest history entry, byte for byte.
    assert.deepEqual(await readFile(join(store(), 'channels/canary/worker-release.json')), await readFile(join(store(), 'channels/canary/history/4.json')));
    assert.deepEqual(await readFile(join(store(), 'channels/stable/worker-release.json')), await readFile(join(store(), 'channels/stable/history/2.json')));

    const first = (await readManifest(store(), 'channels/canary/history/1.json')).signed;
    assert.equal(first.minimum_version, '0.9.0');
    assert.equal(first.recommended_version, '1.0.0');
    assert.equal(first.notes, 'first');
    assert.deepEqual(Object.keys(first.artifacts).sort(), ['linux-arm64', 'linux-x64']);
    assert.equal(first.artifacts['linux-x64']?.url, 'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64');
    assert.equal(Date.parse(first.expires) - Date.parse(first.released_at), 30 * 86_400_000);
    const second = (await readManifest(store(), 'channels/canary/history/2.json')).signed;
    assert.equal(Date.parse(second.expires) - Date.parse(second.released_at), 12 * 3_600_000);

    // Promote re-signs the same release: everything but channel, serial and times is identical.
    const promoted = (await readManifest(store(), 'channels/stable/history/1.json')).signed;
    const { channel: _c1, serial: _s1, released_at: _r1, expires: _e1, ...promotedRest } = promoted;
    const { channel: _c2, serial: _s2, released_at: _r2, expires: _e2, ...sourceRest } = second;
    assert.deepEqual(promotedRest, sourceRest);
  });

  test('verify prints what it verified, and fails with the reason code a worker would report', async () => {
    const manifest = join(store(), 'channels/stable/worker-release.json');
    const publicKeyText = (await readFile(pubFile('a'), 'utf8')).trim();
    const good = await ok(['verify', '--trusted-key', publicKeyText, manifest]);
    assert.match(good.stdout, /^channel stable serial 2 version 1\.2\.0$/m);
    assert.match(good.stdout, /^signed_by [0-9a-f]{64}$/m);
    await ok(['verify', '--trusted-key', pubFile('a'), '--channel', 'stable', manifest]);

    await writeFile(file('garbage.json'), '{"signed": 1}');
    const failures: [string[], number, string | undefined][] = [
      [['verify', '--trusted-key', pubFile('b'), manifest], 1, 'signature_invalid'],
      [['verify', '--trusted-key', pubFile('a'), '--channel', 'canary', manifest], 1, 'channel_mismatch'],
      [['verify', '--trusted-key', pubFile('a'), file('garbage.json')], 1, 'manifest_invalid'],
      [['verify', '--trusted-key', pubFile('a'), file('missing.json')], 1, 'manifest_unreadable'],
      [['verify', '--trusted-key', pubFile('a'), '--trusted-key', pubFile('b'), '--threshold', '2', manifest], 1, 'signature_invalid'],
      [['verify', '--trusted-key', pubFile('a'), '--threshold', '2', manifest], 2, 'usage'],
      [['verify', '--trusted-key', file('garbage.json'), manifest], 1, 'key_invalid'],
      [['verify', manifest], 2, undefined],
    ];
    for (const [args, exitCode, code] of failures) {
      const run = await runRelease(args);
      assert.equal(run.exitCode, exitCode, `${args.join(' ')}: ${run.stderr}`);
      assert.equal(run.errorCode, code, `${args.join(' ')}: ${run.stderr}`);
    }
  });

  test('threshold signing, key rotation with --new-key, and --base-url', async () => {
    const rotated = file('rotated-store');
    const two = await ok(['publish', '--store', rotated, '--channel', 'stable', '--version', '2.0.0', '--artifact', `linux-x64=${file('w100')}`, '--key', keyFile('a'), keyFile('b')]);
    assert.equal(two.stdout.match(/^signed_by /gm)?.length, 2);
    await ok(['verify', '--trusted-key', pubFile('a'), '--trusted-key', pubFile('b'), '--threshold', '2', join(rotated, 'channels/stable/worker-release.json')]);

    // Rotate to key c: refused without --new-key, accepted with it; afterwards a alone is the stranger.
    const refused = await runRelease(['publish', '--store', rotated, '--channel', 'stable', '--version', '2.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyFile('c')]);
    assert.equal(refused.errorCode, 'store_key_mismatch');
    await ok(['publish', '--store', rotated, '--channel', 'stable', '--version', '2.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyFile('c'), '--new-key', '--base-url', 'https://downloads.example.com/worker']);
    const after = await runRelease(['publish', '--store', rotated, '--channel', 'stable', '--version', '2.2.0', '--artifact', `linux-x64=${file('w120')}`, '--key', keyFile('a')]);
    assert.equal(after.errorCode, 'store_key_mismatch');

    const current = (await readManifest(rotated, 'channels/stable/worker-release.json')).signed;
    assert.equal(current.serial, 2);
    assert.equal(current.artifacts['linux-x64']?.url, 'https://downloads.example.com/worker/artifacts/2.1.0/bytebiota-worker-2.1.0-linux-x64');
  });
});

describe('publish and promote on an S3 store', () => {
  let s3: RunningS3;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.close();
  });

  test('the same layout lands in the bucket, under the prefix', async () => {
    const location = `s3://${s3.bucket}/fleet`;
    await ok(['publish', '--store', location, '--channel', 'canary', '--version', '3.0.0', '--artifact', `linux-x64=${file('w100')}`, '--key', keyFile('a')], s3.env);
    await ok(['promote', '--store', location, '--from', 'canary', '--to', 'stable', '--key', keyFile('a')], s3.env);
    const store = S3Store.fromUrl(location, s3.env);
    assert.deepEqual((await store.list('')).sort(), [
      'artifacts/3.0.0/bytebiota-worker-3.0.0-linux-x64',
      'artifacts/3.0.0/bytebiota-worker-3.0.0-linux-x64.chunks.json',
      'channels/canary/history/1.json',
      'channels/canary/worker-release.json',
      'channels/stable/history/1.json',
      'channels/stable/worker-release.json',
    ]);
    const bytes = await store.read('channels/stable/worker-release.json', 1024 * 1024);
    assert.ok(bytes);
    const publicKey = parsePublicKey(await readFile(pubFile('a'), 'utf8'));
    const { signed } = verifyManifest(bytes, { trustedKeys: [publicKey], channel: 'stable', now: new Date() });
    assert.equal(signed.artifacts['linux-x64']?.sha256, sha256(await readFile(file('w100'))));
    // The index in the bucket is signed by the same key and describes that very artifact.
    const entry = signed.artifacts['linux-x64']!;
    const index = await store.read('artifacts/3.0.0/bytebiota-worker-3.0.0-linux-x64.chunks.json', 64 * 1024 * 1024);
    assert.ok(index);
    const verified = verifyChunkIndex(index, { trustedKeys: [publicKey], threshold: 1, version: '3.0.0', platform: 'linux-x64', sha256: entry.sha256, size: entry.size });
    assert.equal(verified.chunk_lengths.reduce((a, b) => a + b, 0), entry.size);
  });
});
