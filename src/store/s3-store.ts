import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat as statFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type * as S3Sdk from '@aws-sdk/client-s3';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { UsageError } from '../shared/errors.js';
import {
  assertSafeKey,
  StoreError,
  type ByteRange,
  type ObjectInfo,
  type ObjectStream,
  type ReleaseStore,
} from './release-store.js';

/** `s3://bucket/prefix` split into its parts; the prefix has no leading or trailing `/`. */
export interface S3Location {
  bucket: string;
  prefix: string;
}

/** S3 bucket names (the DNS-compatible rules): 3 to 63 lowercase letters, digits, dots and hyphens. */
const BUCKET_PATTERN = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseS3Location(location: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(location);
  if (!match) throw new UsageError(`invalid S3 store ${JSON.stringify(location)}: expected s3://bucket/prefix`);
  const bucket = match[1] ?? '';
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  if (!BUCKET_PATTERN.test(bucket)) {
    throw new UsageError(`invalid S3 bucket name ${JSON.stringify(bucket)} in ${JSON.stringify(location)}`);
  }
  if (prefix !== '') {
    try {
      assertSafeKey(prefix);
    } catch (err) {
      throw new UsageError(`invalid S3 prefix ${JSON.stringify(prefix)} in ${JSON.stringify(location)}`, { cause: err });
    }
  }
  return { bucket, prefix };
}

type Env = Record<string, string | undefined>;

/**
 * Client settings from the environment. Region and credentials follow the SDK's standard
 * variables (AWS_REGION, AWS_ACCESS_KEY_ID, AWS_PROFILE, ...). `BYTEBIOTA_S3_ENDPOINT` names an
 * S3-compatible server (MinIO, Ceph, R2); such servers get path-style addressing and only the
 * checksums S3 requires, since many of them reject the SDK's newer trailing checksums.
 */
export function s3ClientConfigFromEnv(env: Env): S3ClientConfig {
  const endpoint = env['BYTEBIOTA_S3_ENDPOINT'] || env['AWS_ENDPOINT_URL_S3'] || env['AWS_ENDPOINT_URL'] || undefined;
  const forcePathStyleSetting = env['BYTEBIOTA_S3_FORCE_PATH_STYLE'];
  const forcePathStyle =
    forcePathStyleSetting === undefined || forcePathStyleSetting === ''
      ? endpoint !== undefined
      : forcePathStyleSetting === '1' || forcePathStyleSetting === 'true';
  const checksumSetting = env['AWS_REQUEST_CHECKSUM_CALCULATION']?.toUpperCase();
  const checksums =
    checksumSetting === 'WHEN_SUPPORTED' || checksumSetting === 'WHEN_REQUIRED'
      ? checksumSetting
      : endpoint !== undefined
        ? 'WHEN_REQUIRED'
        : 'WHEN_SUPPORTED';
  const config: S3ClientConfig = {
    region: env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || 'us-east-1',
    forcePathStyle,
    requestChecksumCalculation: checksums,
    responseChecksumValidation: checksums,
  };
  if (endpoint !== undefined) config.endpoint = endpoint;
  // Keys given in this environment are used as given; without them the SDK's default chain
  // (shared config files, SSO, instance roles) finds credentials.
  const accessKeyId = env['AWS_ACCESS_KEY_ID'];
  const secretAccessKey = env['AWS_SECRET_ACCESS_KEY'];
  if (accessKeyId && secretAccessKey) {
    const sessionToken = env['AWS_SESSION_TOKEN'] || undefined;
    config.credentials = sessionToken ? { accessKeyId, secretAccessKey, sessionToken } : { accessKeyId, secretAccessKey };
  }
  return config;
}

interface S3ServiceErrorLike {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function s3Status(err: unknown): number | undefined {
  return (err as S3ServiceErrorLike | undefined)?.$metadata?.httpStatusCode;
}

function s3ErrorName(err: unknown): string {
  const e = err as S3ServiceErrorLike | undefined;
  return e?.Code ?? e?.name ?? '';
}

function isNotFound(err: unknown): boolean {
  const name = s3ErrorName(err);
  // A missing bucket is a broken store, not a missing object.
  return name !== 'NoSuchBucket' && (name === 'NoSuchKey' || name === 'NotFound' || s3Status(err) === 404);
}

/** A Content-MD5 header value: S3 refuses the upload when the bytes it received differ. */
function contentMd5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('base64');
}

interface ContentRange {
  start: number;
  end: number;
  size: number;
}

/** `Content-Range: bytes 0-9/1234`. */
function parseContentRange(header: string | undefined): ContentRange | undefined {
  const match = header ? /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header) : null;
  return match ? { start: Number(match[1]), end: Number(match[2]), size: Number(match[3]) } : undefined;
}

/** Pass on the first `limitBytes` bytes of a stream and stop reading it. */
function takeBytes(source: Readable, limitBytes: number): Readable {
  return Readable.from(
    (async function* () {
      let remaining = limitBytes;
      for await (const chunk of source) {
        const bytes = chunk as Buffer;
        if (remaining <= 0) break;
        yield bytes.length <= remaining ? bytes : bytes.subarray(0, remaining);
        remaining -= bytes.length;
      }
      source.destroy();
    })(),
  );
}

/**
 * Releases in an S3 bucket (or any S3-compatible server), under an optional key prefix.
 * Single PutObject requests are atomic on S3: a reader sees the old object or the new one,
 * never a mix, which is what the publish protocol (artifacts first, manifest last) relies on.
 */
export class S3Store implements ReleaseStore {
  readonly location: string;
  private clientPromise: Promise<S3Client> | undefined;
  private sdk: typeof S3Sdk | undefined;

  /**
   * @param clientConfig settings for the SDK client; the SDK itself is loaded on first use,
   *   so that programs that never touch S3 do not pay for loading it.
   */
  constructor(
    private readonly target: S3Location,
    private readonly clientConfig: S3ClientConfig,
  ) {
    this.location = `s3://${target.bucket}${target.prefix ? `/${target.prefix}` : ''}`;
  }

  static fromUrl(location: string, env: Env = process.env): S3Store {
    return new S3Store(parseS3Location(location), s3ClientConfigFromEnv(env));
  }

  private async client(): Promise<{ client: S3Client; sdk: typeof S3Sdk }> {
    this.clientPromise ??= import('@aws-sdk/client-s3').then((sdk) => {
      this.sdk = sdk;
      return new sdk.S3Client(this.clientConfig);
    });
    const client = await this.clientPromise;
    return { client, sdk: this.sdk as typeof S3Sdk };
  }

  private objectKey(key: string): string {
    assertSafeKey(key);
    return this.target.prefix ? `${this.target.prefix}/${key}` : key;
  }

  private readError(err: unknown, key: string): StoreError {
    if (err instanceof StoreError) return err;
    const name = s3ErrorName(err) || 'error';
    return new StoreError('store_unavailable', `cannot read ${key} from release store ${this.location}: ${name}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }

  private writeError(err: unknown, key: string): StoreError {
    if (err instanceof StoreError) return err;
    const status = s3Status(err);
    const name = s3ErrorName(err) || 'error';
    const message = `cannot write ${key} to release store ${this.location}: ${name}: ${(err as Error)?.message ?? String(err)}`;
    const code = status === 403 || status === 405 || name === 'AccessDenied' ? 'store_not_writable' : 'store_unavailable';
    return new StoreError(code, message, { cause: err });
  }

  async ping(): Promise<void> {
    const { client, sdk } = await this.client();
    try {
      await client.send(
        new sdk.ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: this.target.prefix ? `${this.target.prefix}/` : undefined, MaxKeys: 1 }),
      );
    } catch (err) {
      throw new StoreError('store_unavailable', `release store ${this.location} is not reachable: ${s3ErrorName(err) || (err as Error).message}`, { cause: err });
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const objectKey = this.objectKey(key);
    const { client, sdk } = await this.client();
    try {
      const head = await client.send(new sdk.HeadObjectCommand({ Bucket: this.target.bucket, Key: objectKey }));
      return { size: head.ContentLength ?? 0, etag: head.ETag ?? '', lastModified: head.LastModified ?? new Date(0) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.readError(err, key);
    }
  }

  async read(key: string, maxBytes: number): Promise<Buffer | null> {
    const objectKey = this.objectKey(key);
    const { client, sdk } = await this.client();
    let body: Readable;
    let length: number | undefined;
    try {
      const got = await client.send(new sdk.GetObjectCommand({ Bucket: this.target.bucket, Key: objectKey }));
      body = got.Body as Readable;
      length = got.ContentLength;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.readError(err, key);
    }
    if (length !== undefined && length > maxBytes) {
      body.destroy();
      throw new StoreError('store_object_too_large', `${key} is ${length} bytes, over ${maxBytes}`);
    }
    // The length header is trusted only as far as the bytes agree: count while reading too.
    const chunks: Buffer[] = [];
    let received = 0;
    try {
      for await (const chunk of body) {
        received += (chunk as Buffer).length;
        if (received > maxBytes) {
          body.destroy();
          throw new StoreError('store_object_too_large', `${key} is over ${maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
    } catch (err) {
      throw this.readError(err, key);
    }
    return Buffer.concat(chunks);
  }

  async openRead(key: string, range?: ByteRange): Promise<ObjectStream | null> {
    const objectKey = this.objectKey(key);
    const { client, sdk } = await this.client();
    try {
      const got = await client.send(
        new sdk.GetObjectCommand({
          Bucket: this.target.bucket,
          Key: objectKey,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      const body = got.Body as Readable;
      const info = { etag: got.ETag ?? '', lastModified: got.LastModified ?? new Date(0) };
      if (!range) return { ...info, size: got.ContentLength ?? 0, stream: body };
      const served = parseContentRange(got.ContentRange);
      const wantedBytes = range.end - range.start + 1;
      if (served?.start === range.start) {
        // Some S3-compatible servers widen a range (s3rver reads `bytes=0-0` as `bytes=0-`):
        // cut the answer back to what was asked.
        return { ...info, size: served.size, stream: served.end > range.end ? takeBytes(body, wantedBytes) : body };
      }
      if (served === undefined && range.start === 0) {
        // The server ignored Range and sent the whole object (HTTP allows that).
        return { ...info, size: got.ContentLength ?? 0, stream: takeBytes(body, wantedBytes) };
      }
      body.destroy();
      throw new StoreError('store_unavailable', `release store ${this.location} answered range ${range.start}-${range.end} of ${key} with ${got.ContentRange ?? 'the whole object'}`);
    } catch (err) {
      if (isNotFound(err)) return null;
      if (s3Status(err) === 416 && range) {
        // A range past the end yields no bytes, as a file stream does; callers that answer
        // HTTP Range requests check the range against stat() first and send 416 themselves.
        const info = await this.stat(key);
        return info ? { ...info, stream: Readable.from([]) } : null;
      }
      throw this.readError(err, key);
    }
  }

  async write(key: string, data: Buffer): Promise<void> {
    const objectKey = this.objectKey(key);
    const { client, sdk } = await this.client();
    try {
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.target.bucket,
          Key: objectKey,
          Body: data,
          ContentLength: data.length,
          ContentMD5: contentMd5(data),
        }),
      );
    } catch (err) {
      throw this.writeError(err, key);
    }
  }

  async writeFile(key: string, sourcePath: string): Promise<void> {
    const objectKey = this.objectKey(key);
    const { size } = await statFile(sourcePath);
    const { client, sdk } = await this.client();
    // One PutObject streams the file (up to S3's 5 GiB single-request limit): memory stays flat,
    // and the object appears whole or not at all.
    const body = createReadStream(sourcePath);
    try {
      await client.send(
        new sdk.PutObjectCommand({ Bucket: this.target.bucket, Key: objectKey, Body: body, ContentLength: size }),
      );
    } catch (err) {
      throw this.writeError(err, key);
    } finally {
      body.destroy();
    }
  }

  async list(prefix: string): Promise<string[]> {
    const { client, sdk } = await this.client();
    const base = this.target.prefix ? `${this.target.prefix}/` : '';
    const keys: string[] = [];
    let continuationToken: string | undefined;
    do {
      let page;
      try {
        page = await client.send(
          new sdk.ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: base + prefix, ContinuationToken: continuationToken }),
        );
      } catch (err) {
        throw this.readError(err, prefix);
      }
      for (const object of page.Contents ?? []) {
        if (object.Key?.startsWith(base)) keys.push(object.Key.slice(base.length));
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
    return keys;
  }
}
