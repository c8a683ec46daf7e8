/**
 * Version 7: claim keys (docs/protocol.md, section 3). A new table only, as versions 5 and 6.
 * - `credential_claim_keys`: the SHA-256 of the key a worker sent with its claim. A worker whose
 *   claim was committed but whose answer was lost claims again with the same key and gets a new
 *   secret for the same credential, instead of a refusal meant for a second machine.
 */
export const sql = `
CREATE TABLE credential_claim_keys (
  worker_id TEXT PRIMARY KEY,
  credential_id TEXT NOT NULL,
  key_sha256 BLOB NOT NULL,
  created_at TEXT NOT NULL
);
`;
