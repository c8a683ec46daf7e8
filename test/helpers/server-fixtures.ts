import { storeKeys, type SignedRelease } from '../../src/protocol/manifest.js';
import { FolderStore } from '../../src/store/folder-store.js';
import { FIXTURE_NOW, signedManifestBytes, signedRelease, type TestKey } from './trust-fixtures.js';

/** Signed fixtures for the server's tests, written to a real folder store; keys come from trust-fixtures' makeKey. */

/** The instant the fixtures are built around; manifests are valid for 30 days after it. */
export const SERVER_FIXTURE_NOW = FIXTURE_NOW;

/** trust-fixtures' release at serial 1, its artifact URL and recommended version following `version`. */
export function releaseFor(overrides: Partial<SignedRelease> = {}): SignedRelease {
  const version = overrides.version ?? '1.4.0';
  return signedRelease({
    serial: 1,
    version,
    recommended_version: version,
    artifacts: {
      'linux-x64': {
        url: `artifacts/${version}/bytebiota-worker-${version}-linux-x64`,
        sha256: 'b'.repeat(64),
        size: 4096,
      },
    },
    ...overrides,
  });
}

/** Sign a release and publish it as the channel's current manifest (and in its history). */
export async function publishRelease(storeDir: string, signed: SignedRelease, keys: readonly TestKey[]): Promise<Buffer> {
  const bytes = signedManifestBytes(signed, keys);
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
