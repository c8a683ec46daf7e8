import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pickSetting, readConfigFile, type ConfigFile } from '../../src/shared/config-sources.js';
import { UsageError } from '../../src/shared/errors.js';
import { makeTempDir } from '../helpers/engine-fixtures.js';

const names = { flag: '--port', env: 'X_PORT', fileKey: 'port' };
const file: ConfigFile = { path: '/etc/x/config.json', dir: '/etc/x', values: { port: 7000 } };

describe('pickSetting: flag, then environment, then config file, else nothing (the default)', () => {
  const rows = [
    { name: 'the flag beats everything', flag: '9000', env: { X_PORT: '8000' }, file, expected: { value: '9000', source: '--port', baseDir: '/cwd' } },
    { name: 'the environment beats the file', flag: undefined, env: { X_PORT: '8000' }, file, expected: { value: '8000', source: 'environment variable X_PORT', baseDir: '/cwd' } },
    { name: 'an empty variable is not given', flag: undefined, env: { X_PORT: '' }, file, expected: { value: 7000, source: 'config file /etc/x/config.json: port', baseDir: '/etc/x' } },
    { name: 'an empty list of flags is not given', flag: [], env: {}, file, expected: { value: 7000, source: 'config file /etc/x/config.json: port', baseDir: '/etc/x' } },
    { name: 'a false flag is given', flag: false, env: { X_PORT: '1' }, file, expected: { value: false, source: '--port', baseDir: '/cwd' } },
    { name: 'nothing anywhere', flag: undefined, env: {}, file: null, expected: undefined },
    { name: 'a key the file lacks', flag: undefined, env: {}, file: { ...file, values: {} }, expected: undefined },
  ];
  for (const row of rows) {
    test(row.name, () => {
      assert.deepEqual(pickSetting(names, row.flag, { env: row.env, file: row.file, cwd: '/cwd' }), row.expected);
    });
  }
});

describe('readConfigFile', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    temp = await makeTempDir('config-sources');
    await writeFile(join(temp.dir, 'good.json'), JSON.stringify({ port: 1, host: 'h' }));
    await writeFile(join(temp.dir, 'typo.json'), JSON.stringify({ prot: 1 }));
    await writeFile(join(temp.dir, 'list.json'), '[1]');
    await writeFile(join(temp.dir, 'bad.json'), '{');
  });
  after(() => temp.remove());

  test('no path, no file; a relative path resolves against cwd', async () => {
    assert.equal(await readConfigFile(undefined, { cwd: temp.dir, knownKeys: [] }), null);
    assert.equal(await readConfigFile('', { cwd: temp.dir, knownKeys: [] }), null);
    assert.deepEqual(await readConfigFile('good.json', { cwd: temp.dir, knownKeys: ['port', 'host'] }), {
      path: join(temp.dir, 'good.json'),
      dir: temp.dir,
      values: { port: 1, host: 'h' },
    });
  });

  const refusals = [
    { name: 'missing', file: 'absent.json', message: /cannot read config file/ },
    { name: 'not JSON', file: 'bad.json', message: /is not valid JSON/ },
    { name: 'not an object', file: 'list.json', message: /must hold one JSON object/ },
    { name: 'an unknown key', file: 'typo.json', message: /unknown key "prot"; known keys: host, port$/ },
  ];
  for (const row of refusals) {
    test(`refused, usage error: ${row.name}`, async () => {
      await assert.rejects(
        readConfigFile(row.file, { cwd: temp.dir, knownKeys: ['port', 'host'] }),
        (err: unknown) => err instanceof UsageError && err.code === 'usage' && row.message.test(err.message),
      );
    });
  }
});
