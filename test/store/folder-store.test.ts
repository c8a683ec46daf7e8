import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FolderStore } from '../../src/store/folder-store.js';
import { releaseStoreSuite } from './release-store-suite.js';

releaseStoreSuite(
  'FolderStore',
  async () => {
    const root = await mkdtemp(join(tmpdir(), 'bytebiota-folder-store-'));
    return { store: new FolderStore(root), close: () => rm(root, { recursive: true, force: true }) };
  },
  { concurrentOverwriteIsAtomic: true },
);
