// The FastStore contract (the pub/sub bus every instance listens on), run against Redis and the
// in-process store; and how the Redis store fails when Redis is not there. One-time claims are the
// replay guard's (replay-guard.test.ts).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { errors } from 'oidc-provider';
import { StorageUnavailable } from '../../src/storage/errors.js';
import { createMemoryStore, createRedisStore, type FastStore, type RedisStore } from '../../src/storage/fast-store.js';
import { silentLog, testRedisPrefix } from './helpers.js';
import { eventually, settlesWithin } from '../support/wait.js';

interface Fleet {
  /** a store that is one "instance" on the shared bus, connected */
  instance(): Promise<FastStore>;
  /** a store on a different bus (another deployment / prefix), connected */
  stranger(): Promise<FastStore>;
  cleanup(): Promise<void>;
}

const uid = (l: string) => `${l}-${randomBytes(5).toString('hex')}`;
/** late copies of subscription probes may still arrive; they are not part of what a test asserts */
const real = (messages: string[]) => messages.filter((m) => !m.startsWith('probe-'));

/** Subscribe on `listener`, then publish probes from `sender` until the listener hears one (subscriptions are asynchronous). */
async function connected(sender: FastStore, listener: FastStore, channel: string): Promise<void> {
  const probe = uid('probe');
  let heard = false;
  listener.subscribe(channel, (m) => {
    if (m === probe) heard = true;
  });
  await eventually(`subscription on ${channel} is live`, async () => {
    if (heard) return true;
    await sender.publish(channel, probe);
    return false;
  });
}

function fastStoreContract(name: string, makeFleet: () => Fleet, { multiInstance }: { multiInstance: boolean }): void {
  describe(`FastStore contract: ${name}`, () => {
    const fleet = makeFleet();
    after(async () => {
      await fleet.cleanup();
    });

    it('publish reaches every subscriber of the channel, and only that channel', async () => {
      const s = await fleet.instance();
      const channel = uid('ch');
      await connected(s, s, channel);
      const got1: string[] = [];
      const got2: string[] = [];
      const otherChannel: string[] = [];
      s.subscribe(channel, (m) => got1.push(m));
      s.subscribe(channel, (m) => got2.push(m));
      s.subscribe(`${channel}-other`, (m) => otherChannel.push(m));
      await connected(s, s, `${channel}-other`);
      await s.publish(channel, 'hello');
      await s.publish(channel, 'world');
      await eventually('both handlers got both messages', () => real(got1).length >= 2 && real(got2).length >= 2);
      assert.deepEqual(real(got1), ['hello', 'world']);
      assert.deepEqual(real(got2), ['hello', 'world']);
      // a marker on the other channel, sent after: once it arrives, anything misrouted would have too
      await s.publish(`${channel}-other`, 'marker');
      await eventually('marker', () => otherChannel.includes('marker'));
      assert.deepEqual(otherChannel.filter((m) => !m.startsWith('probe-')), ['marker']);
    });

    it('a handler that throws is contained: the other handlers still get the message, and later ones too', async () => {
      const s = await fleet.instance();
      const channel = uid('throws');
      await connected(s, s, channel);
      const got: string[] = [];
      s.subscribe(channel, (m) => {
        if (!m.startsWith('probe-')) throw new TypeError(`cannot handle ${m}`);
      });
      s.subscribe(channel, (m) => got.push(m));
      await s.publish(channel, 'first');
      await s.publish(channel, 'second');
      // an escaped throw is an uncaught exception: node:test fails the run
      await eventually('both delivered past the throwing handler', () => real(got).length === 2);
      assert.deepEqual(real(got), ['first', 'second']);
    });

    it('publish never calls handlers synchronously', async () => {
      const s = await fleet.instance();
      const channel = uid('async');
      await connected(s, s, channel);
      const got: string[] = [];
      s.subscribe(channel, (m) => got.push(m));
      const p = s.publish(channel, 'x');
      assert.deepEqual(real(got), []);
      await p;
      await eventually('delivered', () => real(got).length === 1);
      assert.deepEqual(real(got), ['x']);
    });

    if (multiInstance) {
      it('two instances with the same prefix both receive what either publishes', async () => {
        const a = await fleet.instance();
        const b = await fleet.instance();
        const channel = uid('fleet');
        await connected(a, b, channel);
        await connected(b, a, channel);
        const gotA: string[] = [];
        const gotB: string[] = [];
        a.subscribe(channel, (m) => gotA.push(m));
        b.subscribe(channel, (m) => gotB.push(m));
        await a.publish(channel, 'from-a');
        await b.publish(channel, 'from-b');
        await eventually('both instances got both messages', () => real(gotA).length >= 2 && real(gotB).length >= 2);
        assert.deepEqual(real(gotA).sort(), ['from-a', 'from-b']);
        assert.deepEqual(real(gotB).sort(), ['from-a', 'from-b']);
      });
    }

    it('a store on a different bus does not receive', async () => {
      const a = await fleet.instance();
      const stranger = await fleet.stranger();
      const strangerPeer = await fleet.stranger();
      const channel = uid('iso');
      await connected(a, a, channel);
      await connected(strangerPeer, stranger, channel);
      const heard: string[] = [];
      stranger.subscribe(channel, (m) => heard.push(m));
      const mine: string[] = [];
      a.subscribe(channel, (m) => mine.push(m));
      await a.publish(channel, 'private');
      await eventually('the sender bus delivered', () => mine.includes('private'));
      // a marker on the stranger's bus sent after; once it arrives, a leaked message would have too
      await strangerPeer.publish(channel, 'marker');
      await eventually('marker', () => heard.includes('marker'));
      assert.deepEqual(real(heard), ['marker']);
    });
  });
}

fastStoreContract('createRedisStore', () => {
  const mine = testRedisPrefix('fs');
  const theirs = testRedisPrefix('fs2');
  const stores: FastStore[] = [];
  const make = async (prefix: string) => {
    const s = createRedisStore(mine.url, prefix, silentLog);
    stores.push(s);
    // a fresh store refuses commands until connected (no offline queue, by design): wait for it
    await eventually('redis store ready', () => s.isReady());
    return s;
  };
  return {
    instance: () => make(mine.prefix),
    stranger: () => make(theirs.prefix),
    async cleanup() {
      for (const s of stores) await s.close();
      await mine.cleanup();
      await theirs.cleanup();
    },
  };
}, { multiInstance: true });

fastStoreContract('createMemoryStore', () => {
  // one process, one bus: every instance() is the same store; a stranger is another memory store
  const shared = createMemoryStore();
  const strangers: FastStore[] = [];
  let current: FastStore | undefined;
  return {
    instance: async () => shared,
    stranger: async () => {
      // stranger() is called twice per test for a sender/listener pair on the same (other) bus
      if (!current || strangers.length % 2 === 0) {
        current = createMemoryStore();
      }
      strangers.push(current);
      return current;
    },
    async cleanup() {
      await shared.close();
      for (const s of new Set(strangers)) await s.close();
    },
  };
}, { multiInstance: false });

describe('createRedisStore: Redis unreachable', () => {
  const stores: RedisStore[] = [];
  after(async () => {
    for (const s of stores) await s.close();
  });
  const unreachable = () => {
    // nothing listens on port 1
    const s = createRedisStore('redis://127.0.0.1:1/0', 'sigil_test_down:', silentLog);
    stores.push(s);
    return s;
  };

  const isUnavailable = (err: unknown) => {
    assert.ok(err instanceof StorageUnavailable, `expected StorageUnavailable, got ${String(err)}`);
    assert.ok(err instanceof errors.OIDCProviderError);
    assert.equal(err.status, 503);
    assert.equal(err.statusCode, 503);
    assert.equal(err.error, 'temporarily_unavailable');
    assert.equal(err.store, 'redis');
    assert.equal(err.expose, true, 'exposed, so oidc-provider does not turn it into server_error');
    return true;
  };

  it('claim() rejects with StorageUnavailable (503 temporarily_unavailable) instead of hanging', async () => {
    const s = unreachable();
    await assert.rejects(settlesWithin(s.claim(0, 'marker', ['k'], 60), 10_000, 'claim'), isUnavailable);
    // still refusing on later calls (reconnect attempts in the background)
    await assert.rejects(settlesWithin(s.claim(0, 'marker', ['k'], 60), 10_000, 'claim'), isUnavailable);
  });

  it('readMarker(), startGeneration(), expire(), publish() and ping() reject the same way', async () => {
    const s = unreachable();
    await assert.rejects(settlesWithin(s.readMarker(0), 10_000, 'readMarker'), isUnavailable);
    await assert.rejects(settlesWithin(s.startGeneration(0, undefined, 'ab:1:0'), 10_000, 'startGeneration'), isUnavailable);
    await assert.rejects(settlesWithin(s.expire(0, 'k', 60), 10_000, 'expire'), isUnavailable);
    await assert.rejects(settlesWithin(s.publish('c', 'm'), 10_000, 'publish'), isUnavailable);
    await assert.rejects(settlesWithin(s.ping(), 10_000, 'ping'), isUnavailable);
  });

  it('isReady() is false and subscribe() does not throw', async () => {
    const s = unreachable();
    assert.equal(s.isReady(), false);
    s.subscribe('c', () => {});
  });

  it('redisReplayGuard over an unreachable store refuses (never answers "not a replay")', async () => {
    const { redisReplayGuard } = await import('../../src/storage/replay-guard.js');
    const { ReplayGenerations } = await import('../../src/storage/replay-generations.js');
    const store = unreachable();
    const generations = new ReplayGenerations(store, undefined as never, silentLog);
    await assert.rejects(settlesWithin(generations.check(), 10_000, 'check'), isUnavailable);
    const g = redisReplayGuard(store, generations);
    await assert.rejects(settlesWithin(g.claim('client', { id: 'jti', iat: () => undefined }, 60), 10_000, 'claim'), isUnavailable);
  });
});
