import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeltaFallback } from '../../src/protocol/chunk-index.js';
import type { ArtifactEntry } from '../../src/protocol/manifest.js';
import { ensureChunkIndex, ensureChunkIndexes } from '../../src/release/chunk-index.js';
import { ReleaseError } from '../../src/release/release-error.js';
import { FolderStore } from '../../src/store/folder-store.js';
import type { TestKey } from '../helpers/trust-fixtures.js';
import { makeKey } from '../helpers/trust-fixtures.js';
import { verifyChunkIndex } from '../../src/trust/verify-chunk-index.js';
import { chunksOf, seededBytes } from '../helpers/chunk-index-fixtures.js';
import { sha256Hex } from '../helpers/engine-fixtures.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { listFiles, runRelease } from './release-cli.js';

const SEED = Number(process.env['TEST_SEED'] ?? 31_337);
console.log(`release chunk-index seed ${SEED} (TEST_SEED to replay)`);

const VERSION = '2.0.0';
const ARTIFACT_KEY = `artifacts/${VERSION}/bytebiota-worker-${VERSION}-linux-x64`;
const INDEX_KEY = `${ARTIFACT_KEY}.chunks.json`;

describe('the chunk index the release tool writes', () => {
  let root: string;
  let store: FolderStore;
  const bytes = seededBytes(seededRandom(SEED), 400_000);
  const entry: ArtifactEntry = { url: ARTIFACT_KEY, sha256: sha256Hex(bytes), size: bytes.length };
  const keyA = makeKey();
  const keyB = makeKey();
  const log = (): void => undefined;
  const verifyWith = async (key: TestKey) =>
    verifyChunkIndex((await store.read(INDEX_KEY, 1 << 26))!, { trustedKeys: [key.public], threshold: 1, version: VERSION, platform: 'linux-x64', sha256: entry.sha256, size: entry.size });

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'bytebiota-release-chunks-'));
    store = new FolderStore(join(root, 'store'));
    await store.write(ARTIFACT_KEY, bytes);
  });
  after(async () => rm(root, { recursive: true, force: true }));

  test('cut from the stored bytes and signed: it lists the chunks of exactly that artifact', async () => {
    assert.equal(await ensureChunkIndex(store, VERSION, 'linux-x64', entry, [keyA.private], log), 'written');
    const index = await verifyWith(keyA);
    assert.deepEqual(index.chunk_sha256, chunksOf(bytes).map((chunk) => chunk.sha256));
  });

  test('kept when the same keys signed it; signed again for other keys (a promote after a key rotation)', async () => {
    const before = await readFile(join(root, 'store', INDEX_KEY));
    assert.equal(await ensureChunkIndex(store, VERSION, 'linux-x64', entry, [keyA.private], log), 'kept');
    assert.deepEqual(await readFile(join(root, 'store', INDEX_KEY)), before, 'not rewritten');
    assert.equal(await ensureChunkIndex(store, VERSION, 'linux-x64', entry, [keyB.private], log), 'written');
    await verifyWith(keyB);
    await assert.rejects(verifyWith(keyA), DeltaFallback, 'a worker that trusts only the old key falls back to the full download');
  });

  test('a damaged index in the store is replaced, not trusted', async () => {
    await writeFile(join(root, 'store', INDEX_KEY), '{"signed":{}}');
    assert.equal(await ensureChunkIndex(store, VERSION, 'linux-x64', entry, [keyA.private], log), 'written');
    await verifyWith(keyA);
  });

  test('an artifact hosted outside the store gets none', async () => {
    const external = { ...entry, url: 'https://cdn.example.com/worker/bytebiota-worker' };
    assert.equal(await ensureChunkIndex(store, VERSION, 'linux-x64', external, [keyA.private], log), 'skipped');
  });

  test('promote and rollback only warn when an index cannot be written; publish fails', async () => {
    const other = '4.0.0';
    const key = `artifacts/${other}/bytebiota-worker-${other}-linux-x64`;
    await store.write(key, bytes.subarray(1));
    const artifacts = { 'linux-x64': { url: key, sha256: entry.sha256, size: entry.size } };
    const lines: string[] = [];
    await ensureChunkIndexes(store, other, artifacts, [keyA.private], (line) => lines.push(line), { required: false });
    assert.ok(lines.some((line) => /^warning: no chunk index for linux-x64 \(.*\); workers download it whole$/.test(line)), lines.join('\n'));
    await assert.rejects(
      ensureChunkIndexes(store, other, artifacts, [keyA.private], log, { required: true }),
      (err: unknown) => err instanceof ReleaseError && err.code === 'artifact_corrupted',
    );
  });

  test('a stored artifact that no longer matches the manifest is artifact_corrupted, and no index is written', async () => {
    const other = '3.0.0';
    const key = `artifacts/${other}/bytebiota-worker-${other}-linux-x64`;
    await store.write(key, bytes.subarray(1));
    await assert.rejects(
      ensureChunkIndex(store, other, 'linux-x64', { url: key, sha256: entry.sha256, size: entry.size }, [keyA.private], log),
      (err: unknown) => err instanceof ReleaseError && err.code === 'artifact_corrupted',
    );
    assert.equal(await store.stat(`${key}.chunks.json`), null);
  });
});

describe('publish, promote and rollback carry the index (real program)', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'bytebiota-release-chunks-cli-'));
  });
  after(async () => rm(root, { recursive: true, force: true }));

  test('a release published before differential updates gets its index when it is rolled back to', async () => {
    const store = join(root, 'store');
    const random = seededRandom(SEED + 1);
    const run = async (args: string[]) => {
      const result = await runRelease(args);
      assert.equal(result.exitCode, 0, result.stderr);
      return result;
    };
    await run(['keygen', '--out', join(root, 'keys')]);
    const key = join(root, 'keys', 'release.key');
    for (const version of ['1.0.0', '1.1.0']) {
      await writeFile(join(root, version), seededBytes(random, 200_000));
      await run(['publish', '--store', store, '--channel', 'stable', '--version', version, '--artifact', `linux-x64=${join(root, version)}`, '--key', key]);
    }
    const oldIndex = 'artifacts/1.0.0/bytebiota-worker-1.0.0-linux-x64.chunks.json';
    assert.ok((await listFiles(store)).includes(oldIndex));
    await rm(join(store, oldIndex));
    const rollback = await run(['rollback', '--store', store, '--channel', 'stable', '--to', '1.0.0', '--key', key]);
    assert.match(rollback.stderr, /chunk index artifacts\/1\.0\.0\/bytebiota-worker-1\.0\.0-linux-x64\.chunks\.json/);
    assert.ok((await listFiles(store)).includes(oldIndex), 'the index is written before the manifest that names the artifact');
  });
});
