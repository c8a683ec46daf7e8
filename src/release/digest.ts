import { digestStream, type FileDigest } from '../shared/file-digest.js';
import type { ReleaseStore } from '../store/release-store.js';

/** The digest of what the store actually holds under a key, read back from it; null when missing. */
export async function digestStoredObject(store: ReleaseStore, key: string): Promise<FileDigest | null> {
  const opened = await store.openRead(key);
  return opened ? digestStream(opened.stream) : null;
}
