/**
 * The benchmark's file server in its own process, so that the client being measured (curl, or
 * the worker's fetcher) never shares a thread with it. Prints its URL on the first line and
 * serves until stdin closes. Usage: download-server <url-path>=<file>...
 */
import { startEngineUpdateServer } from '../test/helpers/engine-update-server.js';

const server = await startEngineUpdateServer();
for (const pair of process.argv.slice(2)) {
  const [urlPath, filePath] = pair.split('=');
  if (!urlPath || !filePath) {
    console.error(`expected <url-path>=<file>, got ${pair}`);
    process.exit(2);
  }
  server.artifacts.set(urlPath, { filePath, etag: `"${urlPath}"` });
}
console.log(server.url);
process.stdin.resume();
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
