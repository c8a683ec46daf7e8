import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createLogger } from '../src/shared/logger.js';

/**
 * The baselines for `npm run bench:server`: a plain node:http server that serves the same manifest
 * bytes with the same ETag and 304 handling, and nothing else (no auth, logging or metrics).
 * With `--log-each-request` it also writes, for every request, the JSON line the real server
 * writes for a manifest fetch, with the server's own logger (same buffering) to stdout: the
 * ceiling for any server that logs each request. Prints its URL on stderr once listening.
 */
const [manifestPath, option] = process.argv.slice(2);
if (!manifestPath || (option !== undefined && option !== '--log-each-request')) {
  throw new Error('usage: server-plain-baseline.ts MANIFEST_FILE [--log-each-request]');
}
const bytes = readFileSync(manifestPath);
const etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;
const logger = option === '--log-each-request' ? createLogger({ name: 'bytebiota-server', buffered: {} }) : null;

const server = createServer((req, res) => {
  const startedMs = performance.now();
  const notModified = req.headers['if-none-match'] === etag;
  if (notModified) {
    res.writeHead(304, { etag });
    res.end();
  } else {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length, etag });
    res.end(bytes);
  }
  logger?.info(
    {
      correlation_id: randomUUID(),
      event: 'manifest_fetch',
      method: req.method,
      route: '/api/worker-updates/latest',
      status: res.statusCode,
      duration_ms: Math.round((performance.now() - startedMs) * 100) / 100,
      token_id: '0123456789abcdef',
      channel: 'stable',
      platform: 'linux-x64',
      worker_id: 'bench-1',
      current_version: '1.3.0',
      pool: 'bench',
      auto_update: true,
      result: notModified ? 'not_modified' : 'served',
      version: '1.4.0',
      serial: 1,
    },
    'request',
  );
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address && typeof address === 'object') process.stderr.write(`http://127.0.0.1:${address.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
