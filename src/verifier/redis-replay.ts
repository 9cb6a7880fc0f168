// Proof jtis recorded in Redis, shared by every replica of a gateway or API. Redis may lose its data
// (a restart without persistence, FLUSHDB, eviction, a failover to a lagging replica), and with it the
// records of proofs that could still be replayed. Sigil's own approach (src/storage/replay-state.ts):
// a generation marker next to the records names the Redis process (run_id) that wrote it; every claim
// checks, in the same script, that the marker is the expected one, and the marker is read again with
// the run_id whenever the connection is re-established. A missing, older or foreign marker means the
// records were lost at T: from then on, a proof dated before T (plus the allowed skew) is refused
// until no such proof can still be valid; during the first seconds, when a client making a fresh
// proof could not have done better, the answer is "unavailable" (retry) rather than "replayed".
//
// ioredis is loaded here only, and only when this store is created (dynamic import): an API that
// keeps its records in memory never loads it.
import { randomBytes } from 'node:crypto';
import type { Redis as RedisClient } from 'ioredis';
import type { ClaimResult, ReplayStore } from './replay.js';

/** past the first accepted second, how long a proof made just before it may still arrive: told to retry */
const QUARANTINE_GRACE_MS = 2000;

const CLAIM = `
local m = redis.call('GET', KEYS[1])
if m ~= ARGV[1] then return -1 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

export interface RedisReplayStoreOptions {
  /** a Redis URL (ioredis is imported) or a client of your own (not closed by the store) */
  redis: string | RedisClient;
  /** key prefix (default `sigil-verifier:`); replicas that share records use the same */
  prefix?: string;
  /** how far ahead of the clock a proof's iat may be: the verifier's `dpop.skewSeconds` (default 5) */
  skewSeconds?: number;
  now?: () => number;
}

interface Marker {
  raw: string;
  createdMs: number;
  cutoffMs: number;
  runId: string;
}

function parseMarker(raw: string | null): Marker | undefined {
  const m = raw ? /^([0-9a-f]{16}):(\d{1,16}):(\d{1,16}):([0-9a-f]{1,64})$/.exec(raw) : null;
  return m ? { raw: raw!, createdMs: Number(m[2]), cutoffMs: Number(m[3]), runId: m[4]! } : undefined;
}

export class RedisReplayStore implements ReplayStore {
  readonly #redis: RedisClient;
  readonly #own: boolean;
  readonly #markerKey: string;
  readonly #prefix: string;
  readonly #skew: number;
  readonly #now: () => number;
  #expected: Marker | undefined;
  /** the latest loss known here (ms), 0 for none */
  #cutoffMs = 0;
  #settling: Promise<void> | undefined;
  /** moves whenever the connection closes or becomes ready */
  #epoch = 0;
  /** the epoch at which the marker was last read and judged */
  #verifiedEpoch = -1;
  /** losses noticed by this replica (tests, metrics) */
  losses = 0;

  private constructor(redis: RedisClient, own: boolean, opts: RedisReplayStoreOptions) {
    this.#redis = redis;
    this.#own = own;
    // one hash tag: the marker and the records live in one slot of a cluster, so one script sees both
    const prefix = opts.prefix ?? 'sigil-verifier:';
    this.#markerKey = `${prefix}{dpop}:marker`;
    this.#prefix = `${prefix}{dpop}:jti:`;
    this.#skew = opts.skewSeconds ?? 5;
    this.#now = opts.now ?? Date.now;
    // a new connection may reach another Redis process (restart, failover, a restored snapshot):
    // nothing sent before it is trusted, and the marker is verified again before the next claim
    const moved = () => void this.#epoch++;
    redis.on('close', moved);
    redis.on('ready', moved);
  }

  static async create(opts: RedisReplayStoreOptions): Promise<RedisReplayStore> {
    let client: RedisClient;
    let own = false;
    if (typeof opts.redis === 'string') {
      const { Redis } = await import('ioredis');
      client = new Redis(opts.redis, { maxRetriesPerRequest: 1, enableOfflineQueue: true });
      own = true;
    } else client = opts.redis;
    const store = new RedisReplayStore(client, own, opts);
    // the first read may straddle the connection becoming ready: read again until it is verified
    for (let i = 0; i < 3 && store.#verifiedEpoch !== store.#epoch; i++) await store.#settle();
    return store;
  }

  async claim(key: string, ttlMs: number, iat: number): Promise<ClaimResult> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (!this.#expected || this.#verifiedEpoch !== this.#epoch) await this.#settle();
      const ticket = this.#epoch;
      const expected = this.#expected;
      // the connection changed while the marker was read: read it again
      if (!expected || this.#verifiedEpoch !== ticket) continue;
      const r = (await this.#redis.eval(CLAIM, 2, this.#markerKey, this.#prefix + key, expected.raw, String(Math.ceil(ttlMs)))) as number;
      // answered by a Redis reached anew since it was sent (a claim queued while disconnected): it
      // may be a Redis that lost this very record; the record may be set now, so no retry either
      if (this.#epoch !== ticket) return 'unavailable';
      if (r === -1) {
        // the marker changed under us: another replica started a generation, or the records were lost
        if (this.#expected === expected) this.#expected = undefined;
        continue;
      }
      if (r === 0) return 'replayed';
      return this.#judge(iat);
    }
    return 'unavailable';
  }

  /** a fresh claim of a proof dated `iat`: before a known loss, it may have been used already */
  #judge(iat: number): ClaimResult {
    if (!this.#cutoffMs) return 'fresh';
    const firstAccepted = Math.floor(this.#cutoffMs / 1000) + this.#skew + 1;
    if (iat >= firstAccepted) return 'fresh';
    // no time limit needed: a proof this old reaches the store only while the verifier's own age
    // check still accepts it, whatever window that verifier is configured with
    return this.#now() < firstAccepted * 1000 + QUARANTINE_GRACE_MS ? 'unavailable' : 'replayed';
  }

  #settle(): Promise<void> {
    this.#settling ??= this.#readMarker().finally(() => (this.#settling = undefined));
    return this.#settling;
  }

  async #readMarker(): Promise<void> {
    const epoch = this.#epoch;
    const [raw, info] = await Promise.all([this.#redis.get(this.#markerKey), this.#redis.info('server')]);
    // what was read is true of the Redis this connection reached: trusted only if it did not change
    if (this.#epoch !== epoch) return;
    const runId = /run_id:([0-9a-f]+)/.exec(info)?.[1] ?? '0';
    const found = parseMarker(raw);
    const expected = this.#expected;
    // a marker this Redis process wrote, not older than the one known: adopt it (and its cut-off)
    if (found && found.runId === runId && (!expected || found.createdMs >= expected.createdMs)) {
      this.#expected = found;
      this.#cutoffMs = Math.max(this.#cutoffMs, found.cutoffMs);
      this.#verifiedEpoch = epoch;
      return;
    }
    // missing (at our first start it cannot be told from a loss while every replica was down), older,
    // or written by another Redis process: the records were lost now
    const now = this.#now();
    this.losses++;
    this.#cutoffMs = Math.max(this.#cutoffMs, now);
    const marker = `${randomBytes(8).toString('hex')}:${now}:${this.#cutoffMs}:${runId}`;
    await this.#redis.set(this.#markerKey, marker);
    this.#expected = parseMarker(marker);
    if (this.#epoch === epoch) this.#verifiedEpoch = epoch;
  }

  async close(): Promise<void> {
    if (this.#own) this.#redis.disconnect();
  }
}

/** A Redis replay store; ioredis is imported only by this call. */
export function createRedisReplayStore(opts: RedisReplayStoreOptions): Promise<RedisReplayStore> {
  return RedisReplayStore.create(opts);
}
