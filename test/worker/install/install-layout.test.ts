import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { installLayout } from '../../../src/worker/install/install-layout.js';

describe('installLayout', () => {
  test('names every folder and file under the root', () => {
    const layout = installLayout('/srv/bb', 'linux-x64');
    assert.equal(layout.versionsDir, join('/srv/bb', 'versions'));
    assert.equal(layout.tmpDir, join('/srv/bb', 'tmp'));
    assert.equal(layout.reportsDir, join('/srv/bb', 'reports'));
    assert.equal(layout.logsDir, join('/srv/bb', 'logs'));
    assert.equal(layout.statePath, join('/srv/bb', 'state.json'));
    assert.equal(layout.lockPath, join('/srv/bb', 'update.lock'));
    assert.equal(layout.currentPointer, join('/srv/bb', 'current'));
    assert.equal(layout.previousPointer, join('/srv/bb', 'previous'));
    assert.equal(layout.executablePath('1.2.3'), join('/srv/bb', 'versions', '1.2.3', 'bytebiota-worker'));
    assert.equal(layout.pointerKind, 'symlink');
  });

  test('Windows: .exe and pointer files', () => {
    const layout = installLayout('/srv/bb', 'win32-x64');
    assert.equal(layout.executablePath('1.0.0'), join('/srv/bb', 'versions', '1.0.0', 'bytebiota-worker.exe'));
    assert.equal(layout.pointerKind, 'file');
  });

  test('defaults to the running platform', () => {
    assert.match(installLayout('/x').platform, /^(linux|darwin|win32)-/);
  });

  for (const bad of ['../etc', '1.0', 'v1.0.0', '1.0.0/../../x', '', '.']) {
    test(`refuses ${JSON.stringify(bad)} as a version path segment`, () => {
      assert.throws(() => installLayout('/srv/bb', 'linux-x64').versionDir(bad), RangeError);
    });
  }
});
