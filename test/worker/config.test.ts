import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childRunInvocation, resolveConfig, type ConfigSources, type FlagValues } from '../../src/worker/config.js';
import { UsageError } from '../../src/shared/errors.js';
import { makeKey } from '../helpers/trust-fixtures.js';

const dir = await mkdtemp(join(tmpdir(), 'bytebiota-worker-config-'));
after(() => rm(dir, { recursive: true, force: true }));
const key = makeKey();

async function withFile(name: string, content: unknown): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

function sources(flags: FlagValues, env: NodeJS.ProcessEnv = {}): ConfigSources {
  return { flags, env, cwd: dir };
}

function usage(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof UsageError, String(err));
    assert.equal(err.code, 'usage');
    assert.match(err.message, pattern);
    return true;
  };
}

describe('resolveConfig', () => {
  test('defaults', async () => {
    const config = await resolveConfig('supervise', sources({ installRoot: 'root' }));
    assert.equal(config.installRoot, join(dir, 'root'));
    assert.equal(config.channel, 'stable');
    assert.equal(config.autoUpdateEnabled, true);
    assert.equal(config.checkIntervalS, 3600);
    assert.equal(config.healthWindowS, 60);
    assert.equal(config.metricsPort, null);
    assert.equal(config.metricsHost, '127.0.0.1');
    assert.deepEqual(config.trustedKeys, []);
  });

  test('precedence: flags over environment over file over defaults', async () => {
    const file = await withFile('precedence.json', {
      install_root: 'from-file',
      auto_update_channel: 'canary',
      check_interval_s: 100,
      auto_update_enabled: false,
      metrics_port: 9100,
    });
    const fileOnly = await resolveConfig('run', sources({ config: file }));
    assert.equal(fileOnly.installRoot, join(dir, 'from-file'));
    assert.equal(fileOnly.channel, 'canary');
    assert.equal(fileOnly.checkIntervalS, 100);
    assert.equal(fileOnly.autoUpdateEnabled, false);
    assert.equal(fileOnly.metricsPort, 9100);

    const env = { BYTEBIOTA_CHANNEL: 'beta', BYTEBIOTA_CHECK_INTERVAL: '200', AUTO_UPDATE: '1', BYTEBIOTA_INSTALL_ROOT: '/env/root' };
    const envOverFile = await resolveConfig('run', sources({ config: file }, env));
    assert.equal(envOverFile.channel, 'beta');
    assert.equal(envOverFile.checkIntervalS, 200);
    assert.equal(envOverFile.autoUpdateEnabled, true);
    assert.equal(envOverFile.installRoot, '/env/root');

    const flagsOverEnv = await resolveConfig('run', sources({ config: file, channel: 'edge', checkIntervalS: '300', autoUpdateEnabled: false }, env));
    assert.equal(flagsOverEnv.channel, 'edge');
    assert.equal(flagsOverEnv.checkIntervalS, 300);
    assert.equal(flagsOverEnv.autoUpdateEnabled, false);
  });

  test('AUTO_UPDATE=0 turns self-update off', async () => {
    const config = await resolveConfig('run', sources({ installRoot: 'r' }, { AUTO_UPDATE: '0' }));
    assert.equal(config.autoUpdateEnabled, false);
  });

  test('trusted keys: base64, PEM file, comma-separated environment, relative to the config file', async () => {
    const pem = key.public.key.export({ format: 'pem', type: 'spki' }).toString();
    await writeFile(join(dir, 'release.pem'), pem);
    const fromFlags = await resolveConfig('run', sources({ installRoot: 'r', trustedKeys: [key.publicKeyBase64, 'release.pem'] }));
    assert.deepEqual(fromFlags.trustedKeys.map((k) => k.keyid), [key.public.keyid, key.public.keyid]);
    const other = makeKey();
    const fromEnv = await resolveConfig('run', sources({ installRoot: 'r' }, { BYTEBIOTA_TRUSTED_KEYS: `${key.publicKeyBase64}, ${other.publicKeyBase64}` }));
    assert.deepEqual(fromEnv.trustedKeys.map((k) => k.keyid), [key.public.keyid, other.public.keyid]);
    const file = await withFile('keys.json', { install_root: 'r', trusted_keys: ['release.pem'] });
    const fromFile = await resolveConfig('run', sources({ config: file }));
    assert.deepEqual(fromFile.trustedKeySources, [join(dir, 'release.pem')]);
  });

  test('the token from the environment; a server without a token, an enrollment token or a credential is refused', async () => {
    const config = await resolveConfig('run', sources({ installRoot: 'r', serverUrl: 'https://updates.example' }, { BYTEBIOTA_WORKER_TOKEN: 'tok' }));
    assert.equal(config.token, 'tok');
    assert.equal(config.enrollmentToken, null);
    const noCredential = { ...sources({ installRoot: 'r', serverUrl: 'https://updates.example' }), credentialExists: async () => false };
    await assert.rejects(resolveConfig('run', noCredential), usage(/needs a credential \(bytebiota-worker enroll\), an enrollment token/));
    const enrolling = await resolveConfig('run', { ...noCredential, env: { BYTEBIOTA_ENROLLMENT_TOKEN: 'bbe_x' } });
    assert.equal(enrolling.enrollmentToken, 'bbe_x');
    assert.equal(enrolling.token, null);
    const enrolled = await resolveConfig('run', { ...noCredential, credentialExists: async () => true });
    assert.equal(enrolled.token, null);
  });

  const invalid: [string, FlagValues, NodeJS.ProcessEnv, RegExp][] = [
    ['no install root', {}, {}, /needs an install root/],
    ['bad channel', { installRoot: 'r', channel: 'Stable!' }, {}, /--channel: expected a channel name/],
    ['bad interval', { installRoot: 'r', checkIntervalS: 'soon' }, {}, /--check-interval: expected a whole number of seconds/],
    ['zero interval', { installRoot: 'r' }, { BYTEBIOTA_CHECK_INTERVAL: '0' }, /BYTEBIOTA_CHECK_INTERVAL: expected/],
    ['bad port', { installRoot: 'r', metricsPort: '70000' }, {}, /--metrics-port: expected a whole number of a TCP port/],
    ['bad AUTO_UPDATE', { installRoot: 'r' }, { AUTO_UPDATE: 'maybe' }, /AUTO_UPDATE: expected true or false/],
    ['bad server URL', { installRoot: 'r', serverUrl: 'ftp://x' }, {}, /--server: expected an absolute http/],
    ['credentials in URL', { installRoot: 'r', serverUrl: 'https://u:p@x' }, {}, /without credentials/],
    ['bad worker id', { installRoot: 'r', workerId: '../etc' }, {}, /--worker-id: expected a worker id/],
    ['unreadable key', { installRoot: 'r', trustedKeys: ['missing.pem'] }, {}, /neither a base64 Ed25519 public key nor a readable PEM file/],
    ['force update without trust', { installRoot: 'r', serverUrl: 'https://x', forceUpdate: true }, { BYTEBIOTA_WORKER_TOKEN: 't' }, /--force-update needs at least one --trusted-key/],
    ['force update without server', { installRoot: 'r', forceUpdate: true, trustedKeys: [key.publicKeyBase64] }, {}, /--force-update needs a server/],
    ['threshold above the keys', { installRoot: 'r', trustedKeys: [key.publicKeyBase64], trustedKeyThreshold: '2' }, {}, /--trusted-key-threshold: expected at most the number of distinct trusted keys \(1\)/],
    ['threshold of zero', { installRoot: 'r', trustedKeys: [key.publicKeyBase64] }, { BYTEBIOTA_TRUSTED_KEY_THRESHOLD: '0' }, /BYTEBIOTA_TRUSTED_KEY_THRESHOLD: expected a whole number of keys/],
    ['zero download timeout', { installRoot: 'r', downloadTimeoutS: '0' }, {}, /--download-timeout: expected a whole number of seconds/],
  ];
  for (const [name, flags, env, pattern] of invalid) {
    test(`refused: ${name}`, async () => {
      await assert.rejects(resolveConfig('run', sources(flags, env)), usage(pattern));
    });
  }

  test('refused: a config file that is not JSON, not an object, or has an unknown key', async () => {
    await assert.rejects(resolveConfig('run', sources({ config: await withFile('bad.json', '{nope') })), usage(/is not valid JSON/));
    await assert.rejects(resolveConfig('run', sources({ config: await withFile('list.json', [1]) })), usage(/must hold one JSON object/));
    await assert.rejects(resolveConfig('run', sources({ config: await withFile('typo.json', { install_rot: 'x' }) })), usage(/unknown key "install_rot"/));
    await assert.rejects(resolveConfig('run', sources({ config: await withFile('sup.json', { install_root: 'x', health_window_s: 5 }) })), usage(/unknown key "health_window_s"/));
    await assert.rejects(resolveConfig('run', sources({ config: join(dir, 'absent.json') })), usage(/cannot read config file/));
  });

  test('the signature threshold and the download timeout: defaults, and carried to the supervised child', async () => {
    const defaults = await resolveConfig('run', sources({ installRoot: 'r' }));
    assert.equal(defaults.trustedKeyThreshold, 1);
    assert.equal(defaults.downloadTimeoutS, 900);
    const config = await resolveConfig('run', sources({ installRoot: 'r', trustedKeys: [key.publicKeyBase64], trustedKeyThreshold: '1', downloadTimeoutS: '120' }));
    const { args } = childRunInvocation(config, { forceUpdate: false, baseEnv: {} });
    assert.equal(args[args.indexOf('--trusted-key-threshold') + 1], '1');
    assert.equal(args[args.indexOf('--download-timeout') + 1], '120');
  });

  test('supervise settings are validated', async () => {
    await assert.rejects(resolveConfig('supervise', sources({ installRoot: 'r', healthWindowS: '-1' })), usage(/--health-window: expected a number of seconds/));
    const config = await resolveConfig('supervise', sources({ installRoot: 'r', healthWindowS: '1.5' }));
    assert.equal(config.healthWindowS, 1.5);
  });

  test('--keep-versions: default 3, from flag, environment or file; fewer than 3 is a usage error', async () => {
    assert.equal((await resolveConfig('supervise', sources({ installRoot: 'r' }))).keepVersions, 3);
    assert.equal((await resolveConfig('supervise', sources({ installRoot: 'r', keepVersions: '5' }))).keepVersions, 5);
    assert.equal((await resolveConfig('supervise', sources({ installRoot: 'r' }, { BYTEBIOTA_KEEP_VERSIONS: '4' }))).keepVersions, 4);
    const file = await withFile('keep.json', { install_root: 'r', keep_versions: 6 });
    assert.equal((await resolveConfig('supervise', sources({ config: file }))).keepVersions, 6);
    for (const bad of ['2', '0', '3.5', 'three']) {
      await assert.rejects(resolveConfig('supervise', sources({ installRoot: 'r', keepVersions: bad })), usage(/--keep-versions: expected a whole number of versions from 3 to/));
    }
    await assert.rejects(resolveConfig('supervise', sources({ installRoot: 'r' }, { BYTEBIOTA_KEEP_VERSIONS: '1' })), usage(/BYTEBIOTA_KEEP_VERSIONS/));
    // Only supervise prunes: `run` refuses the key like the other supervise-only settings.
    await assert.rejects(resolveConfig('run', sources({ config: file })), usage(/unknown key "keep_versions"/));
    const { env } = childRunInvocation(await resolveConfig('supervise', sources({ installRoot: 'r', keepVersions: '5' })), { forceUpdate: false, baseEnv: { BYTEBIOTA_KEEP_VERSIONS: '5' } });
    assert.equal(env['BYTEBIOTA_KEEP_VERSIONS'], undefined, 'not handed on to the child');
  });

  test('--windows-service: unset by default; anywhere but Windows a usage error, never silently ignored', async () => {
    assert.equal((await resolveConfig('supervise', sources({ installRoot: 'r' }))).windowsService, null);
    assert.notEqual(process.platform, 'win32', 'these tests run on Linux; under Wine the service test covers Windows');
    await assert.rejects(resolveConfig('supervise', sources({ installRoot: 'r', windowsService: 'bytebiota-worker' })), usage(/--windows-service: a Windows service is only run on Windows, and this is linux/));
    await assert.rejects(resolveConfig('supervise', sources({ installRoot: 'r' }, { BYTEBIOTA_WINDOWS_SERVICE: 'bytebiota-worker' })), usage(/BYTEBIOTA_WINDOWS_SERVICE/));
    const file = await withFile('service.json', { install_root: 'r', windows_service: 'bytebiota-worker' });
    await assert.rejects(resolveConfig('run', sources({ config: file })), usage(/unknown key "windows_service"/));
  });
});

test('childRunInvocation carries settings as flags and the token only in the environment', async () => {
  const config = await resolveConfig('run', sources({ installRoot: 'r', serverUrl: 'https://x', trustedKeys: [key.publicKeyBase64], autoUpdateEnabled: false }, { BYTEBIOTA_WORKER_TOKEN: 'secret' }));
  const { args, env } = childRunInvocation(config, { forceUpdate: true, baseEnv: { PATH: '/bin', BYTEBIOTA_METRICS_PORT: '9100', BYTEBIOTA_WORKER_CONFIG: 'x.json' } });
  assert.ok(!args.includes('secret'));
  assert.ok(args.includes('--no-auto-update') && args.includes('--force-update'));
  assert.equal(env['BYTEBIOTA_WORKER_TOKEN'], 'secret');
  assert.equal(env['PATH'], '/bin');
  assert.equal(env['BYTEBIOTA_METRICS_PORT'], undefined, 'the child never binds the supervisor metrics port');
  assert.equal(env['BYTEBIOTA_WORKER_CONFIG'], undefined);
  const reparsed = await resolveConfig('run', sources({ installRoot: args[2], trustedKeys: [args[args.indexOf('--trusted-key') + 1]!] }, env));
  assert.equal(reparsed.token, 'secret');
});
