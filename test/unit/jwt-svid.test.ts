// JWT-SVID client assertions (src/workload/jwt-svid.ts) against an in-memory trust configuration and
// client index: the happy path, then every way an SVID made for something else, by someone else or
// too long ago must be refused, each with a reason that says why (and never the assertion).
import assert from 'node:assert/strict';
import { before, beforeEach, describe, it } from 'node:test';
import { verifyJwtSvid, type JwtSvidDeps } from '../../src/workload/jwt-svid.js';
import { b64url, unsignedJwt } from '../support/forge.js';
import { assertRefused, authority, MemoryClientIndex, MemoryTrust, mint, workloadClient, type Authority } from '../support/workload-doubles.js';

const ISSUER = 'https://sigil.example';
const NOW = 1_900_000_000;
const PAYMENTS = 'spiffe://example.org/ns/payments/sa/api';


describe('JWT-SVID client authentication', () => {
  let td: Authority;
  let other: Authority;
  let trust: MemoryTrust;
  let clients: MemoryClientIndex;
  let deps: JwtSvidDeps;

  before(async () => {
    td = await authority('td-key-1');
    other = await authority('other-key');
  });

  beforeEach(() => {
    trust = new MemoryTrust();
    trust.addDomain('example.org', [td.publicJwk]);
    trust.addDomain('partner.net', [other.publicJwk]);
    clients = new MemoryClientIndex().add(workloadClient('c-payments', { kind: 'spiffe', spiffeId: PAYMENTS }));
    deps = { issuer: ISSUER, trust, clients, maxLifetimeSeconds: 900, now: () => NOW };
  });

  const svid = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, by = td) =>
    mint(by, { sub: PAYMENTS, aud: [ISSUER], exp: NOW + 300, iat: NOW, ...claims }, header);

  it('authenticates the one client bound to the SVID\'s SPIFFE ID, without a jti', async () => {
    const outcome = await verifyJwtSvid(await svid(), undefined, deps);
    assert.equal(outcome.ok, true);
    if (!outcome.ok) return;
    assert.deepEqual(outcome.verdict, { clientId: 'c-payments', method: 'spiffe_jwt', identity: PAYMENTS });
  });

  it('accepts the same SVID again (SVIDs are reused: no one-time jti)', async () => {
    const token = await svid({ jti: 'same' });
    assert.equal((await verifyJwtSvid(token, undefined, deps)).ok, true);
    assert.equal((await verifyJwtSvid(token, undefined, deps)).ok, true);
  });

  it('accepts aud as a single string, typ JWT, JOSE or absent', async () => {
    assert.equal((await verifyJwtSvid(await svid({ aud: ISSUER }), undefined, deps)).ok, true);
    for (const typ of ['JOSE', 'jwt', undefined]) assert.equal((await verifyJwtSvid(await svid({}, { typ }), undefined, deps)).ok, true, String(typ));
  });

  it('accepts client_id naming the matched client, or the SVID\'s SPIFFE ID, and refuses any other', async () => {
    assert.equal((await verifyJwtSvid(await svid(), 'c-payments', deps)).ok, true);
    assert.equal((await verifyJwtSvid(await svid(), PAYMENTS, deps)).ok, true);
    assertRefused(await verifyJwtSvid(await svid(), 'c-other', deps), /client_id "c-other" is not the client/);
  });

  describe('refuses an SVID', () => {
    it('of another trust domain, even signed by that domain\'s own key', async () => {
      clients.add(workloadClient('c-partner', { kind: 'spiffe', spiffeId: 'spiffe://partner.net/ns/payments/sa/api' }));
      // signed by example.org's key but claiming partner.net: the key must be of the sub's trust domain
      assertRefused(await verifyJwtSvid(await svid({ sub: 'spiffe://partner.net/ns/payments/sa/api' }), undefined, deps), /names no ES256 key of the bundle of trust domain "partner.net"/);
      // partner.net's key signing an example.org ID
      assertRefused(await verifyJwtSvid(await svid({}, { kid: other.kid }, other), undefined, deps), /names no ES256 key of the bundle of trust domain "example.org"/);
    });

    it('of a trust domain that is not configured, or whose bundle is stale', async () => {
      assertRefused(await verifyJwtSvid(await svid({ sub: 'spiffe://unknown.org/x' }), undefined, deps), /not configured/);
      trust.domains.set('example.org', { ok: false, problem: 'the bundle of example.org is 2 hours old, past its bound' });
      assertRefused(await verifyJwtSvid(await svid(), undefined, deps), /past its bound/);
    });

    it('whose kid names no key of the bundle, or is missing, or whose key was removed from the bundle', async () => {
      assertRefused(await verifyJwtSvid(await svid({}, { kid: 'nope' }), undefined, deps), /kid "nope" names no ES256 key/);
      assertRefused(await verifyJwtSvid(await svid({}, { kid: undefined }), undefined, deps), /must name its signing key/);
      trust.addDomain('example.org', [other.publicJwk]);
      assertRefused(await verifyJwtSvid(await svid(), undefined, deps), /names no ES256 key/);
    });

    it('signed by another key under the bundle key\'s kid', async () => {
      assertRefused(await verifyJwtSvid(await mint(td, { sub: PAYMENTS, aud: ISSUER, exp: NOW + 60 }, {}, other.privateKey), undefined, deps), /signature does not verify/);
    });

    it('whose bundle key is meant for X.509-SVIDs', async () => {
      trust.addDomain('example.org', [{ ...td.publicJwk, use: 'x509-svid' }]);
      assertRefused(await verifyJwtSvid(await svid(), undefined, deps), /names no ES256 key/);
    });

    it('with the wrong aud: the token endpoint URL, another server, several values, none', async () => {
      for (const aud of [`${ISSUER}/token`, [`${ISSUER}/token`], 'https://other.example', [ISSUER, 'https://other.example'], [ISSUER, ISSUER], [], undefined, 42]) {
        assertRefused(await verifyJwtSvid(await svid({ aud }), undefined, deps), /aud must be/);
      }
    });

    it('without exp, expired, or expiring further ahead than SVID_MAX_LIFETIME', async () => {
      assertRefused(await verifyJwtSvid(await svid({ exp: undefined }), undefined, deps), /must have an exp/);
      assertRefused(await verifyJwtSvid(await svid({ exp: String(NOW + 60) }), undefined, deps), /must have an exp/);
      assertRefused(await verifyJwtSvid(await svid({ exp: NOW - 6 }), undefined, deps), /has expired/);
      assertRefused(await verifyJwtSvid(await svid({ exp: NOW + 906 }), undefined, deps), /must expire within 900 seconds \(SVID_MAX_LIFETIME\)/);
      assert.equal((await verifyJwtSvid(await svid({ exp: NOW + 900 }), undefined, deps)).ok, true);
    });

    it('not yet valid: nbf or iat in the future (5 s skew)', async () => {
      assertRefused(await verifyJwtSvid(await svid({ nbf: NOW + 30 }), undefined, deps), /not yet valid/);
      assertRefused(await verifyJwtSvid(await svid({ iat: NOW + 30 }), undefined, deps), /iat is in the future/);
      assert.equal((await verifyJwtSvid(await svid({ nbf: NOW + 5, iat: NOW + 5 }), undefined, deps)).ok, true);
    });

    it('with alg none, HS256 (also with the bundle\'s public key as the HMAC secret), or an algorithm Sigil does not take', async () => {
      const claims = { sub: PAYMENTS, aud: ISSUER, exp: NOW + 60 };
      assertRefused(await verifyJwtSvid(unsignedJwt({ alg: 'none', kid: td.kid }, claims), undefined, deps), /alg "none" is not accepted/);
      for (const secret of [JSON.stringify(td.publicJwk), b64url(td.publicJwk), 'secret']) {
        const hs = await mint(td, claims, { alg: 'HS256' }, new TextEncoder().encode(secret));
        assertRefused(await verifyJwtSvid(hs, undefined, deps), /alg "HS256" is not accepted/);
      }
      assertRefused(await verifyJwtSvid(`${b64url({ alg: 'ES384', kid: td.kid })}.${b64url(claims)}.sig`, undefined, deps), /alg "ES384" is not accepted/);
    });

    it('whose typ says it is another kind of JWT', async () => {
      for (const typ of ['dpop+jwt', 'at+jwt', 'client-authentication+jwt', 'statuslist+jwt', 7]) {
        assertRefused(await verifyJwtSvid(await svid({}, { typ }), undefined, deps), /is not a JWT-SVID/);
      }
    });

    it('whose sub is not a SPIFFE ID', async () => {
      for (const sub of [undefined, 'c-payments', 'spiffe://Example.org/x', 'spiffe://example.org/a/../b', 'https://example.org/x']) {
        assertRefused(await verifyJwtSvid(await svid({ sub }), undefined, deps), /sub is not a SPIFFE ID/);
      }
    });

    it('whose SPIFFE ID matches no client, and at the edges of a prefix pattern', async () => {
      clients.add(workloadClient('c-pay', { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/pay/*' }));
      assert.equal(((await verifyJwtSvid(await svid({ sub: 'spiffe://example.org/ns/pay/x' }), undefined, deps)) as { verdict: { clientId: string } }).verdict.clientId, 'c-pay');
      assert.equal(((await verifyJwtSvid(await svid({ sub: 'spiffe://example.org/ns/pay/x/y' }), undefined, deps)) as { verdict: { clientId: string } }).verdict.clientId, 'c-pay');
      for (const sub of ['spiffe://example.org/ns/pay', 'spiffe://example.org/ns/payments', 'spiffe://example.org/ns/pay-x/y', 'spiffe://example.org/ns', 'spiffe://example.org']) {
        assertRefused(await verifyJwtSvid(await svid({ sub }), undefined, deps), /no active client is bound to SPIFFE ID/);
      }
    });

    it('matching two clients (data made ambiguous), or only a revoked one', async () => {
      clients.add(workloadClient('c-ns', { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/payments/*' }));
      assertRefused(await verifyJwtSvid(await svid(), undefined, deps), /several clients are bound/);
      clients.clients.splice(0);
      clients.add(workloadClient('c-revoked', { kind: 'spiffe', spiffeId: PAYMENTS }, { status: 'revoked' }));
      assertRefused(await verifyJwtSvid(await svid(), undefined, deps), /no active client is bound/);
    });

    it('matched by an index that returns a client whose pattern does not match (defence in depth)', async () => {
      const sloppy = { bySpiffeId: async () => [workloadClient('c-wrong', { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/pay/*' })] };
      assertRefused(await verifyJwtSvid(await svid({ sub: 'spiffe://example.org/ns/payments' }), undefined, { ...deps, clients: sloppy }), /no active client/);
    });

    it('that is not a JWT at all', async () => {
      assertRefused(await verifyJwtSvid('not-a-jwt', undefined, deps), /not a signed JWT/);
    });
  });

  it('answers unavailable (503, fail closed) when the trust configuration or the clients cannot be read', async () => {
    trust.failure = new Error('postgres down');
    assert.deepEqual(await verifyJwtSvid(await svid(), undefined, deps), { ok: false, kind: 'unavailable', problem: 'the bundle of trust domain "example.org" cannot be read now' });
    trust.failure = undefined;
    clients.failure = new Error('postgres down');
    assert.deepEqual(await verifyJwtSvid(await svid(), undefined, deps), { ok: false, kind: 'unavailable', problem: 'the clients cannot be read now' });
  });

  it('never puts the assertion into its reason', async () => {
    const token = await svid({ aud: 'https://other.example' });
    const outcome = await verifyJwtSvid(token, undefined, deps);
    assert.equal(outcome.ok, false);
    if (outcome.ok) return;
    for (const segment of token.split('.')) assert.ok(!outcome.problem.includes(segment));
  });
});
