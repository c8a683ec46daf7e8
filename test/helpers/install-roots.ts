import { join } from 'node:path';
import { after, before } from 'node:test';
import { installLayout, type InstallLayout } from '../../src/worker/install/install-layout.js';
import { makeTempDir } from './engine-fixtures.js';

/**
 * Install roots for the tests of one describe block: a temp folder made before them and removed
 * after. Call it in the describe block; each test takes a root by name, `installRoot('a')`.
 */
export function tempInstallRoots(prefix: string): (name: string, platform?: string) => InstallLayout {
  let temp: Awaited<ReturnType<typeof makeTempDir>> | undefined;
  before(async () => {
    temp = await makeTempDir(prefix);
  });
  after(() => temp?.remove());
  return (name, platform = 'linux-x64') => {
    if (!temp) throw new Error('tempInstallRoots: take a root inside a test of the describe block that made them');
    return installLayout(join(temp.dir, name), platform);
  };
}
