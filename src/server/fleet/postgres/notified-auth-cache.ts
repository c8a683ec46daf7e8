import type { PoolPolicy } from '../../../protocol/messages.js';
import { DEFAULT_AUTH_CACHE_ENTRIES } from '../auth-read-cache.js';
import type { CredentialRecord, TokenRecord } from '../fleet-store.js';

type Kind = 'token' | 'credential' | 'policy';

/**
 * Tokens, credentials and pool policies of a PostgreSQL fleet store, kept in memory and forgotten
 * one by one as the database notifies their changes (ChangeListener), so that a token revoked on
 * one replica is refused by every replica once the notification arrives (milliseconds after the
 * commit), while every other cached entry stays. While notifications cannot be relied on
 * (`trusted()` false: the listening connection is down), nothing is served from memory.
 *
 * A lookup that was reading the database while any entry was forgotten does not keep its result:
 * it may have read the row before the change.
 */
export class NotifiedAuthCache {
  private readonly maps: Record<Kind, Map<string, unknown>> = { token: new Map(), credential: new Map(), policy: new Map() };
  private changes = 0;

  constructor(private readonly trusted: () => boolean) {}

  token(id: string, load: (id: string) => Promise<TokenRecord | null>): Promise<TokenRecord | null> {
    return this.lookup('token', id, load);
  }

  credential(id: string, load: (id: string) => Promise<CredentialRecord | null>): Promise<CredentialRecord | null> {
    return this.lookup('credential', id, load);
  }

  policy(pool: string, load: (pool: string) => Promise<PoolPolicy | null>): Promise<PoolPolicy | null> {
    return this.lookup('policy', pool, load);
  }

  /** A committed change to one entry (a notification), or a write through this process. */
  forget(kind: string, key: string): void {
    this.changes += 1;
    if (kind === 'token' || kind === 'credential' || kind === 'policy') this.maps[kind].delete(key);
  }

  /** Notifications may have been missed: forget everything. */
  clear(): void {
    this.changes += 1;
    for (const map of Object.values(this.maps)) map.clear();
  }

  private async lookup<T>(kind: Kind, key: string, load: (key: string) => Promise<T | null>): Promise<T | null> {
    const map = this.maps[kind] as Map<string, T | null>;
    if (!this.trusted()) return load(key);
    const cached = map.get(key);
    if (cached !== undefined) return cached;
    const changesBefore = this.changes;
    const loaded = await load(key);
    if (this.changes === changesBefore && this.trusted()) {
      // A Map iterates in insertion order: its first key is the oldest entry.
      if (map.size >= DEFAULT_AUTH_CACHE_ENTRIES) map.delete(map.keys().next().value!);
      map.set(key, loaded);
    }
    return loaded;
  }
}
