import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveServeConfig } from '../../src/server/config.js';
import { loadReleaseKeys } from '../../src/server/release-keys.js';
import { UsageError } from '../../src/shared/errors.js';
import { makeKey } from '../helpers/trust-fixtures.js';

describe('serve configuration', () => {
  let dir: string;
  const key = makeKey();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-config-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test('precedence: flags beat environment, which beats the config file, which beats defaults', async () => {
    const file = join(dir, 'server.json');
    await writeFile(file, JSON.stringify({ port: 7000, host: '0.0.0.0', store: '/srv/file-store', db: 'file.db', release_keys: [key.publicKeyBase64], cache_ttl: 20 }));
    const config = await resolveServeConfig(
      { config: file, port: '9000' },
      { BYTEBIOTA_PORT: '8000', BYTEBIOTA_HOST: '10.0.0.1', BYTEBIOTA_CACHE_TTL: '' },
    );
    assert.equal(config.port, 9000);
    assert.equal(config.host, '10.0.0.1');
    assert.equal(config.store, '/srv/file-store');
    assert.equal(config.cacheTtlSeconds, 20);
    assert.equal(config.heartbeatIntervalSeconds, 30);
    assert.equal(config.releaseKeyThreshold, 1);
    assert.deepEqual(config.releaseKeys, [key.publicKeyBase64]);

    const fromEnv = await resolveServeConfig({}, { BYTEBIOTA_STORE: 's', BYTEBIOTA_DB: 'd', BYTEBIOTA_RELEASE_KEYS: `${key.publicKeyBase64}, /keys/second.pub` });
    assert.deepEqual(fromEnv.releaseKeys, [key.publicKeyBase64, '/keys/second.pub']);
    assert.equal(fromEnv.cacheTtlSeconds, 300);
    assert.equal(fromEnv.port, 8080);
  });

  test('bad values are usage errors naming the setting', async () => {
    const base = { store: 's', db: 'd', releaseKey: [key.publicKeyBase64] };
    const unknownKeyFile = join(dir, 'unknown.json');
    await writeFile(unknownKeyFile, JSON.stringify({ prot: 1 }));
    const notJson = join(dir, 'bad.json');
    await writeFile(notJson, '{');
    const cases: Array<{ name: string; flags: Record<string, string | string[]>; env?: Record<string, string>; message: RegExp }> = [
      { name: 'port too high', flags: { ...base, port: '70000' }, message: /--port/ },
      { name: 'port not a number', flags: { ...base, port: 'eighty' }, message: /--port/ },
      { name: 'env port', flags: base, env: { BYTEBIOTA_PORT: '-1' }, message: /BYTEBIOTA_PORT/ },
      { name: 'no store', flags: { db: 'd', releaseKey: [key.publicKeyBase64] }, message: /--store is required/ },
      { name: 'no db', flags: { store: 's', releaseKey: [key.publicKeyBase64] }, message: /--db is required/ },
      { name: 'no release key', flags: { store: 's', db: 'd' }, message: /release-key/ },
      { name: 'bad log level', flags: { ...base, logLevel: 'loud' }, message: /log level/ },
      { name: 'unknown config key', flags: { ...base, config: unknownKeyFile }, message: /unknown key "prot"/ },
      { name: 'config not JSON', flags: { ...base, config: notJson }, message: /not valid JSON/ },
      { name: 'config missing', flags: { ...base, config: join(dir, 'nope.json') }, message: /cannot read config file/ },
      { name: 'zero threshold', flags: { ...base, releaseKeyThreshold: '0' }, message: /--release-key-threshold/ },
    ];
    for (const c of cases) {
      await assert.rejects(
        resolveServeConfig(c.flags, c.env ?? {}),
        (err: unknown) => err instanceof UsageError && err.code === 'usage' && c.message.test(err.message),
        c.name,
      );
    }
  });

  test('refuse-pool-tokens: off by default; a bare flag, true/false/1/0 in the environment, a boolean in the file', async () => {
    const required = { store: 's', db: 'd', releaseKey: [key.publicKeyBase64] };
    assert.equal((await resolveServeConfig(required, {})).refusePoolTokens, false);
    assert.equal((await resolveServeConfig({ ...required, refusePoolTokens: true }, {})).refusePoolTokens, true);
    assert.equal((await resolveServeConfig(required, { BYTEBIOTA_REFUSE_POOL_TOKENS: '1' })).refusePoolTokens, true);
    assert.equal((await resolveServeConfig(required, { BYTEBIOTA_REFUSE_POOL_TOKENS: 'false' })).refusePoolTokens, false);
    const file = join(dir, 'refuse.json');
    await writeFile(file, JSON.stringify({ refuse_pool_tokens: true, enroll_rate_limit_max: 50 }));
    const fromFile = await resolveServeConfig({ ...required, config: file }, {});
    assert.equal(fromFile.refusePoolTokens, true);
    assert.equal(fromFile.enrollRateLimitMax, 50);
    assert.equal((await resolveServeConfig(required, {})).enrollRateLimitMax, 10);
    await assert.rejects(
      resolveServeConfig(required, { BYTEBIOTA_REFUSE_POOL_TOKENS: 'yes please' }),
      (err: unknown) => err instanceof UsageError && /BYTEBIOTA_REFUSE_POOL_TOKENS.*true or false/.test(err.message),
    );
  });

  test('trusted proxies: none by default; addresses and CIDR ranges from a repeated flag, a comma list or a JSON list; anything else refused', async () => {
    const required = { store: 's', db: 'd', releaseKey: [key.publicKeyBase64] };
    assert.deepEqual((await resolveServeConfig(required, {})).trustedProxies, []);
    assert.deepEqual((await resolveServeConfig({ ...required, trustedProxy: ['10.0.0.0/8', '::1'] }, {})).trustedProxies, ['10.0.0.0/8', '::1']);
    assert.deepEqual((await resolveServeConfig(required, { BYTEBIOTA_TRUSTED_PROXIES: '127.0.0.1, fd00::/8' })).trustedProxies, ['127.0.0.1', 'fd00::/8']);
    const file = join(dir, 'proxies.json');
    await writeFile(file, JSON.stringify({ trusted_proxies: ['192.168.0.10'] }));
    assert.deepEqual((await resolveServeConfig({ ...required, config: file }, {})).trustedProxies, ['192.168.0.10']);
    for (const bad of ['proxy.example', '10.0.0.0/33', '::1/129', '10.0.0.1/8/1', '10.0.0.0/', 'true']) {
      await assert.rejects(
        resolveServeConfig({ ...required, trustedProxy: [bad] }, {}),
        (err: unknown) => err instanceof UsageError && /--trusted-proxy.*is not an IP address or CIDR range/.test(err.message),
        bad,
      );
    }
  });

  test('release keys: base64, a .pub file, a PEM file; bad keys and impossible thresholds are refused', async () => {
    const pubFile = join(dir, 'release.pub');
    await writeFile(pubFile, `${key.publicKeyBase64}\n`);
    const pemFile = join(dir, 'release.pem');
    await writeFile(pemFile, key.public.key.export({ format: 'pem', type: 'spki' }).toString());
    const loaded = await loadReleaseKeys([key.publicKeyBase64, pubFile, pemFile], 1);
    assert.deepEqual(loaded.map((k) => k.keyid), [key.public.keyid, key.public.keyid, key.public.keyid]);

    const garbageFile = join(dir, 'garbage.pub');
    await writeFile(garbageFile, 'not a key');
    for (const [values, threshold] of [
      [[join(dir, 'missing.pub')], 1],
      [[garbageFile], 1],
      [[key.privateKeyPem], 1],
      [[key.publicKeyBase64, pubFile], 2],
    ] as Array<[string[], number]>) {
      await assert.rejects(loadReleaseKeys(values, threshold), (err: unknown) => err instanceof UsageError && err.code === 'usage');
    }
  });
});
