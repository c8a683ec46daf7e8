import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readFileHead } from '../../src/shared/read-file-head.js';
import { KeyFormatError } from '../../src/trust/keys.js';
import { isRawPublicKeyBase64, loadPublicKey, MAX_KEY_FILE_BYTES, type ReadFileHead } from '../../src/trust/key-source.js';
import { makeTempDir } from '../helpers/engine-fixtures.js';
import { makeKey } from '../helpers/trust-fixtures.js';

describe('loadPublicKey', () => {
  const key = makeKey();
  const pem = key.public.key.export({ format: 'pem', type: 'spki' }).toString();
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  const file = (name: string) => join(temp.dir, name);
  before(async () => {
    temp = await makeTempDir('key-source');
    await writeFile(file('release.pub'), `${key.publicKeyBase64}\n`);
    await writeFile(file('release.pem'), pem);
    await writeFile(file('garbage.pub'), 'not a key');
    await writeFile(file('release.key'), key.privateKeyPem);
    await writeFile(file('huge.pem'), `${pem}${' '.repeat(MAX_KEY_FILE_BYTES)}`);
  });
  after(() => temp.remove());

  test('base64 of the raw key (not read as a path), a base64 .pub file, a PEM file: the same key', async () => {
    const noFiles: ReadFileHead = () => Promise.reject(new Error('must not read'));
    assert.equal((await loadPublicKey(` ${key.publicKeyBase64} `, noFiles)).keyid, key.public.keyid);
    assert.equal((await loadPublicKey(file('release.pub'), readFileHead)).keyid, key.public.keyid);
    assert.equal((await loadPublicKey(file('release.pem'), readFileHead)).keyid, key.public.keyid);
    assert.equal(isRawPublicKeyBase64(key.publicKeyBase64), true);
    assert.equal(isRawPublicKeyBase64('keys/release.pub'), false);
  });

  const refusals: Array<{ name: string; source: () => string; message: RegExp }> = [
    { name: 'a missing file', source: () => file('missing.pub'), message: /neither a base64 Ed25519 public key nor a readable PEM file/ },
    { name: 'a folder', source: () => temp.dir, message: /nor a readable PEM file/ },
    { name: 'a file that holds no key', source: () => file('garbage.pub'), message: /not a usable Ed25519 public key/ },
    { name: 'a private key where the public key belongs', source: () => file('release.key'), message: /this is a private key; give the public key/ },
    { name: 'a file above the size cap', source: () => file('huge.pem'), message: /larger than 65536 bytes/ },
    { name: 'base64 of too few bytes, taken as a path', source: () => Buffer.alloc(16).toString('base64'), message: /nor a readable PEM file/ },
  ];
  for (const row of refusals) {
    test(`refused with key_invalid: ${row.name}`, async () => {
      await assert.rejects(loadPublicKey(row.source(), readFileHead), (err: unknown) => {
        assert.ok(err instanceof KeyFormatError, String(err));
        assert.equal(err.code, 'key_invalid');
        assert.match(err.message, row.message);
        return true;
      });
    });
  }
});
