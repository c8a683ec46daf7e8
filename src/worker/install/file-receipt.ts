import { stat } from 'node:fs/promises';

/** Which file on disk this is: unchanged by a rename, changed by any write to it. */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
}

export async function fileIdentity(path: string): Promise<FileIdentity> {
  const info = await stat(path, { bigint: true });
  return { dev: info.dev, ino: info.ino, size: info.size, mtimeNs: info.mtimeNs };
}

export function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs;
}

/**
 * The receipt of a download whose size and SHA-256 matched: only downloadArtifact makes one,
 * after hashing every byte it wrote. stageVersion accepts it in place of hashing the same file
 * a second time, as long as the file is still the very one that was hashed (same identity).
 */
export interface VerifiedFile {
  path: string;
  sha256: string;
  size: number;
  identity: FileIdentity;
}
