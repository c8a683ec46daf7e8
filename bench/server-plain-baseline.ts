import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

/**
 * The baseline for `npm run bench:server`: a plain node:http server that serves the same manifest
 * bytes with the same ETag and 304 handling, and nothing else (no auth, logging or metrics).
 * Prints its URL on stdout once listening.
 */
const manifestPath = process.argv[2];
if (!manifestPath) throw new Error('usage: server-plain-baseline.ts MANIFEST_FILE');
const bytes = readFileSync(manifestPath);
const etag = `"${createHash('sha256').update(bytes).digest('hex')}"`;

const server = createServer((req, res) => {
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, { etag });
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': bytes.length, etag });
  res.end(bytes);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address && typeof address === 'object') process.stdout.write(`http://127.0.0.1:${address.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
