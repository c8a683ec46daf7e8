import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

export const RELEASE_MAIN = 'src/release/main.ts';

export interface CliRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The `<code>` of a `bytebiota-release: <code>: message` line, if any. */
  errorCode: string | undefined;
}

/** Run the real release tool from source in a child process. */
export function runRelease(args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', RELEASE_MAIN, ...args], {
      env: { ...process.env, ...env, NODE_NO_WARNINGS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (exitCode, signal) => {
      const errorCode = /^bytebiota-release: ([a-z_]+):/m.exec(stderr)?.[1];
      resolve({ exitCode, signal, stdout, stderr, errorCode });
    });
  });
}

/** Every file under a folder (dot-files included), relative, `/`-separated, sorted. */
export async function listFiles(root: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else files.push(relative(root, full).split(sep).join('/'));
    }
  };
  await walk(root);
  return files.sort();
}

/** File name to sha256 of every file under a folder: two equal snapshots mean nothing changed. */
export async function snapshot(root: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const file of await listFiles(root)) {
    result[file] = createHash('sha256').update(await readFile(join(root, file))).digest('hex');
  }
  return result;
}
