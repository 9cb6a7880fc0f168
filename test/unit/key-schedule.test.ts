// The signing-key schedule (keys/key-ring.ts): which key signs, which are published, and when the next
// change happens, derived from activation times alone at an injected instant. Every transition is
// checked on both sides of its boundary; then KeyRing on real Postgres (rotation staging, JWKS max-age).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { JWK } from 'jose';
import { KeyRing, schedule, type KeySnapshot, type KeyState, type KeyTimings } from '../../src/keys/key-ring.js';
import { stageNextKey, type StoredKey } from '../../src/keys/signing-keys.js';
import { createLogger } from '../../src/log.js';
import { createPgDb, type Db } from '../../src/storage/db.js';
import { createMemoryStore } from '../../src/storage/fast-store.js';
import { migrate } from '../../src/storage/migrate.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const S = 1000;
const TIMINGS: KeyTimings = { jwksMaxAgeSeconds: 300, propagationSeconds: 5, retireAfterSeconds: 3600 };

/** a stored key activating at `activateAt` (ms); the JWKs are placeholders the schedule only passes on */
function key(kid: string, activateAt: number): StoredKey {
  return {
    kid,
    alg: 'ES256',
    privateJwk: { kid, kty: 'EC', d: `private-${kid}` } as JWK,
    publicJwk: { kid, kty: 'EC' } as JWK,
    createdAt: new Date(activateAt - 60 * S),
    activateAt: new Date(activateAt),
  };
}

const at = (keys: StoredKey[], now: number, t: KeyTimings = TIMINGS) => schedule(keys, now, t);
function states(s: KeySnapshot | undefined): Record<string, KeyState> {
  assert.ok(s, 'a key is active');
  return Object.fromEntries(s.views.map((v) => [v.kid, v.state]));
}
const publicKids = (s: KeySnapshot) => s.publicJwks.map((k) => k.kid);
const privateKids = (s: KeySnapshot) => s.privateJwks.keys.map((k) => k.kid);

describe('key schedule: no key can sign', () => {
  it('no keys at all: no snapshot', () => {
    assert.equal(at([], T0), undefined);
  });

  it('only keys that activate later: no snapshot, up to and excluding the first activation', () => {
    const keys = [key('a', T0 + 10 * S), key('b', T0 + 20 * S)];
    assert.equal(at(keys, T0), undefined);
    assert.equal(at(keys, T0 + 10 * S - 1), undefined);
    assert.equal(at(keys, T0 + 10 * S)?.active.kid, 'a');
  });
});

describe('key schedule: one key', () => {
  const keys = [key('a', T0)];

  it('signs from its activation instant exactly, is published, and nothing is scheduled', () => {
    const s = at(keys, T0)!;
    assert.equal(s.active.kid, 'a');
    assert.deepEqual(states(s), { a: 'active' });
    assert.deepEqual(publicKids(s), ['a']);
    assert.deepEqual(privateKids(s), ['a']);
    assert.equal(s.nextChangeAt, undefined);
    assert.equal(s.views[0]!.retires_at, undefined, 'a key without a successor never retires');
    assert.equal(s.views[0]!.activates_at, new Date(T0).toISOString());
  });

  it('stays active however long it has signed', () => {
    assert.deepEqual(states(at(keys, T0 + 10 * 365 * 86_400 * S)), { a: 'active' });
  });

  it('publishes only public members and hands the private JWK to the signer', () => {
    const s = at(keys, T0)!;
    assert.equal((s.publicJwks[0] as { d?: string }).d, undefined);
    assert.equal((s.privateJwks.keys[0] as { d?: string }).d, 'private-a');
  });
});

describe('key schedule: rotation from a to b', () => {
  const bAt = T0 + 1000 * S;
  const aRetires = bAt + TIMINGS.retireAfterSeconds * S;
  // given newest first: the schedule orders by activation itself
  const keys = [key('b', bAt), key('a', T0)];

  it('staged: b is published before it signs, a signs, the next change is b activating', () => {
    const s = at(keys, bAt - 1)!;
    assert.equal(s.active.kid, 'a');
    assert.deepEqual(states(s), { a: 'active', b: 'next' });
    assert.deepEqual(publicKids(s), ['a', 'b']);
    assert.deepEqual(privateKids(s), ['a', 'b'], 'the signing key comes first for oidc-provider');
    assert.equal(s.nextChangeAt, bAt);
    assert.equal(s.views.find((v) => v.kid === 'a')!.retires_at, new Date(aRetires).toISOString(), 'a retirement is announced once a successor exists');
    assert.equal(s.views.find((v) => v.kid === 'b')!.retires_at, undefined);
  });

  it('at b activation exactly: b signs, a retiring and still published, next change is a retiring', () => {
    const s = at(keys, bAt)!;
    assert.equal(s.active.kid, 'b');
    assert.deepEqual(states(s), { a: 'retiring', b: 'active' });
    assert.deepEqual(publicKids(s), ['a', 'b']);
    assert.deepEqual(privateKids(s), ['b', 'a']);
    assert.equal(s.nextChangeAt, aRetires);
  });

  it('one millisecond before a retires it is still published', () => {
    const s = at(keys, aRetires - 1)!;
    assert.deepEqual(states(s), { a: 'retiring', b: 'active' });
    assert.deepEqual(publicKids(s), ['a', 'b']);
    assert.equal(s.nextChangeAt, aRetires);
  });

  it('at a retirement exactly: a leaves the JWKS and the signer, nothing further is scheduled', () => {
    const s = at(keys, aRetires)!;
    assert.deepEqual(states(s), { a: 'retired', b: 'active' });
    assert.deepEqual(publicKids(s), ['b']);
    assert.deepEqual(privateKids(s), ['b']);
    assert.equal(s.nextChangeAt, undefined);
    assert.equal(s.views.length, 2, 'a retired key is still shown (with its retirement time) until it is deleted');
  });

  it('retireAfterSeconds 0: a is retired the instant b activates', () => {
    const t = { ...TIMINGS, retireAfterSeconds: 0 };
    assert.deepEqual(states(at(keys, bAt - 1, t)), { a: 'active', b: 'next' });
    const s = at(keys, bAt, t)!;
    assert.deepEqual(states(s), { a: 'retired', b: 'active' });
    assert.deepEqual(publicKids(s), ['b']);
    assert.equal(s.nextChangeAt, undefined);
  });
});

describe('key schedule: several keys', () => {
  it('a retirement counts from its own successor activation, not from the newest key', () => {
    const keys = [key('a', T0), key('b', T0 + 100 * S), key('c', T0 + 5000 * S)];
    const s = at(keys, T0 + 4000 * S)!;
    // a retired at 100 s + 3600 s = 3700 s, before now; c is staged
    assert.deepEqual(states(s), { a: 'retired', b: 'active', c: 'next' });
    assert.equal(s.views[0]!.retires_at, new Date(T0 + 3700 * S).toISOString());
    assert.equal(s.views[1]!.retires_at, new Date(T0 + 8600 * S).toISOString());
    assert.deepEqual(publicKids(s), ['b', 'c']);
    assert.equal(s.nextChangeAt, T0 + 5000 * S);
  });

  it('overlapping retirements: two retiring keys are published together, the earliest change is next', () => {
    const keys = [key('a', T0), key('b', T0 + 100 * S), key('c', T0 + 200 * S)];
    const s = at(keys, T0 + 300 * S)!;
    assert.deepEqual(states(s), { a: 'retiring', b: 'retiring', c: 'active' });
    assert.deepEqual(publicKids(s), ['a', 'b', 'c']);
    assert.deepEqual(privateKids(s), ['c', 'a', 'b']);
    assert.equal(s.nextChangeAt, T0 + 3700 * S, 'a (successor b at 100 s) retires first');
    const later = at(keys, T0 + 3700 * S)!;
    assert.deepEqual(states(later), { a: 'retired', b: 'retiring', c: 'active' });
    assert.equal(later.nextChangeAt, T0 + 3800 * S);
  });

  it('a staged key and a retiring key at once: the next change is whichever comes first', () => {
    const keys = [key('a', T0), key('b', T0 + 100 * S), key('c', T0 + 200 * S)];
    const s = at(keys, T0 + 150 * S)!;
    assert.deepEqual(states(s), { a: 'retiring', b: 'active', c: 'next' });
    assert.equal(s.nextChangeAt, T0 + 200 * S);
    assert.deepEqual(privateKids(s), ['b', 'a', 'c']);
  });

  it('only the latest started key signs, even when two have started', () => {
    const keys = [key('a', T0), key('b', T0 + 1)];
    const s = at(keys, T0 + 1)!;
    assert.equal(s.active.kid, 'b');
    assert.deepEqual(states(s), { a: 'retiring', b: 'active' });
  });

  it('the answer does not depend on the order the rows come in', () => {
    const keys = [key('a', T0), key('b', T0 + 100 * S), key('c', T0 + 200 * S), key('d', T0 + 9000 * S)];
    const expected = at(keys, T0 + 150 * S);
    for (const order of [[3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]]) {
      assert.deepEqual(at(order.map((i) => keys[i]!), T0 + 150 * S), expected);
    }
  });
});

describe('key schedule: properties over random key sets and instants', () => {
  const arbitraryKeys = fc.uniqueArray(fc.integer({ min: 0, max: 20_000 }), { minLength: 1, maxLength: 6 }).map((offsets) => offsets.map((o, i) => key(`k${i}`, T0 + o * S)));
  const arbitraryNow = fc.integer({ min: -1000, max: 30_000 }).map((o) => T0 + o * S);
  const arbitraryRetire = fc.integer({ min: 0, max: 5000 });

  it('exactly one active key, the latest started; the JWKS is every key not retired; the signer lists the active one first', () => {
    fc.assert(
      fc.property(arbitraryKeys, arbitraryNow, arbitraryRetire, (keys, now, retire) => {
        const s = at(keys, now, { ...TIMINGS, retireAfterSeconds: retire });
        const started = keys.filter((k) => k.activateAt.getTime() <= now).sort((a, b) => a.activateAt.getTime() - b.activateAt.getTime());
        if (!started.length) return s === undefined;
        assert.ok(s);
        assert.equal(s.active.kid, started.at(-1)!.kid);
        assert.deepEqual(s.views.filter((v) => v.state === 'active').map((v) => v.kid), [s.active.kid]);
        for (const v of s.views) {
          if (Date.parse(v.activates_at) > now) assert.equal(v.state, 'next');
        }
        assert.deepEqual(publicKids(s), s.views.filter((v) => v.state !== 'retired').map((v) => v.kid));
        assert.equal(privateKids(s)[0], s.active.kid);
        assert.deepEqual([...privateKids(s)].sort(), [...publicKids(s)].sort());
        return true;
      }),
    );
  });

  it('nothing changes before nextChangeAt, something changes at it, and with no nextChangeAt nothing ever changes', () => {
    fc.assert(
      fc.property(arbitraryKeys, arbitraryNow, arbitraryRetire, fc.double({ min: 0, max: 1, noNaN: true }), (keys, now, retire, fraction) => {
        const t = { ...TIMINGS, retireAfterSeconds: retire };
        const s = at(keys, now, t);
        if (!s) return true;
        const next = s.nextChangeAt;
        if (next === undefined) {
          assert.deepEqual(states(at(keys, now + 100_000 * S, t)), states(s));
          return true;
        }
        assert.ok(next > now, 'the next change lies in the future');
        const between = now + Math.floor((next - 1 - now) * fraction);
        assert.deepEqual(states(at(keys, between, t)), states(s), `no change at ${between - T0} before ${next - T0}`);
        assert.deepEqual(states(at(keys, next - 1, t)), states(s));
        assert.notDeepEqual(states(at(keys, next, t)), states(s), 'the announced change happens');
        return true;
      }),
    );
  });
});

describe('KeyRing on Postgres: staging a key and how long the JWKS may be cached', () => {
  let storage: TestStorage;
  let db: Db;
  let ring: KeyRing;
  const timings: KeyTimings = { jwksMaxAgeSeconds: 300, propagationSeconds: 10, retireAfterSeconds: 600 };

  before(async () => {
    storage = await createTestStorage('keysched');
    db = createPgDb(storage.databaseUrl, 2);
    await migrate(db);
    ring = new KeyRing(db, randomBytes(32), 'ES256', timings, createMemoryStore(), createLogger('silent'));
    await ring.start();
  });
  after(async () => {
    ring?.stop();
    await db?.close();
    await storage?.cleanup();
  });

  it('the first start creates one active key; with nothing scheduled the JWKS max-age is the configured one', () => {
    assert.deepEqual(ring.current.views.map((v) => v.state), ['active']);
    assert.equal(ring.current.nextChangeAt, undefined);
    assert.equal(ring.jwksMaxAge(), timings.jwksMaxAgeSeconds);
  });

  it('rotate stages a key that activates after max-age plus propagation; a second rotate is refused while it waits', async () => {
    const first = ring.current.active.kid;
    const before = Date.now();
    const staged = await ring.rotate();
    const afterCall = Date.now();
    assert.ok(staged);
    assert.equal(staged.state, 'next');
    const activates = Date.parse(staged.activates_at);
    const wait = (timings.jwksMaxAgeSeconds + timings.propagationSeconds) * S;
    assert.ok(activates >= before + wait && activates <= afterCall + wait, 'every cache of the old JWKS has expired before the new key signs');
    assert.equal(ring.current.active.kid, first, 'the old key still signs');
    assert.deepEqual(publicKids(ring.current).sort(), [first, staged.kid].sort(), 'the staged key is published at once');
    assert.equal(ring.current.nextChangeAt, activates);
    assert.equal(await ring.rotate(), undefined, 'one staged key at a time');
  });

  it('the JWKS max-age never reaches past the next key change, and is never negative', () => {
    const next = ring.current.nextChangeAt!;
    assert.equal(ring.jwksMaxAge(next - 1000 * S), timings.jwksMaxAgeSeconds, 'far from the change: the configured max-age');
    assert.equal(ring.jwksMaxAge(next - 120 * S), 120);
    assert.equal(ring.jwksMaxAge(next - 1999), 1, 'whole seconds, rounded down');
    assert.equal(ring.jwksMaxAge(next - 999), 0);
    assert.equal(ring.jwksMaxAge(next + 5 * S), 0, 'past a change not yet recomputed: not cached at all');
  });
});

describe('KeyRing on Postgres: changes at their scheduled instant, retired keys leave the database', () => {
  let storage: TestStorage;
  let db: Db;
  let ring: KeyRing;
  const kek = randomBytes(32);
  // a long propagation slack: the ring's safety poll (every third of it) cannot be what makes the change
  const timings: KeyTimings = { jwksMaxAgeSeconds: 300, propagationSeconds: 600, retireAfterSeconds: 600 };

  before(async () => {
    storage = await createTestStorage('keysched2');
    db = createPgDb(storage.databaseUrl, 2);
    await migrate(db);
    ring = new KeyRing(db, kek, 'ES256', timings, createMemoryStore(), createLogger('silent'));
    await ring.start();
  });
  after(async () => {
    ring?.stop();
    await db?.close();
    await storage?.cleanup();
  });

  it('a staged key starts signing at its activation instant, without a reload, and listeners are told', async () => {
    const original = ring.current.active.kid;
    const activateAt = Date.now() + 300;
    const kid = await stageNextKey(db, 'ES256', kek, new Date(activateAt));
    assert.ok(kid);
    await ring.reload();
    assert.equal(ring.current.active.kid, original);
    assert.equal(ring.current.views.find((v) => v.kid === kid)?.state, 'next');
    const changed = await new Promise<{ snapshot: KeySnapshot; at: number }>((resolve, reject) => {
      const guard = setTimeout(() => reject(new Error('no key change within 10 s')), 10_000);
      ring.onChange((snapshot) => {
        clearTimeout(guard);
        resolve({ snapshot, at: Date.now() });
      });
    });
    assert.ok(changed.at >= activateAt, 'not before its activation instant');
    assert.equal(changed.snapshot.active.kid, kid);
    assert.equal(ring.current.active.kid, kid);
    assert.deepEqual(states(ring.current), { [original]: 'retiring', [kid]: 'active' });
  });

  it('a key retired for more than a day is deleted from the database; a retiring one is kept', async () => {
    const day = 86_400 * S;
    const old = await stageNextKey(db, 'ES256', kek, new Date(Date.now() - 3 * day));
    const older = await stageNextKey(db, 'ES256', kek, new Date(Date.now() - 4 * day));
    assert.ok(old && older);
    await ring.reload();
    // `older` retired when its successor `old` activated, 4 days ago + 600 s: deleted. `old`, whose
    // successor is the first key (activated minutes ago), is retiring and stays, as do the other two.
    const kids = async () => (await storage.sql<{ kid: string }>('SELECT kid FROM signing_keys')).map((r) => r.kid);
    let left = await kids();
    // the deletion is not awaited by reload(): read until it shows (each read is a round trip, no sleep)
    for (let i = 0; i < 200 && left.includes(older); i++) left = await kids();
    assert.equal(left.includes(older), false, 'retired for over a day: deleted');
    assert.equal(left.length, 3, 'every key still published is kept');
    assert.deepEqual(states(ring.current)[old], 'retiring');
    assert.deepEqual(Object.values(states(ring.current)).sort(), ['active', 'retired', 'retiring', 'retiring'], 'the snapshot still shows the deleted key as retired');
  });
});
