import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SignedChunkIndex } from '../../src/protocol/chunk-index.js';
import { artifactFileName, currentPlatform } from '../../src/protocol/platform.js';
import { generateSigningKeyPair, parsePrivateKey } from '../../src/trust/keys.js';
import { serializeManifest, signManifest } from '../../src/trust/sign.js';
import { ManagedProcess, runChecked } from '../../scripts/lib/processes.js';
import { packagedWorker } from '../../scripts/lib/worker-builds.js';
import { chunkIndexFor, signedChunkIndexBytes } from '../helpers/chunk-index-fixtures.js';
import { fakeWorkerExecutable } from '../helpers/engine-fixtures.js';
import { releaseFields, startHostileServer, type ArtifactAnswer, type HostileServer } from '../helpers/hostile-server.js';

/**
 * The attack suite, for differential updates (docs/protocol.md, section 8): a hostile server
 * serves a genuine manifest and artifact, and attacks the chunk index or the byte ranges. The real
 * packaged worker must never let a wrong byte reach `versions/`: each attack ends in a fallback to
 * the full download, which verifies the signed SHA-256 as always, and the staged version is
 * exactly the signed artifact.
 */

const RUNNING_VERSION = '1.0.0';
const OFFERED_VERSION = '2.0.0';
const EVENT_TIMEOUT_MS = 90_000;

const platform = currentPlatform();
const generated = generateSigningKeyPair();
const releaseKey = { privateKey: parsePrivateKey(generated.privateKeyPem), publicBase64: generated.publicKeyBase64 };
const offeredFile = artifactFileName(OFFERED_VERSION, platform);
const offeredKey = `${OFFERED_VERSION}/${offeredFile}`;

const sha256Hex = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

interface DeltaAttack {
  name: string;
  /** The `worker_delta_fallback` reason the worker must log. */
  fallback: string;
  index(genuine: SignedChunkIndex): Buffer;
  ranges: Extract<ArtifactAnswer, { kind: 'ranged' }>['ranges'];
}

const attacks: DeltaAttack[] = [
  {
    name: 'a chunk index altered after signing',
    fallback: 'index_invalid',
    index: (genuine) => {
      const signed = signedChunkIndexBytes(genuine, [releaseKey.privateKey]).toString('utf8');
      return Buffer.from(signed.replace(genuine.chunk_sha256[1]!, genuine.chunk_sha256[2]!), 'utf8');
    },
    ranges: 'honest',
  },
  {
    name: 'a signed chunk index that points outside the file',
    fallback: 'index_invalid',
    index: (genuine) => signedChunkIndexBytes({ ...genuine, chunk_lengths: [...genuine.chunk_lengths.slice(0, -1), genuine.chunk_lengths.at(-1)! + 1_000_000] }, [releaseKey.privateKey]),
    ranges: 'honest',
  },
  {
    name: 'a chunk served with wrong bytes',
    fallback: 'chunk_mismatch',
    index: (genuine) => signedChunkIndexBytes(genuine, [releaseKey.privateKey]),
    ranges: 'corrupt',
  },
  {
    name: 'a range request answered with the whole file',
    fallback: 'range_not_supported',
    index: (genuine) => signedChunkIndexBytes(genuine, [releaseKey.privateKey]),
    ranges: 'whole-file',
  },
];

describe('attack suite, differential updates: a hostile server against the packaged worker', { concurrency: 2 }, () => {
  let workerExecutable: string;
  let suiteDir: string;
  let offered: Buffer;
  let genuineIndex: SignedChunkIndex;
  let manifest: Buffer;
  const running = new Set<ManagedProcess>();
  const servers = new Set<HostileServer>();

  before(async () => {
    workerExecutable = await packagedWorker(RUNNING_VERSION);
    suiteDir = await mkdtemp(join(tmpdir(), 'bytebiota-delta-attacks-'));
    // The offered release shares almost every byte with the running one, as a patch release does:
    // a runnable stand-in that reports 2.0.0, followed by the whole 1.0.0 executable.
    offered = Buffer.concat([fakeWorkerExecutable(OFFERED_VERSION), await readFile(workerExecutable)]);
    genuineIndex = chunkIndexFor(offered, OFFERED_VERSION, platform);
    const artifacts = { [platform]: { url: `artifacts/${offeredKey}`, sha256: sha256Hex(offered), size: offered.length } };
    manifest = serializeManifest(signManifest(releaseFields({ version: OFFERED_VERSION, serial: 7, artifacts }), [releaseKey.privateKey]));
  });

  after(async () => {
    await Promise.all([...running].map((worker) => worker.kill()));
    await Promise.all([...servers].map((server) => server.close()));
    if (suiteDir) await rm(suiteDir, { recursive: true, force: true });
  });

  attacks.forEach((attack, index) => {
    test(`${attack.name}: falls back (${attack.fallback}) to the verified full download`, async () => {
      const scenarioDir = join(suiteDir, `scenario-${index}`);
      const installRoot = join(scenarioDir, 'install-root');
      const home = join(scenarioDir, 'home');
      const processTmp = join(scenarioDir, 'tmp');
      for (const dir of [home, processTmp]) await mkdir(dir, { recursive: true });
      const env = { PATH: process.env['PATH'], HOME: home, TMPDIR: processTmp };
      await runChecked(workerExecutable, ['install', '--install-root', installRoot], { env });

      const server = await startHostileServer({
        latestVersion: OFFERED_VERSION,
        manifests: [{ body: manifest }],
        artifacts: {
          [offeredKey]: { kind: 'ranged', body: offered, ranges: attack.ranges },
          [`${offeredKey}.chunks.json`]: { kind: 'bytes', body: attack.index(genuineIndex) },
        },
      });
      servers.add(server);
      const worker = new ManagedProcess(
        `delta-attack-${index}`,
        join(installRoot, 'current', 'bytebiota-worker'),
        ['run', '--install-root', installRoot, '--server', server.url, '--channel', 'stable', '--trusted-key', releaseKey.publicBase64, '--check-interval', '3600', '--force-update'],
        { env: { ...env, LOG_LEVEL: 'debug', BYTEBIOTA_WORKER_TOKEN: `delta-attack-token-${index}` } },
      );
      running.add(worker);
      try {
        const fallback = await worker.waitForEvent((event) => event.event === 'worker_delta_fallback', EVENT_TIMEOUT_MS);
        assert.equal(fallback['reason'], attack.fallback, JSON.stringify(fallback));
        const downloaded = await worker.waitForEvent((event) => event.event === 'worker_update_downloaded', EVENT_TIMEOUT_MS);
        assert.equal(downloaded['mode'], 'full');
        assert.equal(downloaded['delta_fallback'], attack.fallback);
        await worker.waitForEvent((event) => event.event === 'worker_update_staged', EVENT_TIMEOUT_MS);
        // Staged: `run` hands over to a supervisor with the restart code.
        assert.equal((await worker.waitForExit(EVENT_TIMEOUT_MS)).code, 75);
      } finally {
        await worker.kill();
        running.delete(worker);
        await server.close();
        servers.delete(server);
      }
      // Exactly the signed bytes reached versions/, and nothing else did.
      assert.deepEqual((await readdir(join(installRoot, 'versions'))).sort(), [RUNNING_VERSION, OFFERED_VERSION]);
      assert.equal(sha256Hex(await readFile(join(installRoot, 'versions', OFFERED_VERSION, 'bytebiota-worker'))), sha256Hex(offered));
      // The chunk cache comes from an index that verified; a refused one leaves none behind.
      const cache = attack.fallback === 'index_invalid' ? [] : ['.chunks.json'];
      assert.deepEqual((await readdir(join(installRoot, 'versions', OFFERED_VERSION))).sort(), [...cache, '.complete', 'bytebiota-worker']);
      assert.deepEqual(await readdir(join(installRoot, 'tmp')), [], 'no partial file is left');
      assert.equal(await readlink(join(installRoot, 'current')), join('versions', RUNNING_VERSION), 'the supervisor, not run, switches');
    });
  });
});
