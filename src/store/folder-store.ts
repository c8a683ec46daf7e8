import { createReadStream, createWriteStream } from 'node:fs';
import { access, constants, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fsyncDirectory, tempPathBeside, writeFileAtomic } from '../shared/atomic-file.js';
import { isErrnoCode } from '../shared/errors.js';
import {
  assertSafeKey,
  StoreError,
  type ByteRange,
  type ObjectInfo,
  type ObjectStream,
  type ReleaseStore,
} from './release-store.js';

/** The embedded default: a folder on local disk. Writes are temp file, fsync, rename, fsync dir. */
export class FolderStore implements ReleaseStore {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = root;
  }

  private pathOf(key: string): string {
    assertSafeKey(key);
    return join(this.root, ...key.split('/'));
  }

  async ping(): Promise<void> {
    try {
      await access(this.root, constants.R_OK);
    } catch (err) {
      throw new StoreError('store_unavailable', `release store folder ${this.root} is not readable`, { cause: err });
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const info = await stat(this.pathOf(key));
      if (!info.isFile()) return null;
      // Size and modification time, as nginx forms its ETag: a republished file gets a new one.
      return { size: info.size, etag: `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`, lastModified: info.mtime };
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return null;
      throw err;
    }
  }

  async read(key: string, maxBytes: number): Promise<Buffer | null> {
    let handle;
    try {
      handle = await open(this.pathOf(key), 'r');
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return null;
      throw err;
    }
    try {
      const { size } = await handle.stat();
      if (size > maxBytes) throw new StoreError('store_object_too_large', `${key} is ${size} bytes, over ${maxBytes}`);
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  }

  async openRead(key: string, range?: ByteRange): Promise<ObjectStream | null> {
    const info = await this.stat(key);
    if (!info) return null;
    const stream = createReadStream(this.pathOf(key), range ? { start: range.start, end: range.end } : {});
    return { ...info, stream };
  }

  async write(key: string, data: Buffer): Promise<void> {
    const target = this.pathOf(key);
    try {
      await writeFileAtomic(target, data);
    } catch (err) {
      throw this.writeError(err, key);
    }
  }

  async writeFile(key: string, sourcePath: string): Promise<void> {
    const target = this.pathOf(key);
    try {
      await mkdir(dirname(target), { recursive: true });
      const temp = tempPathBeside(target);
      try {
        await pipeline(createReadStream(sourcePath), createWriteStream(temp, { flags: 'wx', mode: 0o755 }));
        const handle = await open(temp, 'r+');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temp, target);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      await fsyncDirectory(dirname(target));
    } catch (err) {
      throw this.writeError(err, key);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const base = this.root;
    const start = join(base, ...prefix.split('/').filter(Boolean));
    const keys: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return;
        throw err;
      }
      for (const entry of entries) {
        if (entry.name.startsWith('.')) continue; // temp files of writes in progress
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (entry.isFile()) keys.push(relative(base, full).split(sep).join('/'));
      }
    };
    await walk(start);
    return keys.filter((key) => key.startsWith(prefix));
  }

  private writeError(err: unknown, key: string): unknown {
    if (err instanceof StoreError) return err;
    if (isErrnoCode(err, 'EACCES') || isErrnoCode(err, 'EROFS') || isErrnoCode(err, 'EPERM')) {
      return new StoreError('store_not_writable', `cannot write ${key} to release store ${this.root}: ${(err as Error).message}`, { cause: err });
    }
    return err;
  }
}
