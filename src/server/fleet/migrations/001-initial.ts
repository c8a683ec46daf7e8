/** Version 1: workers, update events, pool policies and tokens (docs/schema.md). */
export const sql = `
CREATE TABLE workers (
  id TEXT PRIMARY KEY,
  pool TEXT NOT NULL,
  channel TEXT,
  platform TEXT,
  version TEXT NOT NULL,
  state TEXT NOT NULL,
  update_to_version TEXT,
  update_state TEXT,
  update_download_percent REAL,
  update_reason TEXT,
  update_at TEXT,
  registered_at TEXT NOT NULL,
  last_seen_at TEXT NOT NULL
);
CREATE INDEX workers_by_group ON workers (channel, pool, version);
CREATE INDEX workers_by_last_seen ON workers (last_seen_at);

CREATE TABLE update_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
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
  correlation_id TEXT
);
CREATE INDEX update_events_by_event ON update_events (event, id);
CREATE INDEX update_events_by_worker ON update_events (worker_id, id);

CREATE TABLE pool_policies (
  pool TEXT PRIMARY KEY,
  auto_update INTEGER NOT NULL CHECK (auto_update IN (0, 1)),
  updated_at TEXT NOT NULL,
  updated_by_token TEXT NOT NULL
);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  role TEXT NOT NULL CHECK (role IN ('worker', 'admin')),
  pool TEXT,
  secret_sha256 BLOB NOT NULL,
  label TEXT,
  created_at TEXT NOT NULL,
  revoked_at TEXT,
  CHECK ((role = 'worker') = (pool IS NOT NULL))
);
`;
