// Sigil's DPoP proof check (RFC 9449 §4.3), on its own: every refusal, the iat window with and
// without nonces, and the proof-key cache (a cached key never stands in for a signature check).
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import ServerChallenge from 'oidc-provider/lib/helpers/challenge.js';
import { generateClientKey, keyPairFromPrivateJwk, type KeyAlg, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { DpopProofError, DpopProofVerifier, PROOF_MAX_AGE_SECONDS, PROOF_MAX_SKEW_SECONDS, type ProofExpectations } from '../../src/tokens/dpop-proof.js';
import {
  b64url, dpopJwk, ed25519IdentityKey, forgeProof, rfc7638Thumbprint, rsaExponentOneKey, signJws, unsignedJwt, type ForgeOptions,
} from '../support/forge.js';

const URL_ = 'https://sigil.example/token';
const ALGS = ['ES256', 'EdDSA', 'PS256', 'RS256'] as const;
const expect = (over: Partial<ProofExpectations> = {}): ProofExpectations => ({ method: 'POST', url: URL_, ...over });

async function keyPair(alg: KeyAlg = 'ES256'): Promise<SigningKeyPair> {
  return keyPairFromPrivateJwk((await generateClientKey(alg)).privateJwk);
}

const refused = (pattern?: RegExp) => (err: unknown) => {
  assert.ok(err instanceof DpopProofError, `expected DpopProofError, got ${String(err)}`);
  if (pattern) assert.match(err.message, pattern);
  return true;
};

describe('DpopProofVerifier', async () => {
  const es = await keyPair('ES256');
  const proof = (opts: ForgeOptions = {}, key = es) => forgeProof(key, 'POST', URL_, opts);
  /** a proof jose would not sign: the header as given, a signature that is never reached */
  const unsignable = (header: Record<string, unknown>) =>
    `${b64url({ alg: 'ES256', typ: 'dpop+jwt', jwk: dpopJwk(es), ...header })}.${b64url({ htm: 'POST', htu: URL_, iat: Math.floor(Date.now() / 1000), jti: 'x' })}.${'A'.repeat(86)}`;

  describe('accepts', () => {
    for (const alg of ALGS) {
      it(`a valid ${alg} proof, with the RFC 7638 thumbprint of its key`, async () => {
        const key = await keyPair(alg);
        const v = new DpopProofVerifier({ algorithms: ALGS });
        const p = v.verify(await proof({}, key), expect());
        assert.equal(p.thumbprint, rfc7638Thumbprint(dpopJwk(key)));
        assert.equal(p.thumbprint, await calculateJwkThumbprint(dpopJwk(key)));
        assert.equal(typeof p.jti, 'string');
      });
    }
    it('htu with a query and fragment (they are ignored), and typ application/dpop+jwt', async () => {
      const v = new DpopProofVerifier({ algorithms: ALGS });
      v.verify(await proof({ claims: { htu: `${URL_}?a=1#f` } }), expect());
      v.verify(await proof({ header: { typ: 'application/dpop+jwt' } }), expect());
    });
    it('a jwk carrying kid, alg and use: sig, with the same thumbprint as without them', async () => {
      const v = new DpopProofVerifier({ algorithms: ALGS });
      const jwk = { ...dpopJwk(es), kid: 'k1', alg: 'ES256', use: 'sig' };
      assert.equal(v.verify(await proof({ header: { jwk } }), expect()).thumbprint, rfc7638Thumbprint(dpopJwk(es)));
    });
    it('iat at the edges of the window: 60 s old and 5 s ahead', async () => {
      const v = new DpopProofVerifier({ algorithms: ALGS });
      const now = Math.floor(Date.now() / 1000);
      assert.equal(PROOF_MAX_AGE_SECONDS, 60);
      assert.equal(PROOF_MAX_SKEW_SECONDS, 5);
      v.verify(await proof({ claims: { iat: now - 60 } }), expect({ now }));
      v.verify(await proof({ claims: { iat: now + 5 } }), expect({ now }));
    });
    it('ath when an access token is presented with the proof', async () => {
      const v = new DpopProofVerifier({ algorithms: ALGS });
      const ath = createHash('sha256').update('the-token').digest('base64url');
      v.verify(await proof({ claims: { ath } }), expect({ accessToken: 'the-token' }));
      const wrong = await proof({ claims: { ath: createHash('sha256').update('another-token').digest('base64url') } });
      assert.throws(() => v.verify(wrong, expect({ accessToken: 'the-token' })), refused(/ath/));
      assert.throws(() => v.verify(wrong.replace(/\..*\./, `.${b64url({ htm: 'POST', htu: URL_, iat: 1, jti: 'j' })}.`), expect({ accessToken: 'the-token' })), refused());
    });
  });

  describe('refuses', () => {
    const v = new DpopProofVerifier({ algorithms: ALGS });
    const cases: Array<[string, () => Promise<string>, RegExp?]> = [
      ['not a JWS', async () => 'not-a-jwt'],
      ['an empty string', async () => ''],
      ['two proofs joined by a comma (two DPoP headers)', async () => `${await proof()}, ${await proof()}`],
      ['alg: none', async () => unsignedJwt({ alg: 'none', typ: 'dpop+jwt', jwk: dpopJwk(es) }, { htm: 'POST', htu: URL_, iat: Math.floor(Date.now() / 1000), jti: 'x' })],
      ['HS256 keyed with the public JWK', async () => proof({ header: { alg: 'HS256' }, signWith: new TextEncoder().encode(JSON.stringify(dpopJwk(es))) }), /alg/],
      ['ES384', async () => unsignable({ alg: 'ES384' }), /alg/],
      ['typ JWT', async () => proof({ header: { typ: 'JWT' } }), /typ/],
      ['no typ', async () => proof({ header: { typ: undefined } }), /typ/],
      ['a crit header', async () => unsignable({ crit: ['exp'], exp: 1 }), /crit/],
      ['no jwk', async () => proof({ header: { jwk: undefined } }), /jwk/],
      ['a jwk that is a string', async () => proof({ header: { jwk: 'key' } }), /jwk/],
      ['a private key in the jwk', async () => proof({ header: { jwk: { ...dpopJwk(es), d: 'AAAA' } } }), /public/],
      ['a jwk whose alg differs from the header', async () => proof({ header: { jwk: { ...dpopJwk(es), alg: 'ES384' } } }), /alg/],
      ['a jwk for encryption', async () => proof({ header: { jwk: { ...dpopJwk(es), use: 'enc' } } }), /use/],
      ['an RSA jwk under an ES256 header', async () => proof({ header: { jwk: dpopJwk(await keyPair('RS256')) } }), /alg/],
      ['a jwk on another curve', async () => proof({ header: { jwk: { ...dpopJwk(es), crv: 'P-384' } } }), /curve/],
      ['a point that is not on the curve', async () => proof({ header: { jwk: { ...dpopJwk(es), y: dpopJwk(es).x } } }), /public key/],
      ['a signature by another key', async () => proof({ signWith: (await keyPair('ES256')).privateKey }), /signature/],
      ['a payload changed after signing', async () => {
        const [h, , s] = (await proof()).split('.');
        return `${h}.${b64url({ htm: 'POST', htu: URL_, iat: Math.floor(Date.now() / 1000), jti: 'changed' })}.${s}`;
      }, /signature/],
      ['a truncated signature', async () => (await proof()).slice(0, -4), /signature/],
      ['htm GET', async () => proof({ claims: { htm: 'GET' } }), /htm/],
      ['htu of another endpoint', async () => proof({ claims: { htu: 'https://sigil.example/introspect' } }), /htu/],
      ['htu of another host', async () => proof({ claims: { htu: 'https://evil.example/token' } }), /htu/],
      ['htu not a URL', async () => proof({ claims: { htu: 'token' } }), /htu/],
      ['no jti', async () => proof({ claims: { jti: undefined } }), /jti/],
      ['an empty jti', async () => proof({ claims: { jti: '' } }), /jti/],
      ['no iat', async () => proof({ claims: { iat: undefined } }), /iat/],
      ['a string iat', async () => proof({ claims: { iat: String(Math.floor(Date.now() / 1000)) } }), /iat/],
      ['iat 61 s old', async () => proof({ claims: { iat: Math.floor(Date.now() / 1000) - 61 } }), /too old/],
      ['iat 6 s ahead', async () => proof({ claims: { iat: Math.floor(Date.now() / 1000) + 6 } }), /future/],
      ['an expired exp', async () => proof({ claims: { exp: Math.floor(Date.now() / 1000) - 1 } }), /expired/],
      ['a future nbf', async () => proof({ claims: { nbf: Math.floor(Date.now() / 1000) + 30 } }), /not yet/],
      ['a nonce when nonces are not in use', async () => proof({ claims: { nonce: 'n' } }), /nonce/],
      ['a payload that is not an object', async () => signJws({ alg: 'ES256', typ: 'dpop+jwt', jwk: dpopJwk(es) }, [1, 2] as unknown as Record<string, unknown>, es.privateKey), /payload/],
    ];
    for (const [name, make, pattern] of cases) {
      it(name, async () => {
        const jwt = await make();
        assert.throws(() => v.verify(jwt, expect()), refused(pattern));
      });
    }

    it('an RSA key under 2048 bits', async () => {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
      const { n, e } = publicKey.export({ format: 'jwk' });
      const signed = `${b64url({ alg: 'RS256', typ: 'dpop+jwt', jwk: { kty: 'RSA', n, e } })}.${b64url({ htm: 'POST', htu: URL_, iat: Math.floor(Date.now() / 1000), jti: 'x' })}`;
      const jwt = `${signed}.${sign('sha256', Buffer.from(signed), privateKey).toString('base64url')}`;
      assert.throws(() => v.verify(jwt, expect()), refused(/2048/));
    });

    describe('keys for which anyone can make a valid proof, or whose check is itself the attack (issue 10, finding 6)', () => {
      const claims = () => ({ htm: 'POST', htu: URL_, iat: Math.floor(Date.now() / 1000), jti: `weak-${Math.random()}` });
      it('RSA e = 1: a proof forged from the public key alone', () => {
        const weak = rsaExponentOneKey();
        const forged = weak.sign({ alg: 'RS256', typ: 'dpop+jwt', jwk: weak.jwk }, claims());
        const fresh = new DpopProofVerifier({ algorithms: ALGS });
        assert.throws(() => fresh.verify(forged, expect()), refused(/^DPoP proof jwk has the RSA exponent e = "AQ"; only 65537/));
        assert.throws(() => fresh.verify(forged, expect()), refused(/exponent/), 'a refused key is never cached');
      });
      it('a huge RSA exponent is refused before any signature check (it costs ~7 ms per check)', () => {
        const huge = Buffer.concat([Buffer.from([0xc3]), Buffer.alloc(1022, 0xa5), Buffer.from([1])]).toString('base64url');
        const weak = rsaExponentOneKey(huge);
        // the signature is garbage: a refusal for the exponent shows the signature was never looked at
        const proof = weak.sign({ alg: 'RS256', typ: 'dpop+jwt', jwk: weak.jwk }, claims());
        assert.throws(() => v.verify(proof, expect()), refused(/^DPoP proof jwk has the RSA exponent e = "w6Wl[A-Za-z0-9_-]*\.\.\.; only 65537 \("AQAB"\) is accepted$/));
        assert.throws(() => v.verify(proof.replace(/\.[^.]*$/, '.AAAA'), expect()), refused(/exponent/));
      });
      it('an Ed25519 point of small order: the identity verifies R = identity, S = 0 for any message', () => {
        const weak = ed25519IdentityKey();
        const forged = weak.sign({ alg: 'EdDSA', typ: 'dpop+jwt', jwk: weak.jwk }, claims());
        assert.throws(() => v.verify(forged, expect()), refused(/^DPoP proof jwk is an Ed25519 point of small order/));
      });
      it('an RSA modulus with a leading zero byte, or over 8192 bits', async () => {
        const rs = await keyPair('RS256');
        const n = Buffer.from(dpopJwk(rs).n!, 'base64url');
        const padded = await proof({ header: { jwk: { ...dpopJwk(rs), n: Buffer.concat([Buffer.alloc(1), n]).toString('base64url') } } }, rs);
        assert.throws(() => v.verify(padded, expect()), refused(/leading zero byte/));
        const big = await proof({ header: { jwk: { ...dpopJwk(rs), n: Buffer.alloc(1025, 0xab).toString('base64url') } } }, rs);
        assert.throws(() => v.verify(big, expect()), refused(/8200-bit RSA key; at most 8192/));
      });
      it('a jwk member that is not printable ASCII (a kid carrying a terminal escape sequence)', async () => {
        assert.throws(() => v.verify(unsignable({ jwk: { ...dpopJwk(es), kid: '\x1b]0;owned\x07' } }), expect()), refused(/^DPoP proof jwk has a kid that is not 1 to 128 printable ASCII/));
        assert.throws(() => v.verify(unsignable({ jwk: { ...dpopJwk(es), x5t: '\x1b[2J' } }), expect()), refused(/member "x5t"/));
      });
    });

    it('an algorithm it was not configured for', async () => {
      const esOnly = new DpopProofVerifier({ algorithms: ['ES256'] });
      const ed = await forgeProof(await keyPair('EdDSA'), 'POST', URL_);
      assert.throws(() => esOnly.verify(ed, expect()), refused(/alg/));
    });
  });

  describe('server nonces', () => {
    const nonces = new ServerChallenge(Buffer.alloc(32, 7), 'DPoP');
    const v = new DpopProofVerifier({ algorithms: ALGS, nonces });

    it('asks for a nonce when the proof has none, and names the one to use', async () => {
      const plain = await proof();
      assert.throws(() => v.verify(plain, expect()), (e) => e instanceof DpopProofError && e.useNonce && e.nonce === nonces.nextChallenge());
    });
    it('accepts the current nonce and refuses an unknown one', async () => {
      const ok = v.verify(await proof({ claims: { nonce: nonces.nextChallenge() } }), expect());
      assert.equal(ok.nonce, nonces.nextChallenge());
      const unknown = await proof({ claims: { nonce: 'not-a-server-nonce' } });
      assert.throws(() => v.verify(unknown, expect()), (e) => e instanceof DpopProofError && e.useNonce);
    });
    it('checks iat even with a valid nonce (oidc-provider does not)', async () => {
      const stale = await proof({ claims: { nonce: nonces.nextChallenge(), iat: Math.floor(Date.now() / 1000) - 120 } });
      assert.throws(() => v.verify(stale, expect()), refused(/too old/));
    });
  });

  describe('proof-key cache', () => {
    it('still checks every signature once a key is cached', async () => {
      const v = new DpopProofVerifier({ algorithms: ALGS });
      v.verify(await proof(), expect());
      v.verify(await proof(), expect());
      const forged = await proof({ signWith: (await keyPair('ES256')).privateKey });
      assert.throws(() => v.verify(forged, expect()), refused(/signature/));
    });
    it('never confuses two keys (cache keyed by the whole public key)', async () => {
      const v = new DpopProofVerifier({ algorithms: ALGS });
      const other = await keyPair('ES256');
      v.verify(await proof(), expect());
      // other's public key with es's signature: must fail, though es's key is cached
      const mixed = await proof({ header: { jwk: dpopJwk(other) } });
      assert.throws(() => v.verify(mixed, expect()), refused(/signature/));
      assert.equal(v.verify(await proof({}, other), expect()).thumbprint, rfc7638Thumbprint(dpopJwk(other)));
    });
    it('stays bounded and keeps working past its size', async () => {
      const v = new DpopProofVerifier({ algorithms: ALGS, maxKeys: 2 });
      const keys = await Promise.all([1, 2, 3, 4].map(() => keyPair('ES256')));
      for (const round of [1, 2]) {
        for (const k of keys) assert.equal(v.verify(await proof({}, k), expect()).thumbprint, rfc7638Thumbprint(dpopJwk(k)), `round ${round}`);
      }
    });
    it('refuses an unknown algorithm at construction', () => {
      assert.throws(() => new DpopProofVerifier({ algorithms: ['HS256'] }), /unsupported/);
    });
  });

  it('a raw WebCrypto-made EdDSA key verifies the same as jose-made ones', async () => {
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const pair = await keyPairFromPrivateJwk({ ...(await exportJWK(privateKey)), alg: 'EdDSA' });
    const v = new DpopProofVerifier({ algorithms: ALGS });
    assert.equal(v.verify(await forgeProof(pair, 'POST', URL_), expect()).thumbprint, rfc7638Thumbprint(dpopJwk(pair)));
  });
});
