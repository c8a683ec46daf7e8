import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { openReleaseStore, FolderStore, S3Store } from '../../src/store/index.js';
import { UsageError } from '../../src/shared/errors.js';

test('a folder path opens a FolderStore at its absolute path', () => {
  const store = openReleaseStore('some/releases');
  assert.ok(store instanceof FolderStore);
  assert.equal(store.location, resolve('some/releases'));
});

test('s3://bucket/prefix opens an S3Store', () => {
  const store = openReleaseStore('s3://releases/team/prod', { AWS_REGION: 'eu-west-1' });
  assert.ok(store instanceof S3Store);
  assert.equal(store.location, 's3://releases/team/prod');
});

for (const location of ['', '   ', 'https://example.com/releases', 'gs://bucket/x', 's3://', 'S3://UPPER']) {
  test(`${JSON.stringify(location)} is a usage error`, () => {
    assert.throws(() => openReleaseStore(location), UsageError);
  });
}
