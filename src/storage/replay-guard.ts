// One-time use of a client-assertion jti or DPoP-proof jti, claimed atomically and shared by every
// instance: Redis SET NX when Redis is configured, INSERT ... ON CONFLICT DO NOTHING otherwise.
import type { Db } from './db.js';
import type { FastStore } from './fast-store.js';

export interface ReplayGuard {
  /** true exactly once per id until ttl passes; false for every later (or concurrent) attempt */
  claim(id: string, ttlSeconds: number): Promise<boolean>;
  /** claim `first`, and `second` only if `first` was free: one round trip for both */
  claimPair(first: string, second: string, ttlSeconds: number): Promise<[boolean, boolean]>;
  /** adjust the expiry of an id this instance just claimed */
  extend(id: string, ttlSeconds: number): Promise<void>;
  close(): void;
}

export function redisReplayGuard(store: FastStore): ReplayGuard {
  return {
    claim: (id, ttl) => store.claimOnce(`replay:${id}`, ttl),
    claimPair: (first, second, ttl) => store.claimPair(`replay:${first}`, `replay:${second}`, ttl),
    extend: (id, ttl) => store.expire(`replay:${id}`, ttl),
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
    async claim(id, ttl) {
      const r = await db.query(
        `INSERT INTO replay_records (id, expires_at) VALUES ($1, now() + make_interval(secs => $2))
         ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE replay_records.expires_at <= now()
         RETURNING id`,
        [id, Math.max(1, Math.ceil(ttl))],
      );
      return r.rowCount === 1;
    },
    async claimPair(first, second, ttl) {
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
        [first, second, Math.max(1, Math.ceil(ttl))],
      );
      return [r.rows[0]!.a === 1, r.rows[0]!.b === 1];
    },
    async extend(id, ttl) {
      await db.query('UPDATE replay_records SET expires_at = now() + make_interval(secs => $2) WHERE id = $1', [id, Math.max(1, Math.ceil(ttl))]);
    },
    close: () => clearInterval(prune),
  };
}
