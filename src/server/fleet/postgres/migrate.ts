import type pg from 'pg';
import type { Migration } from '../migrations/index.js';
import { checkSchemaReadable, RAISE_OLDEST_READER_POSTGRES } from '../schema-compat.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';

/** Any fixed number: the advisory lock that lets one replica migrate while the others wait. */
const MIGRATION_LOCK = 0x0b7eb107a;

/**
 * Apply the migrations the database does not have, each in its own transaction, under an
 * advisory lock: replicas starting together migrate once, the others wait and then find nothing
 * to do. A database a newer server migrated is refused unless that server only added to it
 * (schema-compat.ts), as for SQLite.
 */
export async function migratePostgres(client: pg.ClientBase, migrations: readonly Migration[] = POSTGRES_MIGRATIONS): Promise<number[]> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
    const applied = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((row) => row.version));
    const newest = Math.max(0, ...migrations.map((m) => m.version));
    const hasReaders = (await client.query<{ present: boolean }>("SELECT to_regclass('schema_readers') IS NOT NULL AS present")).rows[0]?.present === true;
    const oldestReader = hasReaders
      ? ((await client.query<{ oldest_reader: number }>('SELECT oldest_reader FROM schema_readers WHERE id = 1')).rows[0]?.oldest_reader ?? null)
      : null;
    // A newer server migrated this database: run on it only if it only grew since our newest.
    checkSchemaReadable(applied, newest, oldestReader);
    const done: number[] = [];
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(migration.version)) continue;
      if (migration.outsideTransaction) {
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
          migration.version,
          migration.name,
          new Date().toISOString(),
        ]);
        done.push(migration.version);
        continue;
      }
      await client.query('BEGIN');
      try {
        await client.query(migration.sql);
        if (migration.contract) await client.query(RAISE_OLDEST_READER_POSTGRES, [migration.version]);
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
          migration.version,
          migration.name,
          new Date().toISOString(),
        ]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
      done.push(migration.version);
    }
    return done;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
  }
}
