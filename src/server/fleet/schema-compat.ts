import { FleetStoreError } from './fleet-store.js';

/**
 * Rolling upgrades (docs/schema.md, "Rolling upgrades"): while replicas of two versions share one
 * database, the older one keeps running on a schema the newer one migrated, as long as every
 * migration it does not know only expanded the schema. `schema_readers.oldest_reader` is the
 * oldest schema version a server may know and still run on this database: migrations that only
 * add leave it alone, and a migration that drops or changes what older servers read (a contract
 * step, shipped a release after the servers stopped reading it) raises it to its own version.
 */
export function checkSchemaReadable(applied: Iterable<number>, newestKnown: number, oldestReader: number | null): void {
  const unknown = [...applied].filter((version) => version > newestKnown);
  if (unknown.length === 0) return;
  if (oldestReader !== null && oldestReader <= newestKnown) return;
  throw new FleetStoreError(
    'database_schema_newer',
    `database schema version ${Math.max(...unknown)} is newer than this server knows (${newestKnown})` +
      (oldestReader !== null ? ` and needs a server that knows version ${oldestReader} at least` : '') +
      '; upgrade the server',
  );
}

/** What a migration that raises `oldest_reader` runs after its own SQL; `?`/`$1` is its version. */
export const RAISE_OLDEST_READER_SQLITE = 'UPDATE schema_readers SET oldest_reader = MAX(oldest_reader, ?) WHERE id = 1';
export const RAISE_OLDEST_READER_POSTGRES = 'UPDATE schema_readers SET oldest_reader = GREATEST(oldest_reader, $1) WHERE id = 1';
