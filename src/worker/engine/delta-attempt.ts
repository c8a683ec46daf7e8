import { join } from 'node:path';
import { chunkingParamsOf, DeltaFallback, maxChunkIndexBytes, type DeltaFallbackReason, type SignedChunkIndex } from '../../protocol/chunk-index.js';
import type { ArtifactEntry } from '../../protocol/manifest.js';
import { errorMessage } from '../../shared/errors.js';
import { readCompleteMark } from '../install/installer.js';
import { installedChunks } from '../install/local-chunks.js';
import { verifyChunkIndex } from '../../trust/verify-chunk-index.js';
import { fetchChunkIndex } from './chunk-index-client.js';
import { downloadByChunks, type DeltaResult } from './delta-download.js';
import { discardPartial, type TransferOptions } from './download.js';
import type { UpdaterContext } from './updater.js';

/** Time allowed to fetch a chunk index: it is a few hundred KB. */
const INDEX_TIMEOUT_MS = 30_000;

export type DeltaAttempt = (
  | { kind: 'delta'; result: DeltaResult; index: SignedChunkIndex }
  /** `index` is there when it verified: it still describes the file the full download will fetch. */
  | { kind: 'fallback'; reason: DeltaFallbackReason; index?: SignedChunkIndex }
) & {
  /** The index's bytes, fetched whether or not it was usable: they count as fetched. */
  indexBytes: number;
};

export function deltaPartialPath(ctx: UpdaterContext, version: string): string {
  return join(ctx.layout.tmpDir, `${version}-${ctx.platform}.delta.partial`);
}

/**
 * The differential download (docs/protocol.md, section 8): the new artifact's signed chunk index,
 * the installed version's chunks (cached since it was staged), and only the missing byte ranges.
 * Any reason it cannot be done is a fallback, logged once with its reason
 * (`worker_delta_fallback`), and the caller downloads the whole artifact; never a failed update.
 * A broken connection, an HTTP error or a full disk are not fallbacks: they throw, as a full
 * download's would, and the assembled prefix is kept for the next attempt.
 */
export async function attemptDelta(
  entry: ArtifactEntry,
  artifactUrl: string,
  version: string,
  ctx: UpdaterContext,
  transfer: TransferOptions,
  onProgress: (fetchedBytes: number, bytesToFetch: number) => void,
): Promise<DeltaAttempt> {
  let index: SignedChunkIndex | undefined;
  let indexBytes = 0;
  try {
    const fetched = await fetchChunkIndex({
      artifactUrl,
      callerHeaders: transfer.headers,
      dispatcher: transfer.dispatcher,
      timeoutMs: INDEX_TIMEOUT_MS,
      maxBytes: maxChunkIndexBytes(entry.size),
    });
    indexBytes = fetched.length;
    index = verifyChunkIndex(fetched, {
      trustedKeys: ctx.trustedKeys,
      threshold: ctx.threshold,
      version,
      platform: ctx.platform,
      sha256: entry.sha256,
      size: entry.size,
    });
    const mark = await readCompleteMark(ctx.layout, ctx.currentVersion).catch(() => null);
    if (!mark) throw new DeltaFallback('local_unreadable', `the running version ${ctx.currentVersion} is not a complete version of this install`);
    let local;
    try {
      local = await installedChunks(ctx.layout, ctx.currentVersion, mark.sha256, chunkingParamsOf(index));
    } catch (err) {
      throw new DeltaFallback('local_unreadable', `could not read the installed ${ctx.currentVersion}: ${errorMessage(err)}`, { cause: err });
    }
    const result = await downloadByChunks({
      ...transfer,
      url: artifactUrl,
      partialPath: deltaPartialPath(ctx, version),
      index,
      local: { path: ctx.layout.executablePath(ctx.currentVersion), chunked: local.chunked },
      onProgress,
    });
    return { kind: 'delta', result, index, indexBytes };
  } catch (err) {
    if (!(err instanceof DeltaFallback)) throw err;
    // The whole artifact comes next: what an earlier differential attempt assembled is not needed.
    await discardPartial(deltaPartialPath(ctx, version));
    // A missing index is the normal case for older releases: info; anything else may be an attack
    // or a broken mirror, and an operator should see it.
    const level = err.code === 'index_missing' || err.code === 'delta_not_smaller' ? 'info' : 'warn';
    ctx.log[level](
      { event: 'worker_delta_fallback', correlation_id: ctx.correlationId, to_version: version, reason: err.code, detail: err.message },
      `differential download not possible (${err.code}); downloading the whole artifact`,
    );
    return { kind: 'fallback', reason: err.code, indexBytes, ...(index ? { index } : {}) };
  }
}
