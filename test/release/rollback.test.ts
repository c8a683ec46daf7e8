import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePublicKey, type PublicKey } from '../../src/trust/keys.js';
import { verifyManifest } from '../../src/trust/verify.js';
import type { ReleaseManifest, SignedRelease } from '../../src/protocol/manifest.js';
import { S3Store } from '../../src/store/s3-store.js';
import { listFiles, runRelease, snapshot } from './release-cli.js';
import { startS3, type RunningS3 } from '../store/s3rver-server.js';

/**
 * `rollback`, through the real program on real stores: it signs an earlier version again from
 * the artifacts the store holds now, with the next serial and allow_downgrade, and refuses
 * everything else with a code and an untouched store.
 */
let root: string;
let publicKeyA: PublicKey;
const keyFile = (name: string) => join(root, 'keys', `${name}.key`);
const pubFile = (name: string) => join(root, 'keys', `${name}.pub`);
const file = (name: string) => join(root, name);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const DAY_MS = 86_400_000;
const x64Key = (version: string) => `artifacts/${version}/bytebiota-worker-${version}-linux-x64`;
const arm64Key = (version: string) => `artifacts/${version}/bytebiota-worker-${version}-linux-arm64`;

async function ok(args: string[], env: Record<string, string> = {}) {
  const run = await runRelease(args, env);
  assert.equal(run.exitCode, 0, `${args.join(' ')}\nstderr: ${run.stderr}`);
  return run;
}

async function readManifest(store: string, key: string): Promise<ReleaseManifest> {
  return JSON.parse(await readFile(join(store, key), 'utf8')) as ReleaseManifest;
}

/** The channel's current manifest, checked as a worker on `currentVersion` that has accepted `highestSerial`. */
async function workerAccepts(store: string, channel: string, currentVersion: string, highestSerial: number): Promise<SignedRelease> {
  const bytes = await readFile(join(store, `channels/${channel}/worker-release.json`));
  return verifyManifest(bytes, { trustedKeys: [publicKeyA], channel, highestSerial, currentVersion, now: new Date() }).signed;
}

const publish = (store: string, version: string, ...rest: string[]) =>
  ok(['publish', '--store', store, '--channel', 'canary', '--version', version, '--key', keyFile('a'), ...rest]);
const rollback = (store: string, ...rest: string[]) => ['rollback', '--store', store, '--channel', 'canary', ...rest];

/**
 * A fresh copy of a store where canary released 1.0.0 for two platforms (minimum 0.9.0), then
 * 1.1.0 for one, published with `publish110` (the shared baseline when there are none).
 */
async function storeAt110(name: string, ...publish110: string[]): Promise<string> {
  const store = file(name);
  await cp(publish110.length === 0 ? file('at110') : file('at100'), store, { recursive: true });
  if (publish110.length > 0) await publish(store, '1.1.0', '--artifact', `linux-x64=${file('w110')}`, ...publish110);
  return store;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bytebiota-release-rollback-'));
  await Promise.all(['a', 'b'].map((name) => ok(['keygen', '--out', join(root, 'keys'), '--name', name])));
  publicKeyA = parsePublicKey(await readFile(pubFile('a'), 'utf8'));
  for (const name of ['w100', 'w100-arm', 'w110', 'w120']) await writeFile(file(name), randomBytes(256 * 1024));
  await publish(file('at100'), '1.0.0', '--artifact', `linux-x64=${file('w100')}`, `linux-arm64=${file('w100-arm')}`, '--minimum-version', '0.9.0');
  await cp(file('at100'), file('at110'), { recursive: true });
  await publish(file('at110'), '1.1.0', '--artifact', `linux-x64=${file('w110')}`);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('rollback on a folder store', { concurrency: 3 }, () => {
  test('1.0.0, 1.1.0, rollback to 1.0.0: serial 3, allow_downgrade, the stored hashes, and a 1.1.0 worker at serial 2 accepts it', async () => {
    const store = await storeAt110('happy');
    const filesBefore = await listFiles(store);
    const run = await ok(rollback(store, '--to', '1.0.0', '--key', keyFile('a'), '--notes', 'the 1.1.0 scheduler leaks'));
    assert.match(run.stdout, /^rolled back canary to 1\.0\.0 serial 3 \(was 1\.1\.0\)$/m);
    assert.match(run.stdout, new RegExp(`^artifact linux-x64 ${x64Key('1.0.0')} 262144 ${sha256(await readFile(file('w100')))}$`, 'm'));
    assert.match(run.stdout, /^signed_by [0-9a-f]{64}$/m);

    // Only the new manifest was written: the artifacts are the ones already stored.
    assert.deepEqual(await listFiles(store), [...filesBefore, 'channels/canary/history/3.json'].sort());
    assert.deepEqual(await readFile(join(store, 'channels/canary/worker-release.json')), await readFile(join(store, 'channels/canary/history/3.json')));

    const signed = await workerAccepts(store, 'canary', '1.1.0', 2);
    assert.equal(signed.serial, 3);
    assert.equal(signed.version, '1.0.0');
    assert.equal(signed.recommended_version, '1.0.0');
    assert.equal(signed.allow_downgrade, true);
    assert.equal(signed.notes, 'the 1.1.0 scheduler leaks');
    assert.equal(Date.parse(signed.expires) - Date.parse(signed.released_at), 30 * DAY_MS);
    const released = (await readManifest(store, 'channels/canary/history/1.json')).signed;
    assert.deepEqual(Object.keys(signed.artifacts).sort(), ['linux-arm64', 'linux-x64']);
    for (const [platform, entry] of Object.entries(signed.artifacts)) {
      const stored = await readFile(join(store, entry.url));
      assert.equal(entry.url, released.artifacts[platform]?.url, platform);
      assert.equal(entry.size, stored.length, platform);
      assert.equal(entry.sha256, sha256(stored), platform);
    }
    assert.equal(signed.artifacts['linux-arm64']?.sha256, sha256(await readFile(file('w100-arm'))));

    // The store check agrees, and a rollback is not repeated: 1.0.0 is now current.
    const verified = await ok(['verify', '--trusted-key', pubFile('a'), '--store', store, '--channel', 'canary']);
    assert.equal(verified.stdout.match(/^artifact .* ok$/gm)?.length, 2);
    const again = await runRelease(rollback(store, '--to', '1.0.0', '--key', keyFile('a')));
    assert.equal(again.errorCode, 'version_not_older', again.stderr);
  });

  test('an artifact whose stored bytes are not what history recorded is refused, never signed', async () => {
    const store = await storeAt110('measured');
    const before = await readManifest(store, 'channels/canary/worker-release.json');
    await writeFile(join(store, x64Key('1.0.0')), randomBytes(200 * 1024));
    const run = await runRelease(rollback(store, '--to', '1.0.0', '--key', keyFile('a')));
    assert.equal(run.errorCode, 'artifact_corrupted', run.stderr);
    assert.deepEqual(await readManifest(store, 'channels/canary/worker-release.json'), before, 'nothing was published');
  });

  const floors: { name: string; publish110: string[]; expected: string | undefined; dropped: boolean }[] = [
    { name: 'a minimum_version above the version is dropped', publish110: ['--minimum-version', '1.1.0'], expected: undefined, dropped: true },
    { name: 'a minimum_version equal to the version is kept', publish110: ['--minimum-version', '1.0.0'], expected: '1.0.0', dropped: false },
    { name: 'a minimum_version below the version is kept', publish110: ['--minimum-version', '0.8.0'], expected: '0.8.0', dropped: false },
    { name: 'no minimum_version stays none', publish110: [], expected: undefined, dropped: false },
  ];
  for (const [index, floor] of floors.entries()) {
    test(`${floor.name}`, async () => {
      const store = await storeAt110(`floor-${index}`, ...floor.publish110);
      const run = await ok(rollback(store, '--to', '1.0.0', '--key', keyFile('a')));
      const signed = await workerAccepts(store, 'canary', '1.1.0', 2);
      assert.equal(signed.minimum_version, floor.expected);
      assert.equal(/^dropped minimum_version /m.test(run.stderr), floor.dropped, run.stderr);
    });
  }

  test('the newest release of the version says which artifacts it had', async () => {
    const store = file('newest');
    await publish(store, '1.0.0', '--artifact', `linux-x64=${file('w100')}`);
    await publish(store, '1.1.0', '--artifact', `linux-x64=${file('w110')}`);
    // 1.0.0 again, now with an arm64 build too (serial 3), then 1.2.0 (serial 4).
    await publish(store, '1.0.0', '--allow-downgrade', '--artifact', `linux-x64=${file('w100')}`, `linux-arm64=${file('w100-arm')}`);
    await publish(store, '1.2.0', '--artifact', `linux-x64=${file('w120')}`);
    const run = await ok(rollback(store, '--to', '1.0.0', '--key', keyFile('a')));
    assert.match(run.stdout, /^rolled back canary to 1\.0\.0 serial 5 \(was 1\.2\.0\)$/m);
    assert.match(run.stderr, /as channels\/canary\/history\/3\.json released it/);
    const signed = await workerAccepts(store, 'canary', '1.2.0', 4);
    assert.deepEqual(Object.keys(signed.artifacts).sort(), ['linux-arm64', 'linux-x64']);
  });

  test('artifacts published under --base-url keep their url and are hashed from the store', async () => {
    const store = file('cdn');
    const base = 'https://downloads.example.com/worker';
    await publish(store, '2.0.0', '--artifact', `linux-x64=${file('w100')}`, '--base-url', base);
    await publish(store, '2.1.0', '--artifact', `linux-x64=${file('w110')}`, '--base-url', base);
    await ok(rollback(store, '--to', '2.0.0', '--key', keyFile('a')));
    const signed = await workerAccepts(store, 'canary', '2.1.0', 2);
    const stored = await readFile(join(store, x64Key('2.0.0')));
    assert.deepEqual(signed.artifacts['linux-x64'], { url: `${base}/${x64Key('2.0.0')}`, sha256: sha256(stored), size: stored.length });
  });
});

describe('rollback on an S3 store', () => {
  let s3: RunningS3;
  before(async () => {
    s3 = await startS3();
  });
  after(async () => {
    await s3.close();
  });

  test('rolls back from the bucket and verify --store re-hashes it there', async () => {
    const location = `s3://${s3.bucket}/fleet`;
    const common = ['--store', location, '--channel', 'stable', '--key', keyFile('a')];
    await ok(['publish', ...common, '--version', '3.0.0', '--artifact', `linux-x64=${file('w100')}`], s3.env);
    await ok(['publish', ...common, '--version', '3.1.0', '--artifact', `linux-x64=${file('w110')}`], s3.env);
    const run = await ok(['rollback', ...common, '--to', '3.0.0'], s3.env);
    assert.match(run.stdout, /^rolled back stable to 3\.0\.0 serial 3 \(was 3\.1\.0\)$/m);
    const bytes = await S3Store.fromUrl(location, s3.env).read('channels/stable/worker-release.json', 1024 * 1024);
    assert.ok(bytes);
    const { signed } = verifyManifest(bytes, { trustedKeys: [publicKeyA], channel: 'stable', highestSerial: 2, currentVersion: '3.1.0', now: new Date() });
    assert.equal(signed.artifacts['linux-x64']?.sha256, sha256(await readFile(file('w100'))));
    const verified = await ok(['verify', '--trusted-key', pubFile('a'), '--store', location, '--channel', 'stable'], s3.env);
    assert.match(verified.stdout, /^artifact linux-x64 \S+ 262144 [0-9a-f]{64} ok$/m);
  });
});

interface RefusalCase {
  name: string;
  /** Store to copy for this case (default: the baseline, canary at 1.1.0 after 1.0.0). */
  from?: string;
  args: (store: string) => string[];
  exitCode: 1 | 2;
  /** The printed error code; usage errors from the option parser print none. */
  code?: string;
}

const cases: RefusalCase[] = [
  { name: 'the current version', args: (s) => rollback(s, '--to', '1.1.0', '--key', keyFile('a')), exitCode: 1, code: 'version_not_older' },
  { name: 'a version above the current one', args: (s) => rollback(s, '--to', '1.2.0', '--key', keyFile('a')), exitCode: 1, code: 'version_not_older' },
  { name: 'a version the channel never released', args: (s) => rollback(s, '--to', '0.9.0', '--key', keyFile('a')), exitCode: 1, code: 'version_never_released' },
  {
    name: 'a channel with no manifest',
    args: (s) => ['rollback', '--store', s, '--channel', 'stable', '--to', '1.0.0', '--key', keyFile('a')],
    exitCode: 1,
    code: 'source_manifest_missing',
  },
  { name: 'a key that did not sign the channel', args: (s) => rollback(s, '--to', '1.0.0', '--key', keyFile('b')), exitCode: 1, code: 'store_key_mismatch' },
  { name: 'an artifact gone from the store', from: 'gutted', args: (s) => rollback(s, '--to', '1.0.0', '--key', keyFile('a')), exitCode: 1, code: 'artifact_missing' },
  {
    name: 'a damaged history entry newer than the version',
    from: 'damaged-history',
    args: (s) => rollback(s, '--to', '1.0.0', '--key', keyFile('a')),
    exitCode: 1,
    code: 'store_manifest_invalid',
  },
  {
    name: 'a history entry pointing at another version’s artifact',
    from: 'foreign-url',
    args: (s) => rollback(s, '--to', '1.0.0', '--key', keyFile('a')),
    exitCode: 1,
    code: 'store_manifest_invalid',
  },
  { name: 'a version with a leading v', args: (s) => rollback(s, '--to', 'v1.0.0', '--key', keyFile('a')), exitCode: 1, code: 'version_invalid' },
  {
    name: 'a channel outside the grammar',
    args: (s) => ['rollback', '--store', s, '--channel', 'Canary', '--to', '1.0.0', '--key', keyFile('a')],
    exitCode: 1,
    code: 'channel_invalid',
  },
  { name: 'a missing key file', args: (s) => rollback(s, '--to', '1.0.0', '--key', file('no-such.key')), exitCode: 1, code: 'key_unreadable' },
  { name: 'an unreadable --expires-in', args: (s) => rollback(s, '--to', '1.0.0', '--key', keyFile('a'), '--expires-in', '30 days'), exitCode: 2, code: 'usage' },
  { name: 'notes over the limit', args: (s) => rollback(s, '--to', '1.0.0', '--key', keyFile('a'), '--notes', 'x'.repeat(16 * 1024 + 1)), exitCode: 2, code: 'usage' },
  { name: 'no --to', args: (s) => rollback(s, '--key', keyFile('a')), exitCode: 2 },
  { name: 'no --key', args: (s) => rollback(s, '--to', '1.0.0'), exitCode: 2 },
  { name: 'an unknown option', args: (s) => rollback(s, '--to', '1.0.0', '--key', keyFile('a'), '--allow-downgrade'), exitCode: 2 },
];

describe('rollback refuses, exits non-zero and changes nothing', { concurrency: 3 }, () => {
  const stores = new Map<string, string>();
  before(async () => {
    const baseline = await storeAt110('refusal-baseline');
    stores.set('baseline', baseline);
    const gutted = file('refusal-gutted');
    await cp(baseline, gutted, { recursive: true });
    await rm(join(gutted, arm64Key('1.0.0')));
    stores.set('gutted', gutted);
    const damaged = file('refusal-damaged-history');
    await cp(baseline, damaged, { recursive: true });
    await writeFile(join(damaged, 'channels/canary/history/2.json'), '{"signed": "truncated');
    stores.set('damaged-history', damaged);
    const foreign = file('refusal-foreign-url');
    await cp(baseline, foreign, { recursive: true });
    const entry = await readManifest(foreign, 'channels/canary/history/1.json');
    const x64 = entry.signed.artifacts['linux-x64'];
    assert.ok(x64);
    x64.url = x64Key('1.1.0');
    await writeFile(join(foreign, 'channels/canary/history/1.json'), JSON.stringify(entry));
    stores.set('foreign-url', foreign);
  });

  for (const [index, refusal] of cases.entries()) {
    test(`${refusal.name}: exit ${refusal.exitCode}${refusal.code ? `, ${refusal.code}` : ''}`, async () => {
      const source = stores.get(refusal.from ?? 'baseline');
      assert.ok(source);
      const store = file(`refusal-case-${index}`);
      await cp(source, store, { recursive: true });
      const before = await snapshot(store);
      const run = await runRelease(refusal.args(store));
      assert.equal(run.exitCode, refusal.exitCode, `stderr: ${run.stderr}`);
      assert.equal(run.errorCode, refusal.code, `stderr: ${run.stderr}`);
      assert.equal(run.stdout, '', 'a refusal prints no result');
      assert.deepEqual(await snapshot(store), before, 'the store is unchanged');
      assert.doesNotMatch(run.stderr, /PRIVATE KEY/);
    });
  }
});
