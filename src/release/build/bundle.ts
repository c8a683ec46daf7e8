import { dirname, resolve } from 'node:path';
import { build, type Message } from 'esbuild';
import { CodedError } from '../../shared/errors.js';
import { BUILD_INFO_DEFINE, type BuildInfo } from './build-info.js';

export interface BundleWorkerOptions {
  /** TypeScript/JavaScript entry point of the worker. */
  entry: string;
  /** Where the single CommonJS file is written. */
  outFile: string;
  /** Embedded as the global constant BUILD_INFO_DEFINE. */
  buildInfo: BuildInfo;
}

function formatMessage(message: Message): string {
  const where = message.location
    ? `${message.location.file}:${message.location.line}:${message.location.column}: `
    : '';
  return `${where}${message.text}`;
}

function hasMessages(err: unknown): err is { errors: Message[]; warnings: Message[] } {
  return typeof err === 'object' && err !== null && Array.isArray((err as { errors?: unknown }).errors);
}

/**
 * Bundle the worker and every dependency into one CommonJS file.
 *
 * CommonJS because a Node 20 SEA can only run a CommonJS main script, and that script's
 * require() loads built-in modules only: nothing may stay external. The consequences for the
 * bundled code: no top-level await, no native addons, no files loaded by path at runtime.
 *
 * Warnings fail the build. The warnings esbuild gives for this output are runtime bugs in
 * waiting (e.g. `import.meta` "will be empty" in CommonJS), and a release artifact must not
 * carry them silently.
 */
export async function bundleWorker(options: BundleWorkerOptions): Promise<void> {
  const entry = resolve(options.entry);
  let warnings: Message[];
  try {
    const result = await build({
      entryPoints: [entry],
      // The bundle's path comments are relative to this; the entry's own directory keeps them
      // the same whatever directory the release tool is started from.
      absWorkingDir: dirname(entry),
      outfile: resolve(options.outFile),
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      // Not minified: stack traces from the field should stay readable.
      minify: false,
      define: { [BUILD_INFO_DEFINE]: JSON.stringify(options.buildInfo) },
      logLevel: 'silent',
      write: true,
    });
    warnings = result.warnings;
  } catch (err) {
    const details = hasMessages(err) ? err.errors.map(formatMessage).join('\n') : String(err);
    throw new CodedError('bundle_failed', `esbuild could not bundle ${options.entry}:\n${details}`, { cause: err });
  }
  if (warnings.length > 0) {
    throw new CodedError(
      'bundle_failed',
      `esbuild warned while bundling ${options.entry}; each would be a runtime bug in the executable:\n` +
        warnings.map(formatMessage).join('\n'),
    );
  }
}
