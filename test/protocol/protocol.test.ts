import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import { artifactFileName, currentPlatform, executableName, isPlatform } from '../../src/protocol/platform.js';
import { REASON_CODES, isReasonCode } from '../../src/protocol/reason-codes.js';
import { compareVersions, isNewerVersion, isValidVersion } from '../../src/protocol/version.js';

describe('versions', () => {
  for (const version of ['1.0.0', '0.0.1', '1.2.3-rc.1', '1.2.3+build.5', '10.20.30-alpha-1.beta']) {
    test(`accepts ${version}`, () => assert.ok(isValidVersion(version)));
  }
  for (const version of ['v1.0.0', '1.0', '01.0.0', '1.0.0/..', '../1.0.0', '1.0.0\\x', '', ' 1.0.0', '1.0.0-', 'x'.repeat(70)]) {
    test(`refuses ${JSON.stringify(version)}`, () => assert.equal(isValidVersion(version), false));
  }
  test('orders by SemVer precedence', () => {
    assert.equal(compareVersions('1.10.0', '1.9.0'), 1);
    assert.equal(compareVersions('1.0.0-rc.1', '1.0.0'), -1);
    assert.equal(compareVersions('1.0.0+a', '1.0.0+b'), 0);
    assert.ok(isNewerVersion('2.0.0', '1.99.99'));
    assert.ok(!isNewerVersion('1.0.0', '1.0.0'));
  });
});

describe('platforms', () => {
  test('this machine has a known platform name', () => assert.ok(isPlatform(currentPlatform())));
  test('names executables and artifacts per platform', () => {
    assert.equal(executableName('win32-x64'), 'bytebiota-worker.exe');
    assert.equal(executableName('linux-arm64-musl'), 'bytebiota-worker');
    assert.equal(artifactFileName('1.4.0', 'linux-x64'), 'bytebiota-worker-1.4.0-linux-x64');
    assert.equal(artifactFileName('1.4.0', 'win32-arm64'), 'bytebiota-worker-1.4.0-win32-arm64.exe');
  });
  for (const name of ['linux-x64/..', 'freebsd-x64', 'darwin-x64-musl', 'LINUX-X64', '']) {
    test(`refuses platform ${JSON.stringify(name)}`, () => assert.equal(isPlatform(name), false));
  }
});

describe('reason codes and canonical JSON', () => {
  test('every reason code is snake_case and unique', () => {
    assert.equal(new Set(REASON_CODES).size, REASON_CODES.length);
    for (const code of REASON_CODES) assert.match(code, /^[a-z]+(_[a-z]+)*$/);
    assert.ok(isReasonCode('checksum_mismatch'));
    assert.ok(!isReasonCode('checksum-mismatch'));
  });
  test('canonical JSON sorts keys and uses ES number forms (RFC 8785 examples)', () => {
    assert.equal(canonicalBytes({ b: 1, a: [1.0, 'é', 1e21, 0.000001] }).toString(), '{"a":[1,"é",1e+21,0.000001],"b":1}');
    assert.equal(canonicalBytes({ '\u20ac': 1, '\r': 2, '1': 3 }).toString(), '{"\\r":2,"1":3,"€":1}');
  });
});
