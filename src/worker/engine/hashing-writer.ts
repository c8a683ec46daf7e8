import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { errorMessage } from '../../shared/errors.js';

/**
 * The partial file as a download writes it: a FileHandle satisfies this, and tests inject one
 * that fails (ENOSPC) or writes short.
 */
export interface PartialFile {
  /** Write the buffers in order at the current position; report how many bytes went (possibly fewer). */
  writev(buffers: Buffer[]): Promise<{ bytesWritten: number }>;
  close(): Promise<void>;
}

export type OpenPartialFile = (path: string, flags: 'w' | 'a') => Promise<PartialFile>;

export const openPartialFileForWriting: OpenPartialFile = (path, flags) => open(path, flags);

/**
 * Received chunks (64 KiB socket reads) are gathered, without copying, into batches of at least
 * this size, each written with one writev: a few large writes instead of one per socket read.
 * At most one batch is being written while the next one fills, so the buffered body is bounded
 * by about twice this, whatever the artifact's size.
 */
export const WRITE_BATCH_BYTES = 1024 * 1024;
const PREFIX_READ_BYTES = 1024 * 1024;

/** A local failure (the disk), as opposed to the network's. */
export class LocalWriteError extends Error {}

/**
 * Writes a download to its partial file and hashes every byte as it is appended, on the
 * receiving thread, while the bytes are still in this core's cache. Writes happen in append
 * order, one batch at a time, overlapping the receipt of the next batch.
 * (SHA-256 on a worker thread, fed through shared or transferred buffers, was measured with
 * `npm run bench:download` on a 2-core machine and rejected: moving the bytes to another core
 * cost more CPU than the hashing it moved, and downloads got slower, not faster.)
 */
export class HashingWriter {
  private hash: Hash = createHash('sha256');
  private file: PartialFile | null = null;
  private batch: Buffer[] = [];
  private batchBytes = 0;
  /** The batch being written, if any; it settles (never rejects) once the write ended. */
  private writing: Promise<void> | null = null;
  private failure: LocalWriteError | undefined;

  /** Hash the first `bytes` of the file at `path`: the bytes kept from an earlier attempt. */
  async hashFilePrefix(path: string, bytes: number): Promise<void> {
    if (bytes === 0) return;
    let read = 0;
    for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: PREFIX_READ_BYTES })) {
      this.hash.update(chunk as Buffer);
      read += (chunk as Buffer).length;
    }
    if (read !== bytes) throw new Error(`${path} ended after ${read} of the ${bytes} bytes kept from an earlier attempt`);
  }

  /** Forget everything hashed so far (the server sent the whole file instead of the rest). */
  resetHash(): void {
    this.hash = createHash('sha256');
  }

  /** Open the file that appended bytes go to; 'a' continues after the bytes kept. */
  async openFile(path: string, flags: 'w' | 'a', openFile: OpenPartialFile = openPartialFileForWriting): Promise<void> {
    try {
      this.file = await openFile(path, flags);
    } catch (err) {
      throw new LocalWriteError(`could not open ${path}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /**
   * Hash `chunk` and queue it for writing. Returns nothing while the batch fills, so a socket
   * read costs no promise. When the batch is full, returns a promise that starts its write once
   * the batch before it was written (back-pressure: the caller pauses the body until it settles).
   * Throws (or rejects with) LocalWriteError once a write has failed.
   */
  append(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    this.hash.update(chunk);
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    if (this.batchBytes >= WRITE_BATCH_BYTES) return this.startWrite();
    return undefined;
  }

  private async startWrite(): Promise<void> {
    if (this.writing) await this.writing;
    if (this.failure) throw this.failure;
    const buffers = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.writing = this.writeFully(buffers).then(
      () => {
        this.writing = null;
      },
      (err: unknown) => {
        this.failure ??= err instanceof LocalWriteError ? err : new LocalWriteError(errorMessage(err), { cause: err });
        this.writing = null;
      },
    );
  }

  /** One writev per batch, continued after a short write until every byte is on its way to disk. */
  private async writeFully(buffers: Buffer[]): Promise<void> {
    const file = this.file;
    if (!file) throw new LocalWriteError('no partial file is open for writing');
    let left = buffers;
    while (left.length > 0) {
      let bytesWritten: number;
      try {
        ({ bytesWritten } = await file.writev(left));
      } catch (err) {
        throw new LocalWriteError(`could not write: ${errorMessage(err)}`, { cause: err });
      }
      if (bytesWritten <= 0) throw new LocalWriteError(`could not write: the file took ${bytesWritten} bytes`);
      left = dropLeadingBytes(left, bytesWritten);
    }
  }

  /** Write what is queued and wait until every byte appended has been written. */
  async flush(): Promise<void> {
    if (this.batchBytes > 0) await this.startWrite();
    if (this.writing) await this.writing;
    if (this.failure) throw this.failure;
  }

  /** Flush, close the file and return the SHA-256 (lowercase hex) of every byte hashed. */
  async finish(): Promise<string> {
    await this.flush();
    await this.closeFile();
    return this.hash.digest('hex');
  }

  /**
   * Stop without flushing what is queued: wait for a write in flight (so the file stays a clean
   * prefix of what was received) and close the file. Never throws; safe to call more than once.
   */
  async close(): Promise<void> {
    if (this.writing) await this.writing;
    this.batch = [];
    this.batchBytes = 0;
    await this.closeFile().catch(() => undefined);
  }

  private async closeFile(): Promise<void> {
    const file = this.file;
    this.file = null;
    if (!file) return;
    try {
      await file.close();
    } catch (err) {
      throw new LocalWriteError(`could not close the partial file: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** The buffers after their first `bytes` bytes (what a short writev left unwritten). */
function dropLeadingBytes(buffers: Buffer[], bytes: number): Buffer[] {
  let skip = bytes;
  let index = 0;
  while (index < buffers.length && skip >= (buffers[index] as Buffer).length) {
    skip -= (buffers[index] as Buffer).length;
    index += 1;
  }
  const rest = buffers.slice(index);
  if (skip > 0 && rest.length > 0) rest[0] = (rest[0] as Buffer).subarray(skip);
  return rest;
}
