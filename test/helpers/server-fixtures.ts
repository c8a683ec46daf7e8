import { storeKeys, type SignedRelease } from '../../src/protocol/manifest.js';
import { FolderStore } from '../../src/store/folder-store.js';
import { generateSigningKeyPair, parsePrivateKey, parsePublicKey, type PrivateKey, type PublicKey } from '../../src/trust/keys.js';
import { serializeManifest, signManifest } from '../../src/trust/sign.js';

/** Signed fixtures for the server's tests, written to a real folder store. */
export interface ReleaseKey {
  privateKey: PrivateKey;
  publicKey: PublicKey;
  publicKeyBase64: string;
  privateKeyPem: string;
}

export function makeReleaseKey(): ReleaseKey {
  const pair = generateSigningKeyPair();
  return {
    privateKey: parsePrivateKey(pair.privateKeyPem),
    publicKey: parsePublicKey(pair.publicKeyBase64),
    publicKeyBase64: pair.publicKeyBase64,
    privateKeyPem: pair.privateKeyPem,
  };
}

/** The instant the fixtures are built around; manifests are valid for 30 days after it. */
export const SERVER_FIXTURE_NOW = new Date('2026-11-20T12:00:00Z');

export function releaseFor(overrides: Partial<SignedRelease> = {}): SignedRelease {
  const version = overrides.version ?? '1.4.0';
  return {
    _type: 'worker-release',
    schema_version: 1,
    channel: 'stable',
    serial: 1,
    version,
    released_at: '2026-11-20T10:00:00Z',
    expires: '2026-12-20T10:00:00Z',
    minimum_version: '1.2.0',
    recommended_version: version,
    allow_downgrade: false,
    artifacts: {
      'linux-x64': {
        url: `artifacts/${version}/bytebiota-worker-${version}-linux-x64`,
        sha256: 'b'.repeat(64),
        size: 4096,
      },
    },
    ...overrides,
  };
}

/** Sign a release and publish it as the channel's current manifest (and in its history). */
export async function publishRelease(storeDir: string, signed: SignedRelease, keys: readonly ReleaseKey[]): Promise<Buffer> {
  const bytes = serializeManifest(signManifest(signed, keys.map((key) => key.privateKey)));
  const store = new FolderStore(storeDir);
  await store.write(storeKeys.history(signed.channel, signed.serial), bytes);
  await store.write(storeKeys.manifest(signed.channel), bytes);
  return bytes;
}

/** Put raw bytes where the channel manifest lives (for tampering tests). */
export async function writeManifestBytes(storeDir: string, channel: string, bytes: Buffer): Promise<void> {
  await new FolderStore(storeDir).write(storeKeys.manifest(channel), bytes);
}

export async function writeArtifact(storeDir: string, version: string, file: string, bytes: Buffer): Promise<void> {
  await new FolderStore(storeDir).write(storeKeys.artifact(version, file), bytes);
}
