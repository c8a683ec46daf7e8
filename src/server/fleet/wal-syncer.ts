import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorMessage } from '../../shared/errors.js';

/** Flushes one file (or folder) to stable storage; a test seam for slow and failing disks. */
export type SyncFile = (path: string, kind: 'file' | 'folder') => Promise<void>;

/** fdatasync for the WAL (its data and length, which is all recovery reads), fsync for its folder. */
export const syncFileToDisk: SyncFile = async (path, kind) => {
  // r+ rather than r: Windows flushes only a handle opened for writing. Nothing is written.
  const handle = await open(path, kind === 'file' ? 'r+' : 'r');
  try {
    if (kind === 'file') await handle.datasync();
    else await handle.sync();
  } finally {
    await handle.close();
  }
};

/** The disk refused a flush: nothing committed since the last good one can be called durable. */
export class WalSyncError extends Error {}

/**
 * Group commit's last step, off the event loop: makes SQLite transactions committed with
 * `synchronous=NORMAL` durable by flushing the WAL file on a libuv thread, and tells each
 * waiting writer once the flush that covers its commit has finished.
 *
 * Why not `synchronous=FULL`: better-sqlite3 commits on the JavaScript thread, so SQLite's own
 * fsync at each commit stopped every request for the 3-15 ms the disk took. Here the commit only
 * writes the WAL (page cache), and the flush runs while the server keeps answering; commits made
 * while a flush is running are covered together by the next one. What is acknowledged is the
 * same as with FULL: a commit's frames are in the WAL file when the flush starts, so they are on
 * disk when it ends, and recovery after a power cut replays the WAL up to its last commit.
 * (With NORMAL, SQLite itself still syncs the WAL before each checkpoint and the database after
 * it, so frames are never overwritten before they reached the database file.)
 *
 * The WAL's folder is flushed once too, so that the file's own entry survives a power cut.
 * A failed flush is final: the disk may have dropped the data, and a later flush that succeeds
 * proves nothing about it (Linux reports a writeback error once). Every waiting and later writer
 * is refused, and the store reports itself unusable until the server restarts.
 */
export class WalSyncer {
  private waiting: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private running: Promise<void> | null = null;
  private folderSynced = false;
  private failed: WalSyncError | null = null;

  constructor(
    private readonly walPath: string,
    private readonly syncFile: SyncFile = syncFileToDisk,
  ) {}

  /** The error that stopped durability, or null while every flush has succeeded. */
  get failure(): WalSyncError | null {
    return this.failed;
  }

  /** Resolves once everything committed before this call is on stable storage. */
  durable(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.running ??= this.run();
    });
  }

  /** Resolves when no flush is running (before the database is closed). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async run(): Promise<void> {
    while (this.waiting.length > 0) {
      // Only the writers here now are covered: a commit after this point may miss the flush.
      const covered = this.waiting;
      this.waiting = [];
      try {
        await this.syncFile(this.walPath, 'file');
        if (!this.folderSynced && process.platform !== 'win32') {
          // Windows cannot open a folder for flushing; NTFS journals the entry itself.
          await this.syncFile(dirname(this.walPath), 'folder');
          this.folderSynced = true;
        }
      } catch (err) {
        this.failed = new WalSyncError(`flushing the SQLite WAL ${this.walPath} failed: ${errorMessage(err)}`, { cause: err });
        for (const writer of [...covered, ...this.waiting]) writer.reject(this.failed);
        this.waiting = [];
        break;
      }
      for (const writer of covered) writer.resolve();
    }
    this.running = null;
  }
}
