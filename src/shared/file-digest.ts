import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export interface FileDigest {
  /** Lowercase hex. */
  sha256: string;
  sizeBytes: number;
}

/** Read in 1 MiB chunks: executables are ~100 MB, and memory stays flat whatever their size. */
const READ_CHUNK_BYTES = 1024 * 1024;

/** SHA-256 and length of a byte stream, in one pass. */
export async function digestStream(stream: AsyncIterable<Uint8Array>): Promise<FileDigest> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    sizeBytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

/** SHA-256 and size of a file, streamed. */
export function digestFile(path: string): Promise<FileDigest> {
  return digestStream(createReadStream(path, { highWaterMark: READ_CHUNK_BYTES }));
}
