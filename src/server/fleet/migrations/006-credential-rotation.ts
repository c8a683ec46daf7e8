/**
 * Version 6: credential rotation (docs/protocol.md, section 3). Only new tables, as version 5:
 * a server of version 5 still running on this database sees nothing change in the tables it knows.
 * - `pending_credentials`: a rotated credential issued to a worker but not yet confirmed, at most
 *   one per worker id; the current one stays live until the worker confirms with the new one.
 * - `credential_rotation_requests`: an admin's "rotate this worker's credential now", cleared
 *   when a rotation is confirmed.
 */
export const sql = `
CREATE TABLE pending_credentials (
  worker_id TEXT PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  pool TEXT NOT NULL,
  secret_sha256 BLOB NOT NULL,
  replaces_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_from TEXT
);

CREATE TABLE credential_rotation_requests (
  worker_id TEXT PRIMARY KEY,
  requested_at TEXT NOT NULL,
  requested_by TEXT
);
`;
