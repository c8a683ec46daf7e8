import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { UsageError } from '../../shared/errors.js';
import { isPostgresLocation } from '../fleet/open-fleet-store.js';
import { openPostgresFleetStore, redactDatabaseUrl } from '../fleet/postgres/postgres-fleet-store.js';
import { SqliteFleetStore } from '../fleet/sqlite-fleet-store.js';

/**
 * The tables `db copy` carries, parents first, with the columns both schemas share. Left out on
 * purpose: schema_migrations (each store has its own), the epochs (counters of this database's
 * own changes) and fleet_leases (who leads now; replicas take it again within a lease TTL).
 */
const TABLES: ReadonlyArray<{ name: string; columns: readonly string[] }> = [
  { name: 'tokens', columns: ['id', 'role', 'pool', 'secret_sha256', 'label', 'created_at', 'revoked_at'] },
  { name: 'pool_policies', columns: ['pool', 'auto_update', 'maintenance_windows', 'updated_at', 'updated_by_token'] },
  { name: 'served_serials', columns: ['channel', 'highest_serial', 'updated_at'] },
  { name: 'channel_plans', columns: ['channel', 'plan', 'updated_at', 'updated_by_token'] },
  {
    name: 'rollouts',
    columns: [
      'channel', 'serial', 'version', 'manifest', 'expires_at', 'urgent', 'plan', 'state', 'state_reason',
      'state_changed_at', 'state_changed_by', 'failures_counted_from', 'waves_started', 'started_at',
    ],
  },
  { name: 'rollout_admissions', columns: ['channel', 'serial', 'worker_id', 'pool', 'wave', 'forced', 'admitted_at'] },
  {
    name: 'workers',
    columns: [
      'id', 'pool', 'channel', 'platform', 'version', 'state', 'update_to_version', 'update_state',
      'update_download_percent', 'update_reason', 'update_at', 'registered_at', 'last_seen_at',
    ],
  },
  {
    name: 'update_events',
    columns: [
      'id', 'received_at', 'request_id', 'worker_id', 'pool', 'event', 'channel', 'platform', 'from_version',
      'to_version', 'reason', 'duration_ms', 'correlation_id', 'serial',
    ],
  },
  {
    name: 'enrollment_tokens',
    columns: ['id', 'pool', 'secret_sha256', 'label', 'max_uses', 'uses', 'expires_at', 'created_at', 'created_by', 'revoked_at'],
  },
  {
    name: 'worker_credentials',
    columns: ['id', 'worker_id', 'pool', 'secret_sha256', 'source', 'source_token_id', 'created_at', 'created_from', 'revoked_at', 'revoked_by'],
  },
  { name: 'pending_credentials', columns: ['worker_id', 'id', 'pool', 'secret_sha256', 'replaces_id', 'created_at', 'created_from'] },
  { name: 'credential_rotation_requests', columns: ['worker_id', 'requested_at', 'requested_by'] },
  { name: 'credential_claim_keys', columns: ['worker_id', 'credential_id', 'key_sha256', 'created_at'] },
  { name: 'console_sessions', columns: ['id', 'secret_sha256', 'token_id', 'created_at', 'expires_at', 'created_from', 'ended_at'] },
  { name: 'fleet_sample_slots', columns: ['sampled_at'] },
  { name: 'fleet_version_samples', columns: ['sampled_at', 'channel', 'version', 'count'] },
];

/** Rows per INSERT: PostgreSQL takes at most 65,535 parameters in one statement. */
const BATCH_PARAMETERS = 60_000;

/**
 * Reports stored more than once before retried reports were recognised (the same worker,
 * correlation id and event): PostgreSQL keeps one of each (a unique index), the first.
 */
const FIRST_OF_EACH_REPORT = `correlation_id IS NULL OR id = (
  SELECT MIN(e.id) FROM update_events e
  WHERE e.worker_id = update_events.worker_id AND e.correlation_id = update_events.correlation_id AND e.event = update_events.event)`;

type Row = Record<string, unknown>;

/** One row as text that both databases give alike: bytes as hex, numbers as numbers (PostgreSQL gives BIGINT as text). */
function rowKey(columns: readonly string[], row: Row): string {
  return JSON.stringify(
    columns.map((column) => {
      const value = row[column];
      if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
      if (column === 'id' && typeof value === 'string' && /^\d+$/.test(value)) return Number(value);
      return value ?? null;
    }),
  );
}

/** Row count and an order-independent SHA-256 of a table's rows. */
class TableDigest {
  private readonly rowHashes: string[] = [];
  constructor(private readonly columns: readonly string[]) {}
  add(row: Row): void {
    this.rowHashes.push(createHash('sha256').update(rowKey(this.columns, row)).digest('hex'));
  }
  get rows(): number {
    return this.rowHashes.length;
  }
  digest(): string {
    return createHash('sha256').update(this.rowHashes.sort().join('\n')).digest('hex');
  }
}

export interface CopyResult {
  tables: Array<{ table: string; rows: number; sha256: string }>;
  /** Reports left out because an identical retry of them was copied. */
  duplicateReports: number;
}

/**
 * `bytebiota-server db copy --from fleet.sqlite --to postgres://…`: moves a SQLite fleet database
 * into an empty PostgreSQL one (docs/runbooks/move-to-postgres.md), tokens, policies, rollouts,
 * serial floors, workers and events alike, so that no token is issued again and no worker is ever
 * offered a lower serial than before. One transaction: every table is written, then read back and
 * compared with the source (row count and a SHA-256 of its rows), and committed only if all match.
 * The source is brought to the newest schema first, as a server starting on it would, and then
 * only read; stop the server that writes it first.
 */
export async function copyDatabase(from: string, to: string, log: (line: string) => void = () => undefined): Promise<CopyResult> {
  if (isPostgresLocation(from)) throw new UsageError('--from must be the SQLite file to copy from');
  if (!isPostgresLocation(to)) throw new UsageError('--to must be the postgres:// URL of the database to copy into');
  // Opening a SQLite path that does not exist would create an empty database and copy nothing.
  if (!existsSync(from)) throw new UsageError(`--from: no SQLite database at ${from}`);

  // Bring both to the newest schema first (each store migrates when opened).
  await new SqliteFleetStore(from).close();
  await (await openPostgresFleetStore(to)).close();

  const source = new BetterSqlite3(from, { readonly: true, fileMustExist: true });
  const target = new pg.Client({ connectionString: to, application_name: 'bytebiota-db-copy' });
  await target.connect();
  try {
    for (const { name } of TABLES) {
      const found = await target.query(`SELECT 1 FROM ${name} LIMIT 1`);
      if ((found.rowCount ?? 0) > 0) {
        throw new UsageError(`${redactDatabaseUrl(to)} is not empty (table ${name} has rows): copy into a new, empty database`);
      }
    }
    const duplicateReports = source.prepare(`SELECT COUNT(*) FROM update_events WHERE NOT (${FIRST_OF_EACH_REPORT})`).pluck().get() as number;

    await target.query('BEGIN');
    const tables: CopyResult['tables'] = [];
    try {
      for (const table of TABLES) {
        const where = table.name === 'update_events' ? ` WHERE ${FIRST_OF_EACH_REPORT}` : '';
        const read = source.prepare(`SELECT ${table.columns.join(', ')} FROM ${table.name}${where}`);
        const copied = new TableDigest(table.columns);
        const batchRows = Math.floor(BATCH_PARAMETERS / table.columns.length);
        let batch: Row[] = [];
        // Events keep their ids, so their order (newest first in every view) is kept too.
        const overriding = table.name === 'update_events' ? ' OVERRIDING SYSTEM VALUE' : '';
        const flush = async () => {
          if (batch.length === 0) return;
          const values = batch.map((_, r) => `(${table.columns.map((_, c) => `$${r * table.columns.length + c + 1}`).join(', ')})`);
          await target.query(
            `INSERT INTO ${table.name} (${table.columns.join(', ')})${overriding} VALUES ${values.join(', ')}`,
            batch.flatMap((row) => table.columns.map((column) => row[column])),
          );
          batch = [];
        };
        for (const row of read.iterate() as IterableIterator<Row>) {
          copied.add(row);
          batch.push(row);
          if (batch.length >= batchRows) await flush();
        }
        await flush();
        if (table.name === 'update_events') {
          await target.query("SELECT setval(pg_get_serial_sequence('update_events', 'id'), GREATEST((SELECT MAX(id) FROM update_events), 1))");
        }

        const readBack = new TableDigest(table.columns);
        for (const row of (await target.query<Row>(`SELECT ${table.columns.join(', ')} FROM ${table.name}`)).rows) readBack.add(row);
        if (readBack.rows !== copied.rows || readBack.digest() !== copied.digest()) {
          throw new Error(`table ${table.name} did not copy exactly: ${copied.rows} rows read, ${readBack.rows} read back, or their contents differ`);
        }
        tables.push({ table: table.name, rows: copied.rows, sha256: copied.digest() });
        log(`${table.name}: ${copied.rows} rows copied and verified`);
      }
      await target.query('COMMIT');
    } catch (err) {
      await target.query('ROLLBACK');
      throw err;
    }
    return { tables, duplicateReports };
  } finally {
    source.close();
    await target.end();
  }
}
