import { UsageError } from '../../shared/errors.js';
import type { FleetStore } from './fleet-store.js';
import { SqliteFleetStore, type SqliteFleetStoreOptions } from './sqlite-fleet-store.js';

/**
 * The fleet store named by `--db`: a SQLite file path (the embedded default) or a
 * `postgres://` URL. PostgreSQL needs its own implementation of FleetStore; until it exists the
 * URL is refused at start with a clear configuration error rather than half-working.
 */
export function openFleetStore(location: string, options: SqliteFleetStoreOptions = {}): FleetStore {
  if (/^postgres(ql)?:\/\//i.test(location)) {
    throw new UsageError('PostgreSQL fleet databases are not supported yet; use a SQLite file path for --db');
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new UsageError(`--db must be a SQLite file path or a postgres:// URL, not ${location.split('://')[0]}://`);
  }
  if (location.trim() === '') throw new UsageError('--db must not be empty');
  return new SqliteFleetStore(location, options);
}
