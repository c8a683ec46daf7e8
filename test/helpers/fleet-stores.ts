import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FleetStore } from '../../src/server/fleet/fleet-store.js';
import { openFleetStore, type OpenFleetStoreOptions } from '../../src/server/fleet/open-fleet-store.js';
import { startPostgresCluster, type PostgresCluster } from './postgres-cluster.js';

export type StoreKind = 'sqlite' | 'postgres';
/** The fleet stores every conformance test runs against. */
export const STORE_KINDS: readonly StoreKind[] = ['sqlite', 'postgres'];

/**
 * Fresh, empty fleet databases of either kind for one test file: a SQLite file in a temp folder,
 * or a new database on one throwaway PostgreSQL cluster started on first use. `close()` closes
 * every store opened and removes both.
 */
export class TestFleetStores {
  private dir: string | null = null;
  private cluster: Promise<PostgresCluster> | null = null;
  private readonly opened: FleetStore[] = [];
  private count = 0;

  /** A new empty database of `kind`: its `--db` location (a file path or a postgres:// URL). */
  async location(kind: StoreKind): Promise<string> {
    this.count += 1;
    if (kind === 'sqlite') {
      this.dir ??= await mkdtemp(join(tmpdir(), 'bytebiota-stores-'));
      return join(this.dir, `fleet-${this.count}.sqlite`);
    }
    return (await this.postgres()).createDatabase();
  }

  /** The PostgreSQL cluster, started on first use. */
  postgres(): Promise<PostgresCluster> {
    this.cluster ??= startPostgresCluster();
    return this.cluster;
  }

  /** A store on a new empty database of `kind`. */
  async open(kind: StoreKind, options: OpenFleetStoreOptions = {}): Promise<{ store: FleetStore; location: string }> {
    const location = await this.location(kind);
    return { store: await this.reopen(location, options), location };
  }

  /** Another store on an existing database (a second replica, or the same server restarted). */
  async reopen(location: string, options: OpenFleetStoreOptions = {}): Promise<FleetStore> {
    const store = await openFleetStore(location, options);
    this.opened.push(store);
    return store;
  }

  async close(): Promise<void> {
    for (const store of this.opened.splice(0)) await store.close();
    if (this.cluster) await (await this.cluster).stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
