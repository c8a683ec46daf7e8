/**
 * Version 10: an index for recognising a retried report (the same worker, correlation id and
 * event; docs/protocol.md, "Reports"). Without it the check before each insert read every event
 * of the worker, which grows with the worker's history. Not unique, unlike PostgreSQL's: a
 * database from before may hold such duplicates already. An index only, so a server of version 9
 * runs unchanged on a database migrated by this one.
 */
export const sql = `
CREATE INDEX update_events_by_correlation ON update_events (worker_id, correlation_id, event) WHERE correlation_id IS NOT NULL;
`;
