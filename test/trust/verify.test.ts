import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { verifyManifest, type VerifyOptions } from '../../src/trust/verify.js';
import { signManifest, serializeManifest } from '../../src/trust/sign.js';
import { UpdateError, type ReasonCode } from '../../src/protocol/reason-codes.js';
import { MAX_MANIFEST_BYTES, type SignedRelease } from '../../src/protocol/manifest.js';
import {
  FIXTURE_NOW,
  makeKey,
  manifestBytes,
  signedManifestBytes,
  signedRelease,
} from '../helpers/trust-fixtures.js';

const releaseKey = makeKey();
const secondKey = makeKey();
const strangerKey = makeKey();

const baseOptions: VerifyOptions = {
  trustedKeys: [releaseKey.public],
  channel: 'stable',
  now: FIXTURE_NOW,
};

function expectCode(fn: () => unknown, code: ReasonCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UpdateError, `expected UpdateError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('verifyManifest accepts', () => {
  test('a manifest signed by the trusted key', () => {
    const result = verifyManifest(signedManifestBytes(signedRelease(), [releaseKey]), baseOptions);
    assert.equal(result.signed.version, '1.4.0');
    assert.deepEqual(result.signedBy, [releaseKey.public.keyid]);
  });

  test('the same version as the running one (the caller treats it as up to date)', () => {
    const bytes = signedManifestBytes(signedRelease(), [releaseKey]);
    assert.equal(verifyManifest(bytes, { ...baseOptions, currentVersion: '1.4.0' }).signed.version, '1.4.0');
  });

  test('an older version when the release allows downgrade (the fleet rollback switch)', () => {
    const bytes = signedManifestBytes(signedRelease({ version: '1.3.0', recommended_version: '1.3.0', allow_downgrade: true }), [releaseKey]);
    assert.equal(verifyManifest(bytes, { ...baseOptions, currentVersion: '1.4.0' }).signed.version, '1.3.0');
  });

  test('a serial equal to the highest seen (the same manifest fetched again)', () => {
    const bytes = signedManifestBytes(signedRelease(), [releaseKey]);
    assert.equal(verifyManifest(bytes, { ...baseOptions, highestSerial: 7 }).signed.serial, 7);
  });

  test('a threshold of two met by two distinct keys, ignoring an untrusted extra signature', () => {
    const bytes = signedManifestBytes(signedRelease(), [releaseKey, strangerKey, secondKey]);
    const result = verifyManifest(bytes, { ...baseOptions, trustedKeys: [releaseKey.public, secondKey.public], threshold: 2 });
    assert.equal(result.signedBy.length, 2);
  });
});

/** One row per reason code verifyManifest can produce, each with the input that must produce it. */
const refusals: Array<{ name: string; code: ReasonCode; bytes: () => Uint8Array; options?: Partial<VerifyOptions> }> = [
  { name: 'not JSON', code: 'manifest_invalid', bytes: () => Buffer.from('{"signed":') },
  { name: 'not UTF-8', code: 'manifest_invalid', bytes: () => Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) },
  { name: 'a number too large for JSON (Infinity)', code: 'manifest_invalid', bytes: () => Buffer.from('{"signed":{"serial":1e999},"signatures":[]}') },
  { name: 'a JSON array', code: 'manifest_invalid', bytes: () => Buffer.from('[]') },
  { name: 'over 1 MiB', code: 'manifest_invalid', bytes: () => Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x20) },
  {
    name: 'an unknown field in signed',
    code: 'manifest_invalid',
    bytes: () => signedManifestBytes({ ...signedRelease(), extra: 1 } as unknown as SignedRelease, [releaseKey]),
  },
  {
    name: 'pretty-printed instead of canonical bytes',
    code: 'manifest_invalid',
    bytes: () => Buffer.from(JSON.stringify(signManifest(signedRelease(), [releaseKey.private]), null, 2)),
  },
  {
    name: 'an unknown top-level field',
    code: 'manifest_invalid',
    bytes: () => manifestBytes({ ...signManifest(signedRelease(), [releaseKey.private]), note: 'x' }),
  },
  {
    name: 'a missing required field',
    code: 'manifest_invalid',
    bytes: () => {
      const { serial: _serial, ...rest } = signedRelease();
      return signedManifestBytes(rest as SignedRelease, [releaseKey]);
    },
  },
  {
    name: 'a version with a path separator',
    code: 'manifest_invalid',
    bytes: () => signedManifestBytes(signedRelease({ version: '../../etc' }), [releaseKey]),
  },
  {
    name: 'an unknown platform',
    code: 'manifest_invalid',
    bytes: () =>
      signedManifestBytes(
        signedRelease({ artifacts: { 'plan9-x64/..': { url: 'a', sha256: 'a'.repeat(64), size: 1 } } }),
        [releaseKey],
      ),
  },
  {
    name: 'a minimum version above the release',
    code: 'manifest_invalid',
    bytes: () => signedManifestBytes(signedRelease({ minimum_version: '2.0.0' }), [releaseKey]),
  },
  {
    name: 'expires before it was released',
    code: 'manifest_invalid',
    bytes: () => signedManifestBytes(signedRelease({ expires: '2026-11-01T00:00:00Z' }), [releaseKey]),
  },
  { name: 'no signature', code: 'signature_invalid', bytes: () => signedManifestBytes(signedRelease(), []) },
  {
    name: 'signed by an unknown key',
    code: 'signature_invalid',
    bytes: () => signedManifestBytes(signedRelease(), [strangerKey]),
  },
  {
    name: 'a signature over other content',
    code: 'signature_invalid',
    bytes: () => {
      const manifest = signManifest(signedRelease(), [releaseKey.private]);
      return serializeManifest({ ...manifest, signed: { ...manifest.signed, version: '9.9.9' } });
    },
  },
  {
    name: 'a trusted key id on a stranger\'s signature',
    code: 'signature_invalid',
    bytes: () => {
      const manifest = signManifest(signedRelease(), [strangerKey.private]);
      return serializeManifest({ ...manifest, signatures: [{ keyid: releaseKey.public.keyid, sig: manifest.signatures[0]!.sig }] });
    },
  },
  {
    name: 'one key signing twice against a threshold of two',
    code: 'signature_invalid',
    bytes: () => {
      const manifest = signManifest(signedRelease(), [releaseKey.private]);
      return serializeManifest({ ...manifest, signatures: [manifest.signatures[0]!, manifest.signatures[0]!] });
    },
    options: { trustedKeys: [releaseKey.public, secondKey.public], threshold: 2 },
  },
  {
    name: 'expired',
    code: 'manifest_expired',
    bytes: () => signedManifestBytes(signedRelease(), [releaseKey]),
    options: { now: new Date('2026-12-20T10:00:00Z') },
  },
  {
    name: 'another channel',
    code: 'channel_mismatch',
    bytes: () => signedManifestBytes(signedRelease({ channel: 'canary' }), [releaseKey]),
  },
  {
    name: 'a serial lower than one already accepted',
    code: 'manifest_rollback',
    bytes: () => signedManifestBytes(signedRelease({ serial: 6 }), [releaseKey]),
    options: { highestSerial: 7 },
  },
  {
    name: 'an older version without allow_downgrade',
    code: 'downgrade_refused',
    bytes: () => signedManifestBytes(signedRelease({ version: '1.3.0', recommended_version: '1.3.0' }), [releaseKey]),
    options: { currentVersion: '1.4.0' },
  },
];

describe('verifyManifest refuses', () => {
  for (const row of refusals) {
    test(`${row.name} with ${row.code}`, () => {
      expectCode(() => verifyManifest(row.bytes(), { ...baseOptions, ...row.options }), row.code);
    });
  }

  test('a threshold that no set of trusted keys could meet is a configuration error, not a verdict', () => {
    const bytes = signedManifestBytes(signedRelease(), [releaseKey]);
    assert.throws(() => verifyManifest(bytes, { ...baseOptions, threshold: 2 }), RangeError);
    assert.throws(() => verifyManifest(bytes, { ...baseOptions, threshold: 0 }), RangeError);
  });
});

describe('verifyManifest under tampering (property)', () => {
  const original = signedManifestBytes(signedRelease(), [releaseKey]);

  test('flipping any byte of a signed manifest makes verification fail', () => {
    fc.assert(
      fc.property(fc.nat({ max: original.length - 1 }), fc.integer({ min: 1, max: 255 }), (index, mask) => {
        const tampered = Buffer.from(original);
        tampered[index] = tampered[index]! ^ mask;
        try {
          verifyManifest(tampered, baseOptions);
          return false;
        } catch (err) {
          return err instanceof UpdateError;
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('every single-bit flip of every byte makes verification fail (exhaustive)', () => {
    for (let index = 0; index < original.length; index += 1) {
      for (let bit = 0; bit < 8; bit += 1) {
        const tampered = Buffer.from(original);
        tampered[index] = tampered[index]! ^ (1 << bit);
        assert.throws(() => verifyManifest(tampered, baseOptions), UpdateError, `byte ${index} bit ${bit} went unnoticed`);
      }
    }
  });

  test('changing any value inside signed makes verification fail', () => {
    const manifest = signManifest(signedRelease(), [releaseKey.private]);
    const paths = [
      ['channel'],
      ['serial'],
      ['version'],
      ['released_at'],
      ['expires'],
      ['minimum_version'],
      ['recommended_version'],
      ['allow_downgrade'],
      ['artifacts', 'linux-x64', 'url'],
      ['artifacts', 'linux-x64', 'sha256'],
      ['artifacts', 'linux-x64', 'size'],
    ] as const;
    fc.assert(
      fc.property(
        fc.constantFrom(...paths),
        fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null)),
        (path, value) => {
          const copy = structuredClone(manifest) as { signed: Record<string, unknown> };
          let target: Record<string, unknown> = copy.signed;
          for (const key of path.slice(0, -1)) target = target[key] as Record<string, unknown>;
          const last = path[path.length - 1]!;
          if (JSON.stringify(target[last]) === JSON.stringify(value)) return true;
          target[last] = value;
          try {
            verifyManifest(manifestBytes(copy), { ...baseOptions, now: new Date('2026-11-20T11:00:00Z') });
            return false;
          } catch (err) {
            return err instanceof UpdateError && (err.code === 'signature_invalid' || err.code === 'manifest_invalid');
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
