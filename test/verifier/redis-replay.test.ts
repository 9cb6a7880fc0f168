// The Redis replay store of sigil/verifier on a real Redis: records shared by replicas, and the loss
// of Redis's data detected by the generation marker (the way Sigil's own store does), after which
// proofs dated before the loss are refused: "unavailable" (retry) at first, "replayed" afterwards,
// while proofs made after the cut-off are accepted. The clock is injected.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createRedisReplayStore, type RedisReplayStore } from '../../src/verifier/index.js';
import { REDIS_URL } from '../support/infra.js';
import { startRedisServer } from '../support/redis-server.js';
import { eventually } from '../support/wait.js';


describe('RedisReplayStore', () => {
  const prefix = `verifier-replay-test:${randomUUID()}:`;
  let redis: Redis;
  let t = 1_900_000_000_000;
  const now = () => t;
  const stores: RedisReplayStore[] = [];
  const store = async () => {
    const s = await createRedisReplayStore({ redis: REDIS_URL, prefix, now });
    stores.push(s);
    return s;
  };

  before(() => {
    redis = new Redis(REDIS_URL);
  });
  after(async () => {
    for (const s of stores) await s.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('a proof claimed on one replica is replayed on another', async () => {
    const a = await store();
    const b = await store();
    // the first replica found no marker at all: that is treated as a loss (it cannot be told apart
    // from one while every replica was down), so proofs from before its start are refused
    assert.equal(a.losses, 1);
    assert.equal(b.losses, 0, 'the second adopts the first one\'s marker');
    t += 10_000;
    const iat = Math.floor(t / 1000);
    assert.equal(await a.claim('jkt:one', 65_000, iat), 'fresh');
    assert.equal(await b.claim('jkt:one', 65_000, iat), 'replayed');
    assert.equal(await a.claim('jkt:one', 65_000, iat), 'replayed');
    assert.equal(await b.claim('jkt:two', 65_000, iat), 'fresh');
  });

  it('after Redis lost its data: older proofs unavailable, then replayed; newer ones fresh; every replica agrees', async () => {
    const [a, b] = stores as [RedisReplayStore, RedisReplayStore];
    t += 100_000;
    const before = Math.floor(t / 1000);
    assert.equal(await a.claim('jkt:used-before', 65_000, before), 'fresh');
    // FLUSHDB, as far as this prefix goes: the marker and every record are gone
    await redis.del(...(await redis.keys(`${prefix}*`)));
    t += 1000;
    // the replay would succeed without the marker: the record is gone
    assert.equal(await b.claim('jkt:used-before', 65_000, before), 'unavailable', 'during the quarantine: retry');
    assert.equal(b.losses, 1);
    assert.equal(await a.claim('jkt:other-old', 65_000, before), 'unavailable', 'the other replica learns of the loss from its next claim');
    t += 8_000;
    assert.equal(await a.claim('jkt:old-again', 65_000, before + 1), 'replayed', 'after the quarantine: refused');
    assert.equal(await a.claim('jkt:new', 65_000, Math.floor(t / 1000)), 'fresh', 'a proof made after the cut-off');
    assert.equal(await b.claim('jkt:new', 65_000, Math.floor(t / 1000)), 'replayed');
    t += 70_000;
    assert.equal(await b.claim('jkt:much-later', 65_000, before + 2), 'replayed', 'whenever it comes (the verifier\'s age check refuses it anyway)');
  });

  it('a Redis restarted from an older snapshot (records lost, the old marker back, another run_id) is a loss too', async () => {
    const own = await startRedisServer();
    const direct = new Redis(own.url, { maxRetriesPerRequest: 1 });
    const s = await createRedisReplayStore({ redis: own.url, prefix: 'snapshot:', now });
    try {
      t += 10_000;
      let iat = Math.floor(t / 1000);
      assert.equal(await s.claim('jkt:before-snapshot', 65_000, iat), 'fresh');
      await direct.save();
      assert.equal(await s.claim('jkt:after-snapshot', 65_000, iat), 'fresh');
      // a crash: what was recorded after the snapshot is gone, the marker of the snapshot is back
      await own.stop('SIGKILL');
      await own.start();
      t += 1000;
      const result = await eventually('the store reaches the restarted Redis', async () => s.claim('jkt:after-snapshot', 65_000, iat).catch(() => undefined), { timeout: 10_000 });
      assert.equal(result, 'unavailable', 'the replay of a record the snapshot lacks is not fresh');
      assert.equal(s.losses, 2, 'the first start and the restored snapshot');
      t += 8_000;
      assert.equal(await s.claim('jkt:after-snapshot', 65_000, iat), 'replayed');
      iat = Math.floor(t / 1000);
      assert.equal(await s.claim('jkt:new', 65_000, iat), 'fresh');
    } finally {
      await s.close();
      direct.disconnect();
      await own.close();
    }
  });
});
