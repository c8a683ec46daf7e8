import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import type { Clock } from '../../shared/clock.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { ArtifactEntry, SignedRelease } from '../../protocol/manifest.js';
import type { UpdateProgress } from '../../protocol/messages.js';
import { UpdateError } from '../../protocol/reason-codes.js';
import { compareVersions } from '../../protocol/version.js';
import type { PublicKey } from '../../trust/keys.js';
import { verifyManifest } from '../../trust/verify.js';
import type { StatFs } from './disk-space.js';
import { chunkingParamsOf, type SignedChunkIndex } from '../../protocol/chunk-index.js';
import type { ChunkedFile, ChunkingParams } from '../../shared/chunker.js';
import { attemptDelta } from './delta-attempt.js';
import { discardPartial, downloadArtifact, type TransferOptions } from './download.js';
import { discardStalePartials } from './stale-partials.js';
import { terminalProgressBar } from './progress-bar.js';
import type { VerifiedFile } from '../install/file-receipt.js';
import type { InstallLayout } from '../install/install-layout.js';
import { isCompleteVersion, readCompleteMark, stageVersion } from '../install/installer.js';
import { acquireUpdateLock } from '../install/lock.js';
import { failureReasonOf } from '../install/failure-reason.js';
import { fetchLatestManifest, resolveArtifactUrl } from './manifest-client.js';
import { chunksFromLengths } from '../install/local-chunks.js';
import { loadState, updateState, type DownloadSummary } from '../install/state.js';

export interface UpdaterContext {
  layout: InstallLayout;
  serverUrl: string;
  token: string;
  channel: string;
  platform: string;
  workerId: string;
  currentVersion: string;
  trustedKeys: PublicKey[];
  threshold: number;
  clock: Clock;
  /** For proxies and private CAs; the global dispatcher when absent. */
  dispatcher?: Dispatcher;
  /**
   * `--force-update`: also install a version that was rolled back here, ignore the cached ETag,
   * and ask the server to bypass its staged rollout (logged as worker_update_forced).
   */
  force: boolean;
  correlationId: string;
  /** Progress for heartbeats (`update` in docs/protocol.md, section 3). */
  onProgress?(p: UpdateProgress): void;
  /** Called once the fetched manifest verified: the release this attempt acts on, for its reports. */
  onManifestVerified?(release: { version: string; serial: number }): void;
  log: Logger;
  /** Tuning and test seams; all optional, with production defaults. */
  statfs?: StatFs;
  manifestTimeoutMs?: number;
  downloadHeadersTimeoutMs?: number;
  downloadIdleTimeoutMs?: number;
  /** The whole download, first byte to last (TUF's slow-retrieval attack); default in download.ts. */
  downloadTimeoutMs?: number;
  selfTestTimeoutMs?: number;
  /** Where a download progress bar is drawn; default stderr when it is a TTY, else none. */
  progressStream?: NodeJS.WritableStream & { isTTY?: boolean };
}

export type UpdateCheck =
  | { kind: 'up_to_date' | 'no_release' | 'not_modified' }
  | { kind: 'skipped_rolled_back'; version: string }
  | { kind: 'available'; signed: SignedRelease; entry: ArtifactEntry; artifactUrl: string; etag?: string };

/** Remember the manifest's ETag once its outcome is final, so the next check can get a 304. */
async function rememberEtag(ctx: UpdaterContext, etag: string | null | undefined): Promise<void> {
  if (!etag) return;
  await updateState(ctx.layout, (state) => {
    state.manifest_etags = { ...state.manifest_etags, [ctx.channel]: etag };
  });
}

/** GET `latest` as this worker asks for it (docs/protocol.md, section 3), with `etag` as If-None-Match. */
export function fetchLatestFor(ctx: UpdaterContext, etag: string | undefined): ReturnType<typeof fetchLatestManifest> {
  return fetchLatestManifest({
    serverUrl: ctx.serverUrl,
    token: ctx.token,
    channel: ctx.channel,
    platform: ctx.platform,
    workerId: ctx.workerId,
    currentVersion: ctx.currentVersion,
    etag,
    dispatcher: ctx.dispatcher,
    timeoutMs: ctx.manifestTimeoutMs,
    // A forced update asks the server to bypass its staged rollout for this worker.
    force: ctx.force,
  });
}

/** verifyManifest with this worker's trust inputs: its keys, channel, version and serial floor. */
export function verifyForWorker(ctx: UpdaterContext, bytes: Buffer, highestSerial: number | undefined): ReturnType<typeof verifyManifest> {
  return verifyManifest(bytes, {
    trustedKeys: ctx.trustedKeys,
    threshold: ctx.threshold,
    channel: ctx.channel,
    highestSerial,
    currentVersion: ctx.currentVersion,
    now: ctx.clock.now(),
  });
}

/**
 * The update check (docs/protocol.md, section 4), following TUF's client order: fetch the bytes, verify them
 * (signatures, expiry, channel, serial, downgrade) against the trust state, and only then update
 * the trust state (the highest serial) from them. A version that was rolled back here is skipped
 * until a newer one appears, unless forced.
 */
export async function checkForUpdate(ctx: UpdaterContext): Promise<UpdateCheck> {
  const state = await loadState(ctx.layout, () => ctx.workerId);
  if (ctx.force) {
    // The server is asked to bypass its staged rollout for this worker (the header below).
    ctx.log.info({ event: 'worker_update_forced', correlation_id: ctx.correlationId, channel: ctx.channel }, 'forced update check (--force-update)');
  }
  const fetched = await fetchLatestFor(ctx, ctx.force ? undefined : state.manifest_etags?.[ctx.channel]);
  if (fetched.kind !== 'manifest') return { kind: fetched.kind };

  const { signed } = verifyForWorker(ctx, fetched.bytes, state.highest_serial[ctx.channel]);
  // Told first, so that a failure from here on is reported against this release.
  ctx.onManifestVerified?.({ version: signed.version, serial: signed.serial });
  // The manifest verified: now, and only now, its serial becomes the floor for this channel.
  await updateState(ctx.layout, (next) => {
    next.highest_serial[ctx.channel] = Math.max(next.highest_serial[ctx.channel] ?? 0, signed.serial);
  });

  if (compareVersions(signed.version, ctx.currentVersion) === 0) {
    await rememberEtag(ctx, fetched.etag);
    return { kind: 'up_to_date' };
  }
  if (state.rolled_back[signed.version] !== undefined && !ctx.force) {
    await rememberEtag(ctx, fetched.etag);
    return { kind: 'skipped_rolled_back', version: signed.version };
  }
  const entry = signed.artifacts[ctx.platform];
  if (!entry) {
    throw new UpdateError(
      'no_artifact_for_platform',
      `release ${signed.version} has no artifact for ${ctx.platform} (it has ${Object.keys(signed.artifacts).join(', ')})`,
    );
  }
  const artifactUrl = resolveArtifactUrl(entry.url, fetched.url);
  return { kind: 'available', signed, entry, artifactUrl, ...(fetched.etag ? { etag: fetched.etag } : {}) };
}

export function partialDownloadPath(layout: InstallLayout, version: string, platform: string): string {
  return join(layout.tmpDir, `${version}-${platform}.partial`);
}

/** The bearer token goes only to the update server's own origin, never to a CDN or mirror. */
function authHeadersFor(artifactUrl: string, ctx: UpdaterContext): Record<string, string> {
  return new URL(artifactUrl).origin === new URL(ctx.serverUrl).origin ? { authorization: `Bearer ${ctx.token}` } : {};
}

/** What downloadUpdate hands to applyUpdate. */
export interface DownloadedUpdate {
  path: string;
  verified: VerifiedFile;
  /** For the success report (state.json's pending_switch). */
  download: DownloadSummary;
  /** The new file's chunks, when a verified index describes it: its chunk cache once staged. */
  chunks?: { chunked: ChunkedFile; params: ChunkingParams };
}

/**
 * The download (docs/protocol.md, sections 4 and 8): differential when the release has a chunk
 * index and the installed version shares enough of its bytes, else the whole artifact; either way
 * under the free-space check, resumable, and verified against the signed size and SHA-256.
 * Reports whole-percent progress of the bytes to fetch and draws a bar on a TTY.
 */
export async function downloadUpdate(entry: ArtifactEntry, artifactUrl: string, version: string, ctx: UpdaterContext): Promise<DownloadedUpdate> {
  const stream = ctx.progressStream ?? process.stderr;
  const bar = stream.isTTY === true ? terminalProgressBar(stream, `bytebiota-worker ${version}`) : undefined;
  let lastPercent = -1;
  ctx.onProgress?.({ to_version: version, state: 'downloading', download_percent: 0 });
  const onProgress = (fetchedBytes: number, bytesToFetch: number): void => {
    bar?.update(fetchedBytes, bytesToFetch);
    const percent = bytesToFetch === 0 ? 100 : Math.floor((fetchedBytes / bytesToFetch) * 100);
    if (percent !== lastPercent) {
      lastPercent = percent;
      ctx.onProgress?.({ to_version: version, state: 'downloading', download_percent: percent });
    }
  };
  // Half-done downloads of releases superseded since: nothing will resume them.
  await discardStalePartials(ctx.layout, version, ctx.log);
  const transfer: TransferOptions = {
    headers: authHeadersFor(artifactUrl, ctx),
    dispatcher: ctx.dispatcher,
    headersTimeoutMs: ctx.downloadHeadersTimeoutMs,
    bodyIdleTimeoutMs: ctx.downloadIdleTimeoutMs,
    totalTimeoutMs: ctx.downloadTimeoutMs,
    statfs: ctx.statfs,
  };
  try {
    const attempt = await attemptDelta(entry, artifactUrl, version, ctx, transfer, onProgress);
    const chunks = attempt.index
      ? { chunked: chunkedFromIndex(attempt.index), params: chunkingParamsOf(attempt.index) }
      : undefined;
    if (attempt.kind === 'delta') {
      const { result } = attempt;
      // A whole download of this release that an earlier attempt left half done is not needed now.
      await discardPartial(partialDownloadPath(ctx.layout, version, ctx.platform));
      ctx.log.info(
        {
          event: 'worker_update_downloaded',
          correlation_id: ctx.correlationId,
          to_version: version,
          bytes: entry.size,
          mode: 'delta',
          bytes_fetched: attempt.indexBytes + result.fetchedBytes,
          index_bytes: attempt.indexBytes,
          reused_bytes: result.reusedBytes,
          ranges: result.ranges,
          resumed_from_bytes: result.resumedFromBytes,
        },
        `artifact assembled from ${result.reusedBytes} local and ${result.fetchedBytes} fetched bytes, and verified`,
      );
      const download = { mode: 'delta' as const, bytes_fetched: attempt.indexBytes + result.fetchedBytes };
      return { path: result.path, verified: result.verified, download, ...(chunks ? { chunks } : {}) };
    }
    const result = await downloadArtifact({
      ...transfer,
      url: artifactUrl,
      partialPath: partialDownloadPath(ctx.layout, version, ctx.platform),
      sha256: entry.sha256,
      size: entry.size,
      onProgress,
    });
    ctx.log.info(
      {
        event: 'worker_update_downloaded',
        correlation_id: ctx.correlationId,
        to_version: version,
        bytes: entry.size,
        mode: 'full',
        bytes_fetched: attempt.indexBytes + result.fetchedBytes,
        index_bytes: attempt.indexBytes,
        delta_fallback: attempt.reason,
        resumed_from_bytes: result.resumedFromBytes,
      },
      'artifact downloaded and verified',
    );
    return {
      path: result.path,
      verified: result.verified,
      download: { mode: 'full', bytes_fetched: attempt.indexBytes + result.fetchedBytes, delta_fallback: attempt.reason },
      ...(chunks ? { chunks } : {}),
    };
  } finally {
    bar?.done();
  }
}

/** The chunks a verified index lists, as a cut file: the same as cutting the file it describes. */
function chunkedFromIndex(index: SignedChunkIndex): ChunkedFile {
  return { chunks: chunksFromLengths(index.chunk_lengths, index.chunk_sha256), sha256: index.artifact_sha256, size: index.artifact_size };
}

/** The hand-over to the supervisor: `run` exits with the restart code and the supervisor reads this. */
async function recordPendingSwitch(ctx: UpdaterContext, version: string, serial: number, download?: DownloadSummary): Promise<void> {
  await updateState(ctx.layout, (state) => {
    state.pending_switch = {
      to_version: version,
      from_version: ctx.currentVersion,
      correlation_id: ctx.correlationId,
      channel: ctx.channel,
      // The supervisor's success and rollback reports name the serial too.
      serial,
      ...(download ? { download } : {}),
    };
  });
}

/**
 * Applying the update (docs/protocol.md, section 4): stage the verified download as `versions/<version>` and record
 * `pending_switch` in state.json. It does not touch `current`: the supervisor switches, after the
 * worker exits with the restart code, and rolls back if the new version does not become ready.
 */
export async function applyUpdate(
  downloaded: DownloadedUpdate,
  entry: ArtifactEntry,
  release: { version: string; serial: number },
  ctx: UpdaterContext,
): Promise<{ version: string }> {
  const { path, verified } = downloaded;
  const { version } = release;
  ctx.onProgress?.({ to_version: version, state: 'staging' });
  try {
    await stageVersion({
      layout: ctx.layout,
      sourcePath: path,
      version,
      sha256: entry.sha256,
      size: entry.size,
      selfTestTimeoutMs: ctx.selfTestTimeoutMs,
      moveSource: true,
      verified,
      ...(downloaded.chunks ? { chunks: downloaded.chunks } : {}),
    });
  } finally {
    await discardPartial(path);
  }
  await recordPendingSwitch(ctx, version, release.serial, downloaded.download);
  ctx.log.info(
    { event: 'worker_update_staged', correlation_id: ctx.correlationId, from_version: ctx.currentVersion, to_version: version },
    'update staged; restart into it pending',
  );
  return { version };
}

/**
 * One whole update attempt under `update.lock`: check, download, apply. Returns `staged` when a
 * new version waits in `versions/` with `pending_switch` set, or the harmless outcome of the
 * check. Throws UpdateError with the reason code (UpdateInProgressError when another update
 * holds the lock). The lock is released on every path.
 */
export async function runUpdateOnce(
  ctx: UpdaterContext,
): Promise<{ kind: 'staged'; version: string; serial: number } | Exclude<UpdateCheck, { kind: 'available' }>> {
  const release = await acquireUpdateLock(ctx.layout);
  let toVersion: string | undefined;
  try {
    const check = await checkForUpdate(ctx);
    if (check.kind !== 'available') return check;
    const { signed, entry, artifactUrl } = check;
    toVersion = signed.version;
    ctx.log.info(
      {
        event: 'worker_update_available',
        correlation_id: ctx.correlationId,
        from_version: ctx.currentVersion,
        to_version: signed.version,
        channel: ctx.channel,
        serial: signed.serial,
      },
      'update available',
    );
    // A version already installed with the same bytes (a signed fleet rollback to it) needs no download.
    const installed = await readCompleteMark(ctx.layout, signed.version);
    if (installed?.sha256 === entry.sha256 && (await isCompleteVersion(ctx.layout, signed.version))) {
      await recordPendingSwitch(ctx, signed.version, signed.serial);
    } else {
      const downloaded = await downloadUpdate(entry, artifactUrl, signed.version, ctx);
      ctx.onProgress?.({ to_version: signed.version, state: 'verifying' });
      await applyUpdate(downloaded, entry, signed, ctx);
    }
    await rememberEtag(ctx, check.etag);
    return { kind: 'staged', version: signed.version, serial: signed.serial };
  } catch (err) {
    // The heartbeat says what the report says: the same reason code, whatever failed.
    if (toVersion !== undefined) {
      ctx.onProgress?.({ to_version: toVersion, state: 'failed', reason: failureReasonOf(err) });
    }
    ctx.log.debug({ correlation_id: ctx.correlationId, err: errorMessage(err) }, 'update attempt ended with an error');
    throw err;
  } finally {
    await release();
  }
}
