// The `act` chain as every check reads it: each actor, outermost first, and never a partial answer — a
// chain deeper than the walk (ACT_WALK_LIMIT levels) or malformed at any level is treated as revoked,
// so a revoked actor cannot hide below the walk's end (issue 10, finding 4).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ACT_WALK_LIMIT, actorsOf, chainClientsOf } from '../../src/tokens/delegation-chain.js';
import { isAccessTokenRevoked } from '../../src/revocation/revocation-list.js';
import type { AccessTokenClaims } from '../../src/tokens/access-tokens.js';

/** act nested `depth` levels: act.sub = actor-0 (outermost), act.act.sub = actor-1, ... */
function nested(depth: number, sub = (i: number): unknown => `actor-${i}`): Record<string, unknown> | undefined {
  let act: Record<string, unknown> | undefined;
  for (let i = depth - 1; i >= 0; i--) act = { sub: sub(i), ...(act ? { act } : {}) };
  return act;
}

function claims(act: Record<string, unknown> | undefined): AccessTokenClaims {
  return { jti: 'jti-1', client_id: 'actor-0', sub: 'root', ...(act ? { act } : {}) } as AccessTokenClaims;
}

/** the revocation list as isAccessTokenRevoked reads it */
function list(revokedClients: string[] = [], revokedTokens: string[] = []) {
  return { isClientRevoked: (id: string) => revokedClients.includes(id), isTokenRevoked: (jti: string) => revokedTokens.includes(jti) };
}

describe('delegation chains', () => {
  it('actorsOf reads every actor, outermost first; no act is no actors', () => {
    assert.deepEqual(actorsOf(undefined), []);
    assert.deepEqual(actorsOf({ sub: 'c', act: { sub: 'b' } }), ['c', 'b']);
    assert.deepEqual(actorsOf(nested(ACT_WALK_LIMIT)), Array.from({ length: ACT_WALK_LIMIT }, (_, i) => `actor-${i}`));
  });

  it('actorsOf gives no answer for a chain deeper than the walk, or a level without a string sub', () => {
    assert.equal(actorsOf(nested(ACT_WALK_LIMIT + 1)), undefined);
    assert.equal(actorsOf(nested(100)), undefined);
    assert.equal(actorsOf(nested(3, (i) => (i === 2 ? 42 : `actor-${i}`))), undefined);
    assert.equal(actorsOf({ sub: 'a', act: 'b' }), undefined);
    assert.equal(actorsOf({ sub: 'a', act: null }), undefined);
    assert.equal(actorsOf('a'), undefined);
    assert.equal(chainClientsOf(claims(nested(ACT_WALK_LIMIT + 1))), undefined);
    assert.deepEqual(chainClientsOf(claims(nested(2))), ['actor-0', 'root', 'actor-0', 'actor-1']);
  });

  it('a revoked actor is found at every depth the walk reads', () => {
    for (const depth of [1, 2, 5, ACT_WALK_LIMIT]) {
      const deepest = `actor-${depth - 1}`;
      assert.equal(isAccessTokenRevoked(list([deepest]), claims(nested(depth))), true, `revoked actor at level ${depth}`);
      assert.equal(isAccessTokenRevoked(list([]), claims(nested(depth))), false, `nothing revoked at depth ${depth}`);
    }
  });

  it('a chain deeper than the walk is revoked, whether or not a revoked actor hides below its end', () => {
    assert.equal(isAccessTokenRevoked(list(['actor-35']), claims(nested(40))), true);
    assert.equal(isAccessTokenRevoked(list([]), claims(nested(ACT_WALK_LIMIT + 1))), true);
    assert.equal(isAccessTokenRevoked(list([]), claims(nested(3, (i) => (i === 1 ? { x: 1 } : `actor-${i}`)))), true);
  });

  it('the holder, the subject and the token itself are checked as before', () => {
    assert.equal(isAccessTokenRevoked(list(['root']), claims(nested(1))), true);
    assert.equal(isAccessTokenRevoked(list(['actor-0']), claims(undefined)), true);
    assert.equal(isAccessTokenRevoked(list([], ['jti-1']), claims(undefined)), true);
    assert.equal(isAccessTokenRevoked(list(['someone-else'], ['other-jti']), claims(nested(3))), false);
  });
});
