/**
 * Version 9: leases (docs/server.md, "Several replicas") and rolling upgrades. New tables only: a
 * server of version 8 that is running carries on unchanged, though one that (re)starts refuses
 * the database (version 8 refused every newer schema; from this version on, schema_readers says).
 * - `fleet_leases`: who does the fleet-wide work (rollout evaluation, fleet gauges, retention)
 *   until when. A server on SQLite is alone and always holds them; the table is here so that the
 *   two stores keep one schema and a copy into PostgreSQL carries it.
 * - `schema_readers`: the oldest schema version a server may know and still run on this database
 *   (schema-compat.ts). Servers from version 9 on check it; older ones refuse any newer schema.
 */
export const sql = `
CREATE TABLE fleet_leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at TEXT NOT NULL
);

CREATE TABLE schema_readers (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  oldest_reader INTEGER NOT NULL
);
INSERT INTO schema_readers (id, oldest_reader) VALUES (1, 9);
`;
