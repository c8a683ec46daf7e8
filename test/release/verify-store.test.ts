import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePrivateKey } from '../../src/trust/keys.js';
import { serializeManifest, signManifest } from '../../src/trust/sign.js';
import type { ReleaseManifest } from '../../src/protocol/manifest.js';
import { runRelease, snapshot } from './release-cli.js';

/**
 * `verify --store`: the channel's current manifest checked as a worker checks it, then every
 * artifact it names re-hashed from the store, one line each; exit 1 with a code on any damage.
 * Verifying never writes: every case also checks the store is unchanged.
 */
let root: string;
let baseline: string;
const keyFile = (name: string) => join(root, 'keys', `${name}.key`);
const pubFile = (name: string) => join(root, 'keys', `${name}.pub`);
const file = (name: string) => join(root, name);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const X64 = 'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64';
const ARM64 = 'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-arm64';
const ARTIFACT_BYTES = 256 * 1024;

async function ok(args: string[], env: Record<string, string> = {}) {
  const run = await runRelease(args, env);
  assert.equal(run.exitCode, 0, `${args.join(' ')}\nstderr: ${run.stderr}`);
  return run;
}

const verifyStore = (store: string, ...rest: string[]) => ['verify', '--trusted-key', pubFile('a'), '--store', store, '--channel', 'canary', ...rest];

/** A copy of the baseline store, changed by `damage`. */
async function damagedCopy(name: string, damage: (store: string) => Promise<void>): Promise<string> {
  const store = file(name);
  await cp(baseline, store, { recursive: true });
  await damage(store);
  return store;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bytebiota-release-verify-store-'));
  await Promise.all(['a', 'b'].map((name) => ok(['keygen', '--out', join(root, 'keys'), '--name', name])));
  for (const name of ['w100', 'w100-arm']) await writeFile(file(name), randomBytes(ARTIFACT_BYTES));
  baseline = file('baseline');
  await ok(['publish', '--store', baseline, '--channel', 'canary', '--version', '1.0.0', '--artifact', `linux-x64=${file('w100')}`, `linux-arm64=${file('w100-arm')}`, '--key', keyFile('a')]);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('verify --store', { concurrency: 3 }, () => {
  test('an intact channel: the manifest as a worker sees it and one ok line per artifact, exit 0', async () => {
    const run = await ok(verifyStore(baseline));
    assert.match(run.stdout, /^verified channels\/canary\/worker-release\.json in .*baseline$/m);
    assert.match(run.stdout, /^channel canary serial 1 version 1\.0\.0$/m);
    assert.match(run.stdout, new RegExp(`^artifact linux-x64 ${X64} ${ARTIFACT_BYTES} ${sha256(await readFile(file('w100')))} ok$`, 'm'));
    assert.match(run.stdout, new RegExp(`^artifact linux-arm64 ${ARM64} ${ARTIFACT_BYTES} ${sha256(await readFile(file('w100-arm')))} ok$`, 'm'));
    assert.equal(run.stdout.match(/^artifact /gm)?.length, 2);
    // Each artifact's chunk index, judged as a worker would judge it.
    assert.match(run.stdout, new RegExp(`^chunk_index linux-x64 ${X64}\\.chunks\\.json ok$`, 'm'));
    assert.match(run.stdout, new RegExp(`^chunk_index linux-arm64 ${ARM64}\\.chunks\\.json ok$`, 'm'));
    assert.match(run.stdout, /^signed_by [0-9a-f]{64}$/m);
    assert.match(run.stdout, /^threshold 1 of 1 trusted keys met$/m);
  });

  const damages: { name: string; damage: (store: string) => Promise<void>; code: string; x64: RegExp; arm64: RegExp }[] = [
    {
      name: 'one byte changed in place',
      damage: async (store) => {
        const path = join(store, X64);
        const bytes = await readFile(path);
        bytes[1000] = (bytes[1000] ?? 0) ^ 0x01;
        await writeFile(path, bytes);
      },
      code: 'artifact_corrupted',
      x64: new RegExp(`^artifact linux-x64 ${X64} ${ARTIFACT_BYTES} [0-9a-f]{64} corrupted \\(the store has ${ARTIFACT_BYTES} bytes, sha256 [0-9a-f]{64}\\)$`, 'm'),
      arm64: / ok$/,
    },
    {
      name: 'one byte appended',
      damage: (store) => appendFile(join(store, X64), Buffer.from([0])),
      code: 'artifact_corrupted',
      x64: new RegExp(`corrupted \\(the store has ${ARTIFACT_BYTES + 1} bytes, sha256 [0-9a-f]{64}\\)$`),
      arm64: / ok$/,
    },
    {
      name: 'an artifact removed',
      damage: (store) => rm(join(store, ARM64)),
      code: 'artifact_missing',
      x64: / ok$/,
      arm64: new RegExp(`^artifact linux-arm64 ${ARM64} ${ARTIFACT_BYTES} [0-9a-f]{64} missing$`, 'm'),
    },
  ];
  for (const [index, damage] of damages.entries()) {
    test(`${damage.name}: named on its artifact's line, exit 1, ${damage.code}`, async () => {
      const store = await damagedCopy(`damage-${index}`, damage.damage);
      const before = await snapshot(store);
      const run = await runRelease(verifyStore(store));
      assert.equal(run.exitCode, 1, run.stderr);
      assert.equal(run.errorCode, damage.code, run.stderr);
      const lines = run.stdout.split('\n');
      assert.match(lines.find((line) => line.startsWith('artifact linux-x64 ')) ?? '', damage.x64);
      assert.match(lines.find((line) => line.startsWith('artifact linux-arm64 ')) ?? '', damage.arm64);
      assert.deepEqual(await snapshot(store), before, 'verify never writes');
    });
  }

  test('a chunk index altered in the store: named on its line, exit 1, chunk_index_invalid; a removed one is only a cost', async () => {
    const tampered = await damagedCopy('index-tampered', async (store) => {
      const path = join(store, `${X64}.chunks.json`);
      const text = await readFile(path, 'utf8');
      await writeFile(path, text.replace(/"chunk_sha256":\["[0-9a-f]/, (match) => `${match.slice(0, -1)}${match.endsWith('0') ? '1' : '0'}`));
    });
    const before = await snapshot(tampered);
    const run = await runRelease(verifyStore(tampered));
    assert.equal(run.exitCode, 1, run.stderr);
    assert.equal(run.errorCode, 'chunk_index_invalid', run.stderr);
    assert.match(run.stdout, /^chunk_index linux-x64 \S+ invalid \(chunk index has 0 valid signature\(s\) from trusted keys; 1 required\)$/m);
    assert.match(run.stdout, /^chunk_index linux-arm64 \S+ ok$/m);
    assert.deepEqual(await snapshot(tampered), before, 'verify never writes');

    const removed = await damagedCopy('index-removed', (store) => rm(join(store, `${ARM64}.chunks.json`)));
    const fine = await ok(verifyStore(removed));
    assert.match(fine.stdout, /^chunk_index linux-arm64 \S+ missing \(workers download this artifact whole/m);
  });

  test('a changed and a missing artifact at once: both lines say so, and the error counts them', async () => {
    const store = await damagedCopy('damage-both', async (s) => {
      await writeFile(join(s, X64), randomBytes(ARTIFACT_BYTES));
      await rm(join(s, ARM64));
    });
    const run = await runRelease(verifyStore(store));
    assert.equal(run.exitCode, 1, run.stderr);
    // Manifests list platforms in canonical (sorted) order: linux-arm64, the missing one, comes first.
    assert.equal(run.errorCode, 'artifact_missing', run.stderr);
    assert.match(run.stdout, /^artifact linux-x64 .* corrupted /m);
    assert.match(run.stdout, /^artifact linux-arm64 .* missing$/m);
    assert.match(run.stderr, /and 1 more of 2 artifacts fail/);
  });

  test('a --base-url release is checked in the store under artifacts/<version>/, and promote refuses it when gone', async () => {
    const store = file('cdn');
    await ok(['publish', '--store', store, '--channel', 'canary', '--version', '2.0.0', '--artifact', `linux-x64=${file('w100')}`, '--key', keyFile('a'), '--base-url', 'https://downloads.example.com/worker']);
    const good = await ok(verifyStore(store));
    assert.match(good.stdout, /^artifact linux-x64 https:\/\/downloads\.example\.com\/worker\/artifacts\/2\.0\.0\/bytebiota-worker-2\.0\.0-linux-x64 \d+ [0-9a-f]{64} ok$/m);
    await rm(join(store, 'artifacts/2.0.0/bytebiota-worker-2.0.0-linux-x64'));
    const gone = await runRelease(verifyStore(store));
    assert.equal(gone.errorCode, 'artifact_missing', gone.stderr);
    const promoted = await runRelease(['promote', '--store', store, '--from', 'canary', '--to', 'stable', '--key', keyFile('a')]);
    assert.equal(promoted.errorCode, 'artifact_missing', promoted.stderr);
  });

  test('BYTEBIOTA_STORE is the store when no FILE is given; a FILE named on the command line wins', async () => {
    const env = { BYTEBIOTA_STORE: baseline };
    const fromEnv = await ok(['verify', '--trusted-key', pubFile('a'), '--channel', 'canary'], env);
    assert.equal(fromEnv.stdout.match(/^artifact .* ok$/gm)?.length, 2);
    const fromFile = await ok(['verify', '--trusted-key', pubFile('a'), join(baseline, 'channels/canary/history/1.json')], env);
    assert.match(fromFile.stdout, /^verified .*history\/1\.json$/m);
    assert.doesNotMatch(fromFile.stdout, / ok$/m);
  });
});

describe('verify --store refuses', { concurrency: 3 }, () => {
  let expired: string;
  before(async () => {
    // The canary manifest re-signed by key a with an expiry an hour ago.
    expired = await damagedCopy('expired', async (store) => {
      const path = join(store, 'channels/canary/worker-release.json');
      const current = JSON.parse(await readFile(path, 'utf8')) as ReleaseManifest;
      const hourMs = 3_600_000;
      const stamp = (ms: number) => new Date(Date.now() - ms).toISOString().replace(/\.\d+Z$/, 'Z');
      const manifest = signManifest({ ...current.signed, released_at: stamp(2 * hourMs), expires: stamp(hourMs) }, [parsePrivateKey(await readFile(keyFile('a'), 'utf8'))]);
      await writeFile(path, serializeManifest(manifest));
    });
  });

  const cases: { name: string; args: () => string[]; exitCode: 1 | 2; code?: string }[] = [
    { name: 'a channel with no manifest', args: () => ['verify', '--trusted-key', pubFile('a'), '--store', baseline, '--channel', 'stable'], exitCode: 1, code: 'manifest_unreadable' },
    { name: 'a manifest the trusted key did not sign', args: () => ['verify', '--trusted-key', pubFile('b'), '--store', baseline, '--channel', 'canary'], exitCode: 1, code: 'signature_invalid' },
    { name: 'an expired manifest', args: () => verifyStore(expired), exitCode: 1, code: 'manifest_expired' },
    { name: 'a channel outside the grammar', args: () => ['verify', '--trusted-key', pubFile('a'), '--store', baseline, '--channel', 'Canary'], exitCode: 1, code: 'channel_invalid' },
    { name: 'a threshold above the trusted keys', args: () => verifyStore(baseline, '--threshold', '2'), exitCode: 2, code: 'usage' },
    { name: '--store without --channel', args: () => ['verify', '--trusted-key', pubFile('a'), '--store', baseline], exitCode: 2, code: 'usage' },
    { name: 'a FILE and --store', args: () => [...verifyStore(baseline), join(baseline, 'channels/canary/worker-release.json')], exitCode: 2, code: 'usage' },
    { name: 'neither a FILE nor --store', args: () => ['verify', '--trusted-key', pubFile('a'), '--channel', 'canary'], exitCode: 2, code: 'usage' },
  ];
  for (const refusal of cases) {
    test(`${refusal.name}: exit ${refusal.exitCode}, ${refusal.code}`, async () => {
      const run = await runRelease(refusal.args());
      assert.equal(run.exitCode, refusal.exitCode, run.stderr);
      assert.equal(run.errorCode, refusal.code, run.stderr);
      assert.equal(run.stdout, '', 'nothing is reported as verified');
    });
  }
});
