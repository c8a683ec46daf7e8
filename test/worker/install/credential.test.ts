import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { CredentialFileError, credentialFor, credentialPath, readCredential, writeCredential } from '../../../src/worker/install/credential.js';
import { tempInstallRoots } from '../../helpers/install-roots.js';

const SECRET = 'bbw_0123456789abcdef_secretsecretsecretsecretsecretsecretsecre';

describe('credential.json', () => {
  const installRoot = tempInstallRoots('credential');

  test('missing is null; written with mode 0600 and read back', async () => {
    const layout = installRoot('a');
    assert.equal(await readCredential(layout), null);
    const file = { worker_id: 'w-1', server_url: 'http://s.example/', credential: SECRET };
    await writeCredential(layout, file);
    assert.deepEqual(await readCredential(layout), file);
    assert.equal((await stat(credentialPath(layout))).mode & 0o777, 0o600);
    assert.equal(credentialFor(file, 'http://s.example/'), file);
    assert.equal(credentialFor(file, 'http://other.example/'), null);
  });

  test('an unusable file is credential_corrupt, and the error never quotes the secret', async () => {
    for (const text of [`{"credential":"${SECRET}"`, JSON.stringify({ worker_id: 'w', credential: SECRET })]) {
      const layout = installRoot(`b${text.length}`);
      await mkdir(layout.root, { recursive: true });
      await writeFile(credentialPath(layout), text);
      await assert.rejects(readCredential(layout), (err: unknown) => {
        assert.ok(err instanceof CredentialFileError);
        assert.equal(err.code, 'credential_corrupt');
        assert.ok(!err.message.includes(SECRET));
        return true;
      });
    }
  });
});
