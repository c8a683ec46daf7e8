/**
 * Version 3: the highest manifest serial the server has verified and served, per channel. It is
 * the server's rollback floor: a release store put back to an older, validly signed manifest is
 * refused after a restart too, not only while the process that saw the newer one runs.
 */
export const sql = `
CREATE TABLE served_serials (
  channel TEXT PRIMARY KEY,
  highest_serial INTEGER NOT NULL CHECK (highest_serial >= 1),
  updated_at TEXT NOT NULL
);
`;
