/**
 * Version 2: a counter that every change to `tokens` or `pool_policies` increments, from any
 * connection or process (a trigger runs inside the writer's own transaction). The server keeps
 * tokens and pool policies in memory and re-reads this one row to learn, within a millisecond,
 * that a `token revoke` run elsewhere has made its copies stale (docs/server.md, "Auth cache").
 */
export const sql = `
CREATE TABLE auth_epoch (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  n INTEGER NOT NULL
);
INSERT INTO auth_epoch (id, n) VALUES (1, 0);

CREATE TRIGGER tokens_inserted AFTER INSERT ON tokens BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER tokens_updated AFTER UPDATE ON tokens BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER pool_policies_inserted AFTER INSERT ON pool_policies BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER pool_policies_updated AFTER UPDATE ON pool_policies BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER pool_policies_deleted AFTER DELETE ON pool_policies BEGIN UPDATE auth_epoch SET n = n + 1 WHERE id = 1; END;
`;
