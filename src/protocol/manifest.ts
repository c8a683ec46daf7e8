import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { PLATFORM_PATTERN } from './platform.js';
import { MAX_VERSION_LENGTH, SEMVER_PATTERN } from './version.js';

/** The manifest file name in a channel folder of the store (docs/protocol.md, section 2). */
export const MANIFEST_FILE_NAME = 'worker-release.json';
export const MANIFEST_TYPE = 'worker-release';
export const MANIFEST_SCHEMA_VERSION = 1;

/** Anything larger is refused before it is parsed: a manifest is a few KiB. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/** The largest artifact a manifest may declare; the download is cut off at the declared size. */
export const MAX_ARTIFACT_BYTES = 8 * 1024 ** 3;

export const CHANNEL_PATTERN = '^[a-z][a-z0-9-]{0,31}$';
/** RFC 3339 timestamps in UTC with a `Z`, as the release tool writes them. */
export const TIMESTAMP_PATTERN = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?Z$';
export const SHA256_HEX_PATTERN = '^[0-9a-f]{64}$';

export const Channel = Type.String({ pattern: CHANNEL_PATTERN, maxLength: 32 });
export const Version = Type.String({ pattern: SEMVER_PATTERN, maxLength: MAX_VERSION_LENGTH });
export const PlatformName = Type.String({ pattern: PLATFORM_PATTERN, maxLength: 32 });
export const Timestamp = Type.String({ pattern: TIMESTAMP_PATTERN, maxLength: 40 });

export const ArtifactEntry = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    sha256: Type.String({ pattern: SHA256_HEX_PATTERN }),
    size: Type.Integer({ minimum: 1, maximum: MAX_ARTIFACT_BYTES }),
  },
  { additionalProperties: false },
);
export type ArtifactEntry = Static<typeof ArtifactEntry>;

/** The signed part of the manifest. Unknown fields are refused: a signer cannot smuggle meaning. */
export const SignedRelease = Type.Object(
  {
    _type: Type.Literal(MANIFEST_TYPE),
    schema_version: Type.Literal(MANIFEST_SCHEMA_VERSION),
    channel: Channel,
    serial: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    version: Version,
    released_at: Timestamp,
    expires: Timestamp,
    minimum_version: Type.Optional(Version),
    recommended_version: Type.Optional(Version),
    allow_downgrade: Type.Optional(Type.Boolean()),
    artifacts: Type.Record(Type.String({ pattern: PLATFORM_PATTERN }), ArtifactEntry, {
      additionalProperties: false,
      minProperties: 1,
    }),
    notes: Type.Optional(Type.String({ maxLength: 16 * 1024 })),
  },
  { additionalProperties: false },
);
export type SignedRelease = Static<typeof SignedRelease>;

export const Signature = Type.Object(
  {
    keyid: Type.String({ pattern: SHA256_HEX_PATTERN }),
    sig: Type.String({ pattern: '^[A-Za-z0-9+/]{86}==$' }),
  },
  { additionalProperties: false },
);
export type Signature = Static<typeof Signature>;

export const ReleaseManifest = Type.Object(
  {
    signed: SignedRelease,
    signatures: Type.Array(Signature, { maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type ReleaseManifest = Static<typeof ReleaseManifest>;

export const releaseManifestChecker = TypeCompiler.Compile(ReleaseManifest);
export const signedReleaseChecker = TypeCompiler.Compile(SignedRelease);

/** Store keys (docs/protocol.md, section 2): the same on a folder and on S3. */
export const storeKeys = {
  manifest: (channel: string) => `channels/${channel}/${MANIFEST_FILE_NAME}`,
  history: (channel: string, serial: number) => `channels/${channel}/history/${serial}.json`,
  historyPrefix: (channel: string) => `channels/${channel}/history/`,
  artifact: (version: string, file: string) => `artifacts/${version}/${file}`,
};
