// The IETF OAuth Token Status List (draft-ietf-oauth-status-list): every access token names a list
// and an index; the list is a signed JWT carrying a zlib-compressed bitstring, 1 bit per token,
// 0 = valid, 1 = revoked. Lists are grouped by expiry window and retired once all their tokens expired.
import { deflateSync } from 'node:zlib';
import { SignJWT, type CryptoKey } from 'jose';
import type { StatusListStore, StatusRef } from './status-list-store.js';

export type { StatusRef } from './status-list-store.js';

/** 2^20 tokens per list: 128 KiB raw, a few hundred bytes compressed while mostly zero */
export const LIST_CAPACITY = 1 << 20;
const BLOCK_SIZE = 1024;
/** a list is kept this long after its window ended (clock skew between instances) */
export const RETIRE_AFTER_SECONDS = 300;

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
  readonly #store: StatusListStore;
  readonly #windowSeconds: number;
  /** per expiry window, the reserved blocks in the order they are used */
  readonly #blocks = new Map<number, Block[]>();
  readonly #refills = new Map<number, Promise<void>>();
  readonly #shard = new Map<number, number>();

  constructor(store: StatusListStore, windowSeconds: number) {
    this.#store = store;
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
      const bounds = { start: new Date(window * this.#windowSeconds * 1000), end: new Date((window + 1) * this.#windowSeconds * 1000) };
      const start = await this.#store.reserve(listId, bounds, LIST_CAPACITY, BLOCK_SIZE);
      if (start !== undefined) {
        this.#shard.set(window, shard);
        const queue = this.#blocks.get(window) ?? [];
        queue.push({ listId, next: start, end: start + BLOCK_SIZE });
        this.#blocks.set(window, queue);
        return;
      }
      // this shard is full: the window continues in the next one
    }
  }
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
    private readonly store: StatusListStore,
    private readonly issuer: string,
    private readonly ttlSeconds: number,
    private readonly signer: () => StatusListSigner,
  ) {}

  invalidate(listIds?: string[]): void {
    if (!listIds) this.#cache.clear();
    else for (const id of listIds) this.#cache.delete(id);
  }

  async listIds(): Promise<string[]> {
    return this.store.liveIds();
  }

  /** The signed status list token, or undefined for an unknown or retired list. */
  async token(listId: string): Promise<string | undefined> {
    const cached = this.#cache.get(listId);
    // kept briefly even without a change message, so a lost message delays a bit by at most this
    if (cached && Date.now() - cached.builtAt < CACHE_MS) return cached.token;
    const list = await this.store.read(listId);
    if (!list) return undefined;
    const { kid, alg, key } = this.signer();
    const now = Math.floor(Date.now() / 1000);
    const uri = `${this.issuer}${statusListPath(listId)}`;
    const token = await new SignJWT({
      ttl: this.ttlSeconds,
      status_list: { bits: 1, lst: encodeStatusList(list.bits, list.capacity) },
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
  retire(): Promise<number> {
    return this.store.retire();
  }
}
