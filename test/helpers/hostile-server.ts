import { sign } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { canonicalBytes } from '../../src/protocol/canonical-json.js';
import type { SignedRelease } from '../../src/protocol/manifest.js';
import type { PrivateKey } from '../../src/trust/keys.js';

/**
 * An update server that lies. It speaks the worker routes of docs/protocol.md, section 3, well enough for a
 * real worker to register, heartbeat and report, and answers the manifest and artifact routes
 * with whatever a scenario scripts: unsigned or mis-signed manifests, stale serials, bytes of
 * another release, bodies that never end or arrive a few bytes a second. Every report body is
 * kept, so a test can check what the worker told the server about the attack.
 */

/** One answer of `GET /api/worker-updates/latest`: a 200 with these bytes. */
export interface ManifestAnswer {
  body: Buffer;
  /** Send without Content-Length (chunked), so only the client's own byte count can stop it. */
  chunked?: boolean;
}

export type ArtifactAnswer =
  /** These bytes, with a truthful Content-Length. */
  | { kind: 'bytes'; body: Buffer }
  /** A chunked body that never ends: the client must cut it off at the signed size. */
  | { kind: 'endless' }
  /** The right bytes and length, but `bytesPerTick` every `tickMs`: a slow-retrieval attack. */
  | { kind: 'drip'; body: Buffer; bytesPerTick: number; tickMs: number }
  /**
   * The whole body without Range; with `Range: bytes=a-b`, that range honestly, or (the attacks on
   * a differential download) the whole file anyway, or the range with one byte flipped.
   */
  | { kind: 'ranged'; body: Buffer; ranges: 'honest' | 'whole-file' | 'corrupt' };

export interface HostileScenario {
  /** `latest_version` announced by the handshake and heartbeats (a report needs a target version). */
  latestVersion: string | null;
  /** The manifest answer for the n-th manifest request (0-based); the last one repeats. */
  manifests: readonly ManifestAnswer[];
  /** Keyed by the path after `/api/worker-updates/artifacts/` (`<version>/<file>`). */
  artifacts?: Readonly<Record<string, ArtifactAnswer>>;
}

export interface RecordedRequest {
  method: string;
  path: string;
}

export interface HostileServer {
  url: string;
  requests: RecordedRequest[];
  /** Parsed bodies of `POST /api/worker-updates/report`, in arrival order. */
  reports: Record<string, unknown>[];
  /** Resolves with the first report (from the start) that matches; rejects after timeoutMs. */
  waitForReport(match: (report: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

const ARTIFACTS_PREFIX = '/api/worker-updates/artifacts/';
const ENDLESS_CHUNK = Buffer.alloc(16 * 1024, 0x5a);

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes.length }).end(bytes);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

function sendManifest(answer: ManifestAnswer, res: ServerResponse): void {
  const headers: Record<string, string | number> = { 'content-type': 'application/json' };
  if (answer.chunked) {
    res.writeHead(200, headers);
    // Several writes, so the body really arrives in pieces.
    const pieceBytes = 64 * 1024;
    for (let at = 0; at < answer.body.length; at += pieceBytes) res.write(answer.body.subarray(at, at + pieceBytes));
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': answer.body.length }).end(answer.body);
}

function sendEndless(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  let open = true;
  res.on('close', () => (open = false));
  const pump = (): void => {
    // Write until the socket buffer is full, then wait for it to drain: fast, but never unbounded memory.
    while (open && res.write(ENDLESS_CHUNK));
    if (open) res.once('drain', pump);
  };
  pump();
}

function sendDrip(answer: Extract<ArtifactAnswer, { kind: 'drip' }>, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': answer.body.length });
  let sent = 0;
  const timer = setInterval(() => {
    const next = answer.body.subarray(sent, sent + answer.bytesPerTick);
    sent += next.length;
    if (sent >= answer.body.length) {
      clearInterval(timer);
      res.end(next);
    } else {
      res.write(next);
    }
  }, answer.tickMs);
  res.on('close', () => clearInterval(timer));
}

function sendRanged(answer: Extract<ArtifactAnswer, { kind: 'ranged' }>, range: string | undefined, res: ServerResponse): void {
  const match = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
  if (!match || answer.ranges === 'whole-file') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': answer.body.length }).end(answer.body);
    return;
  }
  const start = Number(match[1]);
  const end = Math.min(Number(match[2]), answer.body.length - 1);
  const part = Buffer.from(answer.body.subarray(start, end + 1));
  if (answer.ranges === 'corrupt') part[0] = (part[0] ?? 0) ^ 0xff;
  res
    .writeHead(206, { 'content-type': 'application/octet-stream', 'content-length': part.length, 'content-range': `bytes ${start}-${end}/${answer.body.length}` })
    .end(part);
}

function sendArtifact(answer: ArtifactAnswer | undefined, req: IncomingMessage, res: ServerResponse): void {
  if (answer === undefined) {
    sendJson(res, 404, { error: { code: 'not_found', message: 'no such artifact' } });
    return;
  }
  if (answer.kind === 'ranged') {
    sendRanged(answer, req.headers['range'], res);
  } else if (answer.kind === 'bytes') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': answer.body.length }).end(answer.body);
  } else if (answer.kind === 'endless') {
    sendEndless(res);
  } else {
    sendDrip(answer, res);
  }
}

/** Start a hostile server on 127.0.0.1 with an OS-chosen port. */
export async function startHostileServer(scenario: HostileScenario): Promise<HostileServer> {
  const requests: RecordedRequest[] = [];
  const reports: Record<string, unknown>[] = [];
  const reportWaiters = new Set<() => void>();
  const sockets = new Set<Socket>();
  let manifestRequests = 0;

  const policy = () => ({
    minimum_version: null,
    latest_version: scenario.latestVersion,
    auto_update: true,
    heartbeat_interval_s: 5,
  });

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    requests.push({ method: req.method ?? '', path });
    void (async () => {
      if (req.method === 'POST') {
        const text = await readBody(req);
        if (path === '/api/workers/register') {
          sendJson(res, 200, { ...policy(), recommended_version: null, server_time: new Date().toISOString() });
        } else if (path === '/api/workers/heartbeat') {
          sendJson(res, 200, policy());
        } else if (path === '/api/worker-updates/report') {
          reports.push(JSON.parse(text) as Record<string, unknown>);
          for (const wake of reportWaiters) wake();
          res.writeHead(202).end();
        } else {
          sendJson(res, 404, { error: { code: 'not_found', message: path } });
        }
        return;
      }
      if (req.method === 'GET' && path === '/api/worker-updates/latest') {
        const index = Math.min(manifestRequests, scenario.manifests.length - 1);
        manifestRequests += 1;
        sendManifest(scenario.manifests[index]!, res);
        return;
      }
      if (req.method === 'GET' && path.startsWith(ARTIFACTS_PREFIX)) {
        sendArtifact(scenario.artifacts?.[path.slice(ARTIFACTS_PREFIX.length)], req, res);
        return;
      }
      sendJson(res, 404, { error: { code: 'not_found', message: path } });
    })().catch(() => res.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    reports,
    waitForReport(match, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const found = reports.find(match);
          if (!found) return;
          cleanup();
          resolve(found);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no matching report within ${timeoutMs} ms; received: ${JSON.stringify(reports)}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          reportWaiters.delete(check);
        };
        reportWaiters.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Sign any object as if it were the `signed` part of a manifest, and return the published bytes
 * (RFC 8785). Unlike signManifest it takes objects that break the schema, and signs once per key
 * given, duplicates included: the attacker's tools, not the release tool.
 */
export function signedManifestBytes(signed: unknown, keys: readonly PrivateKey[]): Buffer {
  const message = canonicalBytes(signed);
  const signatures = keys.map((key) => ({ keyid: key.keyid, sig: sign(null, message, key.key).toString('base64') }));
  return canonicalBytes({ signed, signatures });
}

/** A well-formed release of `version` on `channel`, valid for a day from `now`; override any field. */
export function releaseFields(options: {
  version: string;
  serial: number;
  channel?: string;
  now?: Date;
  artifacts: SignedRelease['artifacts'];
}): SignedRelease {
  const now = options.now ?? new Date();
  return {
    _type: 'worker-release',
    schema_version: 1,
    channel: options.channel ?? 'stable',
    serial: options.serial,
    version: options.version,
    released_at: new Date(now.getTime() - 60_000).toISOString(),
    expires: new Date(now.getTime() + 24 * 3600_000).toISOString(),
    artifacts: options.artifacts,
  };
}
