import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { jwksProblems, MAX_CLIENT_KEYS } from '../../src/oauth/client-keys.js';

const PRIVATE = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const pub = (jwk: JWK): JWK => Object.fromEntries(Object.entries(jwk).filter(([k]) => !PRIVATE.includes(k))) as JWK;

async function keyPair(alg: string, opts: Record<string, unknown> = {}) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...opts });
  const priv = await exportJWK(privateKey);
  return { priv, pub: pub(priv) };
}

describe('jwksProblems', () => {
  let ec: { priv: JWK; pub: JWK };
  let okp: { priv: JWK; pub: JWK };
  let rsa: { priv: JWK; pub: JWK };
  before(async () => {
    ec = await keyPair('ES256');
    okp = await keyPair('EdDSA', { crv: 'Ed25519' });
    rsa = await keyPair('PS256', { modulusLength: 2048 });
  });

  it('accepts valid EC P-256, OKP Ed25519 and RSA-2048 public keys, alone or together', () => {
    assert.deepEqual(jwksProblems({ keys: [ec.pub] }), []);
    assert.deepEqual(jwksProblems({ keys: [okp.pub] }), []);
    assert.deepEqual(jwksProblems({ keys: [rsa.pub] }), []);
    assert.deepEqual(jwksProblems({
      keys: [
        { ...ec.pub, kid: 'a', alg: 'ES256', use: 'sig' },
        { ...okp.pub, kid: 'b', alg: 'EdDSA' },
        { ...rsa.pub, kid: 'c', alg: 'PS256' },
        { ...rsa.pub, kid: 'd', alg: 'RS256' },
      ],
    }), []);
  });

  it('refuses private members and names them', async () => {
    const [ecP] = jwksProblems({ keys: [ec.priv] });
    assert.match(ecP!, /key 0 contains private or secret members \(d\)/);
    const rsaProblems = jwksProblems({ keys: [ec.pub, rsa.priv] });
    assert.equal(rsaProblems.length, 1);
    assert.match(rsaProblems[0]!, /key 1 contains private or secret members \(d, p, q, dp, dq, qi\)/);
    const [okpP] = jwksProblems({ keys: [okp.priv] });
    assert.match(okpP!, /\(d\)/);
    const [one] = jwksProblems({ keys: [{ ...rsa.pub, p: 'AQAB' }] });
    assert.match(one!, /\(p\)/);
    const [two] = jwksProblems({ keys: [{ ...rsa.pub, q: 'AQAB' }] });
    assert.match(two!, /\(q\)/);
  });

  it('refuses symmetric (oct) keys, naming k', () => {
    const problems = jwksProblems({ keys: [{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0', alg: 'HS256' }] });
    assert.ok(problems.some((p) => /private or secret members \(k\)/.test(p)), problems.join('; '));
    assert.ok(problems.some((p) => /kty "oct"/.test(p)), problems.join('; '));
  });

  it('refuses EC keys on other curves (P-384)', async () => {
    const p384 = await keyPair('ES384');
    const problems = jwksProblems({ keys: [p384.pub] });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /crv "P-384"; only P-256 is allowed/);
  });

  it('refuses RSA keys under 2048 bits', async () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const jwk = publicKey.export({ format: 'jwk' }) as JWK;
    const problems = jwksProblems({ keys: [jwk] });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /1024-bit RSA key; at least 2048 bits/);
  });

  it('refuses an alg that does not match the kty', () => {
    assert.match(jwksProblems({ keys: [{ ...ec.pub, alg: 'RS256' }] })[0]!, /alg "RS256"; allowed for EC: ES256/);
    assert.match(jwksProblems({ keys: [{ ...rsa.pub, alg: 'ES256' }] })[0]!, /allowed for RSA: PS256, RS256/);
    assert.match(jwksProblems({ keys: [{ ...okp.pub, alg: 'ES256' }] })[0]!, /allowed for OKP: EdDSA/);
    assert.match(jwksProblems({ keys: [{ ...rsa.pub, alg: 'none' }] })[0]!, /alg "none"/);
    assert.match(jwksProblems({ keys: [{ ...rsa.pub, alg: 'HS256' }] })[0]!, /alg "HS256"/);
  });

  it('refuses use other than sig', () => {
    assert.match(jwksProblems({ keys: [{ ...ec.pub, use: 'enc' }] })[0]!, /use "enc"; only "sig"/);
  });

  it('refuses a duplicate kid', () => {
    const problems = jwksProblems({ keys: [{ ...ec.pub, kid: 'same' }, { ...okp.pub, kid: 'same' }] });
    assert.deepEqual(problems, ['key 1 repeats kid "same"']);
    assert.match(jwksProblems({ keys: [{ ...ec.pub, kid: '' }] })[0]!, /kid that is not a non-empty string/);
  });

  it('refuses an empty keys array, a missing one, and more than 10 keys', () => {
    assert.match(jwksProblems({ keys: [] })[0]!, /non-empty "keys" array/);
    assert.match(jwksProblems({})[0]!, /non-empty "keys" array/);
    assert.match(jwksProblems({ keys: 'nope' })[0]!, /non-empty "keys" array/);
    const eleven = Array.from({ length: MAX_CLIENT_KEYS + 1 }, (_, i) => ({ ...ec.pub, kid: `k${i}` }));
    assert.equal(MAX_CLIENT_KEYS, 10);
    assert.deepEqual(jwksProblems({ keys: eleven }), ['the JWKS may hold at most 10 keys']);
    assert.deepEqual(jwksProblems({ keys: eleven.slice(0, 10) }), []);
  });

  it('refuses a JWKS that is not an object, and keys that are not objects', () => {
    for (const bad of [null, undefined, 'jwks', 42, [ec.pub], true]) {
      assert.deepEqual(jwksProblems(bad), ['the JWKS must be a JSON object with a "keys" array'], String(bad));
    }
    assert.deepEqual(jwksProblems({ keys: [null, 'x', [1]] }), ['key 0 is not a JSON object', 'key 1 is not a JSON object', 'key 2 is not a JSON object']);
  });

  it('refuses malformed coordinates and moduli', () => {
    assert.match(jwksProblems({ keys: [{ ...ec.pub, x: 'short' }] })[0]!, /malformed x\/y/);
    assert.match(jwksProblems({ keys: [{ ...ec.pub, y: 'not base64url!' }] })[0]!, /malformed x\/y/);
    assert.match(jwksProblems({ keys: [{ ...okp.pub, x: 42 }] })[0]!, /malformed x/);
    assert.match(jwksProblems({ keys: [{ ...rsa.pub, e: undefined }] })[0]!, /malformed modulus or exponent/);
    assert.match(jwksProblems({ keys: [{ kty: 'OKP', crv: 'X25519', x: okp.pub.x }] })[0]!, /crv "X25519"; only Ed25519/);
    assert.match(jwksProblems({ keys: [{ crv: 'P-256', x: ec.pub.x, y: ec.pub.y }] })[0]!, /kty undefined/);
  });
});
