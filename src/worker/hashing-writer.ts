import { open } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { errorMessage } from '../shared/errors.js';

/**
 * The partial file as the download writes it: FileHandle satisfies this, and tests inject one
 * that fails (ENOSPC) or writes short.
 */
export interface PartialFile {
  /** Write up to `length` bytes of `buffer` from `offset` at the current position; report how many went. */
  write(buffer: Uint8Array, offset: number, length: number): Promise<{ bytesWritten: number }>;
  close(): Promise<void>;
}

export type OpenPartialFile = (path: string, flags: 'w' | 'a') => Promise<PartialFile>;

export const openPartialFileForWriting: OpenPartialFile = (path, flags) => open(path, flags);

/**
 * Bytes are gathered into slots of this size before one write and one hash step each: a few
 * large writes instead of one per 64 KiB socket read. SLOT_COUNT slots let the network, the
 * disk and the hashing thread each work on a different slot at the same time; together they
 * are the whole buffer memory of a download (16 MiB), whatever the artifact's size.
 */
export const SLOT_BYTES = 1024 * 1024;
export const SLOT_COUNT = 8;
const PREFIX_READ_BYTES = 1024 * 1024;

/**
 * The SHA-256 thread, plain CommonJS passed as a string: the worker executable is one bundled
 * file (a Node single executable), so there is no second file to point a Worker at, and a
 * string runs the same under tsx, from dist/ and from the bundle. It shares the slots with the
 * main thread and hashes the bytes named by each message, in message order.
 */
const HASH_THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const slots = new Uint8Array(workerData.slots);
let hash = createHash('sha256');

function hashFilePrefix(path, bytes) {
  const scratch = Buffer.allocUnsafe(workerData.prefixReadBytes);
  const fd = openSync(path, 'r');
  try {
    let done = 0;
    while (done < bytes) {
      const got = readSync(fd, scratch, 0, Math.min(scratch.length, bytes - done), done);
      if (got === 0) throw new Error(path + ' ended after ' + done + ' of the ' + bytes + ' bytes kept from an earlier attempt');
      hash.update(scratch.subarray(0, got));
      done += got;
    }
  } finally {
    closeSync(fd);
  }
}

parentPort.on('message', (message) => {
  let value;
  try {
    if (message.type === 'update') hash.update(slots.subarray(message.offset, message.offset + message.length));
    else if (message.type === 'prefix') hashFilePrefix(message.path, message.bytes);
    else if (message.type === 'reset') hash = createHash('sha256');
    else if (message.type === 'digest') value = hash.digest('hex');
    parentPort.postMessage({ id: message.id, ok: true, value });
  } catch (err) {
    parentPort.postMessage({ id: message.id, ok: false, message: String((err && err.message) || err) });
  }
});
`;

type HashMessage =
  | { type: 'update'; offset: number; length: number }
  | { type: 'prefix'; path: string; bytes: number }
  | { type: 'reset' }
  | { type: 'digest' };

interface HashReply {
  id: number;
  ok: boolean;
  value?: string;
  message?: string;
}

/** A local failure (the disk, or the hashing thread), as opposed to the network's. */
export class LocalWriteError extends Error {}

/**
 * SHA-256 on its own thread, so that hashing (about 0.7 s per 512 MiB here) overlaps receiving
 * and writing instead of taking turns with them on the main thread.
 */
class HashThread {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve(value: string | undefined): void; reject(err: Error): void }>();
  private nextId = 0;
  private failure: Error | undefined;

  constructor(slots: SharedArrayBuffer) {
    this.worker = new Worker(HASH_THREAD_SOURCE, {
      eval: true,
      workerData: { slots, prefixReadBytes: PREFIX_READ_BYTES },
      // The thread needs no loader hooks (`--import tsx`) or other flags of the main program.
      execArgv: [],
      stdout: false,
      stderr: false,
    });
    this.worker.on('message', (reply: HashReply) => {
      const waiter = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.value);
      else waiter?.reject(new LocalWriteError(`hashing failed: ${reply.message ?? 'unknown error'}`));
    });
    const fail = (err: Error): void => {
      this.failure ??= err;
      for (const waiter of this.waiting.values()) waiter.reject(err);
      this.waiting.clear();
    };
    this.worker.on('error', (err) => fail(new LocalWriteError(`the hashing thread failed: ${errorMessage(err)}`, { cause: err })));
    this.worker.on('exit', (code) => fail(new LocalWriteError(`the hashing thread exited (code ${code})`)));
  }

  send(message: HashMessage): Promise<string | undefined> {
    if (this.failure) return Promise.reject(this.failure);
    const id = (this.nextId += 1);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    });
  }

  async stop(): Promise<void> {
    this.failure ??= new LocalWriteError('the hashing thread was stopped');
    await this.worker.terminate();
  }
}

interface Slot {
  offset: number;
  view: Buffer;
  filled: number;
  /** Settles when this slot's bytes are written and hashed, and it can be filled again. */
  busy: Promise<void> | null;
}

/**
 * Writes a download to its partial file and hashes it on a second thread, through a fixed set of
 * shared slots. Receiving, writing and hashing overlap; every byte appended is written once and
 * hashed once, in order. A caller must end with `finish()` (digest) or `close()`, on every path:
 * both stop the hashing thread and close the file.
 */
export class HashingWriter {
  private readonly thread: HashThread;
  private readonly slots: Slot[];
  private current = 0;
  private file: PartialFile | null = null;
  /** The one chain all writes go through: one at a time, in order, at the file's position. */
  private writes: Promise<void> = Promise.resolve();
  private localFailure: LocalWriteError | undefined;
  private appendedBytes = 0;

  constructor() {
    const shared = new SharedArrayBuffer(SLOT_BYTES * SLOT_COUNT);
    this.thread = new HashThread(shared);
    this.slots = Array.from({ length: SLOT_COUNT }, (_, index) => ({
      offset: index * SLOT_BYTES,
      view: Buffer.from(shared, index * SLOT_BYTES, SLOT_BYTES),
      filled: 0,
      busy: null,
    }));
  }

  /** Hash the first `bytes` of the file at `path`: the bytes kept from an earlier attempt. */
  async hashFilePrefix(path: string, bytes: number): Promise<void> {
    if (bytes > 0) await this.thread.send({ type: 'prefix', path, bytes });
  }

  /** Forget everything hashed so far (the server sent the whole file instead of the rest). */
  async resetHash(): Promise<void> {
    await this.thread.send({ type: 'reset' });
  }

  /** Open the file that appended bytes go to; 'a' continues after the bytes kept. */
  async openFile(path: string, flags: 'w' | 'a', openFile: OpenPartialFile = openPartialFileForWriting): Promise<void> {
    try {
      this.file = await openFile(path, flags);
    } catch (err) {
      throw new LocalWriteError(`could not open ${path}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Bytes handed to `append` so far (received, not necessarily on disk yet). */
  get bytesAppended(): number {
    return this.appendedBytes;
  }

  /**
   * Copy `chunk` into the slots; a full slot goes to the disk and the hashing thread. Waits only
   * when every slot is still in flight (back-pressure onto the network). Throws LocalWriteError
   * once a write or the hashing has failed.
   */
  async append(chunk: Uint8Array): Promise<void> {
    if (this.localFailure) throw this.localFailure;
    let copied = 0;
    while (copied < chunk.length) {
      const slot = this.slots[this.current] as Slot;
      if (slot.busy) await slot.busy;
      if (this.localFailure) throw this.localFailure;
      const count = Math.min(SLOT_BYTES - slot.filled, chunk.length - copied);
      slot.view.set(chunk.subarray(copied, copied + count), slot.filled);
      slot.filled += count;
      copied += count;
      if (slot.filled === SLOT_BYTES) this.dispatch(slot);
    }
    this.appendedBytes += chunk.length;
  }

  /** Send a slot's bytes to the hashing thread and, in order, to the file. */
  private dispatch(slot: Slot): void {
    const length = slot.filled;
    const hashed = this.thread.send({ type: 'update', offset: slot.offset, length });
    const written = (this.writes = this.writes.then(() => this.writeFully(slot.view, length)));
    slot.busy = Promise.all([hashed, written]).then(
      () => {
        slot.filled = 0;
        slot.busy = null;
      },
      (err: unknown) => {
        // Keep the first failure; the slot stays busy-settled so waiters move on and see it.
        this.localFailure ??= err instanceof LocalWriteError ? err : new LocalWriteError(errorMessage(err), { cause: err });
        slot.busy = null;
      },
    );
    this.current = (this.current + 1) % SLOT_COUNT;
  }

  private async writeFully(view: Buffer, length: number): Promise<void> {
    if (this.localFailure) throw this.localFailure;
    const file = this.file;
    if (!file) throw new LocalWriteError('no partial file is open for writing');
    let written = 0;
    while (written < length) {
      let bytesWritten: number;
      try {
        ({ bytesWritten } = await file.write(view, written, length - written));
      } catch (err) {
        throw new LocalWriteError(`could not write: ${errorMessage(err)}`, { cause: err });
      }
      if (bytesWritten <= 0) throw new LocalWriteError(`could not write: the file took ${bytesWritten} bytes`);
      written += bytesWritten;
    }
  }

  /** Send the part-filled slot and wait until every byte appended is written and hashed. */
  async flush(): Promise<void> {
    const slot = this.slots[this.current] as Slot;
    if (slot.filled > 0 && !slot.busy) this.dispatch(slot);
    for (const each of this.slots) if (each.busy) await each.busy;
    if (this.localFailure) throw this.localFailure;
  }

  /** Flush, close the file and return the SHA-256 (lowercase hex) of every byte hashed. */
  async finish(): Promise<string> {
    try {
      await this.flush();
      await this.closeFile();
      return (await this.thread.send({ type: 'digest' })) as string;
    } finally {
      await this.close();
    }
  }

  /**
   * Stop: wait for writes in flight (so the file is a clean prefix of what was received), close
   * the file, end the thread. Never throws; safe to call more than once.
   */
  async close(): Promise<void> {
    for (const slot of this.slots) if (slot.busy) await slot.busy;
    await this.writes.catch(() => undefined);
    await this.closeFile().catch(() => undefined);
    await this.thread.stop();
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
