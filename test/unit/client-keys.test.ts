import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { jwksProblems, MAX_CLIENT_KEYS, MAX_KID_LENGTH } from '../../src/clients/client-keys.js';
import { ed25519IdentityKey, rsaExponentOneKey } from '../support/forge.js';

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
    assert.match(jwksProblems({ keys: [{ ...rsa.pub, e: undefined }] })[0]!, /RSA exponent e = undefined; only 65537/);
    assert.match(jwksProblems({ keys: [{ kty: 'OKP', crv: 'X25519', x: okp.pub.x }] })[0]!, /crv "X25519"; only Ed25519/);
    assert.match(jwksProblems({ keys: [{ crv: 'P-256', x: ec.pub.x, y: ec.pub.y }] })[0]!, /kty undefined/);
  });
});

describe('key rules: what a public key must be wherever one enters (issue 10, findings 6 and 10)', () => {
  let ec: JWK;
  let okp: JWK;
  let rsa: JWK;
  before(async () => {
    ec = (await keyPair('ES256')).pub;
    okp = (await keyPair('EdDSA', { crv: 'Ed25519' })).pub;
    rsa = (await keyPair('PS256', { modulusLength: 2048 })).pub;
  });
  const problem = (jwk: Record<string, unknown>) => jwksProblems({ keys: [jwk] })[0];
  const b64 = (bytes: Buffer) => bytes.toString('base64url');
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  /** the same bytes spelled differently: the last character's lowest (unused) bit set */
  const loose = (value: string) => value.slice(0, -1) + ALPHABET[ALPHABET.indexOf(value.at(-1)!) ^ 1];

  it('node:crypto takes an RSA key with e = 1 and an Ed25519 identity point, and both verify forgeries: why Sigil refuses them', () => {
    for (const weak of [rsaExponentOneKey(), ed25519IdentityKey()]) {
      const [h, p, s] = weak.sign({ alg: weak.alg }, { iss: 'anyone' }).split('.') as [string, string, string];
      const key = createPublicKey({ key: weak.jwk as Record<string, string>, format: 'jwk' });
      assert.ok(verify(weak.alg === 'RS256' ? 'sha256' : null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url')), weak.alg);
      assert.ok(problem(weak.jwk), `${weak.alg}: refused`);
    }
  });

  it('RSA: only e = 65537, in its one encoding', () => {
    assert.equal(problem(rsa), undefined);
    assert.equal(rsa.e, 'AQAB');
    const huge = b64(Buffer.concat([Buffer.from([0xc3]), Buffer.alloc(255, 0xa5), Buffer.from([1])]));
    for (const e of ['AQ', 'Aw', 'AQAD', 'AQAAAQ', 'AAEAAQ', 'AQAC', huge, '', 65537, true]) {
      assert.match(problem({ ...rsa, e }) ?? '', /^key 0 has the RSA exponent e = .*; only 65537 \("AQAB"\) is accepted$/, String(e));
    }
    assert.ok((problem({ ...rsa, e: huge }) ?? '').length < 200, 'a huge value is shortened in the message');
  });

  it('RSA: a modulus of 2048 to 8192 bits, odd, without leading zero bytes, in canonical base64url', () => {
    const n = Buffer.from(rsa.n!, 'base64url');
    assert.equal(n.length, 256);
    assert.match(problem({ ...rsa, n: b64(Buffer.concat([Buffer.alloc(1), n])) }) ?? '', /leading zero byte/);
    const short = Buffer.from(n);
    short[0] = 0x7f;
    assert.match(problem({ ...rsa, n: b64(short) }) ?? '', /is a 2047-bit RSA key; at least 2048 bits are required/);
    const big = Buffer.alloc(1025, 0xab);
    assert.match(problem({ ...rsa, n: b64(big) }) ?? '', /is a 8200-bit RSA key; at most 8192 bits are accepted/);
    const even = Buffer.from(n);
    even[255] &= 0xfe;
    assert.match(problem({ ...rsa, n: b64(even) }) ?? '', /even RSA modulus/);
    // 256 bytes are 342 characters whose last carries 4 unused bits: setting one is another spelling
    assert.deepEqual(Buffer.from(loose(rsa.n!), 'base64url'), n);
    assert.match(problem({ ...rsa, n: loose(rsa.n!) }) ?? '', /malformed modulus n/);
    assert.match(problem({ ...rsa, n: `${rsa.n}=` }) ?? '', /malformed modulus n/);
  });

  it('Ed25519: no point of small order, no non-canonical encoding', () => {
    assert.equal(problem(okp), undefined);
    const le = (hex: string) => b64(Buffer.from(hex, 'hex'));
    // libsodium's blocklist (ed25519_is_on_main_subgroup's small-order encodings), an independent source
    const smallOrder = [
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0100000000000000000000000000000000000000000000000000000000000000',
      '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
      'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    ];
    for (const hex of smallOrder) {
      assert.match(problem({ ...okp, x: le(hex) }) ?? '', /point of small order/, hex);
      // the sign bit of x changes nothing: the same y, the same order
      const signed = Buffer.from(hex, 'hex');
      signed[31]! |= 0x80;
      assert.match(problem({ ...okp, x: b64(signed) }) ?? '', /point of small order/, `${hex} with the sign bit`);
    }
    for (const hex of ['edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f']) {
      assert.match(problem({ ...okp, x: le(hex) }) ?? '', /non-canonical point encoding/, hex);
    }
    assert.match(problem({ ...okp, x: b64(Buffer.alloc(31, 1)) }) ?? '', /malformed x/);
  });

  it('EC P-256: a point on the curve, coordinates of 32 bytes in canonical base64url', () => {
    assert.equal(problem(ec), undefined);
    const y = Buffer.from(ec.y!, 'base64url');
    y[31]! ^= 1;
    assert.match(problem({ ...ec, y: b64(y) }) ?? '', /^key 0 is not a point on the P-256 curve$/);
    const p = 'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff';
    assert.match(problem({ ...ec, x: b64(Buffer.from(p, 'hex')) }) ?? '', /not a point on the P-256 curve/);
    assert.deepEqual(Buffer.from(loose(ec.x!), 'base64url'), Buffer.from(ec.x!, 'base64url'));
    assert.match(problem({ ...ec, x: loose(ec.x!) }) ?? '', /malformed x\/y/);
  });

  it('kid: 1 to 128 printable ASCII characters, so no terminal escape sequence is ever stored', () => {
    assert.equal(MAX_KID_LENGTH, 128);
    assert.equal(problem({ ...ec, kid: 'k'.repeat(128) }), undefined);
    assert.equal(problem({ ...ec, kid: ' !~ printable ASCII ~! ' }), undefined);
    for (const kid of ['\x1b]0;owned\x07', '\x1b[2J\x1b[31mstatus: revoked', 'line\nbreak', 'tab\there', '\x7f', 'café', '鍵', '\u202eevil', 'k'.repeat(129), 42, '']) {
      assert.match(problem({ ...ec, kid }) ?? '', /^key 0 has a kid that is not/, JSON.stringify(kid));
    }
  });

  it('every other member: a printable ASCII name, and strings (or lists of them) of printable ASCII', () => {
    assert.equal(problem({ ...rsa, x5c: ['MIIB+/=='], x5t: 'abc', ext: true, key_ops: ['verify'], issuer: 'https://login.example.com/tenant/v2.0', n_bits: 2048 }), undefined);
    assert.match(problem({ ...ec, x5t: '\x1b[31m' }) ?? '', /member "x5t" that is not printable ASCII/);
    assert.match(problem({ ...ec, x5c: ['ok', 'n\u00f6'] }) ?? '', /member "x5c" that is not printable ASCII/);
    assert.match(problem({ ...ec, note: 'x'.repeat(8193) }) ?? '', /member "note" that is not printable ASCII of at most 8192/);
    assert.match(problem({ ...ec, ['\x1b]2;t\x07']: 'v' }) ?? '', /member name that is not printable ASCII/);
    assert.match(problem({ ...ec, nested: { kid: '\x1b' } }) ?? '', /member "nested" that is not a string, number, boolean or list of strings/);
    assert.match(problem({ ...ec, list: [1, 2] }) ?? '', /member "list" that is not a string/);
    assert.match(problem({ ...ec, alg: '\x1b[0m' }) ?? '', /member "alg" that is not printable ASCII/);
  });

  it('property: any kid with a character outside printable ASCII is refused; any printable one up to 128 is not', () => {
    const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 128 });
    const outside = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0xffff })).map((c) => String.fromCharCode(c));
    fc.assert(fc.property(printable, (kid) => problem({ ...ec, kid }) === undefined));
    fc.assert(fc.property(fc.string({ maxLength: 60 }), outside, fc.string({ maxLength: 60 }), (a, bad, b) => /kid that is not/.test(problem({ ...ec, kid: a + bad + b }) ?? '')));
  });
});
