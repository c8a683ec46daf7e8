import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';

/**
 * A pass-through HTTP proxy in front of a real server that can hold back requests to one path,
 * before the server sees them or after it has answered, and `drop()` then resets their
 * connections: what a worker sees when the server dies before handling a request, or after
 * committing it but before its answer left. Used to put a kill -9 (of the worker or of the
 * server) inside a window that is otherwise a few microseconds wide.
 */
export interface HoldingProxy {
  url: string;
  /**
   * Requests to paths starting with `prefix` are held from now on, until `release()`: `before`
   * the server (it never sees them) or `after` it (it handled them; the answer is withheld).
   */
  hold(prefix: string, when?: 'before' | 'after'): void;
  release(): void;
  /** How many requests are being held. */
  held(): number;
  /** Reset the connections of the held requests. */
  drop(): void;
  close(): Promise<void>;
}

async function bodyOf(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function startHoldingProxy(target: string): Promise<HoldingProxy> {
  let holding: { prefix: string; when: 'before' | 'after' } | null = null;
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const hold = holding !== null && req.url?.startsWith(holding.prefix) ? holding.when : null;
      if (hold === 'before') {
        held.push(res);
        req.resume();
        return;
      }
      const body = await bodyOf(req);
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type', 'x-request-id', 'if-none-match', 'range', 'if-range', 'x-bytebiota-force-update', 'accept']) {
        const value = req.headers[name];
        if (typeof value === 'string') headers[name] = value;
      }
      try {
        const upstream = await request(new URL(req.url ?? '/', target), {
          method: (req.method ?? 'GET') as 'GET',
          headers,
          ...(body.length > 0 ? { body } : {}),
        });
        if (hold === 'after') {
          await upstream.body.dump();
          held.push(res);
          return;
        }
        const out: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(upstream.headers)) {
          if (value !== undefined && !['connection', 'transfer-encoding', 'content-length', 'keep-alive'].includes(name)) out[name] = value;
        }
        res.writeHead(upstream.statusCode, out);
        for await (const chunk of upstream.body) res.write(chunk);
        res.end();
      } catch {
        res.socket?.destroy();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    hold: (prefix, when = 'before') => {
      holding = { prefix, when };
    },
    release: () => {
      holding = null;
    },
    held: () => held.length,
    drop: () => {
      for (const res of held.splice(0)) res.socket?.destroy();
    },
    close: async () => {
      for (const res of held.splice(0)) res.socket?.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
