// One-time use of a client-assertion jti or DPoP-proof jti, claimed atomically and shared by every
// instance: a Lua script on Redis (checked against the shard's replay generation, see
// replay-generations.ts) when Redis is configured, INSERT ... ON CONFLICT DO NOTHING otherwise.
import type { Db } from './db.js';
import type { ReplayShards } from './fast-store.js';
import type { ReplayGenerations } from './replay-generations.js';
import { shardOf } from './replay-state.js';

/**
 * What a claim found: the id was free (and is now claimed), was used before, or (Redis only) it
 * belongs to a JWT issued before Redis lost its replay records, which may have been used already.
 */
export type ClaimVerdict = 'free' | 'replayed' | 'predates-loss';

export interface ReplayClaim {
  id: string;
  /** the JWT's iat in seconds (undefined: none); asked only while a loss of replay records makes it matter */
  iat: () => number | undefined;
}

export interface ReplayGuard {
  /**
   * Claim `claim.id` of `clientId` (every id a request claims belongs to its client). Rejects with
   * StorageUnavailable (503) when the store is unreachable, not verified, or refusing service for a
   * few seconds after a loss.
   */
  claim(clientId: string, claim: ReplayClaim, ttlSeconds: number): Promise<ClaimVerdict>;
  /** claim `first`, and `second` only if `first` was free: one round trip for both */
  claimPair(clientId: string, first: ReplayClaim, second: ReplayClaim, ttlSeconds: number): Promise<[ClaimVerdict, ClaimVerdict]>;
  /** adjust the expiry of an id this instance just claimed */
  extend(clientId: string, id: string, ttlSeconds: number): Promise<void>;
  close(): void;
}

export function redisReplayGuard(shards: ReplayShards, generations: ReplayGenerations): ReplayGuard {
  const { state } = generations;

  async function claimInShard(clientId: string, claims: ReplayClaim[], ttl: number): Promise<ClaimVerdict[]> {
    const shard = shardOf(clientId);
    const ids = claims.map((c) => c.id);
    for (let attempt = 0; ; attempt++) {
      const marker = state.marker(shard);
      const ticket = generations.ticket();
      if (!marker || ticket === undefined) throw generations.notVerified();
      const answer = await shards.claim(shard, marker.raw, ids, ttl);
      if (!generations.trusted(ticket)) throw generations.notVerified();
      if (answer.claimed === undefined) {
        // the marker changed: the loss (or another instance's new generation) is learnt from this very claim
        if (attempt > 0) throw generations.notVerified();
        await generations.reconcile(shard, answer);
        continue;
      }
      const verdicts = claims.map((c, i): ClaimVerdict | 'quarantine' => {
        if (i >= answer.claimed!) return 'replayed';
        const judgement = state.judge(shard, c.iat());
        return judgement === 'ok' ? 'free' : judgement;
      });
      // a JWT the client could not have dated after the cut-off yet: it is told to retry (503), not refused
      if (verdicts.includes('quarantine')) throw generations.quarantined();
      return verdicts as ClaimVerdict[];
    }
  }

  return {
    claim: async (clientId, claim, ttl) => (await claimInShard(clientId, [claim], ttl))[0]!,
    claimPair: async (clientId, first, second, ttl) => (await claimInShard(clientId, [first, second], ttl)) as [ClaimVerdict, ClaimVerdict],
    extend: (clientId, id, ttl) => shards.expire(shardOf(clientId), id, ttl),
    close() {},
  };
}

export function sqlReplayGuard(db: Db): ReplayGuard {
  // expired records are claimable again, and pruned in the background so the table stays small
  const prune = setInterval(() => {
    db.query('DELETE FROM replay_records WHERE expires_at < now()').catch(() => {});
  }, 60_000);
  prune.unref();
  return {
    async claim(_clientId, { id }, ttl) {
      const r = await db.query(
        `INSERT INTO replay_records (id, expires_at) VALUES ($1, now() + make_interval(secs => $2))
         ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE replay_records.expires_at <= now()
         RETURNING id`,
        [id, Math.max(1, Math.ceil(ttl))],
      );
      return r.rowCount === 1 ? 'free' : 'replayed';
    },
    async claimPair(_clientId, first, second, ttl) {
      const r = await db.query<{ a: number; b: number }>(
        `WITH a AS (
           INSERT INTO replay_records (id, expires_at) VALUES ($1, now() + make_interval(secs => $3))
           ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE replay_records.expires_at <= now()
           RETURNING id
         ), b AS (
           INSERT INTO replay_records (id, expires_at) SELECT $2, now() + make_interval(secs => $3) WHERE EXISTS (SELECT 1 FROM a)
           ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE replay_records.expires_at <= now()
           RETURNING id
         )
         SELECT (SELECT count(*) FROM a)::int AS a, (SELECT count(*) FROM b)::int AS b`,
        [first.id, second.id, Math.max(1, Math.ceil(ttl))],
      );
      return [r.rows[0]!.a === 1 ? 'free' : 'replayed', r.rows[0]!.b === 1 ? 'free' : 'replayed'];
    },
    async extend(_clientId, id, ttl) {
      await db.query('UPDATE replay_records SET expires_at = now() + make_interval(secs => $2) WHERE id = $1', [id, Math.max(1, Math.ceil(ttl))]);
    },
    close: () => clearInterval(prune),
  };
}
