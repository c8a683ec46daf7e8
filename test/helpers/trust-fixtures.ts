import { parsePrivateKey, generateSigningKeyPair, parsePublicKey, type PrivateKey, type PublicKey } from '../../src/trust/keys.js';
import { serializeManifest, signManifest } from '../../src/trust/sign.js';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import type { ReleaseManifest, SignedRelease } from '../../src/protocol/manifest.js';

export interface TestKey {
  private: PrivateKey;
  public: PublicKey;
  privateKeyPem: string;
  publicKeyBase64: string;
}

export function makeKey(): TestKey {
  const pair = generateSigningKeyPair();
  return {
    private: parsePrivateKey(pair.privateKeyPem),
    public: parsePublicKey(pair.publicKeyBase64),
    privateKeyPem: pair.privateKeyPem,
    publicKeyBase64: pair.publicKeyBase64,
  };
}

export const FIXTURE_NOW = new Date('2026-11-20T12:00:00Z');

/** A valid `signed` body; override any field. */
export function signedRelease(overrides: Partial<SignedRelease> = {}): SignedRelease {
  return {
    _type: 'worker-release',
    schema_version: 1,
    channel: 'stable',
    serial: 7,
    version: '1.4.0',
    released_at: '2026-11-20T10:00:00Z',
    expires: '2026-12-20T10:00:00Z',
    minimum_version: '1.2.0',
    recommended_version: '1.4.0',
    allow_downgrade: false,
    artifacts: {
      'linux-x64': {
        url: 'artifacts/1.4.0/bytebiota-worker-1.4.0-linux-x64',
        sha256: 'a'.repeat(64),
        size: 48213504,
      },
    },
    ...overrides,
  };
}

/** A manifest as the release tool publishes it: `signed`, signed by each key. */
export function signedManifestBytes(signed: SignedRelease, keys: ReadonlyArray<TestKey | PrivateKey>): Buffer {
  return serializeManifest(signManifest(signed, keys.map((key) => ('private' in key ? key.private : key))));
}

/** Canonical bytes of any value, so that only the content under test differs from a real manifest. */
export function manifestBytes(manifest: ReleaseManifest | unknown): Buffer {
  return canonicalBytes(manifest);
}
