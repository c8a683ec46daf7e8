/**
 * Version 8: the fleet console (docs/console.md). New tables and indexes only, so a server of the
 * version before runs unchanged on a database migrated by this one.
 * - `console_sessions`: a signed-in console page. Only the SHA-256 of the cookie's secret is kept;
 *   `token_id` is the admin token it was opened with, whose revocation ends it.
 * - `fleet_sample_slots` and `fleet_version_samples`: the version distribution, one sample per
 *   interval across every replica (the first to insert the slot writes the counts).
 * - Indexes for the console's worker table (filters with keyset pagination by worker id) and for
 *   failures by time.
 */
export const sql = `
CREATE TABLE console_sessions (
  id TEXT PRIMARY KEY,
  secret_sha256 BLOB NOT NULL,
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

CREATE INDEX workers_by_pool ON workers (pool, id);
CREATE INDEX workers_by_version ON workers (version, id);
CREATE INDEX workers_by_update_state ON workers (update_state, id);
CREATE INDEX update_events_by_time ON update_events (received_at);
`;
