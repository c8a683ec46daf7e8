import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import type { ReleaseManifest, SignedRelease } from '../../src/protocol/manifest.js';
import { parsePublicKey } from '../../src/trust/keys.js';
import { serializeManifest } from '../../src/trust/sign.js';
import { verifyManifest } from '../../src/trust/verify.js';
import { runRelease } from './release-cli.js';

/**
 * Interoperability with an Ed25519 and PKCS#8 implementation nobody here wrote: OpenSSL.
 * Signatures go both ways over the RFC 8785 bytes of `signed`.
 */
const execFileAsync = promisify(execFile);

function opensslMissing(): string | false {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'openssl is not on PATH; install it to run the interoperability tests';
  }
}
const skip = opensslMissing();

async function openssl(args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('openssl', args);
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const failed = err as { stdout?: string; stderr?: string };
    return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

describe('OpenSSL interoperability', { skip }, () => {
  let root: string;
  const file = (name: string) => join(root, name);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'bytebiota-openssl-'));
    await writeFile(file('worker'), randomBytes(64 * 1024));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('a manifest the release tool signed verifies with openssl pkeyutl', async () => {
    const keygen = await runRelease(['keygen', '--out', file('keys')]);
    assert.equal(keygen.exitCode, 0, keygen.stderr);
    const published = await runRelease(['publish', '--store', file('store'), '--channel', 'stable', '--version', '1.0.0', '--artifact', `linux-x64=${file('worker')}`, '--key', file('keys/release.key')]);
    assert.equal(published.exitCode, 0, published.stderr);

    // OpenSSL derives the public key from our PKCS#8 file itself.
    assert.ok((await openssl(['pkey', '-in', file('keys/release.key'), '-pubout', '-out', file('pub.pem')])).ok);
    const manifest = JSON.parse(await readFile(file('store/channels/stable/worker-release.json'), 'utf8')) as ReleaseManifest;
    await writeFile(file('canonical.bin'), canonicalBytes(manifest.signed));
    await writeFile(file('sig.bin'), Buffer.from(manifest.signatures[0]?.sig ?? '', 'base64'));
    const verified = await openssl(['pkeyutl', '-verify', '-rawin', '-pubin', '-inkey', file('pub.pem'), '-in', file('canonical.bin'), '-sigfile', file('sig.bin')]);
    assert.ok(verified.ok, verified.output);
    assert.match(verified.output, /Signature Verified Successfully/);

    // The same check fails on one changed field: openssl verifies these exact bytes, not anything.
    await writeFile(file('canonical-altered.bin'), canonicalBytes({ ...manifest.signed, version: '9.9.9' }));
    const altered = await openssl(['pkeyutl', '-verify', '-rawin', '-pubin', '-inkey', file('pub.pem'), '-in', file('canonical-altered.bin'), '-sigfile', file('sig.bin')]);
    assert.equal(altered.ok, false, altered.output);

    // The key id is the SHA-256 of the raw key, here taken from OpenSSL's DER (the last 32 bytes).
    const der = await execFileAsync('openssl', ['pkey', '-pubin', '-in', file('pub.pem'), '-outform', 'DER'], { encoding: 'buffer' });
    const raw = (der.stdout as Buffer).subarray(-32);
    assert.equal(manifest.signatures[0]?.keyid, createHash('sha256').update(raw).digest('hex'));
  });

  test('a manifest signed by openssl pkeyutl -sign verifies in verifyManifest and in the verify command', async () => {
    assert.ok((await openssl(['genpkey', '-algorithm', 'ed25519', '-out', file('openssl.key')])).ok);
    assert.ok((await openssl(['pkey', '-in', file('openssl.key'), '-pubout', '-out', file('openssl.pub.pem')])).ok);
    const publicKey = parsePublicKey(await readFile(file('openssl.pub.pem'), 'utf8'));
    const now = new Date();
    const signed: SignedRelease = {
      _type: 'worker-release',
      schema_version: 1,
      channel: 'stable',
      serial: 3,
      version: '1.4.0',
      released_at: now.toISOString().replace(/\.\d+Z$/, 'Z'),
      expires: new Date(now.getTime() + 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      allow_downgrade: false,
      artifacts: { 'linux-x64': { url: 'artifacts/1.4.0/bytebiota-worker-1.4.0-linux-x64', sha256: 'b'.repeat(64), size: 1234 } },
      notes: 'signed by OpenSSL: ünïcödé and "quotes"',
    };
    await writeFile(file('to-sign.bin'), canonicalBytes(signed));
    const signing = await openssl(['pkeyutl', '-sign', '-rawin', '-inkey', file('openssl.key'), '-in', file('to-sign.bin'), '-out', file('openssl.sig')]);
    assert.ok(signing.ok, signing.output);
    const manifest: ReleaseManifest = { signed, signatures: [{ keyid: publicKey.keyid, sig: (await readFile(file('openssl.sig'))).toString('base64') }] };
    const bytes = serializeManifest(manifest);

    const verified = verifyManifest(bytes, { trustedKeys: [publicKey], channel: 'stable', now });
    assert.deepEqual(verified.signedBy, [publicKey.keyid]);

    await writeFile(file('openssl-manifest.json'), bytes);
    const run = await runRelease(['verify', '--trusted-key', file('openssl.pub.pem'), file('openssl-manifest.json')]);
    assert.equal(run.exitCode, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^signed_by ${publicKey.keyid}$`, 'm'));
  });

  test('the release tool publishes with a private key OpenSSL generated', async () => {
    assert.ok((await openssl(['genpkey', '-algorithm', 'ed25519', '-out', file('ossl-signer.key')])).ok);
    const published = await runRelease(['publish', '--store', file('ossl-store'), '--channel', 'canary', '--version', '2.0.0', '--artifact', `linux-x64=${file('worker')}`, '--key', file('ossl-signer.key')]);
    assert.equal(published.exitCode, 0, published.stderr);
    assert.ok((await openssl(['pkey', '-in', file('ossl-signer.key'), '-pubout', '-out', file('ossl-signer.pub.pem')])).ok);
    const publicKey = parsePublicKey(await readFile(file('ossl-signer.pub.pem'), 'utf8'));
    const bytes = await readFile(file('ossl-store/channels/canary/worker-release.json'));
    assert.equal(verifyManifest(bytes, { trustedKeys: [publicKey], channel: 'canary', now: new Date() }).signed.version, '2.0.0');
  });
});
