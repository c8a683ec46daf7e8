import type { PoolPolicy } from '../../protocol/messages.js';
import type { CredentialRecord, TokenRecord } from './fleet-store.js';

export interface AuthReadCacheOptions {
  /** Reads the database's auth epoch (migration 2): it changes whenever a token or policy does. */
  readEpoch: () => number;
  /** Re-read the epoch at most this often; the longest a change made elsewhere goes unseen. */
  recheckMs?: number;
  /** Entries kept per map; past this the oldest goes, so unknown ids cannot grow memory. */
  maxEntries?: number;
  /** Monotonic milliseconds; `performance.now` unless a test passes its own. */
  nowMs?: () => number;
}

export const DEFAULT_AUTH_RECHECK_MS = 1;
/**
 * Enough for every worker credential of a large fleet on one server (a credential per worker,
 * each looked up at every heartbeat): a cache smaller than the fleet would miss on nearly every
 * request. About 100 MB at the most.
 */
export const DEFAULT_AUTH_CACHE_ENTRIES = 250_000;

/**
 * Tokens, worker credentials and pool policies kept in memory, so that a request's auth and policy lookups cost a
 * map lookup instead of two SQLite reads. Unknown token ids are remembered too (a flood of bad
 * tokens must not reach the database either).
 *
 * Staleness is bounded by the auth epoch: at most every `recheckMs` the cache reads one integer
 * row that every insert, update or delete of a token or policy increments (by trigger, whatever
 * process made it), and drops everything when it moved. A `token revoke` run by an operator
 * therefore takes effect for requests that start 1 ms after it commits. Writes made through this
 * process call `clear()` themselves and take effect at once.
 */
export class AuthReadCache {
  private readonly tokens = new Map<string, TokenRecord | null>();
  private readonly policies = new Map<string, PoolPolicy | null>();
  private readonly credentials = new Map<string, CredentialRecord | null>();
  private epoch: number | null = null;
  private checkedAtMs = Number.NEGATIVE_INFINITY;
  private readonly recheckMs: number;
  private readonly maxEntries: number;
  private readonly nowMs: () => number;

  constructor(private readonly options: AuthReadCacheOptions) {
    this.recheckMs = options.recheckMs ?? DEFAULT_AUTH_RECHECK_MS;
    this.maxEntries = options.maxEntries ?? DEFAULT_AUTH_CACHE_ENTRIES;
    this.nowMs = options.nowMs ?? (() => performance.now());
  }

  token(id: string, load: (id: string) => TokenRecord | null): TokenRecord | null {
    return this.lookup(this.tokens, id, load);
  }

  credential(id: string, load: (id: string) => CredentialRecord | null): CredentialRecord | null {
    return this.lookup(this.credentials, id, load);
  }

  policy(pool: string, load: (pool: string) => PoolPolicy | null): PoolPolicy | null {
    return this.lookup(this.policies, pool, load);
  }

  /** Forget everything (a token or policy was just written through this process). */
  clear(): void {
    this.tokens.clear();
    this.policies.clear();
    this.credentials.clear();
    // Re-read the epoch on the next lookup, so the write's own increment is not mistaken later
    // for a change made elsewhere (harmless, but it would empty the cache once more).
    this.checkedAtMs = Number.NEGATIVE_INFINITY;
  }

  private lookup<T>(map: Map<string, T | null>, key: string, load: (key: string) => T | null): T | null {
    this.dropIfStale();
    const cached = map.get(key);
    if (cached !== undefined) return cached;
    const loaded = load(key);
    // A Map iterates in insertion order: its first key is the oldest entry.
    if (map.size >= this.maxEntries) map.delete(map.keys().next().value!);
    map.set(key, loaded);
    return loaded;
  }

  private dropIfStale(): void {
    const nowMs = this.nowMs();
    if (nowMs - this.checkedAtMs < this.recheckMs) return;
    this.checkedAtMs = nowMs;
    const epoch = this.options.readEpoch();
    if (epoch !== this.epoch) {
      this.tokens.clear();
      this.policies.clear();
      this.credentials.clear();
      this.epoch = epoch;
    }
  }
}
