import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A load balancer in front of several server replicas, as operators put one: each new TCP
 * connection goes to the next backend in turn, and a backend that refuses the connection (a dead
 * replica) is skipped for the next one. Connections already open to a replica that dies are cut,
 * as a real balancer's are.
 */
export interface TcpBalancer {
  url: string;
  /** Connections sent to each backend so far, by its URL. */
  connections: Map<string, number>;
  close(): Promise<void>;
}

export async function startTcpBalancer(backendUrls: readonly string[]): Promise<TcpBalancer> {
  const backends = backendUrls.map((url) => new URL(url));
  const connections = new Map(backendUrls.map((url) => [url, 0]));
  const open = new Set<Socket>();
  let next = 0;

  const forward = (client: Socket, tried: number): void => {
    if (tried >= backends.length) {
      client.destroy();
      return;
    }
    const index = next++ % backends.length;
    const backend = backends[index]!;
    const upstream = connect(Number(backend.port), backend.hostname);
    open.add(upstream);
    upstream.once('close', () => open.delete(upstream));
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      connections.set(backendUrls[index]!, (connections.get(backendUrls[index]!) ?? 0) + 1);
      client.pipe(upstream).pipe(client);
      client.resume();
      upstream.once('close', () => client.destroy());
      client.once('close', () => upstream.destroy());
    });
    upstream.once('error', (err: NodeJS.ErrnoException) => {
      if (!connected && err.code === 'ECONNREFUSED') forward(client, tried + 1);
      else client.destroy();
    });
  };

  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    open.add(client);
    client.once('close', () => open.delete(client));
    client.on('error', () => undefined);
    forward(client, 0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('balancer has no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    connections,
    close: async () => {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
