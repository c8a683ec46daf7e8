#!/usr/bin/env node
// Builds the fleet console (console/) into dist/console/, which `bytebiota-server serve` serves at
// /console/ (docs/console.md):
//   dist/console/index.html         the page: no inline script or style (the console's CSP forbids them)
//   dist/console/assets/app.js      Preact, uPlot and the page, one ES module
//   dist/console/assets/app.css     uPlot's styles and the page's
// Offline and reproducible: everything comes from node_modules and console/, the same sources give
// the same bytes (no source maps with absolute paths, no timestamps), and nothing is fetched at
// run time.
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'console');
const assetsDir = join(outDir, 'assets');

// index.html names exactly these two files; a page that names anything else would fail under the CSP.
const html = await readFile(join(root, 'console', 'index.html'), 'utf8');
for (const asset of ['/console/assets/app.js', '/console/assets/app.css']) {
  if (!html.includes(asset)) throw new Error(`console/index.html must reference ${asset}`);
}
if (/<style|\sstyle=|<script(?![^>]*\ssrc=)/i.test(html)) throw new Error('console/index.html must have no inline <style>, style="" or inline <script>');

await rm(outDir, { recursive: true, force: true });
await mkdir(assetsDir, { recursive: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ['console/src/main.tsx'],
  outfile: join(assetsDir, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  tsconfig: 'console/tsconfig.json',
  minify: true,
  sourcemap: false,
  // Licences of the bundled libraries stay, gathered at the end of each file.
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
  metafile: true,
});
await copyFile(join(root, 'console', 'index.html'), join(outDir, 'index.html'));

for (const [file, { bytes }] of Object.entries(result.metafile.outputs)) {
  console.log(`${file}  ${(bytes / 1024).toFixed(1)} KiB`);
}
