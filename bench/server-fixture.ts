import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { storeKeys } from '../src/protocol/manifest.js';
import { SqliteFleetStore } from '../src/server/fleet/sqlite-fleet-store.js';
import { generateToken } from '../src/server/tokens.js';
import { FolderStore } from '../src/store/folder-store.js';
import { generateSigningKeyPair, parsePrivateKey } from '../src/trust/keys.js';
import { serializeManifest, signManifest } from '../src/trust/sign.js';

/** What the server benchmark runs against: a signed manifest in a folder store, a fleet database and a worker token. */
export interface ServerBenchFixture {
  dir: string;
  storeDir: string;
  dbPath: string;
  /** The manifest bytes as published, for the plain node:http baseline to serve. */
  manifestFile: string;
  releaseKeyBase64: string;
  workerToken: string;
}

/** Build the fixture in `dir`: one channel (`stable`) with a four-platform release, pool `bench` with auto-update on. */
export async function prepareServerBenchFixture(dir: string): Promise<ServerBenchFixture> {
  const storeDir = join(dir, 'store');
  await mkdir(storeDir, { recursive: true });
  const pair = generateSigningKeyPair();
  const signed = {
    _type: 'worker-release' as const,
    schema_version: 1 as const,
    channel: 'stable',
    serial: 1,
    version: '1.4.0',
    released_at: new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    expires: new Date(Date.now() + 30 * 86400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    minimum_version: '1.2.0',
    artifacts: Object.fromEntries(
      ['linux-x64', 'linux-arm64', 'darwin-arm64', 'win32-x64'].map((platform) => [
        platform,
        { url: `artifacts/1.4.0/bytebiota-worker-1.4.0-${platform}`, sha256: 'a'.repeat(64), size: 48_213_504 },
      ]),
    ),
  };
  const bytes = serializeManifest(signManifest(signed, [parsePrivateKey(pair.privateKeyPem)]));
  await new FolderStore(storeDir).write(storeKeys.manifest('stable'), bytes);
  const manifestFile = join(dir, 'manifest.json');
  await writeFile(manifestFile, bytes);

  const dbPath = join(dir, 'fleet.sqlite');
  const fleet = new SqliteFleetStore(dbPath);
  const token = generateToken();
  await fleet.createToken({
    id: token.id,
    role: 'worker',
    pool: 'bench',
    secretSha256: token.secretSha256,
    label: null,
    createdAt: new Date(),
    revokedAt: null,
  });
  await fleet.setPoolPolicy('bench', { auto_update: true }, { at: new Date(), byTokenId: token.id });
  await fleet.close();
  return { dir, storeDir, dbPath, manifestFile, releaseKeyBase64: pair.publicKeyBase64, workerToken: token.token };
}

async function waitForLogLine(path: string, event: string, child: ChildProcess): Promise<Record<string, unknown>> {
  for (let i = 0; i < 600; i += 1) {
    const text = await readFile(path, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (line.includes(`"event":"${event}"`)) return JSON.parse(line) as Record<string, unknown>;
    }
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before logging ${event}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no ${event} line in ${path}`);
}

/**
 * The server under test as operators run it: the real program from source, logging JSON lines to
 * a file (`logPath`), with rate limiting set high enough not to refuse the benchmark's load.
 */
export async function startBenchServer(
  fixture: ServerBenchFixture,
  logPath: string,
  extraArgs: string[] = [],
  nodeArgs: string[] = [],
): Promise<{ child: ChildProcess; url: string }> {
  const logFd = openSync(logPath, 'a');
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      '--import',
      'tsx',
      'src/server/main.ts',
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--store',
      fixture.storeDir,
      '--db',
      fixture.dbPath,
      '--release-key',
      fixture.releaseKeyBase64,
      '--default-rollout-plan',
      'immediate',
      '--rate-limit-max',
      '100000000',
      ...extraArgs,
    ],
    { stdio: ['ignore', logFd, 'inherit'] },
  );
  closeSync(logFd);
  const url = String((await waitForLogLine(logPath, 'server_listening', child))['url']);
  return { child, url };
}

/**
 * The plain node:http baseline serving the same manifest bytes; with `logEachRequest`, it also
 * writes the server's per-request JSON line (to `logPath`). See server-plain-baseline.ts.
 */
export async function startPlainBaseline(
  manifestFile: string,
  options: { logEachRequest?: boolean; logPath?: string } = {},
): Promise<{ child: ChildProcess; url: string }> {
  const logFd = options.logPath ? openSync(options.logPath, 'a') : 'ignore';
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bench/server-plain-baseline.ts', manifestFile, ...(options.logEachRequest ? ['--log-each-request'] : [])],
    { stdio: ['ignore', logFd, 'pipe'] },
  );
  if (typeof logFd === 'number') closeSync(logFd);
  let url: string | null = null;
  for await (const line of createInterface({ input: child.stderr! })) {
    if (line.startsWith('http://')) {
      url = line.trim();
      break;
    }
    process.stderr.write(`${line}\n`);
  }
  if (url === null) throw new Error('the plain baseline ended before it was listening');
  // Keep draining stderr (closing the line reader paused it), so a late warning never blocks the child.
  child.stderr!.resume();
  return { child, url };
}

/** SIGTERM a child and wait for it to exit. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}
