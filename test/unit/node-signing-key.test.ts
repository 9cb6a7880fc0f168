// Sigil's signing keys as oidc-provider's ExternalSigningKey: what they publish and what they sign
// must verify with the public JWK alone, with an independent verifier (jose), for every SIGNING_ALG.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, compactVerify, type JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';
import type { SigningAlg } from '../../src/config.js';
import { NodeSigningKey } from '../../src/keys/node-signing-key.js';

async function privateJwk(alg: SigningAlg): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}), ...(alg === 'PS256' ? { modulusLength: 2048 } : {}) });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: `k-${alg}`, alg, use: 'sig' };
}

describe('NodeSigningKey', () => {
  for (const alg of ['ES256', 'EdDSA', 'PS256'] as const) {
    it(`${alg}: publishes only the public key and signs what jose verifies with it`, async () => {
      const jwk = await privateJwk(alg);
      const key = new NodeSigningKey(jwk, alg);
      assert.ok(key instanceof ExternalSigningKey);
      assert.equal(key.kid, `k-${alg}`);
      assert.equal(key.alg, alg);
      assert.equal(key.use, 'sig');
      const published = key.keyObject().export({ format: 'jwk' }) as JWK;
      assert.equal(published.d, undefined, 'no private member is published');
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, kid: _kid, alg: _alg, use: _use, ...pub } = jwk;
      assert.equal(await calculateJwkThumbprint(published), await calculateJwkThumbprint(pub as JWK));
      for (const m of ['kty', 'crv', 'x', 'y', 'n', 'e'] as const) assert.equal((key as unknown as Record<string, unknown>)[m], (pub as Record<string, unknown>)[m], m);

      // a JWS made the way oidc-provider makes one with an external key
      const header = Buffer.from(JSON.stringify({ alg, typ: 'at+jwt', kid: key.kid })).toString('base64url');
      const payload = Buffer.from(JSON.stringify({ sub: 'x' })).toString('base64url');
      const signature = Buffer.from(await key.sign(Buffer.from(`${header}.${payload}`))).toString('base64url');
      const verified = await compactVerify(`${header}.${payload}.${signature}`, await importJWK(pub as JWK, alg), { algorithms: [alg] });
      assert.equal(new TextDecoder().decode(verified.payload), '{"sub":"x"}');
      await assert.rejects(compactVerify(`${header}.${payload}.${signature.slice(0, -4)}AAAA`, await importJWK(pub as JWK, alg), { algorithms: [alg] }));
    });
  }

  it('refuses a key without a kid', async () => {
    const { kid: _kid, ...jwk } = await privateJwk('ES256');
    assert.throws(() => new NodeSigningKey(jwk, 'ES256'), /kid/);
  });
});
