import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import type { SignedRelease } from '../../src/protocol/manifest.js';
import { artifactFileName, currentPlatform } from '../../src/protocol/platform.js';
import type { ReasonCode } from '../../src/protocol/reason-codes.js';
import { generateSigningKeyPair, parsePrivateKey, type PrivateKey } from '../../src/trust/keys.js';
import { signManifest, serializeManifest } from '../../src/trust/sign.js';
import { ManagedProcess, runChecked, type LogLine } from '../../scripts/lib/processes.js';
import { packagedWorker } from '../../scripts/lib/worker-builds.js';
import {
  releaseFields,
  signedManifestBytes,
  startHostileServer,
  type HostileScenario,
  type HostileServer,
} from '../helpers/hostile-server.js';

/**
 * The attack suite (TUF's threat list, applied to our worker): a hostile update server serves
 * one attack per scenario to the real packaged worker, which trusts only the real release key.
 * Each attack must be refused with its reason code, in the worker's log and in the report the
 * server receives; nothing may be written outside the scenario's folder, nothing may enter
 * `versions/`, and the worker must go on working on the version it runs.
 */

const RUNNING_VERSION = '1.0.0';
const OFFERED_VERSION = '2.0.0';
const ARTIFACT_BYTES = 64 * 1024;
const SCENARIO_CONCURRENCY = 4;
const EVENT_TIMEOUT_MS = 60_000;

const platform = currentPlatform();
const releaseKey = keyPair();
const secondKey = keyPair();
const rogueKey = keyPair();

function keyPair(): { privateKey: PrivateKey; publicBase64: string } {
  const generated = generateSigningKeyPair();
  return { privateKey: parsePrivateKey(generated.privateKeyPem), publicBase64: generated.publicKeyBase64 };
}

function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The offered release's artifact, and the manifest entry that signs it. */
const offeredArtifact = randomBytes(ARTIFACT_BYTES);
/** Another release's artifact, exactly as long: the bytes of a mix-and-match attack. */
const otherReleaseArtifact = randomBytes(ARTIFACT_BYTES);
const offeredFile = artifactFileName(OFFERED_VERSION, platform);
const offeredArtifactKey = `${OFFERED_VERSION}/${offeredFile}`;

function offeredEntries(): SignedRelease['artifacts'] {
  return { [platform]: { url: `artifacts/${offeredArtifactKey}`, sha256: sha256Hex(offeredArtifact), size: ARTIFACT_BYTES } };
}

function offeredRelease(overrides: Partial<SignedRelease> = {}): SignedRelease {
  return { ...releaseFields({ version: OFFERED_VERSION, serial: 7, artifacts: offeredEntries() }), ...overrides };
}

/** A manifest as the release tool publishes it, signed by the real release key. */
function genuine(signed: SignedRelease): Buffer {
  return serializeManifest(signManifest(signed, [releaseKey.privateKey]));
}

interface AttackCase {
  name: string;
  reason: ReasonCode;
  scenario(): HostileScenario;
  /** Worker options beyond the defaults (one trusted key, the real one). */
  workerArgs?: string[];
  /** The serial the worker must have persisted for `stable` at the end; undefined: none. */
  highestSerial?: number;
  /** What the worker's failure detail must say, where the reason code alone could hide the cause. */
  detail?: RegExp;
}

const attacks: AttackCase[] = [
  {
    name: 'an unsigned manifest',
    reason: 'signature_invalid',
    scenario: () => ({ latestVersion: OFFERED_VERSION, manifests: [{ body: canonicalBytes({ signed: offeredRelease(), signatures: [] }) }] }),
  },
  {
    name: 'a manifest signed by another key',
    reason: 'signature_invalid',
    scenario: () => ({ latestVersion: OFFERED_VERSION, manifests: [{ body: signedManifestBytes(offeredRelease(), [rogueKey.privateKey]) }] }),
  },
  {
    name: 'one key signing twice against a threshold of two',
    reason: 'signature_invalid',
    scenario: () => ({
      latestVersion: OFFERED_VERSION,
      manifests: [{ body: signedManifestBytes(offeredRelease(), [releaseKey.privateKey, releaseKey.privateKey]) }],
    }),
    workerArgs: ['--trusted-key', secondKey.publicBase64, '--trusted-key-threshold', '2'],
    detail: /1 valid signature\(s\) from trusted keys; 2 required/,
  },
  {
    name: 'an expired manifest (freeze attack)',
    reason: 'manifest_expired',
    scenario: () => {
      const dayMs = 24 * 3600_000;
      const now = Date.now();
      const stale = offeredRelease({
        released_at: new Date(now - 3 * dayMs).toISOString(),
        expires: new Date(now - dayMs).toISOString(),
      });
      return { latestVersion: OFFERED_VERSION, manifests: [{ body: genuine(stale) }] };
    },
  },
  {
    name: 'an older serial after a newer one was accepted (rollback attack)',
    reason: 'manifest_rollback',
    scenario: () => ({
      latestVersion: OFFERED_VERSION,
      manifests: [
        // Accepted and persisted: serial 5 for the version the worker already runs.
        { body: genuine(releaseFields({ version: RUNNING_VERSION, serial: 5, artifacts: offeredEntries() })) },
        // Then a genuinely signed but older manifest offering a newer version.
        { body: genuine(offeredRelease({ serial: 4 })) },
      ],
    }),
    // The second manifest comes with the first periodic check, a second or so later.
    workerArgs: ['--check-interval', '1'],
    highestSerial: 5,
  },
  {
    name: 'a manifest for another channel',
    reason: 'channel_mismatch',
    scenario: () => ({ latestVersion: OFFERED_VERSION, manifests: [{ body: genuine(offeredRelease({ channel: 'beta' })) }] }),
  },
  {
    name: "another release's artifact under a valid manifest (mix-and-match)",
    reason: 'checksum_mismatch',
    scenario: () => ({
      latestVersion: OFFERED_VERSION,
      manifests: [{ body: genuine(offeredRelease()) }],
      artifacts: { [offeredArtifactKey]: { kind: 'bytes', body: otherReleaseArtifact } },
    }),
    highestSerial: 7,
  },
  {
    name: 'an artifact longer than its signed size',
    reason: 'size_mismatch',
    scenario: () => ({
      latestVersion: OFFERED_VERSION,
      manifests: [{ body: genuine(offeredRelease()) }],
      artifacts: { [offeredArtifactKey]: { kind: 'bytes', body: Buffer.concat([offeredArtifact, randomBytes(4096)]) } },
    }),
    highestSerial: 7,
  },
  {
    name: 'an endless artifact (endless data attack)',
    reason: 'size_mismatch',
    scenario: () => ({
      latestVersion: OFFERED_VERSION,
      manifests: [{ body: genuine(offeredRelease()) }],
      artifacts: { [offeredArtifactKey]: { kind: 'endless' } },
    }),
    highestSerial: 7,
  },
  {
    name: 'an artifact sent a few bytes a second (slow retrieval attack)',
    reason: 'download_failed',
    scenario: () => ({
      latestVersion: OFFERED_VERSION,
      manifests: [{ body: genuine(offeredRelease()) }],
      // 8 bytes a second: never idle long enough for an idle timeout, hours for the whole artifact.
      artifacts: { [offeredArtifactKey]: { kind: 'drip', body: offeredArtifact, bytesPerTick: 2, tickMs: 250 } },
    }),
    workerArgs: ['--download-timeout', '2'],
    highestSerial: 7,
    // The whole-download deadline, not the idle timeout (which a drip never trips), ended it.
    detail: /did not finish within 2000 ms/,
  },
  {
    name: 'malformed JSON',
    reason: 'manifest_invalid',
    scenario: () => ({ latestVersion: OFFERED_VERSION, manifests: [{ body: Buffer.from('{"signed": {"_type": "worker-release", ') }] }),
  },
  {
    name: 'a 5 MiB manifest',
    reason: 'manifest_invalid',
    scenario: () => {
      const padding = 'x'.repeat(5 * 1024 * 1024);
      return { latestVersion: OFFERED_VERSION, manifests: [{ body: Buffer.from(`{"signatures":[],"signed":{"notes":"${padding}"}}`), chunked: true }] };
    },
  },
  {
    name: 'a version string with path separators',
    reason: 'manifest_invalid',
    scenario: () => ({
      latestVersion: OFFERED_VERSION,
      manifests: [{ body: signedManifestBytes({ ...offeredRelease(), version: '../../evil' }, [releaseKey.privateKey]) }],
    }),
  },
  {
    name: 'a platform key with path separators',
    reason: 'manifest_invalid',
    scenario: () => {
      const entry = offeredEntries()[platform]!;
      const artifacts = { [platform]: entry, [`../../${platform}`]: entry };
      return {
        latestVersion: OFFERED_VERSION,
        manifests: [{ body: signedManifestBytes({ ...offeredRelease(), artifacts }, [releaseKey.privateKey]) }],
      };
    },
  },
];

/** Every path under `dir`, relative, folders included, sorted; symlinks are listed, not followed. */
async function listTree(dir: string, base = dir): Promise<string[]> {
  const paths: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    paths.push(relative(base, path));
    if (entry.isDirectory()) paths.push(...(await listTree(path, base)));
  }
  return paths.sort();
}

/** The worker's output without the per-unit lines, for failure messages. */
function outputSummary(worker: ManagedProcess): string {
  return worker.lines.filter((line) => !line.includes('"worker_unit_done"')).join('\n');
}

/**
 * Where a refused update may leave traces in the install root: its own working folders, the
 * state file, the installed version and its pointers. Anything else is a file the attack
 * got the worker to write.
 */
function isAllowedInstallRootPath(path: string): boolean {
  const top = path.split('/')[0]!;
  if (['tmp', 'reports', 'work', 'logs'].includes(top)) return true;
  if (path === 'state.json' || path === 'current' || path === 'launcher') return true;
  return [
    'versions',
    `versions/${RUNNING_VERSION}`,
    `versions/${RUNNING_VERSION}/bytebiota-worker`,
    `versions/${RUNNING_VERSION}/.complete`,
    // The chunks of the installed version, cut when it was installed (differential updates).
    `versions/${RUNNING_VERSION}/.chunks.json`,
  ].includes(path);
}

describe('attack suite: a hostile update server against the packaged worker', { concurrency: SCENARIO_CONCURRENCY }, () => {
  let workerExecutable: string;
  let suiteDir: string;
  const running = new Set<ManagedProcess>();
  const servers = new Set<HostileServer>();

  before(async () => {
    workerExecutable = await packagedWorker(RUNNING_VERSION);
    suiteDir = await mkdtemp(join(tmpdir(), 'bytebiota-attacks-'));
  });

  after(async () => {
    await Promise.all([...running].map((worker) => worker.kill()));
    await Promise.all([...servers].map((server) => server.close()));
    if (suiteDir) {
      // The suite folder holds exactly one folder per scenario: no worker wrote beside its own.
      const entries = (await readdir(suiteDir)).sort();
      await rm(suiteDir, { recursive: true, force: true });
      assert.deepEqual(entries, attacks.map((_, index) => `scenario-${index}`).sort());
    }
  });

  attacks.forEach((attack, index) => {
    test(`refuses ${attack.name} with ${attack.reason}`, async () => {
      const scenarioDir = join(suiteDir, `scenario-${index}`);
      const installRoot = join(scenarioDir, 'install-root');
      const home = join(scenarioDir, 'home');
      const cwd = join(scenarioDir, 'cwd');
      const processTmp = join(scenarioDir, 'tmp');
      for (const dir of [home, cwd, processTmp]) await mkdir(dir, { recursive: true });
      await runChecked(workerExecutable, ['install', '--install-root', installRoot], { cwd, env: { PATH: process.env['PATH'], HOME: home, TMPDIR: processTmp } });

      const server = await startHostileServer(attack.scenario());
      servers.add(server);
      const executable = join(installRoot, 'current', 'bytebiota-worker');
      const worker = new ManagedProcess(
        `worker-${index}`,
        executable,
        [
          'run',
          '--install-root', installRoot,
          '--server', server.url,
          '--channel', 'stable',
          '--trusted-key', releaseKey.publicBase64,
          '--check-interval', '3600',
          '--force-update',
          ...(attack.workerArgs ?? []),
        ],
        {
          cwd,
          // Only what the worker needs: no inherited proxy or BYTEBIOTA_* settings, and every place
          // a process may write by default (home, temp, working folder) inside the scenario folder.
          env: { PATH: process.env['PATH'], HOME: home, TMPDIR: processTmp, LOG_LEVEL: 'debug', BYTEBIOTA_WORKER_TOKEN: `attack-token-${index}` },
        },
      );
      running.add(worker);
      try {
        await worker.waitForEvent((event) => event.event === 'worker_update_failure', EVENT_TIMEOUT_MS).catch((err: unknown) => {
          throw new Error(`no worker_update_failure: ${String(err).split('\n')[0]}\n${outputSummary(worker)}\nserver saw: ${JSON.stringify(server.requests)}`);
        });
        // Refused, with the reason code, in the log...
        const failure = await worker.waitForEvent((event) => event.event === 'worker_update_failure', EVENT_TIMEOUT_MS);
        assert.equal(failure['reason'], attack.reason, `log line: ${JSON.stringify(failure)}`);
        assert.equal(failure['from_version'], RUNNING_VERSION);
        if (attack.detail) {
          const detail = await worker.waitForEvent(
            (event) => event.event === 'worker_update_failure_detail' && event['correlation_id'] === failure['correlation_id'],
            EVENT_TIMEOUT_MS,
          );
          assert.match(String(detail['error']), attack.detail);
        }
        // ...and in the report the server received.
        const report = await server.waitForReport((body) => body['event'] === 'failure', EVENT_TIMEOUT_MS);
        assert.equal(report['reason'], attack.reason, `report: ${JSON.stringify(report)}`);
        assert.equal(report['from_version'], RUNNING_VERSION);
        assert.equal(report['correlation_id'], failure['correlation_id']);
        assert.equal(
          server.reports.some((body) => body['event'] === 'success'),
          false,
        );

        // The worker keeps working on its version: another unit finishes after the refusal.
        const failureIndex = worker.events.indexOf(failure as LogLine);
        await worker.waitForEvent((event) => event.event === 'worker_unit_done', EVENT_TIMEOUT_MS, failureIndex + 1);
        assert.equal(worker.running, true);
        assert.equal(worker.events.some((event) => event.event === 'worker_update_staged'), false);
      } finally {
        await worker.stop(30_000);
        running.delete(worker);
        await server.close();
        servers.delete(server);
      }
      // SIGTERM after the refusal: the unit in progress finishes and the worker exits 0.
      const exit = await worker.waitForExit();
      assert.equal(exit.code, 0, `worker exit ${JSON.stringify(exit)}; last output:\n${outputSummary(worker)}`);

      // Nothing landed outside the scenario folder's install root, and only where a refused
      // update may leave traces there.
      assert.deepEqual((await readdir(scenarioDir)).sort(), ['cwd', 'home', 'install-root', 'tmp']);
      for (const dir of [home, cwd, processTmp]) assert.deepEqual(await listTree(dir), [], `${relative(scenarioDir, dir)} must stay empty`);
      const stray = (await listTree(installRoot)).filter((path) => !isAllowedInstallRootPath(path));
      assert.deepEqual(stray, [], 'files outside the allowed places of the install root');
      assert.deepEqual(await readdir(join(installRoot, 'versions')), [RUNNING_VERSION]);

      // `current` still names the original version, and its executable still runs.
      assert.equal(await readlink(join(installRoot, 'current')), join('versions', RUNNING_VERSION));
      const version = await runChecked(executable, ['--version'], { cwd, env: { PATH: process.env['PATH'], HOME: home, TMPDIR: processTmp } });
      assert.equal(version.stdout.split('\n')[0], `bytebiota-worker ${RUNNING_VERSION}`);

      // Trust state moved only for manifests that verified.
      const state = JSON.parse(await readFile(join(installRoot, 'state.json'), 'utf8')) as { highest_serial: Record<string, number> };
      assert.equal(state.highest_serial['stable'], attack.highestSerial);
    });
  });
});
