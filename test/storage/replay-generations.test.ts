// Replay records that Redis loses are noticed, and what was used before the loss is refused: the
// claim script checks its shard's generation marker, each (re)connection is verified (run id), and a
// marker missing at start is a loss when Postgres knows generations existed. Real Redis and Postgres;
// the clock that judges iats is injected so the cut-off can be crossed without waiting for it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createLogger } from '../../src/log.js';
import { StorageUnavailable } from '../../src/storage/errors.js';
import { createRedisStore, type RedisStore } from '../../src/storage/fast-store.js';
import { migrate } from '../../src/storage/migrate.js';
import { oidcAdapterFactory } from '../../src/oidc/adapter.js';
import { ReplayClaims, type ClaimingRequest } from '../../src/oidc/replay-claims.js';
import { ReplayGenerations } from '../../src/storage/replay-generations.js';
import { redisReplayGuard, type ReplayGuard } from '../../src/storage/replay-guard.js';
import { firstAcceptedIat, parseMarker, quarantineEndMs, REPLAY_SHARDS, shardOf } from '../../src/storage/replay-state.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { makePgDb, silentLog, testRedisPrefix, type TestDb } from './helpers.js';
import { eventually, settlesWithin } from '../support/wait.js';

const CLIENT = 'generations-client';
const SHARD = shardOf(CLIENT);
const TTL = 600;

/** a clock the test moves; starts at the real time */
function testClock() {
  let t = Date.now();
  return { now: () => t, set: (ms: number) => (t = ms) };
}

interface Instance {
  store: RedisStore;
  generations: ReplayGenerations;
  guard: ReplayGuard;
}

async function instance(url: string, prefix: string, db: TestDb, now: () => number): Promise<Instance> {
  const store = createRedisStore(url, prefix, silentLog);
  await eventually('redis store ready', () => store.isReady());
  const generations = new ReplayGenerations(store, db.db, silentLog, now);
  await generations.check();
  return { store, generations, guard: redisReplayGuard(store, generations) };
}

const claim = (g: ReplayGuard, id: string, iat: number | undefined) => g.claim(CLIENT, { id, iat: () => iat }, TTL);

function isQuarantine(err: unknown): boolean {
  assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${String(err)}`);
  assert.equal(err.status, 503);
  assert.match(err.error_description ?? '', /lost its replay records/);
  return true;
}
function isNotVerified(err: unknown): boolean {
  assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${String(err)}`);
  assert.match(err.error_description ?? '', /verifying its replay records/, `not trusted, rather than ${err.error_description}`);
  return true;
}

async function deleteKeys(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

describe('replay generations on the shared Redis (own prefix)', () => {
  let db: TestDb;
  let prefix: ReturnType<typeof testRedisPrefix>;
  let raw: Redis;
  const instances: Instance[] = [];
  const clock = testClock();
  const start = async () => {
    const i = await instance(prefix.url, prefix.prefix, db, clock.now);
    instances.push(i);
    return i;
  };

  before(async () => {
    db = await makePgDb();
    await migrate(db.db);
    prefix = testRedisPrefix('gen');
    raw = new Redis(prefix.url, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    for (const i of instances) await i.store.close();
    raw?.disconnect();
    await prefix?.cleanup();
    await db?.cleanup();
  });

  it('a first start writes a first generation in every shard, without a cut-off, and records it in Postgres', async () => {
    assert.equal((await db.sql('SELECT 1 FROM replay_generations')).length, 0, 'a fresh database knows no generation');
    const a = await start();
    assert.equal(a.generations.ready(), true);
    for (let s = 0; s < REPLAY_SHARDS; s++) {
      const m = parseMarker((await raw.get(`${prefix.prefix}{replay-${s}}:generation`)) ?? undefined);
      assert.ok(m, `shard ${s} has a marker`);
      assert.equal(m.cutoffMs, 0);
    }
    assert.equal((await db.sql('SELECT 1 FROM replay_generations')).length, 1);
    const b = await start();
    assert.equal(b.generations.state.marker(SHARD)?.raw, a.generations.state.marker(SHARD)?.raw, 'a second instance adopts the same generation');
    assert.equal(await claim(a.guard, 'first-1', undefined), 'free');
    assert.equal(await claim(b.guard, 'first-1', undefined), 'replayed');
  });

  it('records lost behind the instances\' backs (keys gone, same Redis): the very next claim notices, and what was used before is refused', async () => {
    const [a, b] = instances as [Instance, Instance];
    const usedIat = Math.floor(clock.now() / 1000);
    for (const id of ['used-1', 'used-2']) {
      assert.equal(await claim(a.guard, id, usedIat), 'free');
      assert.equal(await claim(b.guard, id, usedIat), 'replayed');
    }

    await deleteKeys(raw, `${prefix.prefix}*`);
    const lossNoticed = clock.now();
    // a replay reaches the instance first: the claim script finds no marker and claims nothing;
    // the JWT predates the loss, but the cut-off second has not come: retry later (503), not 401
    await assert.rejects(claim(a.guard, 'used-1', usedIat), isQuarantine);
    assert.equal(a.generations.ready(), false, 'A refuses service until the cut-off second');
    const m = parseMarker((await raw.get(`${prefix.prefix}{replay-${SHARD}}:generation`)) ?? undefined);
    assert.ok(m && m.cutoffMs >= lossNoticed, 'a new generation with a cut-off');
    const cutoffSecond = firstAcceptedIat(a.generations.state.cutoffMs(SHARD));

    // B learns of it from its periodic check, without a claim of its own
    assert.equal(b.generations.ready(), true);
    await b.generations.check();
    assert.equal(b.generations.ready(), false);
    assert.equal(b.generations.state.marker(SHARD)?.raw, m.raw);

    clock.set(quarantineEndMs(a.generations.state.cutoffMs(SHARD)));
    assert.equal(a.generations.ready(), true, 'service resumes once the cut-off second has come (and a little more)');
    assert.equal(b.generations.ready(), true);
    assert.equal(await claim(b.guard, 'used-2', usedIat), 'predates-loss', 'used before the loss: refused on every instance');
    assert.equal(await claim(a.guard, 'used-1', usedIat), 'replayed', 'presented again after the loss: a plain replay');
    for (const [name, g] of [['a', a.guard], ['b', b.guard]] as const) {
      assert.equal(await claim(g, `fresh-${name}`, cutoffSecond), 'free', 'a JWT dated from the cut-off second is fine');
      assert.equal(await claim(g, `no-iat-${name}`, undefined), 'predates-loss', 'iat is required within the window');
    }
    await eventually('the loss recorded in Postgres', async () => Number((await db.sql<{ c: string | null }>('SELECT last_loss_cutoff_ms::text AS c FROM replay_generations'))[0]?.c) >= lossNoticed);
  });

  it('oidc-provider\'s replay checks (client authentication everywhere, the proof of exchange and refresh) refuse what predates the loss', async () => {
    const [a] = instances as [Instance];
    const jwt = (payload: Record<string, unknown>) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;
    let request: ClaimingRequest | undefined;
    const claims = new ReplayClaims(a.guard, () => false);
    const adapter = oidcAdapterFactory({
      db: db.db, clients: undefined as never, claims, metadataOf: () => ({}), isClientRevoked: () => false, currentRequest: () => request,
    })('ReplayDetection');
    /** a request as Sigil asks about it: the assertion's id first (oidc-provider, through the adapter), then the grant's confirm() of the proof */
    const ask = async (assertionIat: number, proofIat: number) => {
      const proofJti = `p-${Math.random()}`;
      const proof = jwt({ jti: proofJti, iat: proofIat });
      const req: ClaimingRequest = { get: (h: string) => (h === 'dpop' ? proof : ''), oidc: { client: { clientId: CLIENT }, params: { client_assertion: jwt({ iat: assertionIat }) } } };
      request = req;
      const id = (jti: string) => createHash('sha256').update(`${CLIENT}${jti}`).digest('base64url');
      return {
        assertion: () => adapter.find(id(`a-${Math.random()}`)),
        proof: async () => {
          await claims.confirm(req, CLIENT, { jti: proofJti, iat: proofIat });
          return undefined;
        },
      };
    };
    await deleteKeys(raw, `${prefix.prefix}*`);
    const old = Math.floor(clock.now() / 1000);
    const during = await ask(old, old);
    await assert.rejects(during.assertion(), isQuarantine);
    const end = quarantineEndMs(a.generations.state.cutoffMs(SHARD));
    clock.set(end);
    const fresh = Math.floor(end / 1000);
    const oldAssertion = await ask(old, fresh);
    await assert.rejects(oldAssertion.assertion(), (err: Error & { error?: string }) => err.error === 'invalid_client');
    const oldProof = await ask(fresh, old);
    assert.equal(await oldProof.assertion(), undefined, 'the assertion is free');
    await assert.rejects(oldProof.proof(), (err: Error & { error?: string }) => err.error === 'invalid_dpop_proof');
    const good = await ask(fresh, fresh);
    assert.equal(await good.assertion(), undefined);
    assert.equal(await good.proof(), undefined);
  });

  it('a marker missing at start is a loss when Postgres knows generations existed (lost while every instance was down)', async () => {
    await deleteKeys(raw, `${prefix.prefix}*`);
    const c = await start();
    assert.ok(c.generations.state.cutoffMs(SHARD) > 0, 'started with a cut-off');
    assert.equal(c.generations.ready(), false);
    clock.set(quarantineEndMs(c.generations.state.cutoffMs(SHARD)));
    assert.equal(await claim(c.guard, 'used-while-down', Math.floor(c.generations.state.cutoffMs(SHARD) / 1000)), 'predates-loss');
  });

  it('a marker written by another Redis process (a restored snapshot, a promoted replica) is a loss', async () => {
    const [a] = instances as [Instance];
    const key = `${prefix.prefix}{replay-${SHARD}}:generation`;
    const current = parseMarker((await raw.get(key)) ?? undefined)!;
    await raw.set(key, `${current.generation}:${current.createdMs}:${current.cutoffMs}:${'0'.repeat(40)}`);
    clock.set(clock.now() + 60_000);
    const noticed = clock.now();
    await a.generations.check();
    assert.ok(a.generations.state.cutoffMs(SHARD) >= noticed, 'a new cut-off');
    assert.equal(parseMarker((await raw.get(key)) ?? undefined)?.runId, a.generations.state.marker(SHARD)?.runId);
    assert.notEqual(a.generations.state.marker(SHARD)?.runId, '0'.repeat(40));
  });
});

describe('replay generations across a failover to a replica that had not caught up (dedicated redis-servers)', () => {
  let primary: RedisServer;
  let replica: RedisServer;
  let proxy: TcpProxy;
  let db: TestDb;
  let a: Instance;
  const clock = testClock();
  const prefix = 'failover:';

  before(async () => {
    [primary, replica] = await Promise.all([startRedisServer(), startRedisServer()]);
    proxy = await startTcpProxy({ host: '127.0.0.1', port: primary.port });
    db = await makePgDb();
    await migrate(db.db);
    a = await instance(`redis://${proxy.host}:${proxy.port}/0`, prefix, db, clock.now);
  });
  after(async () => {
    await a?.store.close();
    await proxy?.close();
    await primary?.close();
    await replica?.close();
    await db?.cleanup();
  });

  it('a claim answered by the promoted replica before its run id was checked is not trusted; the loss is then noticed', async () => {
    const usedIat = Math.floor(clock.now() / 1000);
    assert.equal(await claim(a.guard, 'used-on-primary', usedIat), 'free');
    assert.equal(await claim(a.guard, 'also-used-on-primary', usedIat), 'free');

    // the replica has the markers (replicated long ago) but not the latest claims
    const p = new Redis(primary.url, { maxRetriesPerRequest: 1 });
    const r = new Redis(replica.url, { maxRetriesPerRequest: 1 });
    try {
      for (let s = 0; s < REPLAY_SHARDS; s++) {
        const key = `${prefix}{replay-${s}}:generation`;
        await r.set(key, (await p.get(key))!);
      }
    } finally {
      p.disconnect();
      r.disconnect();
    }

    // the replay is in flight when the primary goes; the connection is re-made to the replica and
    // ioredis resends it there, where the marker matches and the id is free
    proxy.cut('blackhole');
    const replay = claim(a.guard, 'used-on-primary', usedIat);
    replay.catch(() => {});
    await eventually('the claim is on the wire', () => proxy.openConnections > 0);
    proxy.retarget({ host: '127.0.0.1', port: replica.port });
    proxy.restore();
    await assert.rejects(settlesWithin(replay, 10_000, 'the replayed claim'), isNotVerified);

    // the reconnection is verified: the replica's run id is not the one in the markers
    await eventually('the loss is noticed', () => a.generations.state.cutoffMs(SHARD) > 0 && a.generations.ticket() !== undefined);
    assert.ok(a.generations.state.cutoffMs(SHARD) >= clock.now());
    clock.set(quarantineEndMs(a.generations.state.cutoffMs(SHARD)));
    assert.equal(await claim(a.guard, 'used-on-primary', usedIat), 'replayed', 'the untrusted answer did take the id on the replica');
    assert.equal(await claim(a.guard, 'also-used-on-primary', usedIat), 'predates-loss', 'lost with the primary, refused by the cut-off');
    assert.equal(await claim(a.guard, 'fresh', Math.floor(clock.now() / 1000)), 'free');
  });
});

describe('replay generations: a Redis that may evict keys', () => {
  it('is reported at start (an evicted claim leaves no trace the markers could show)', async () => {
    const evicting = await startRedisServer({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru'] });
    const careful = await startRedisServer({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'noeviction'] });
    const db = await makePgDb();
    const lines: string[] = [];
    const log = createLogger('warn', new Writable({ write(chunk, _enc, done) { lines.push(String(chunk)); done(); } }));
    const stores: RedisStore[] = [];
    try {
      await migrate(db.db);
      for (const server of [evicting, careful]) {
        const store = createRedisStore(server.url, 'eviction:', log);
        stores.push(store);
        await eventually('redis store ready', () => store.isReady());
        await new ReplayGenerations(store, db.db, log).check();
      }
      await eventually('the evicting Redis is reported', () => lines.some((l) => l.includes('maxmemory-policy noeviction') && l.includes('allkeys-lru')));
      assert.equal(lines.filter((l) => l.includes('maxmemory-policy noeviction')).length, 1, `only the evicting Redis is reported: ${lines.join('')}`);
    } finally {
      for (const s of stores) await s.close();
      await evicting.close();
      await careful.close();
      await db.cleanup();
    }
  });
});
