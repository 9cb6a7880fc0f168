// sigil/verifier inside the issuer's own process (Sigil's admin API): keys, proof algorithms and token
// status handed over directly, and nothing fetched, ever.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { dpopProof, generateClientKey, keyPairFromPrivateJwk, thumbprint } from '../../src/client/oauth-client.js';
import { createVerifier, VerifierError, type AccessTokenClaims, type Verifier } from '../../src/verifier/index.js';
import { epoch, signJws } from '../support/forge.js';

const ISSUER = 'https://sigil.example.com';
const AUDIENCE = `${ISSUER}/admin`;
const URL_ = `${ISSUER}/admin/clients`;

async function issuerKey(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } as JWK };
}

async function refusal(verify: Verifier, req: Parameters<Verifier>[0]): Promise<VerifierError> {
  try {
    assert.fail(`accepted: ${JSON.stringify(await verify(req))}`);
  } catch (err) {
    if (!(err instanceof VerifierError)) throw err;
    return err;
  }
}

describe('sigil/verifier fed in-process (keys, proof algorithms, status)', () => {
  it('verifies with the keys the issuer hands over, follows a key change at once, asks its revocation answer, fetches nothing', async () => {
    const first = await issuerKey('k1');
    const second = await issuerKey('k2');
    let jwks: JWK[] = [first.publicJwk];
    const revoked = new Set<string>();
    const asked: string[] = [];
    const fetched: string[] = [];
    const verify = createVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      keys: () => jwks,
      dpop: { algorithms: ['ES256', 'EdDSA'] },
      status: { revoked: (c: AccessTokenClaims) => (asked.push(c.jti), revoked.has(c.jti)) },
      fetch: async (input) => {
        fetched.push(String(input));
        throw new Error('no fetch in-process');
      },
    });
    const client = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    const jkt = await thumbprint(client);
    const token = (key: { kid: string; privateKey: CryptoKey }, claims: Record<string, unknown> = {}) => {
      const t = epoch();
      return signJws({ alg: 'ES256', typ: 'at+jwt', kid: key.kid }, {
        iss: ISSUER, aud: AUDIENCE, sub: 'sigil-admin', client_id: 'sigil-admin', scope: 'sigil:admin', iat: t, exp: t + 300, jti: randomUUID(),
        cnf: { jkt }, ...claims,
      }, key.privateKey);
    };
    const request = async (t: string) => ({ method: 'GET', url: URL_, headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(client, 'GET', URL_, { accessToken: t }) } });

    const t1 = await token(first);
    assert.equal((await verify(await request(t1))).client_id, 'sigil-admin');

    // the proof algorithms are the ones handed over, not a discovery document's
    const missing = await refusal(verify, { method: 'GET', url: URL_, headers: {} });
    assert.equal(missing.wwwAuthenticate, 'DPoP algs="ES256 EdDSA"');

    // a new key is used at once: the array handed over changed; no cool-down, no fetch
    const t2 = await token(second);
    assert.equal((await refusal(verify, await request(t2))).description, 'the access token is signed by an unknown key');
    jwks = [first.publicJwk, second.publicJwk];
    assert.equal((await verify(await request(t2))).client_id, 'sigil-admin');

    // revocation: the issuer's own answer, asked on every request (also for a token remembered by its hash)
    revoked.add((JSON.parse(Buffer.from(t1.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti);
    const refused = await refusal(verify, await request(t1));
    assert.deepEqual([refused.status, refused.code, refused.description], [401, 'invalid_token', 'the access token has been revoked']);
    assert.equal(asked.length, 3, 'every accepted or revoked request asked');

    // a token with a status list entry is still answered in-process: no list is fetched, no stream opened
    const listed = await token(second, { status: { status_list: { idx: 3, uri: `${ISSUER}/status-lists/1` } } });
    assert.equal((await verify(await request(listed))).client_id, 'sigil-admin');
    await verify.ready();
    assert.deepEqual(fetched, [], 'nothing fetched');
    assert.deepEqual({ jwks: verify.stats.jwksFetches, lists: verify.stats.statusListFetches }, { jwks: 0, lists: 0 });
    await verify.close();
  });
});
