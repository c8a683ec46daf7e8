import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type SerializationType } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { currentPlatform } from '../../src/protocol/platform.js';
import { buildWorker, WORK_DIR_PREFIX, type BuiltWorker } from '../../src/release/build/index.js';
import { headCommit, UNKNOWN_COMMIT } from '../../src/release/build/git-commit.js';
import { SEA_FUSE } from '../../src/release/build/sea.js';
import { expectCoded } from '../helpers/coded-error.js';

const execFileAsync = promisify(execFile);

const FIXTURE_ENTRY = fileURLToPath(new URL('./fixtures/tiny-entry.ts', import.meta.url));
const VERSION = '1.4.0-rc.2';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const NOW = new Date('2025-03-04T05:06:07.089Z');
const BUILD_TIMEOUT_MS = 180_000;
const BUILD_TEST = { timeout: BUILD_TIMEOUT_MS };
const SAME_INPUTS = { version: VERSION, entry: FIXTURE_ENTRY, commit: COMMIT, now: NOW };

const tempDirs: string[] = [];
async function makeTempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-build-test-'));
  tempDirs.push(dir);
  return dir;
}
after(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

interface WatchedBuild {
  built: BuiltWorker;
  outDir: string;
  /** Sizes seen for every non-scratch entry of outDir while the build ran. */
  sightings: { name: string; sizeBytes: number }[];
  /** Polls that saw the scratch directory, i.e. that happened mid-build. */
  pollsDuringBuild: number;
  elapsedMs: number;
}

/** Poll outDir throughout the build: the artifact may only ever be seen complete. */
async function watchedBuild(): Promise<WatchedBuild> {
  const outDir = await makeTempDir();
  const sightings: WatchedBuild['sightings'] = [];
  let pollsDuringBuild = 0;
  const poll = setInterval(() => {
    for (const name of readdirSync(outDir)) {
      if (name.startsWith(WORK_DIR_PREFIX)) {
        pollsDuringBuild += 1;
        continue;
      }
      try {
        sightings.push({ name, sizeBytes: statSync(join(outDir, name)).size });
      } catch {
        // Gone between readdir and stat: nothing was seen.
      }
    }
  }, 5);
  const startedMs = performance.now();
  try {
    const built = await buildWorker({ ...SAME_INPUTS, outDir });
    return { built, outDir, sightings, pollsDuringBuild, elapsedMs: performance.now() - startedMs };
  } finally {
    clearInterval(poll);
  }
}

let shared: Promise<WatchedBuild> | undefined;
/** One real build (several seconds, ~700 MB peak in postject) serves every test that needs one. */
function sharedBuild(): Promise<WatchedBuild> {
  shared ??= watchedBuild();
  return shared;
}

test('builds one executable with version, commit, build time and platform embedded', BUILD_TEST, async () => {
  const { built, outDir, elapsedMs } = await sharedBuild();
  const platform = currentPlatform();
  const expectedName = `bytebiota-worker-${VERSION}-${platform}${process.platform === 'win32' ? '.exe' : ''}`;

  assert.equal(built.path, join(outDir, expectedName));
  assert.deepEqual(await readdir(outDir), [expectedName], 'only the executable is left in outDir');
  assert.deepEqual(built.buildInfo, { version: VERSION, commit: COMMIT, built_at: NOW.toISOString(), platform });

  const bytes = await readFile(built.path);
  assert.equal(built.size, bytes.length);
  assert.equal(built.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.ok(bytes.includes(`${SEA_FUSE}:1`), 'the SEA fuse is flipped');
  if (process.platform !== 'win32') assert.equal((await stat(built.path)).mode & 0o777, 0o755);

  const json = await execFileAsync(built.path, ['--version', '--json']);
  assert.deepEqual(JSON.parse(json.stdout), built.buildInfo);
  assert.equal(json.stderr, '', 'no experimental-SEA warning on stderr');
  const plain = await execFileAsync(built.path, ['--version']);
  assert.equal(plain.stdout, `${VERSION}\n`);

  console.log(`build took ${Math.round(elapsedMs)} ms; executable is ${(built.size / 1024 ** 2).toFixed(1)} MiB`);
});

test('the executable never appears partially: it is renamed into place complete', BUILD_TEST, async () => {
  const { built, sightings, pollsDuringBuild } = await sharedBuild();
  assert.ok(pollsDuringBuild > 0, 'the watcher ran while the build was in progress');
  for (const sighting of sightings) {
    assert.equal(sighting.name, basename(built.path), 'no other file ever appears in outDir');
    assert.equal(sighting.sizeBytes, built.size, 'the executable is only ever seen at its final size');
  }
});

test('two builds from the same inputs are byte-identical', BUILD_TEST, async () => {
  const { built } = await sharedBuild();
  const again = await buildWorker({ ...SAME_INPUTS, outDir: await makeTempDir() });
  assert.equal(again.sha256, built.sha256);
});

/** Spawn the SEA as a worker supervisor would, and round-trip one message over IPC. */
async function ipcRoundTrip(executable: string, serialization: SerializationType, payload: unknown): Promise<unknown> {
  const child = spawn(executable, ['--ipc-echo'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill(), 10_000);
  try {
    const reply = await new Promise<unknown>((resolve, reject) => {
      child.on('message', (message: { ready?: boolean }) => {
        if (message.ready) child.send(payload as never);
        else resolve(message);
      });
      child.once('exit', (code) => reject(new Error(`exited with ${code} before replying: ${stderr}`)));
    });
    assert.equal(await exited, 0, stderr);
    return reply;
  } finally {
    clearTimeout(timer);
  }
}

test('a parent can talk to the executable over the IPC channel', BUILD_TEST, async () => {
  const { built } = await sharedBuild();
  const jsonPayload = { type: 'ping', n: 1, nested: { list: [1, 'two'] } };
  assert.deepEqual(await ipcRoundTrip(built.path, 'json', jsonPayload), { echo: jsonPayload, version: VERSION });

  const advancedPayload = { big: 2n ** 70n, map: new Map([['k', new Set([1, 2])]]), at: NOW };
  assert.deepEqual(await ipcRoundTrip(built.path, 'advanced', advancedPayload), {
    echo: advancedPayload,
    version: VERSION,
  });
});

test('refuses a version that is not strict SemVer, before writing anything', async () => {
  const outDir = join(await makeTempDir(), 'out');
  for (const version of ['v1.2.3', '1.2', 'latest', '01.2.3', ' 1.2.3', '1.2.3 ', '']) {
    await assert.rejects(
      buildWorker({ version, outDir, entry: FIXTURE_ENTRY, commit: COMMIT }),
      expectCoded('usage', /invalid version .*strict SemVer/),
      `version ${JSON.stringify(version)}`,
    );
  }
  assert.equal(existsSync(outDir), false);
});

test('refuses a platform other than this machine', async () => {
  const other = currentPlatform() === 'win32-arm64' ? 'linux-x64' : 'win32-arm64';
  const outDir = join(await makeTempDir(), 'out');
  await assert.rejects(
    buildWorker({ version: '1.0.0', outDir, entry: FIXTURE_ENTRY, commit: COMMIT, platform: other }),
    expectCoded('usage', /cannot build for platform/),
  );
});

test('refuses to replace an existing artifact of the same version', BUILD_TEST, async () => {
  const { built, outDir } = await sharedBuild();
  await assert.rejects(
    buildWorker({ version: VERSION, outDir, entry: FIXTURE_ENTRY, commit: COMMIT }),
    expectCoded('artifact_exists', /already exists/),
  );
  assert.equal(createHash('sha256').update(await readFile(built.path)).digest('hex'), built.sha256);
});

test('a bundling error fails the build and leaves outDir empty', async () => {
  const dir = await makeTempDir();
  const entry = join(dir, 'broken.ts');
  await writeFile(entry, 'export const x = ;\n');
  const outDir = join(dir, 'out');
  await assert.rejects(
    buildWorker({ version: '1.0.0', outDir, entry, commit: COMMIT }),
    expectCoded('bundle_failed', /broken\.ts:1/),
  );
  assert.deepEqual(await readdir(outDir), []);
});

test('esbuild warnings fail the build: import.meta would be empty in the CommonJS bundle', async () => {
  const dir = await makeTempDir();
  const entry = join(dir, 'uses-import-meta.ts');
  await writeFile(entry, 'console.log(import.meta.url);\n');
  await assert.rejects(
    buildWorker({ version: '1.0.0', outDir: join(dir, 'out'), entry, commit: COMMIT }),
    expectCoded('bundle_failed', /import\.meta/),
  );
});

test('a missing entry point is reported as such', async () => {
  const dir = await makeTempDir();
  await assert.rejects(
    buildWorker({ version: '1.0.0', outDir: join(dir, 'out'), entry: join(dir, 'nope.ts'), commit: COMMIT }),
    expectCoded('entry_not_found', /nope\.ts does not exist/),
  );
});

test('sea_unsupported when the node binary has no SEA fuse', async () => {
  const dir = await makeTempDir();
  const nodeBinary = join(dir, 'node-without-fuse');
  await writeFile(nodeBinary, 'not a node binary');
  const outDir = join(dir, 'out');
  await assert.rejects(
    buildWorker({ version: '1.0.0', outDir, entry: FIXTURE_ENTRY, commit: COMMIT, nodeBinary }),
    expectCoded('sea_unsupported', /without single executable application support/),
  );
  assert.deepEqual(await readdir(outDir), []);
});

test('sea_unsupported when the node binary is itself a SEA', BUILD_TEST, async () => {
  const { built } = await sharedBuild();
  const outDir = await makeTempDir();
  await assert.rejects(
    buildWorker({ version: '1.0.0', outDir, entry: FIXTURE_ENTRY, commit: COMMIT, nodeBinary: built.path }),
    expectCoded('sea_unsupported', /already contains an injected SEA blob/),
  );
});

test(
  'an injection failure after the copy leaves outDir empty',
  { skip: process.platform === 'win32' && 'needs a shell-script stand-in for node' },
  async () => {
    // Runs as node (so the blob is written) and carries the fuse, but is no ELF/PE/Mach-O file.
    const dir = await makeTempDir();
    const nodeBinary = join(dir, 'node-as-script');
    await writeFile(nodeBinary, `#!/bin/sh\n# ${SEA_FUSE}:0\nexec "${process.execPath}" "$@"\n`);
    await chmod(nodeBinary, 0o755);
    const outDir = join(dir, 'out');
    await assert.rejects(
      buildWorker({ version: '1.0.0', outDir, entry: FIXTURE_ENTRY, commit: COMMIT, nodeBinary }),
      expectCoded('sea_inject_failed', /Executable must be a supported format/),
    );
    assert.deepEqual(await readdir(outDir), []);
  },
);

test('the commit defaults to git HEAD, or "unknown" outside a git checkout', async () => {
  assert.equal(await headCommit(await makeTempDir()), UNKNOWN_COMMIT);
  const here = fileURLToPath(new URL('.', import.meta.url));
  const expected = await execFileAsync('git', ['rev-parse', 'HEAD'], { cwd: here }).then(
    ({ stdout }) => stdout.trim(),
    () => UNKNOWN_COMMIT,
  );
  assert.equal(await headCommit(here), expected);
});
