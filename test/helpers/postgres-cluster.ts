import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { until } from './wait.js';

/**
 * A throwaway PostgreSQL cluster for one test file or benchmark: `initdb` into a temp folder, a
 * server on a free loopback port, removed by `stop()`. The server binaries come from Debian's
 * PostgreSQL packages, which keep them under /usr/lib/postgresql/<major>/bin, off PATH
 * (scripts/system-deps.mjs installs them). initdb refuses to run as root, so as root the cluster
 * belongs to the `postgres` user the package creates.
 */
export interface PostgresCluster {
  /** `postgres://` URL of the cluster's `postgres` database. */
  readonly adminUrl: string;
  /** A new empty database; its URL. */
  createDatabase(name?: string): Promise<string>;
  /** The server's process id now (its children are the connections' backends). */
  readonly pid: number;
  /** Kill the server with SIGKILL, as a crash or an outage would (the data stays). */
  kill(): Promise<void>;
  /** Start the server again on the same data and port (after kill). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const USER = 'bytebiota';

/** The folder holding initdb and postgres: $BYTEBIOTA_PG_BIN, else the newest Debian major. */
export function postgresBinDir(): string {
  const fromEnv = process.env['BYTEBIOTA_PG_BIN'];
  if (fromEnv) return fromEnv;
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((name) => /^\d+$/.test(name) && existsSync(join(root, name, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors.length === 0) {
    throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run `npm test` once as root, or apt-get install postgresql');
  }
  return join(root, majors[0]!, 'bin');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** As root: the uid and gid of the `postgres` user; otherwise null (run as ourselves). */
function clusterOwner(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) throw new Error('running as root, and there is no `postgres` user to own the test cluster (apt-get install postgresql creates it)');
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

let databaseCount = 0;

export async function startPostgresCluster(options: { settings?: Record<string, string> } = {}): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  const owner = clusterOwner();
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-pg-'));
  if (owner) await chown(dir, owner.uid, owner.gid);
  const asOwner = owner ? { uid: owner.uid, gid: owner.gid } : {};
  const data = join(dir, 'data');
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', USER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    ...asOwner,
    encoding: 'utf8',
  });
  if (init.status !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr}`);
  }

  const settings = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    max_connections: '200',
    // A test cluster: nothing is kept after it stops, so its own crash safety is not needed.
    // (Durability tests kill the server process, never PostgreSQL.)
    fsync: 'off',
    full_page_writes: 'off',
    ...options.settings,
  };
  let stderr = '';
  /** Start postgres on `port`; null when it exited (the port was taken, say). */
  const launch = async (port: number): Promise<ChildProcess | null> => {
    const args = ['-D', data, '-p', String(port), ...Object.entries(settings).flatMap(([key, value]) => ['-c', `${key}=${value}`])];
    const started = spawn(join(bin, 'postgres'), args, { ...asOwner, stdio: ['ignore', 'ignore', 'pipe'] });
    stderr = '';
    started.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    const ready = await until(
      'postgres to accept connections',
      async () => {
        if (started.exitCode !== null || started.signalCode !== null) return 'exited';
        const client = new pg.Client({ host: '127.0.0.1', port, user: USER, database: 'postgres' });
        try {
          await client.connect();
          await client.end();
          return 'ready';
        } catch {
          await client.end().catch(() => undefined);
          return null;
        }
      },
      30_000,
      50,
    );
    return ready === 'ready' ? started : null;
  };
  let child: ChildProcess | null = null;
  let port = 0;
  // A port found free may be taken before postgres binds it: try another.
  for (let attempt = 0; attempt < 5 && child === null; attempt += 1) {
    port = await freePort();
    child = await launch(port);
  }
  if (child === null) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`postgres did not start: ${stderr}`);
  }
  let running: ChildProcess = child;
  // A test process that dies without stop() must not leave a server behind.
  const killOnExit = () => running.kill('SIGKILL');
  process.on('exit', killOnExit);
  const adminUrl = `postgres://${USER}@127.0.0.1:${port}/postgres`;

  const kill = async () => {
    if (running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  return {
    adminUrl,
    get pid() {
      return running.pid!;
    },
    kill,
    async restart() {
      await kill();
      // The killed postmaster's children notice and exit; until they have, the port or the
      // shared memory may still be held: try again for a while.
      const again = await until('postgres to start again', () => launch(port), 30_000, 200);
      running = again;
    },
    async createDatabase(name?: string) {
      databaseCount += 1;
      const database = name ?? `fleet_${process.pid}_${databaseCount}`;
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${database}"`);
      } finally {
        await client.end();
      }
      return `postgres://${USER}@127.0.0.1:${port}/${database}`;
    },
    async stop() {
      process.removeListener('exit', killOnExit);
      if (running.exitCode === null && running.signalCode === null) {
        const exited = new Promise((resolve) => running.once('exit', resolve));
        // SIGQUIT: immediate shutdown; the data is thrown away anyway.
        running.kill('SIGQUIT');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
