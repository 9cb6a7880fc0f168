// The bound on argon2 work at /register (issue 10, finding 9): token buckets per initial access
// token id and per source address, on an injected clock (no waiting, no timing).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { testClock } from '../support/clock.js';
import { PER_ADDRESS, PER_TOKEN, RegistrationThrottle, sourceKey } from '../../src/registration/registration-throttle.js';

/** the throttle's clock, moved in seconds */
function clock() {
  const c = testClock(1_000_000);
  return { now: c.now, advance: (seconds: number) => c.advance(seconds * 1000) };
}

describe('RegistrationThrottle', () => {
  it('per token id: 10 checks at once, then one every 6 s, saying how long to wait', () => {
    assert.deepEqual(PER_TOKEN, { burst: 10, refillSeconds: 6 });
    const c = clock();
    const t = new RegistrationThrottle({ now: c.now });
    // a different address each time: only the token's bucket can run dry
    for (let i = 0; i < 10; i++) assert.deepEqual(t.admit('id1', `198.51.100.${i}`), { ok: true }, `check ${i}`);
    assert.deepEqual(t.admit('id1', '198.51.100.200'), { ok: false, retryAfterSeconds: 6 });
    c.advance(4);
    assert.deepEqual(t.admit('id1', '198.51.100.201'), { ok: false, retryAfterSeconds: 2 });
    c.advance(2);
    assert.deepEqual(t.admit('id1', '198.51.100.202'), { ok: true });
    assert.deepEqual(t.admit('id1', '198.51.100.203'), { ok: false, retryAfterSeconds: 6 });
    // another token is not affected
    assert.deepEqual(t.admit('id2', '198.51.100.204'), { ok: true });
  });

  it('per source address: 20 checks at once over any token ids, then one every 3 s', () => {
    assert.deepEqual(PER_ADDRESS, { burst: 20, refillSeconds: 3 });
    const c = clock();
    const t = new RegistrationThrottle({ now: c.now });
    for (let i = 0; i < 20; i++) assert.deepEqual(t.admit(`token-${i}`, '203.0.113.7'), { ok: true }, `check ${i}`);
    assert.deepEqual(t.admit('token-new', '203.0.113.7'), { ok: false, retryAfterSeconds: 3 });
    assert.deepEqual(t.admit('token-new', '203.0.113.8'), { ok: true }, 'another address is not affected');
    c.advance(3);
    assert.deepEqual(t.admit('token-newer', '203.0.113.7'), { ok: true });
  });

  it('a refusal takes nothing: waiting is enough, hammering does not extend the wait', () => {
    const c = clock();
    const t = new RegistrationThrottle({ now: c.now, perToken: { burst: 1, refillSeconds: 10 } });
    assert.ok(t.admit('id', '192.0.2.1').ok);
    for (let i = 0; i < 100; i++) assert.equal(t.admit('id', '192.0.2.1').ok, false);
    c.advance(10);
    assert.ok(t.admit('id', '192.0.2.1').ok);
  });

  it('a refusal by one bucket takes nothing from the other', () => {
    const c = clock();
    const t = new RegistrationThrottle({ now: c.now, perToken: { burst: 1, refillSeconds: 60 }, perAddress: { burst: 2, refillSeconds: 60 } });
    assert.ok(t.admit('a', '192.0.2.9').ok);
    for (let i = 0; i < 5; i++) assert.equal(t.admit('a', '192.0.2.9').ok, false);
    // the address bucket still holds its second check
    assert.ok(t.admit('b', '192.0.2.9').ok);
    assert.equal(t.admit('c', '192.0.2.9').ok, false);
  });

  it('stays bounded under many addresses and keeps answering', () => {
    const c = clock();
    const t = new RegistrationThrottle({ now: c.now });
    for (let i = 0; i < 25_000; i++) t.admit(`id-${i % 500}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(typeof t.admit('id-x', '10.200.0.1').ok, 'boolean');
  });
});

describe('sourceKey', () => {
  it('IPv4 as is, v4-mapped IPv6 as its IPv4 address, IPv6 by its /64', () => {
    assert.equal(sourceKey('192.0.2.7'), '192.0.2.7');
    assert.equal(sourceKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(sourceKey('2001:db8:1:2:3:4:5:6'), '2001:0db8:0001:0002::/64');
    assert.equal(sourceKey('2001:db8:1:2::99'), '2001:0db8:0001:0002::/64');
    assert.equal(sourceKey('2001:db8:1:3::1'), '2001:0db8:0001:0003::/64');
    assert.equal(sourceKey('::1'), '0000:0000:0000:0000::/64');
    assert.equal(sourceKey(undefined), 'unknown');
  });
});
