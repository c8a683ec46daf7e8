import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { ReleaseStore } from '../store/release-store.js';

export interface Digest {
  sha256: string;
  sizeBytes: number;
}

/** SHA-256 and length of a stream, read once with flat memory. */
export async function digestStream(stream: Readable): Promise<Digest> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

export function digestLocalFile(path: string): Promise<Digest> {
  return digestStream(createReadStream(path));
}

/** The digest of what the store actually holds under a key, read back from it; null when missing. */
export async function digestStoredObject(store: ReleaseStore, key: string): Promise<Digest | null> {
  const opened = await store.openRead(key);
  return opened ? digestStream(opened.stream) : null;
}
