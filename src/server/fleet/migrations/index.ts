import { sql as initial } from './001-initial.js';
import { sql as authEpoch } from './002-auth-epoch.js';
import { sql as servedSerials } from './003-served-serials.js';
import { sql as rollouts } from './004-rollouts.js';
import { sql as workerIdentity } from './005-worker-identity.js';
import { sql as credentialRotation } from './006-credential-rotation.js';
import { sql as claimKeys } from './007-claim-keys.js';
import { sql as fleetConsole } from './008-console.js';
import { sql as replicas } from './009-replicas.js';
import { sql as reportRetries } from './010-report-retries.js';

/**
 * Schema migrations, applied in order at start, each once, each in its own transaction. They are
 * TypeScript string modules (not .sql files) so that they ship inside dist/ and inside a bundled
 * executable without any file lookup. Never edit a released migration: add the next version.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /**
   * A contract step: servers that know only versions before this one must no longer run on the
   * database once it is applied (schema-compat.ts). Absent for migrations that only add.
   */
  contract?: true;
  /**
   * PostgreSQL only: run outside a transaction, for `CREATE INDEX CONCURRENTLY` on a large table
   * (which PostgreSQL refuses inside one). Such a migration must be safe to run again from the
   * start (IF NOT EXISTS), since a failure can leave part of it done.
   */
  outsideTransaction?: true;
}

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial', sql: initial },
  { version: 2, name: 'auth-epoch', sql: authEpoch },
  { version: 3, name: 'served-serials', sql: servedSerials },
  { version: 4, name: 'rollouts', sql: rollouts },
  { version: 5, name: 'worker-identity', sql: workerIdentity },
  { version: 6, name: 'credential-rotation', sql: credentialRotation },
  { version: 7, name: 'claim-keys', sql: claimKeys },
  { version: 8, name: 'console', sql: fleetConsole },
  { version: 9, name: 'replicas', sql: replicas },
  { version: 10, name: 'report-retries', sql: reportRetries },
];
