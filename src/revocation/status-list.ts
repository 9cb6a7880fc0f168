// The IETF OAuth Token Status List (draft-ietf-oauth-status-list): every access token names a list
// and an index; the list is a signed JWT carrying a zlib-compressed bitstring, 1 bit per token,
// 0 = valid, 1 = revoked. Lists are grouped by expiry window and retired once all their tokens expired.
import { deflateSync } from 'node:zlib';
import { SignJWT, type CryptoKey } from 'jose';
import type { Db, Queryable } from '../storage/db.js';

/** 2^20 tokens per list: 128 KiB raw, a few hundred bytes compressed while mostly zero */
export const LIST_CAPACITY = 1 << 20;
const BLOCK_SIZE = 1024;
/** a list is kept this long after its window ended (clock skew between instances) */
const RETIRE_AFTER_SECONDS = 300;

export interface StatusRef {
  listId: string;
  idx: number;
}

export const statusListPath = (listId: string) => `/status-lists/${listId}`;

/** a status list token expires after two of its ttl: a gateway refetches after one */
export const statusTokenLifetime = (ttlSeconds: number) => 2 * ttlSeconds;

/** The bitstring as the draft encodes it: bit i is bit (i % 8), least significant first, of byte i / 8. */
export function encodeStatusList(setBits: Iterable<number>, capacity = LIST_CAPACITY): string {
  const bytes = new Uint8Array(Math.ceil(capacity / 8));
  for (const i of setBits) {
    if (!Number.isInteger(i) || i < 0 || i >= capacity) throw new RangeError(`status index ${i} outside 0..${capacity - 1}`);
    bytes[i >> 3]! |= 1 << (i & 7);
  }
  return deflateSync(bytes, { level: 9 }).toString('base64url');
}

interface Block {
  listId: string;
  next: number;
  end: number;
}

/**
 * Hands out indices from blocks this instance reserved in Postgres (UPDATE ... next_idx + n), so an
 * index is never handed out twice and issuing a token costs no round trip except when the blocks run
 * out: the next block is reserved in the background while a quarter of the current one is left.
 */
export class StatusIndexAllocator {
  readonly #db: Db;
  readonly #windowSeconds: number;
  /** per expiry window, the reserved blocks in the order they are used */
  readonly #blocks = new Map<number, Block[]>();
  readonly #refills = new Map<number, Promise<void>>();
  readonly #shard = new Map<number, number>();

  constructor(db: Db, windowSeconds: number) {
    this.#db = db;
    this.#windowSeconds = windowSeconds;
  }

  async allocate(expiresAt: number): Promise<StatusRef> {
    const window = Math.floor(expiresAt / this.#windowSeconds);
    for (;;) {
      const queue = this.#blocks.get(window) ?? [];
      while (queue.length && queue[0]!.next >= queue[0]!.end) queue.shift();
      const block = queue[0];
      if (block) {
        const idx = block.next++;
        const left = queue.reduce((n, b) => n + b.end - b.next, 0);
        if (left < BLOCK_SIZE / 4) void this.#refill(window).catch(() => {});
        return { listId: block.listId, idx };
      }
      await this.#refill(window);
    }
  }

  #refill(window: number): Promise<void> {
    let pending = this.#refills.get(window);
    if (!pending) {
      pending = this.#reserve(window).finally(() => this.#refills.delete(window));
      this.#refills.set(window, pending);
    }
    return pending;
  }

  async #reserve(window: number): Promise<void> {
    // blocks of windows already past are never needed again
    for (const w of this.#blocks.keys()) if (w < window - 1) this.#blocks.delete(w);
    for (let shard = this.#shard.get(window) ?? 0; ; shard++) {
      const listId = `${window}-${shard}`;
      await this.#db.query(
        'INSERT INTO status_lists (id, window_start, window_end, capacity) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING',
        [listId, new Date(window * this.#windowSeconds * 1000), new Date((window + 1) * this.#windowSeconds * 1000), LIST_CAPACITY],
      );
      const r = await this.#db.query<{ start: number }>(
        'UPDATE status_lists SET next_idx = next_idx + $2 WHERE id = $1 AND next_idx + $2 <= capacity RETURNING next_idx - $2 AS start',
        [listId, BLOCK_SIZE],
      );
      if (r.rows[0]) {
        this.#shard.set(window, shard);
        const start = Number(r.rows[0].start);
        const queue = this.#blocks.get(window) ?? [];
        queue.push({ listId, next: start, end: start + BLOCK_SIZE });
        this.#blocks.set(window, queue);
        return;
      }
      // this shard is full: the window continues in the next one
    }
  }
}

/** Set the bits of tokens that are being revoked; returns the lists that changed. */
export async function setStatusBits(q: Queryable, refs: StatusRef[]): Promise<string[]> {
  if (!refs.length) return [];
  const r = await q.query<{ list_id: string }>(
    `INSERT INTO status_bits (list_id, idx) SELECT * FROM unnest($1::text[], $2::int[])
     ON CONFLICT DO NOTHING RETURNING list_id`,
    [refs.map((x) => x.listId), refs.map((x) => x.idx)],
  );
  return [...new Set(r.rows.map((x) => x.list_id))];
}

/**
 * Set the bits of tokens whose revocation raced their issuance record: a revocation that committed
 * while the token's record was still on its way to Postgres cannot have found it, and the record's
 * own check may not have seen the revocation yet. Run every second; returns the lists it changed.
 */
export async function reconcileRecentRevocations(q: Queryable): Promise<string[]> {
  const r = await q.query<{ list_id: string }>(
    `INSERT INTO status_bits (list_id, idx)
     SELECT te.status_list, te.status_idx FROM security_events se
     JOIN token_events te ON te.outcome = 'issued' AND te.status_list IS NOT NULL AND te.expires_at > now()
       AND ((se.kind = 'client_revoked' AND te.client_id = se.target) OR (se.kind = 'token_revoked' AND te.jti = se.target))
     WHERE se.kind IN ('client_revoked', 'token_revoked') AND se.at > now() - interval '2 minutes'
     ON CONFLICT DO NOTHING RETURNING list_id`,
  );
  return [...new Set(r.rows.map((x) => x.list_id))];
}

export interface StatusListSigner {
  kid: string;
  alg: string;
  key: CryptoKey;
}

/** a fresh fetch reflects a revocation within a second even if its change message was lost */
const CACHE_MS = 500;

/** Builds, signs and caches each list's token; a change anywhere drops the cached copy. */
export class StatusListPublisher {
  readonly #cache = new Map<string, { token: string; builtAt: number }>();

  constructor(
    private readonly db: Db,
    private readonly issuer: string,
    private readonly ttlSeconds: number,
    private readonly signer: () => StatusListSigner,
  ) {}

  invalidate(listIds?: string[]): void {
    if (!listIds) this.#cache.clear();
    else for (const id of listIds) this.#cache.delete(id);
  }

  async listIds(): Promise<string[]> {
    const r = await this.db.query<{ id: string }>('SELECT id FROM status_lists WHERE window_end > now() - make_interval(secs => $1) ORDER BY id', [RETIRE_AFTER_SECONDS]);
    return r.rows.map((x) => x.id);
  }

  /** The signed status list token, or undefined for an unknown or retired list. */
  async token(listId: string): Promise<string | undefined> {
    const cached = this.#cache.get(listId);
    // kept briefly even without a change message, so a lost message delays a bit by at most this
    if (cached && Date.now() - cached.builtAt < CACHE_MS) return cached.token;
    const list = await this.db.query<{ capacity: number }>(
      'SELECT capacity FROM status_lists WHERE id = $1 AND window_end > now() - make_interval(secs => $2)',
      [listId, RETIRE_AFTER_SECONDS],
    );
    if (!list.rows[0]) return undefined;
    const bits = await this.db.query<{ idx: number }>('SELECT idx FROM status_bits WHERE list_id = $1', [listId]);
    const { kid, alg, key } = this.signer();
    const now = Math.floor(Date.now() / 1000);
    const uri = `${this.issuer}${statusListPath(listId)}`;
    const token = await new SignJWT({
      ttl: this.ttlSeconds,
      status_list: { bits: 1, lst: encodeStatusList(bits.rows.map((b) => b.idx), list.rows[0].capacity) },
    })
      .setProtectedHeader({ alg, kid, typ: 'statuslist+jwt' })
      .setSubject(uri)
      .setIssuer(this.issuer)
      .setIssuedAt(now)
      .setExpirationTime(now + statusTokenLifetime(this.ttlSeconds))
      .sign(key);
    this.#cache.set(listId, { token, builtAt: Date.now() });
    return token;
  }

  /** Delete lists whose every token has expired. */
  async retire(): Promise<number> {
    const r = await this.db.query('DELETE FROM status_lists WHERE window_end < now() - make_interval(secs => $1)', [RETIRE_AFTER_SECONDS]);
    return r.rowCount;
  }
}
