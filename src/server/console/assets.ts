import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
};

export interface ConsoleAsset {
  body: Buffer;
  contentType: string;
  etag: string;
}

export interface ConsoleAssets {
  index: ConsoleAsset;
  /** By file name under `assets/`. */
  files: Map<string, ConsoleAsset>;
}

function asset(path: string): ConsoleAsset {
  const body = readFileSync(path);
  return {
    body,
    contentType: CONTENT_TYPES[extname(path)] ?? 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"`,
  };
}

/** The package's root folder: the nearest folder above this module with the project's package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'bytebiota') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the bytebiota package folder');
    dir = parent;
  }
}

/** Where `npm run build` writes the console (scripts/build-console.mjs). */
export function defaultConsoleAssetsDir(): string {
  return join(packageRoot(), 'dist', 'console');
}

/**
 * The console's built files, read once at start and served from memory: a few hundred KB, and
 * nothing on disk can change under a running server. Null when the console was not built.
 */
export function loadConsoleAssets(dir: string): ConsoleAssets | null {
  const indexPath = join(dir, 'index.html');
  if (!existsSync(indexPath)) return null;
  const files = new Map<string, ConsoleAsset>();
  const assetsDir = join(dir, 'assets');
  if (existsSync(assetsDir)) {
    for (const entry of readdirSync(assetsDir, { withFileTypes: true })) {
      if (entry.isFile()) files.set(entry.name, asset(join(assetsDir, entry.name)));
    }
  }
  return { index: asset(indexPath), files };
}
