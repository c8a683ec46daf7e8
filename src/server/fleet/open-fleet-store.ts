import { UsageError } from '../../shared/errors.js';
import type { FleetStore } from './fleet-store.js';
import { openPostgresFleetStore, type PostgresFleetStoreOptions } from './postgres/postgres-fleet-store.js';
import { SqliteFleetStore, type SqliteFleetStoreOptions } from './sqlite-fleet-store.js';

export type OpenFleetStoreOptions = SqliteFleetStoreOptions & PostgresFleetStoreOptions;

/** True when `location` names a PostgreSQL database rather than a SQLite file. */
export function isPostgresLocation(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/**
 * The fleet store named by `--db`: a SQLite file path (the embedded default) or a
 * `postgres://` URL (several replicas on one database, docs/server.md "PostgreSQL"). The
 * PostgreSQL store is opened, connected and migrated before this resolves.
 */
export async function openFleetStore(location: string, options: OpenFleetStoreOptions = {}): Promise<FleetStore> {
  if (isPostgresLocation(location)) return openPostgresFleetStore(location, options);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new UsageError(`--db must be a SQLite file path or a postgres:// URL, not ${location.split('://')[0]}://`);
  }
  if (location.trim() === '') throw new UsageError('--db must not be empty');
  return new SqliteFleetStore(location, options);
}
