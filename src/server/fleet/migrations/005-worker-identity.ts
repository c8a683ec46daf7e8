/**
 * Version 5: per-worker identity (docs/schema.md, "Worker identity"). Only new tables, indexes and
 * triggers: a server of version 4 still running on this database during an upgrade sees nothing
 * change in the tables it knows.
 * - `enrollment_tokens`: admin-made, pool-bound, optionally expiring or limited in uses; `uses`
 *   is incremented in the same transaction that creates the credential it paid for.
 * - `worker_credentials`: one row per credential ever issued. A partial unique index allows at
 *   most one live (unrevoked) credential per worker id, so two enrollments racing for one id
 *   cannot both win, whatever process serves them.
 * - The triggers increment `auth_epoch` (migration 2), so that every server process drops its
 *   cached credentials within a millisecond of a revocation made anywhere.
 */
export const sql = `
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  pool TEXT NOT NULL,
  secret_sha256 BLOB NOT NULL,
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
  secret_sha256 BLOB NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('enroll', 'claim')),
  source_token_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_from TEXT,
  revoked_at TEXT,
  revoked_by TEXT
);
CREATE UNIQUE INDEX worker_credentials_live ON worker_credentials (worker_id) WHERE revoked_at IS NULL;
CREATE INDEX worker_credentials_by_worker ON worker_credentials (worker_id, created_at);

CREATE TRIGGER worker_credentials_inserted AFTER INSERT ON worker_credentials BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER worker_credentials_updated AFTER UPDATE ON worker_credentials BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER worker_credentials_deleted AFTER DELETE ON worker_credentials BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
`;
