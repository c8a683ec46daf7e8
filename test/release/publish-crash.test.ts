import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { artifactFileName } from '../../src/protocol/platform.js';
import { CHUNK_INDEX_SUFFIX, chunkIndexLocation } from '../../src/protocol/chunk-index.js';
import type { SignedRelease } from '../../src/protocol/manifest.js';
import { parsePublicKey, type PublicKey } from '../../src/trust/keys.js';
import { verifyManifest } from '../../src/trust/verify.js';
import { verifyChunkIndex } from '../../src/trust/verify-chunk-index.js';
import { listFiles, RELEASE_MAIN, runRelease } from './release-cli.js';
import { seededRandom } from '../helpers/seeded-random.js';

/**
 * Crash consistency of publish (docs/protocol.md, section 2): SIGKILL the real program at random
 * instants and check that the store always holds the old manifest or the new one, and that
 * every manifest in it names artifacts that are present, whole and exactly as signed.
 */
const TRIALS = 20;
const ARTIFACT_BYTES = 3 * 1024 * 1024;
const PLATFORMS = ['linux-x64', 'linux-arm64', 'darwin-arm64'] as const;
const CHANNEL = 'canary';


const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let root: string;
let store: string;
let keyFile: string;
let publicKey: PublicKey;
/** version -> platform -> sha256 of the bytes meant for it. */
const intended = new Map<string, Map<string, string>>();

async function makeArtifacts(version: string): Promise<string[]> {
  const dir = join(root, 'builds', version);
  await mkdir(dir, { recursive: true });
  const hashes = new Map<string, string>();
  const flags: string[] = [];
  for (const platform of PLATFORMS) {
    const data = randomBytes(ARTIFACT_BYTES);
    const path = join(dir, platform);
    await writeFile(path, data);
    hashes.set(platform, sha256(data));
    flags.push(`${platform}=${path}`);
  }
  intended.set(version, hashes);
  return flags;
}

const publishArgs = (version: string, artifacts: string[]) => ['publish', '--store', store, '--channel', CHANNEL, '--version', version, '--artifact', ...artifacts, '--key', keyFile];

interface KilledRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Milliseconds from spawn to the first progress line, or undefined if none came. */
  firstLineMs: number | undefined;
  elapsedMs: number;
}

/**
 * Spawn publish and SIGKILL it `delayMs` after spawn, or after its first progress line
 * when `afterFirstLine` (so that kills land in the upload phase, not only in start-up).
 */
function publishAndKill(args: string[], delayMs: number | undefined, afterFirstLine = false): Promise<KilledRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', RELEASE_MAIN, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
    });
    let stderr = '';
    let firstLineMs: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      if (delayMs !== undefined) timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
    };
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (firstLineMs === undefined) {
        firstLineMs = Date.now() - started;
        if (afterFirstLine) arm();
      }
    });
    if (!afterFirstLine) arm();
    child.on('error', reject);
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stderr, firstLineMs, elapsedMs: Date.now() - started });
    });
  });
}

async function readSigned(key: string): Promise<SignedRelease> {
  const bytes = await readFile(join(store, key));
  return verifyManifest(bytes, { trustedKeys: [publicKey], channel: CHANNEL, now: new Date() }).signed;
}

/** The invariants that must hold after any crash. Returns the current manifest. */
async function assertStoreConsistent(context: string): Promise<SignedRelease> {
  const files = await listFiles(store);
  const current = await readSigned(`channels/${CHANNEL}/worker-release.json`);
  const manifests = [current];
  for (const file of files.filter((f) => /^channels\/canary\/history\/\d+\.json$/.test(f))) manifests.push(await readSigned(file));
  // Every manifest's artifacts are present, whole and as signed.
  for (const signed of manifests) {
    for (const [platform, entry] of Object.entries(signed.artifacts)) {
      const data = await readFile(join(store, entry.url)).catch(() => undefined);
      assert.ok(data, `${context}: serial ${signed.serial} names ${entry.url}, which is missing`);
      assert.equal(data.length, entry.size, `${context}: ${entry.url} size`);
      assert.equal(sha256(data), entry.sha256, `${context}: ${entry.url} sha256 (${platform})`);
    }
  }
  // Nothing partial under a final artifact name: each is exactly the build meant for it.
  const artifactFiles = files.filter((f) => f.startsWith('artifacts/') && !f.split('/').pop()?.startsWith('.'));
  for (const file of artifactFiles.filter((f) => f.endsWith(CHUNK_INDEX_SUFFIX))) {
    // A chunk index is there whole and signed, or not at all, and describes the build beside it.
    const [, version, name] = file.split('/');
    const platform = PLATFORMS.find((p) => chunkIndexLocation(artifactFileName(version ?? '', p)) === name);
    assert.ok(platform && version, `${context}: unexpected file ${file}`);
    const artifact = await readFile(join(store, file.slice(0, -CHUNK_INDEX_SUFFIX.length)));
    const expected = { trustedKeys: [publicKey], threshold: 1, version, platform, sha256: sha256(artifact), size: artifact.length };
    assert.equal(expected.sha256, intended.get(version)?.get(platform), `${context}: the artifact beside ${file} is not the whole build`);
    assert.doesNotThrow(() => verifyChunkIndex(readFileSync(join(store, file)), expected), `${context}: ${file} does not verify`);
  }
  for (const file of artifactFiles.filter((f) => !f.endsWith(CHUNK_INDEX_SUFFIX))) {
    const [, version, name] = file.split('/');
    const platform = PLATFORMS.find((p) => artifactFileName(version ?? '', p) === name);
    assert.ok(platform && version, `${context}: unexpected file ${file}`);
    assert.equal(sha256(await readFile(join(store, file))), intended.get(version)?.get(platform), `${context}: ${file} is not the whole build`);
  }
  // The current manifest is also in the history, and nothing newer than it is current.
  assert.ok(files.includes(`channels/${CHANNEL}/history/${current.serial}.json`), `${context}: current serial ${current.serial} missing from history`);
  return current;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bytebiota-publish-crash-'));
  store = join(root, 'store');
  const keygen = await runRelease(['keygen', '--out', join(root, 'keys')]);
  assert.equal(keygen.exitCode, 0, keygen.stderr);
  keyFile = join(root, 'keys', 'release.key');
  publicKey = parsePublicKey(await readFile(join(root, 'keys', 'release.pub'), 'utf8'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

test(`publish killed with SIGKILL at ${TRIALS} random instants leaves the old manifest or the new one, never a broken one`, { timeout: 600_000 }, async () => {
  const seed = Number(process.env['BYTEBIOTA_CRASH_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`publish crash test seed ${seed} (replay with BYTEBIOTA_CRASH_SEED=${seed})`);
  const random = seededRandom(seed);

  // Calibration: one whole publish, timed, which is also the "old" state for the first trial.
  const calibration = await publishAndKill(publishArgs('1.0.0', await makeArtifacts('1.0.0')), undefined);
  assert.equal(calibration.exitCode, 0, calibration.stderr);
  const fullMs = calibration.elapsedMs;
  const uploadMs = fullMs - (calibration.firstLineMs ?? 0);
  console.log(`a full publish takes ${fullMs} ms, ${uploadMs} ms of it after start-up`);
  let current = await assertStoreConsistent('after calibration');

  let killedMidPublish = 0;
  let landed = 0;
  for (let trial = 0; trial < TRIALS; trial += 1) {
    const version = `1.0.${trial + 1}`;
    const artifacts = await makeArtifacts(version);
    // Half the trials pick an instant in the whole run, half one in the upload phase.
    const inUpload = trial % 2 === 1;
    const delayMs = Math.floor(random() * (inUpload ? uploadMs : fullMs));
    const run = await publishAndKill(publishArgs(version, artifacts), delayMs, inUpload);
    if (run.signal === 'SIGKILL') killedMidPublish += 1;
    else assert.equal(run.exitCode, 0, `trial ${trial} finished but failed: ${run.stderr}`);

    const context = `trial ${trial} (seed ${seed}, ${inUpload ? 'upload phase' : 'from spawn'}, kill at ${delayMs} ms)`;
    const after = await assertStoreConsistent(context);
    if (after.serial === current.serial) {
      assert.equal(after.version, current.version, context);
    } else {
      // A run killed between its history entry and its manifest used up a serial: the next
      // one skips it, so serials only grow.
      assert.ok(after.serial > current.serial, `${context}: serial ${after.serial} after ${current.serial}`);
      assert.equal(after.version, version, context);
      landed += 1;
    }
    current = after;
  }
  console.log(`${killedMidPublish} of ${TRIALS} publishes killed before they finished; ${landed} new manifests landed`);
  assert.ok(killedMidPublish > 0, 'no trial was killed: the delays are too long to test anything');

  // Recovery: kill a publish after its first artifact is stored, then run the same publish
  // again: it completes, reusing what the killed run stored.
  const version = `1.0.${TRIALS + 1}`;
  const artifacts = await makeArtifacts(version);
  const killed = await new Promise<KilledRun>((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', RELEASE_MAIN, ...publishArgs(version, artifacts)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (/stored and re-verified/.test(stderr)) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('close', (exitCode, signal) => resolve({ exitCode, signal, stderr, firstLineMs: undefined, elapsedMs: Date.now() - started }));
  });
  assert.equal(killed.signal, 'SIGKILL', killed.stderr);
  await assertStoreConsistent('after the recovery kill');
  const rerun = await runRelease(publishArgs(version, artifacts));
  assert.equal(rerun.exitCode, 0, rerun.stderr);
  assert.match(rerun.stderr, /reused artifacts\//);
  assert.equal((await assertStoreConsistent('after the recovery')).version, version);
});
