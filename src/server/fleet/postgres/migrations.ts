import type { Migration } from '../migrations/index.js';

/**
 * The PostgreSQL schema, as migrations of its own (docs/schema.md, "PostgreSQL"). Version 1 is the
 * SQLite schema as of its version 10, in one step; later versions follow the rules of a rolling
 * upgrade, since replicas of the old and the new server run on one database while it lasts:
 * expand first (new tables, new nullable columns, new indexes built CONCURRENTLY where large),
 * and contract (drop what the old version still reads) only in a release after the one that
 * stopped reading it.
 *
 * Columns keep SQLite's names and value forms: times are ISO-8601 UTC text (they sort and compare
 * in time order, and copy across unchanged), flags 0 or 1, JSON as text, hashes as bytes.
 *
 * Triggers keep the two epochs of SQLite (auth_epoch, rollout_epoch) and also notify every
 * replica of exactly which token, credential, policy or rollout changed (channel
 * `bytebiota_fleet`, payload `<kind>:<key>`), so that a replica forgets that one cached entry
 * instead of its whole cache.
 */
const initial = `
-- Worker ids in byte order ("C"), as SQLite orders them, whatever the database's collation: the
-- console pages through workers by id, and searches a prefix as a range of ids.
CREATE TABLE workers (
  id TEXT COLLATE "C" PRIMARY KEY,
  pool TEXT NOT NULL,
  channel TEXT,
  platform TEXT,
  version TEXT NOT NULL,
  state TEXT NOT NULL,
  update_to_version TEXT,
  update_state TEXT,
  update_download_percent DOUBLE PRECISION,
  update_reason TEXT,
  update_at TEXT,
  registered_at TEXT NOT NULL,
  last_seen_at TEXT NOT NULL
) WITH (fillfactor = 70);
-- No index on last_seen_at, unlike SQLite: a heartbeat then changes no indexed column (state and
-- last_seen_at only), so PostgreSQL updates the row in place on its page (a HOT update, with the
-- room fillfactor leaves) without touching any index. The queries by last_seen_at count most of
-- the table anyway (the fleet gauges, the console), or run every 10 minutes (retention).
CREATE INDEX workers_by_group ON workers (channel, pool, version);
CREATE INDEX workers_by_pool ON workers (pool, id);
CREATE INDEX workers_by_version ON workers (version, id);
CREATE INDEX workers_by_update_state ON workers (update_state, id);

CREATE TABLE update_events (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  received_at TEXT NOT NULL,
  request_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  pool TEXT NOT NULL,
  event TEXT NOT NULL CHECK (event IN ('attempt', 'success', 'failure', 'rollback')),
  channel TEXT NOT NULL,
  platform TEXT NOT NULL,
  from_version TEXT NOT NULL,
  to_version TEXT NOT NULL,
  reason TEXT,
  duration_ms INTEGER,
  correlation_id TEXT,
  serial INTEGER
);
CREATE INDEX update_events_by_event ON update_events (event, id);
CREATE INDEX update_events_by_worker ON update_events (worker_id, id);
CREATE INDEX update_events_by_rollout ON update_events (channel, serial, received_at);
CREATE INDEX update_events_by_time ON update_events (received_at);
-- A report retried against another replica is stored once (docs/protocol.md, "Reports").
CREATE UNIQUE INDEX update_events_once ON update_events (worker_id, correlation_id, event) WHERE correlation_id IS NOT NULL;

CREATE TABLE pool_policies (
  pool TEXT PRIMARY KEY,
  auto_update INTEGER NOT NULL CHECK (auto_update IN (0, 1)),
  maintenance_windows TEXT,
  updated_at TEXT NOT NULL,
  updated_by_token TEXT NOT NULL
);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  role TEXT NOT NULL CHECK (role IN ('worker', 'admin')),
  pool TEXT,
  secret_sha256 BYTEA NOT NULL,
  label TEXT,
  created_at TEXT NOT NULL,
  revoked_at TEXT,
  CHECK ((role = 'worker') = (pool IS NOT NULL))
);

CREATE TABLE served_serials (
  channel TEXT PRIMARY KEY,
  highest_serial INTEGER NOT NULL CHECK (highest_serial >= 1),
  updated_at TEXT NOT NULL
);

CREATE TABLE rollouts (
  channel TEXT NOT NULL,
  serial INTEGER NOT NULL CHECK (serial >= 1),
  version TEXT NOT NULL,
  manifest BYTEA NOT NULL,
  expires_at TEXT NOT NULL,
  urgent INTEGER NOT NULL CHECK (urgent IN (0, 1)),
  plan TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active', 'paused', 'halted', 'aborted', 'completed', 'superseded')),
  state_reason TEXT,
  state_changed_at TEXT NOT NULL,
  state_changed_by TEXT,
  failures_counted_from TEXT NOT NULL,
  waves_started TEXT NOT NULL,
  started_at TEXT NOT NULL,
  PRIMARY KEY (channel, serial)
);

CREATE TABLE rollout_admissions (
  channel TEXT NOT NULL,
  serial INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  pool TEXT NOT NULL,
  wave INTEGER NOT NULL,
  forced INTEGER NOT NULL CHECK (forced IN (0, 1)),
  admitted_at TEXT NOT NULL,
  PRIMARY KEY (channel, serial, worker_id)
);
CREATE INDEX rollout_admissions_by_worker ON rollout_admissions (worker_id, channel, serial);

CREATE TABLE channel_plans (
  channel TEXT PRIMARY KEY,
  plan TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  updated_by_token TEXT NOT NULL
);

CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  pool TEXT NOT NULL,
  secret_sha256 BYTEA NOT NULL,
  label TEXT,
  max_uses INTEGER CHECK (max_uses IS NULL OR max_uses >= 1),
  uses INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
  expires_at TEXT,
  created_at TEXT NOT NULL,
  created_by TEXT,
  revoked_at TEXT,
  CHECK (max_uses IS NULL OR uses <= max_uses)
);

CREATE TABLE worker_credentials (
  id TEXT PRIMARY KEY,
  worker_id TEXT NOT NULL,
  pool TEXT NOT NULL,
  secret_sha256 BYTEA NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('enroll', 'claim')),
  source_token_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_from TEXT,
  revoked_at TEXT,
  revoked_by TEXT
);
CREATE UNIQUE INDEX worker_credentials_live ON worker_credentials (worker_id) WHERE revoked_at IS NULL;
CREATE INDEX worker_credentials_by_worker ON worker_credentials (worker_id, created_at);

CREATE TABLE pending_credentials (
  worker_id TEXT PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  pool TEXT NOT NULL,
  secret_sha256 BYTEA NOT NULL,
  replaces_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_from TEXT
);

CREATE TABLE credential_rotation_requests (
  worker_id TEXT PRIMARY KEY,
  requested_at TEXT NOT NULL,
  requested_by TEXT
);

CREATE TABLE credential_claim_keys (
  worker_id TEXT PRIMARY KEY,
  credential_id TEXT NOT NULL,
  key_sha256 BYTEA NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE console_sessions (
  id TEXT PRIMARY KEY,
  secret_sha256 BYTEA NOT NULL,
  token_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  created_from TEXT,
  ended_at TEXT
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

CREATE TABLE fleet_sample_slots (
  sampled_at TEXT PRIMARY KEY
);
CREATE TABLE fleet_version_samples (
  sampled_at TEXT NOT NULL,
  channel TEXT NOT NULL,
  version TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (channel, sampled_at, version)
);

-- One replica at a time does the fleet-wide work (rollout evaluation, fleet gauges, retention).
CREATE TABLE fleet_leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at TEXT NOT NULL
);

-- The oldest schema version a server may know and still run on this database (schema-compat.ts).
CREATE TABLE schema_readers (id INTEGER PRIMARY KEY CHECK (id = 1), oldest_reader INTEGER NOT NULL);
INSERT INTO schema_readers (id, oldest_reader) VALUES (1, 1);

CREATE TABLE auth_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
INSERT INTO auth_epoch (id, n) VALUES (1, 0);
CREATE TABLE rollout_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
INSERT INTO rollout_epoch (id, n) VALUES (1, 0);

-- TG_ARGV[0]: the kind of entry; TG_ARGV[1]: its key column. The notification is delivered
-- when (and only if) the writing transaction commits.
CREATE FUNCTION fleet_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed RECORD;
BEGIN
  IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
  UPDATE auth_epoch SET n = n + 1 WHERE id = 1;
  PERFORM pg_notify('bytebiota_fleet', TG_ARGV[0] || ':' || (to_jsonb(changed) ->> TG_ARGV[1]));
  RETURN NULL;
END $$;
CREATE TRIGGER tokens_changed AFTER INSERT OR UPDATE OR DELETE ON tokens
  FOR EACH ROW EXECUTE FUNCTION fleet_auth_changed('token', 'id');
CREATE TRIGGER pool_policies_changed AFTER INSERT OR UPDATE OR DELETE ON pool_policies
  FOR EACH ROW EXECUTE FUNCTION fleet_auth_changed('policy', 'pool');
CREATE TRIGGER worker_credentials_changed AFTER INSERT OR UPDATE OR DELETE ON worker_credentials
  FOR EACH ROW EXECUTE FUNCTION fleet_auth_changed('credential', 'id');

CREATE FUNCTION fleet_rollouts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE rollout_epoch SET n = n + 1 WHERE id = 1;
  PERFORM pg_notify('bytebiota_fleet', 'rollouts:');
  RETURN NULL;
END $$;
CREATE TRIGGER rollouts_changed AFTER INSERT OR UPDATE OR DELETE ON rollouts
  FOR EACH STATEMENT EXECUTE FUNCTION fleet_rollouts_changed();
`;

export const POSTGRES_MIGRATIONS: readonly Migration[] = [{ version: 1, name: 'initial', sql: initial }];
