import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePrivateKey } from '../../src/trust/keys.js';
import { serializeManifest, signManifest } from '../../src/trust/sign.js';
import type { ReleaseManifest } from '../../src/protocol/manifest.js';
import { runRelease, snapshot } from './release-cli.js';

/**
 * Every refusal of the release tool, through the real program: the exit code, the error code
 * it prints, and a store left exactly as it was.
 */
let root: string;
let baseline: string;
const keyA = () => join(root, 'keys', 'a.key');
const keyB = () => join(root, 'keys', 'b.key');
const file = (name: string) => join(root, name);

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bytebiota-release-refusals-'));
  const keygens = await Promise.all([
    runRelease(['keygen', '--out', join(root, 'keys'), '--name', 'a']),
    runRelease(['keygen', '--out', join(root, 'keys'), '--name', 'b']),
  ]);
  for (const run of keygens) assert.equal(run.exitCode, 0, run.stderr);
  await writeFile(file('w100'), randomBytes(256 * 1024));
  await writeFile(file('w110'), randomBytes(256 * 1024));
  await writeFile(file('other'), randomBytes(256 * 1024));
  await writeFile(file('empty'), '');
  await writeFile(file('garbage.key'), 'not a key\n');
  await writeFile(file('not-a-store'), 'a regular file where the store folder should be\n');
  await mkdir(file('a-directory'));
  baseline = file('baseline-store');
  const published = await runRelease(['publish', '--store', baseline, '--channel', 'canary', '--version', '1.0.0', '--artifact', `linux-x64=${file('w100')}`, '--key', keyA()]);
  assert.equal(published.exitCode, 0, published.stderr);

  // A canary manifest that expired an hour ago, signed by key A, for the promote refusal.
  const expiredStore = file('expired-store');
  await cp(baseline, expiredStore, { recursive: true });
  const current = JSON.parse(await readFile(join(expiredStore, 'channels/canary/worker-release.json'), 'utf8')) as ReleaseManifest;
  const hourMs = 3_600_000;
  const expired = signManifest(
    {
      ...current.signed,
      serial: 2,
      released_at: new Date(Date.now() - 2 * hourMs).toISOString().replace(/\.\d+Z$/, 'Z'),
      expires: new Date(Date.now() - hourMs).toISOString().replace(/\.\d+Z$/, 'Z'),
    },
    [parsePrivateKey(await readFile(keyA(), 'utf8'))],
  );
  await writeFile(join(expiredStore, 'channels/canary/worker-release.json'), serializeManifest(expired));

  // The baseline with its artifact altered on disk, and one with it gone.
  await cp(baseline, file('tampered-store'), { recursive: true });
  await writeFile(join(file('tampered-store'), 'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64'), randomBytes(256 * 1024));
  await cp(baseline, file('gutted-store'), { recursive: true });
  await rm(join(file('gutted-store'), 'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface RefusalCase {
  name: string;
  /** Store to copy for this case (default: the baseline). */
  from?: () => string;
  args: (store: string) => string[];
  exitCode: 1 | 2;
  /** The printed error code; usage errors from the option parser print none. */
  code?: string;
}

const publish = (store: string, ...rest: string[]) => ['publish', '--store', store, '--channel', 'canary', ...rest];

const cases: RefusalCase[] = [
  {
    name: 'republishing a version with different artifact bytes',
    args: (store) => publish(store, '--version', '1.0.0', '--allow-downgrade', '--artifact', `linux-x64=${file('other')}`, '--key', keyA()),
    exitCode: 1,
    code: 'artifact_conflict',
  },
  {
    name: 'the same version to another channel with different bytes',
    args: (store) => ['publish', '--store', store, '--channel', 'beta', '--version', '1.0.0', '--artifact', `linux-x64=${file('other')}`, '--key', keyA()],
    exitCode: 1,
    code: 'artifact_conflict',
  },
  {
    name: 'a version equal to the current one',
    args: (store) => publish(store, '--version', '1.0.0', '--artifact', `linux-x64=${file('w100')}`, '--key', keyA()),
    exitCode: 1,
    code: 'version_not_newer',
  },
  {
    name: 'a version older than the current one',
    args: (store) => publish(store, '--version', '0.9.0', '--artifact', `linux-x64=${file('other')}`, '--key', keyA()),
    exitCode: 1,
    code: 'version_not_newer',
  },
  {
    name: 'a store whose current manifest none of the keys signed',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyB()),
    exitCode: 1,
    code: 'store_key_mismatch',
  },
  {
    name: 'an unknown platform',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `plan9-x64=${file('w110')}`, '--key', keyA()),
    exitCode: 1,
    code: 'platform_unknown',
  },
  {
    name: 'a version with a leading v',
    args: (store) => publish(store, '--version', 'v1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyA()),
    exitCode: 1,
    code: 'version_invalid',
  },
  {
    name: 'a minimum version above the version',
    args: (store) => publish(store, '--version', '1.1.0', '--minimum-version', '1.2.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyA()),
    exitCode: 1,
    code: 'version_invalid',
  },
  {
    name: 'a channel outside the grammar',
    args: (store) => ['publish', '--store', store, '--channel', 'Stable', '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyA()],
    exitCode: 1,
    code: 'channel_invalid',
  },
  {
    name: 'a missing artifact file',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('no-such-file')}`, '--key', keyA()),
    exitCode: 1,
    code: 'artifact_unreadable',
  },
  {
    name: 'an artifact that is a directory',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('a-directory')}`, '--key', keyA()),
    exitCode: 1,
    code: 'artifact_unreadable',
  },
  {
    name: 'an empty artifact',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('empty')}`, '--key', keyA()),
    exitCode: 1,
    code: 'artifact_unreadable',
  },
  {
    name: 'a key file that holds no key',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', file('garbage.key')),
    exitCode: 1,
    code: 'key_invalid',
  },
  {
    name: 'a public key given as the private key',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', join(root, 'keys', 'a.pub')),
    exitCode: 1,
    code: 'key_invalid',
  },
  {
    name: 'a missing key file',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', file('no-such.key')),
    exitCode: 1,
    code: 'key_unreadable',
  },
  {
    name: 'a store that cannot be written',
    args: () => publish(join(file('not-a-store'), 'store'), '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyA()),
    exitCode: 1,
    code: 'store_not_writable',
  },
  {
    name: 'an unsupported store scheme',
    args: () => publish('gs://bucket/releases', '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyA()),
    exitCode: 2,
    code: 'usage',
  },
  {
    name: 'an --artifact without PLATFORM=',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', file('w110'), '--key', keyA()),
    exitCode: 2,
    code: 'usage',
  },
  {
    name: 'one platform given twice',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, `linux-x64=${file('w100')}`, '--key', keyA()),
    exitCode: 2,
    code: 'usage',
  },
  {
    name: 'an unreadable --expires-in',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyA(), '--expires-in', '30 days'),
    exitCode: 2,
    code: 'usage',
  },
  {
    name: 'a plain-http --base-url to a remote host',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyA(), '--base-url', 'http://downloads.example.com/'),
    exitCode: 2,
    code: 'usage',
  },
  {
    name: 'no --key',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`),
    exitCode: 2,
  },
  {
    name: 'an unknown option',
    args: (store) => publish(store, '--version', '1.1.0', '--artifact', `linux-x64=${file('w110')}`, '--key', keyA(), '--skip-verification'),
    exitCode: 2,
  },
  {
    name: 'promote from a channel with no manifest',
    args: (store) => ['promote', '--store', store, '--from', 'nightly', '--to', 'stable', '--key', keyA()],
    exitCode: 1,
    code: 'source_manifest_missing',
  },
  {
    name: 'promote with a key that did not sign the source',
    args: (store) => ['promote', '--store', store, '--from', 'canary', '--to', 'stable', '--key', keyB()],
    exitCode: 1,
    code: 'source_manifest_invalid',
  },
  {
    name: 'promote an expired source',
    from: () => file('expired-store'),
    args: (store) => ['promote', '--store', store, '--from', 'canary', '--to', 'stable', '--key', keyA()],
    exitCode: 1,
    code: 'source_manifest_expired',
  },
  {
    name: 'promote a release whose stored artifact was altered',
    from: () => file('tampered-store'),
    args: (store) => ['promote', '--store', store, '--from', 'canary', '--to', 'stable', '--key', keyA()],
    exitCode: 1,
    code: 'artifact_corrupted',
  },
  {
    name: 'promote a release whose artifact is gone',
    from: () => file('gutted-store'),
    args: (store) => ['promote', '--store', store, '--from', 'canary', '--to', 'stable', '--key', keyA()],
    exitCode: 1,
    code: 'artifact_missing',
  },
  {
    name: 'promote a channel onto itself',
    args: (store) => ['promote', '--store', store, '--from', 'canary', '--to', 'canary', '--key', keyA()],
    exitCode: 2,
    code: 'usage',
  },
  {
    name: 'promote onto a channel holding the same version',
    from: () => file('promoted-store'),
    args: (store) => ['promote', '--store', store, '--from', 'canary', '--to', 'stable', '--key', keyA()],
    exitCode: 1,
    code: 'version_not_newer',
  },
  {
    name: 'keygen over an existing key',
    args: () => ['keygen', '--out', join(root, 'keys'), '--name', 'a'],
    exitCode: 1,
    code: 'key_exists',
  },
  {
    name: 'build with a version that is not strict SemVer',
    args: () => ['build', '--version', 'v1.2', '--out', file('build-out')],
    exitCode: 2,
    code: 'usage',
  },
  {
    name: 'keygen with a name that is a path',
    args: () => ['keygen', '--out', join(root, 'keys'), '--name', '../escape'],
    exitCode: 2,
    code: 'usage',
  },
];

describe('bytebiota-release refuses, exits non-zero and changes nothing', { concurrency: 3 }, () => {
  before(async () => {
    await cp(baseline, file('promoted-store'), { recursive: true });
    const promoted = await runRelease(['promote', '--store', file('promoted-store'), '--from', 'canary', '--to', 'stable', '--key', keyA()]);
    assert.equal(promoted.exitCode, 0, promoted.stderr);
  });

  for (const [index, refusal] of cases.entries()) {
    test(`${refusal.name}: exit ${refusal.exitCode}${refusal.code ? `, ${refusal.code}` : ''}`, async () => {
      const store = file(`case-${index}`);
      await cp(refusal.from?.() ?? baseline, store, { recursive: true });
      const keysBefore = await snapshot(join(root, 'keys'));
      const before = await snapshot(store);
      const run = await runRelease(refusal.args(store));
      assert.equal(run.exitCode, refusal.exitCode, `stderr: ${run.stderr}`);
      if (refusal.code) assert.equal(run.errorCode, refusal.code, `stderr: ${run.stderr}`);
      assert.equal(run.stdout, '', 'a refusal prints no result');
      assert.deepEqual(await snapshot(store), before, 'the store is unchanged');
      assert.deepEqual(await snapshot(join(root, 'keys')), keysBefore, 'the keys are unchanged');
      assert.doesNotMatch(run.stderr, /PRIVATE KEY/);
    });
  }
});
