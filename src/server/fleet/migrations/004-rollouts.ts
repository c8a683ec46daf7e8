/**
 * Version 4: staged rollouts (docs/schema.md, "Rollouts").
 * - `rollouts`: one per release, keyed by channel and manifest serial, holding the verified
 *   manifest bytes it serves (the release store's history is not trusted), its plan, its state
 *   and when each wave started.
 * - `rollout_admissions`: which workers each rollout has offered its release to. A worker's
 *   highest admitted serial per channel is its floor: it is never offered a lower one.
 * - `rollout_epoch`: incremented by trigger on every change to `rollouts`, from any process, so
 *   a server keeps rollouts in memory and learns of a change made elsewhere with one read.
 * - `channel_plans`: the plan a channel's next rollouts start with.
 * - `update_events.serial`: the rollout a report is about.
 * - `pool_policies.maintenance_windows`: a JSON array of window strings.
 */
export const sql = `
CREATE TABLE rollouts (
  channel TEXT NOT NULL,
  serial INTEGER NOT NULL CHECK (serial >= 1),
  version TEXT NOT NULL,
  manifest BLOB NOT NULL,
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

CREATE TABLE rollout_epoch (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  n INTEGER NOT NULL
);
INSERT INTO rollout_epoch (id, n) VALUES (1, 0);
CREATE TRIGGER rollouts_inserted AFTER INSERT ON rollouts BEGIN UPDATE rollout_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER rollouts_updated AFTER UPDATE ON rollouts BEGIN UPDATE rollout_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER rollouts_deleted AFTER DELETE ON rollouts BEGIN UPDATE rollout_epoch SET n = n + 1 WHERE id = 1; END;

CREATE TABLE channel_plans (
  channel TEXT PRIMARY KEY,
  plan TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  updated_by_token TEXT NOT NULL
);

ALTER TABLE update_events ADD COLUMN serial INTEGER;
CREATE INDEX update_events_by_rollout ON update_events (channel, serial, received_at);

ALTER TABLE pool_policies ADD COLUMN maintenance_windows TEXT;
`;
