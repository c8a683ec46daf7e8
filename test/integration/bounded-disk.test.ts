/**
 * Bounded disk end to end: ten updates in a row on a real supervised worker (the real server
 * process, the real release tool, real HTTP) leave at most three versions in `versions/`, each
 * complete. The worker starts as a real packaged executable; the ten releases are the same
 * worker bundle (src/release/build/bundle.ts) run by this machine's node, since packaging ten
 * single executables would take a minute on its own (docs/packaging.md: the bundle is the
 * documented fallback artifact).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LogLine, ManagedProcess } from '../../scripts/lib/processes.js';
import { repoRoot } from '../../scripts/lib/processes.js';
import { UpdateLab } from '../../scripts/lib/update-lab.js';
import { artifactFileName } from '../../src/protocol/platform.js';
import { bundleWorker } from '../../src/release/build/bundle.js';
import { installLayout } from '../../src/worker/install/install-layout.js';
import { inspectVersion } from '../../src/worker/install/installer.js';

const EVENT_TIMEOUT_MS = 60_000;
const CHANNEL = 'bounded-disk';
const RELEASES = Array.from({ length: 10 }, (_, i) => `1.0.${i + 1}`);

let lab: UpdateLab;
let first: string;
const artifacts = new Map<string, string>();

/** The worker bundled with `version` embedded, made executable with a `#!` line naming this node. */
async function bundledRelease(version: string): Promise<string> {
  const dir = join(lab.dir, 'bundles');
  await mkdir(dir, { recursive: true });
  const bundle = join(dir, `${version}.cjs`);
  await bundleWorker({
    entry: join(repoRoot, 'src', 'worker', 'main.ts'),
    outFile: bundle,
    buildInfo: { version, commit: 'unknown', built_at: '2026-01-01T00:00:00.000Z', platform: lab.platform },
  });
  const artifact = join(dir, artifactFileName(version, lab.platform));
  await writeFile(artifact, Buffer.concat([Buffer.from(`#!${process.execPath}\n`), await readFile(bundle)]), { mode: 0o755 });
  return artifact;
}

before(async () => {
  lab = await UpdateLab.create({ cacheTtlSeconds: 1 });
  const bundling = Promise.all(RELEASES.map(async (version) => artifacts.set(version, await bundledRelease(version))));
  [first] = await Promise.all([lab.buildWorker('1.0.0'), lab.startServer(), bundling]);
});

after(async () => {
  await lab?.close();
});

function event(worker: ManagedProcess, name: string, match: (line: LogLine) => boolean, from: number): Promise<LogLine> {
  return worker.waitForEvent((line) => line.event === name && match(line), EVENT_TIMEOUT_MS, from);
}

test('ten updates in a row leave at most three versions on disk, each complete', { timeout: 180_000 }, async (t) => {
  const startedAt = Date.now();
  const token = await lab.createToken('worker', CHANNEL);
  await lab.setPoolPolicy(CHANNEL, true);
  const root = join(lab.dir, 'worker');
  await lab.installWorker(first, root);
  const worker = lab.startSupervisor('bounded-disk', { installRoot: root, token, channel: CHANNEL, checkIntervalSeconds: 1, healthWindowSeconds: 20 });
  await event(worker, 'worker_ready', () => true, 0);

  // Each release is published once the one before it is switched to, and no sooner: a newer
  // release offered while one is being staged supersedes it, and the worker would skip one.
  let mark = worker.events.length;
  let publishing = lab.publish(RELEASES[0]!, artifacts.get(RELEASES[0]!)!, { channel: CHANNEL });
  for (const [index, version] of RELEASES.entries()) {
    await publishing;
    await event(worker, 'worker_update_switched', (line) => line['to_version'] === version, mark);
    const next = RELEASES[index + 1];
    const successFrom = mark;
    mark = worker.events.length;
    publishing = next === undefined ? Promise.resolve() : lab.publish(next, artifacts.get(next)!, { channel: CHANNEL });
    const success = await event(worker, 'worker_update_success', (line) => line['to_version'] === version, successFrom);
    // The prune that follows this watch.
    await event(worker, 'worker_versions_pruned', () => true, worker.events.indexOf(success));
  }
  const updatesMs = Date.now() - startedAt;
  await worker.stop();

  const layout = installLayout(root);
  const onDisk = (await readdir(layout.versionsDir)).sort();
  assert.ok(onDisk.length <= 3, `at most three versions on disk, found ${onDisk.join(', ')}`);
  for (const version of onDisk) assert.equal((await inspectVersion(layout, version)).kind, 'complete', `${version} is complete`);
  const pointer = async (name: string) => (await readlink(join(root, name))).split('/').pop();
  assert.equal(await pointer('current'), '1.0.10');
  assert.equal(await pointer('launcher'), '1.0.10');
  assert.equal(await pointer('previous'), '1.0.9');
  assert.ok(onDisk.includes('1.0.10') && onDisk.includes('1.0.9'));

  const pruned = worker.events.filter((line) => line.event === 'worker_versions_pruned');
  for (const line of pruned) assert.ok((line['kept'] as string[]).length <= 3, `kept ${String(line['kept'])}`);
  const removed = pruned.flatMap((line) => line['removed'] as string[]).sort();
  assert.deepEqual(removed, ['1.0.0', ...RELEASES].filter((version) => !onDisk.includes(version)).sort(), 'each old version removed once');
  assert.ok(pruned.some((line) => (line['bytes_freed'] as number) > 90_000_000), 'the packaged first version freed its ~95 MB');
  const failures = worker.events.filter((line) => ['worker_version_remove_failed', 'worker_versions_prune_failed', 'worker_version_unreadable'].includes(String(line.event)));
  assert.deepEqual(failures, []);
  t.diagnostic(`ten updates in a row took ${updatesMs} ms`);
});
