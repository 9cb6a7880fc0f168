// One-time DPoP proofs (RFC 9449 §11.1): a proof's jti is recorded for as long as the proof could
// still be accepted, and a second use is refused. Keyed by the proof key's thumbprint and the jti:
// jtis are unique per key, and one client's jtis can never collide with another's.

export type ClaimResult =
  /** first use: accept */
  | 'fresh'
  /** seen before: refuse */
  | 'replayed'
  /** the store cannot tell (full, unreachable, or lost its records and the proof predates that): fail closed */
  | 'unavailable';

export interface ReplayStore {
  /**
   * Records `key` for `ttlMs` unless it is recorded already. `iat` (seconds) is the proof's: a store
   * that lost its records refuses proofs dated before it noticed.
   */
  claim(key: string, ttlMs: number, iat: number): Promise<ClaimResult> | ClaimResult;
  close?(): Promise<void> | void;
}

/** The records of one process: a Map in expiry order, swept from the front. */
export class MemoryReplayStore implements ReplayStore {
  readonly #seen = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(opts: { maxEntries?: number; now?: () => number } = {}) {
    this.#maxEntries = opts.maxEntries ?? 1_000_000;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#seen.size;
  }

  claim(key: string, ttlMs: number): ClaimResult {
    const now = this.#now();
    const until = this.#seen.get(key);
    if (until !== undefined && until > now) return 'replayed';
    // every entry has the same ttl in practice, so insertion order is expiry order: the expired ones
    // are at the front; a shorter ttl only keeps an entry a little longer than needed
    for (const [k, t] of this.#seen) {
      if (t > now) break;
      this.#seen.delete(k);
    }
    // an unbounded map is a memory attack; forgetting an unexpired record would allow a replay
    if (this.#seen.size >= this.#maxEntries) return 'unavailable';
    this.#seen.delete(key);
    this.#seen.set(key, now + ttlMs);
    return 'fresh';
  }

  close(): void {
    this.#seen.clear();
  }
}
