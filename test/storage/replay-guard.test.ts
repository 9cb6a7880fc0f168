// The replay-guard contract (one-time use of a jti, shared by every instance), run against each
// implementation: the Redis claim script (with its replay generations) and INSERT ... ON CONFLICT on
// Postgres and PGlite. What happens when Redis loses its records: replay-generations.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createRedisStore, type RedisStore } from '../../src/storage/fast-store.js';
import { migrate } from '../../src/storage/migrate.js';
import { ReplayGenerations } from '../../src/storage/replay-generations.js';
import { redisReplayGuard, sqlReplayGuard, type ReplayGuard as Guard } from '../../src/storage/replay-guard.js';
import { shardOf } from '../../src/storage/replay-state.js';
import { makePgDb, makePgliteDb, silentLog, testRedisPrefix, type TestDb } from './helpers.js';
import { eventually } from '../support/wait.js';

/** every claim of these tests belongs to one client, with a fresh iat */
const CLIENT = 'contract-client';
const now = () => Math.floor(Date.now() / 1000);

/** The guard as the contract speaks of it: true when the id was free. */
interface ReplayGuard {
  claim(id: string, ttl: number): Promise<boolean>;
  claimPair(first: string, second: string, ttl: number): Promise<[boolean, boolean]>;
  extend(id: string, ttl: number): Promise<void>;
  close(): void;
}
function simple(g: Guard): ReplayGuard {
  const c = (id: string) => ({ id, iat: now });
  return {
    claim: async (id, ttl) => (await g.claim(CLIENT, c(id), ttl)) === 'free',
    claimPair: async (a, b, ttl) => (await g.claimPair(CLIENT, c(a), c(b), ttl)).map((v) => v === 'free') as [boolean, boolean],
    extend: (id, ttl) => g.extend(CLIENT, id, ttl),
    close: () => g.close(),
  };
}

interface GuardFixture {
  guard: ReplayGuard;
  /** a second guard on the same shared state (another instance), when the backend has one */
  other?: () => Promise<ReplayGuard>;
  cleanup(): Promise<void>;
}

const id = (label: string) => `${label}-${randomBytes(6).toString('hex')}`;

function replayContract(name: string, make: () => Promise<GuardFixture>): void {
  describe(`replay guard: ${name}`, () => {
    let f: GuardFixture;
    before(async () => {
      f = await make();
    });
    after(async () => {
      await f?.cleanup();
    });

    it('the first claim is true, every later one false', async () => {
      const jti = id('first');
      assert.equal(await f.guard.claim(jti, 60), true);
      assert.equal(await f.guard.claim(jti, 60), false);
      assert.equal(await f.guard.claim(jti, 600), false);
      assert.equal(await f.guard.claim(id('other'), 60), true, 'ids are independent');
    });

    it('claimPair() takes the second id only when the first was free', async () => {
      const [a, b, c] = [id('pair-a'), id('pair-b'), id('pair-c')];
      assert.deepEqual(await f.guard.claimPair(a, b, 60), [true, true]);
      // first taken: nothing is claimed, so the second stays free
      assert.deepEqual(await f.guard.claimPair(a, c, 60), [false, false]);
      assert.equal(await f.guard.claim(c, 60), true, 'the second id was left untouched');
      // first free, second taken
      assert.deepEqual(await f.guard.claimPair(id('pair-d'), b, 60), [true, false]);
    });

    it('20 concurrent claimPair() of one pair: exactly one takes both, nobody takes the second alone', async () => {
      const [a, b] = [id('pair-race-a'), id('pair-race-b')];
      const results = await Promise.all(Array.from({ length: 20 }, () => f.guard.claimPair(a, b, 60)));
      assert.equal(results.filter(([x, y]) => x && y).length, 1);
      assert.equal(results.filter(([x, y]) => !x && y).length, 0);
    });

    it('50 concurrent claims of one id: exactly one wins', async () => {
      const jti = id('race');
      const results = await Promise.all(Array.from({ length: 50 }, () => f.guard.claim(jti, 60)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    it('50 concurrent claims of one id split across two instances: exactly one wins', async (t) => {
      if (!f.other) {
        t.skip('one instance only for this backend');
        return;
      }
      const b = await f.other();
      const jti = id('race2');
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? b : f.guard).claim(jti, 60)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    it('a claim expires after its ttl and can then be claimed again (polled)', async () => {
      const jti = id('ttl');
      assert.equal(await f.guard.claim(jti, 1), true);
      assert.equal(await f.guard.claim(jti, 1), false);
      // polling with claim() is safe: a refused claim does not extend the record
      await eventually('the 1 s claim expires', () => f.guard.claim(jti, 60));
      assert.equal(await f.guard.claim(jti, 60), false, 'the new claim holds');
    });

    it('extend() keeps a claim beyond its original ttl', async () => {
      const probe = id('probe');
      const kept = id('kept');
      assert.equal(await f.guard.claim(probe, 1), true);
      assert.equal(await f.guard.claim(kept, 1), true);
      await f.guard.extend(kept, 300);
      // once the probe (same original ttl) has expired, the extended claim must still hold
      await eventually('the 1 s probe expires', () => f.guard.claim(probe, 60));
      assert.equal(await f.guard.claim(kept, 60), false);
    });

    it('extend() of an id never claimed does not claim it', async () => {
      const jti = id('unclaimed');
      await f.guard.extend(jti, 300);
      assert.equal(await f.guard.claim(jti, 60), true);
    });

    it('claim() with a ttl of zero still claims (at least a second, as Redis and SQL clamp it)', async () => {
      const zero = id('zero');
      assert.equal(await f.guard.claim(zero, 0), true);
      assert.equal(await f.guard.claim(zero, 60), false, 'claim(id, 0) must not be immediately claimable again');
    });

    it('extend() with a ttl of zero or less never releases a claim', async () => {
      const extended = id('extend-zero');
      assert.equal(await f.guard.claim(extended, 60), true);
      await f.guard.extend(extended, 0);
      assert.equal(await f.guard.claim(extended, 60), false, 'extend(id, 0) must not release the claim');
      const negative = id('extend-negative');
      assert.equal(await f.guard.claim(negative, 60), true);
      await f.guard.extend(negative, -5);
      assert.equal(await f.guard.claim(negative, 60), false, 'extend(id, -5) must not release the claim');
    });
  });
}

function sqlFixture(make: () => Promise<TestDb>) {
  return async (): Promise<GuardFixture> => {
    const t = await make();
    await migrate(t.db);
    const guards: ReplayGuard[] = [];
    const guard = simple(sqlReplayGuard(t.db));
    guards.push(guard);
    return {
      guard,
      other: t.db.kind === 'postgres'
        ? async () => {
            const g = simple(sqlReplayGuard(t.second()));
            guards.push(g);
            return g;
          }
        : undefined,
      async cleanup() {
        for (const g of guards) g.close();
        await t.cleanup();
      },
    };
  };
}

replayContract('redisReplayGuard(createRedisStore)', async () => {
  const r = testRedisPrefix('rg');
  const t = await makePgDb();
  await migrate(t.db);
  const stores: RedisStore[] = [];
  const make = async () => {
    const s = createRedisStore(r.url, r.prefix, silentLog);
    stores.push(s);
    await eventually('redis ready', () => s.isReady());
    const generations = new ReplayGenerations(s, t.db, silentLog);
    await generations.check();
    return simple(redisReplayGuard(s, generations));
  };
  return {
    guard: await make(),
    other: make,
    async cleanup() {
      for (const s of stores) await s.close();
      await r.cleanup();
      await t.cleanup();
    },
  };
});

replayContract('sqlReplayGuard(postgres)', sqlFixture(makePgDb));
replayContract('sqlReplayGuard(pglite)', sqlFixture(makePgliteDb));

describe('replay guard: redis records live under the store prefix, in their client\'s shard', () => {
  it('a claim is a key <prefix>{replay-<shard>}:id:<id> with a ttl, beside the shard\'s generation marker', async () => {
    const r = testRedisPrefix('rgk');
    const t = await makePgDb();
    await migrate(t.db);
    const store = createRedisStore(r.url, r.prefix, silentLog);
    const { Redis } = await import('ioredis');
    const raw = new Redis(r.url, { maxRetriesPerRequest: 1 });
    try {
      await eventually('redis ready', () => store.isReady());
      const generations = new ReplayGenerations(store, t.db, silentLog);
      await generations.check();
      const guard = simple(redisReplayGuard(store, generations));
      assert.equal(await guard.claim('abc', 30), true);
      const shard = shardOf(CLIENT);
      const key = `${r.prefix}{replay-${shard}}:id:abc`;
      const ttl = await raw.ttl(key);
      assert.ok(ttl > 0 && ttl <= 30, `ttl ${ttl}`);
      await guard.extend('abc', 500);
      const ttl2 = await raw.ttl(key);
      assert.ok(ttl2 > 30 && ttl2 <= 500, `ttl after extend ${ttl2}`);
      assert.match(await raw.get(`${r.prefix}{replay-${shard}}:generation`) ?? '', /^[0-9a-f]+:\d+:0:[0-9a-f]{40}$/, 'a first generation, without a cut-off');
      assert.equal(await raw.ttl(`${r.prefix}{replay-${shard}}:generation`), -1, 'the marker never expires');
    } finally {
      raw.disconnect();
      await store.close();
      await r.cleanup();
      await t.cleanup();
    }
  });
});

describe('replay guard: postgres records', () => {
  let t: TestDb;
  before(async () => {
    t = await makePgDb();
    await migrate(t.db);
  });
  after(async () => {
    await t?.cleanup();
  });

  it('50 claims racing from two separate Db objects (two pools): exactly one wins', async () => {
    const a = simple(sqlReplayGuard(t.db));
    const b = simple(sqlReplayGuard(t.second()));
    try {
      for (let round = 0; round < 3; round++) {
        const jti = id(`pools-${round}`);
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? b : a).claim(jti, 60)));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}`);
      }
    } finally {
      a.close();
      b.close();
    }
  });

  it('extend() sets the stored expiry', async () => {
    const g = simple(sqlReplayGuard(t.db));
    try {
      assert.equal(await g.claim('ext-row', 5), true);
      await g.extend('ext-row', 3600);
      const rows = await t.sql<{ left: number }>("SELECT extract(epoch FROM expires_at - now())::int AS left FROM replay_records WHERE id = 'ext-row'");
      assert.ok(rows[0]!.left > 3000, `remaining ${rows[0]!.left}`);
    } finally {
      g.close();
    }
  });
});
