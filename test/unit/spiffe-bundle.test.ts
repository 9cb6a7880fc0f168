// parseSpiffeBundle: what a SPIFFE bundle (a JWKS with jwt-svid and x509-svid keys) must be before Sigil
// trusts any of it, and every refusal, in a sentence that names the key.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JWK } from 'jose';
import { MAX_BUNDLE_KEYS, parseSpiffeBundle, type BundleAnswer } from '../../src/workload/spiffe-bundle.js';
import { ed25519IdentityKey, rsaExponentOneKey } from '../support/forge.js';
import { createTestCa, generateSigningKey, jwtSvidBundleKey, spiffeX509Authority, type TestCa, type TestSigningKey } from '../support/workload.js';

function refused(answer: BundleAnswer, pattern: RegExp): void {
  assert.equal(answer.ok, false, 'the bundle must be refused');
  if (!answer.ok) assert.ok(answer.problems.some((p) => pattern.test(p)), `a problem matching ${pattern}, got: ${answer.problems.join(' | ')}`);
}

describe('parseSpiffeBundle', () => {
  let ca: TestCa;
  let es: TestSigningKey;
  let ed: TestSigningKey;
  let rsa: TestSigningKey;
  let x509: JWK;
  before(async () => {
    ca = createTestCa();
    [es, ed, rsa] = await Promise.all([generateSigningKey('ES256'), generateSigningKey('EdDSA'), generateSigningKey('RS256')]);
    x509 = spiffeX509Authority(ca, 'example.org').bundleKey;
  });
  after(() => ca.close());

  const bundle = (keys: unknown[], extra: Record<string, unknown> = {}) => ({ keys, ...extra });

  it('accepts JWT-SVID keys of every accepted type and X.509 authorities, with sequence and refresh hint', () => {
    const answer = parseSpiffeBundle(bundle([jwtSvidBundleKey(es), jwtSvidBundleKey(ed), jwtSvidBundleKey(rsa), x509], { spiffe_sequence: 7, spiffe_refresh_hint: 300 }));
    assert.ok(answer.ok, JSON.stringify(!answer.ok && answer.problems));
    assert.deepEqual(answer.bundle.jwtAuthorities.map((k) => k.kid), [es.kid, ed.kid, rsa.kid]);
    assert.equal(answer.bundle.x509Authorities.length, 1);
    assert.ok(answer.bundle.x509Authorities[0]!.ca);
    assert.equal(answer.bundle.sequence, 7);
    assert.equal(answer.bundle.refreshHintSeconds, 300);
  });

  it('accepts an empty bundle and one without sequence or hint', () => {
    const answer = parseSpiffeBundle({ keys: [] });
    assert.ok(answer.ok);
    assert.equal(answer.bundle.sequence, undefined);
    assert.equal(answer.bundle.refreshHintSeconds, undefined);
  });

  it('keeps only the public members of a JWT-SVID key (an x5c or unknown member does not travel on)', () => {
    const answer = parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), x5t: 'abc', custom: 'x' }]));
    assert.ok(answer.ok);
    assert.deepEqual(Object.keys(answer.bundle.jwtAuthorities[0]!).sort(), ['alg', 'crv', 'kid', 'kty', 'x', 'y']);
  });

  it('ignores keys with another use or none, as the spec says', () => {
    const answer = parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), use: 'sig' }, { ...jwtSvidBundleKey(ed), use: undefined }, { kty: 'oct-ish', use: 'enc' }]));
    assert.ok(answer.ok);
    assert.equal(answer.bundle.jwtAuthorities.length, 0);
  });

  it('refuses what is not a JWKS', () => {
    for (const doc of [null, [], 'keys', 42]) refused(parseSpiffeBundle(doc), /not a JSON object/);
    refused(parseSpiffeBundle({}), /no "keys" array/);
    refused(parseSpiffeBundle({ keys: {} }), /no "keys" array/);
  });

  it(`refuses more than ${MAX_BUNDLE_KEYS} keys`, () => {
    refused(parseSpiffeBundle(bundle(Array.from({ length: MAX_BUNDLE_KEYS + 1 }, () => ({ use: 'other' })))), new RegExp(`at most ${MAX_BUNDLE_KEYS}`));
    assert.ok(parseSpiffeBundle(bundle(Array.from({ length: MAX_BUNDLE_KEYS }, () => ({ use: 'other' })))).ok);
  });

  it('refuses a spiffe_sequence or spiffe_refresh_hint that is not a non-negative integer', () => {
    for (const seq of [-1, 1.5, '3', null, 2 ** 60]) refused(parseSpiffeBundle(bundle([], { spiffe_sequence: seq })), /spiffe_sequence .* is not a non-negative integer/);
    for (const hint of [-5, 0.5, '60', null, true]) refused(parseSpiffeBundle(bundle([], { spiffe_refresh_hint: hint })), /spiffe_refresh_hint .* not a non-negative whole number/);
  });

  it('refuses a key that is not an object', () => {
    refused(parseSpiffeBundle(bundle(['key'])), /^key 0 is not a JSON object/);
    refused(parseSpiffeBundle(bundle([jwtSvidBundleKey(es), null])), /^key 1 is not a JSON object/);
  });

  it('refuses private members on any key, even one it would ignore', () => {
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), d: 'AAAA' }])), /^key 0 contains private or secret members \(d\)/);
    refused(parseSpiffeBundle(bundle([{ kty: 'oct', k: 'c2VjcmV0', use: 'enc' }])), /^key 0 contains private or secret members \(k\)/);
  });

  it('refuses members Sigil refuses in any key (not printable, too long)', () => {
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), kid: 'a\u0000b' }])), /^key 0 has a kid that is not 1 to 128 printable ASCII/);
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), kid: 'k'.repeat(129) }])), /^key 0 has a kid that is not 1 to 128/);
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), note: { nested: true } }])), /^key 0 has a member "note" that is not a string/);
  });

  it('refuses a JWT-SVID key without a kid, or with a kid another key has', () => {
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), kid: undefined }])), /^key 0 has use jwt-svid but no kid/);
    refused(parseSpiffeBundle(bundle([jwtSvidBundleKey(es), { ...jwtSvidBundleKey(ed), kid: es.kid }])), /^key 1 repeats kid/);
  });

  it('refuses key types, curves and algorithms Sigil does not verify with', () => {
    refused(parseSpiffeBundle(bundle([{ kty: 'oct', use: 'jwt-svid', kid: 'h' }])), /^key 0 has kty "oct"/);
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), crv: 'P-384' }])), /^key 0 has crv "P-384"; only P-256/);
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(ed), crv: 'X25519' }])), /^key 0 has crv "X25519"; only Ed25519/);
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(rsa), alg: 'ES256' }])), /^key 0 has alg "ES256"; allowed for RSA: PS256, RS256/);
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), alg: 'HS256' }])), /^key 0 has alg "HS256"/);
  });

  it('refuses weak or malformed key material with the client-key rules', () => {
    refused(parseSpiffeBundle(bundle([{ ...rsaExponentOneKey().jwk, use: 'jwt-svid', kid: 'e1' }])), /^key 0 has the RSA exponent e = "AQ"/);
    refused(parseSpiffeBundle(bundle([{ ...ed25519IdentityKey().jwk, use: 'jwt-svid', kid: 'id' }])), /^key 0 is an Ed25519 point of small order/);
    refused(parseSpiffeBundle(bundle([{ ...jwtSvidBundleKey(es), x: 'AAAA' }])), /^key 0 has malformed x\/y coordinates/);
    const offCurve = { ...jwtSvidBundleKey(es), y: Buffer.alloc(32, 1).toString('base64url') };
    refused(parseSpiffeBundle(bundle([offCurve])), /^key 0 is not a point on the P-256 curve/);
  });

  it('refuses an x509-svid key without exactly one certificate', () => {
    refused(parseSpiffeBundle(bundle([{ ...x509, x5c: undefined }])), /^key 0 has use x509-svid but no x5c with exactly one certificate/);
    refused(parseSpiffeBundle(bundle([{ ...x509, x5c: [] }])), /exactly one certificate/);
    refused(parseSpiffeBundle(bundle([{ ...x509, x5c: [x509.x5c![0], x509.x5c![0]] }])), /exactly one certificate/);
  });

  it('refuses an x5c that is not base64 DER of a certificate', () => {
    const b64url = Buffer.from(x509.x5c![0]!, 'base64').toString('base64url').replace(/[^-_]$/, '-');
    refused(parseSpiffeBundle(bundle([{ ...x509, x5c: [b64url] }])), /^key 0 has an x5c certificate that is not base64/);
    refused(parseSpiffeBundle(bundle([{ ...x509, x5c: [Buffer.from('not a certificate!').toString('base64')] }])), /^key 0 has an x5c value that is not a DER X.509 certificate/);
  });

  it('refuses an x509-svid certificate that is not a CA (a leaf must not act as an authority)', () => {
    const leaf = ca.issue({ subject: '/CN=leaf', sans: ['URI:spiffe://example.org/workload'] });
    refused(parseSpiffeBundle(bundle([{ use: 'x509-svid', x5c: [leaf.x5c] }])), /^key 0 has an x5c certificate that is not a CA certificate/);
  });

  it('refuses an x509-svid key whose members are not its certificate\'s public key', () => {
    refused(parseSpiffeBundle(bundle([{ ...x509, x: es.publicJwk.x, y: es.publicJwk.y }])), /^key 0 has key members that are not the public key of its x5c certificate/);
    refused(parseSpiffeBundle(bundle([{ ...x509, kty: 'oct' }])), /^key 0 has key members that are not the public key/);
    // without key members, the certificate alone is the authority
    assert.ok(parseSpiffeBundle(bundle([{ use: 'x509-svid', x5c: x509.x5c }])).ok);
  });

  it('accepts an X.509 authority whose key type Sigil does not sign JWTs with (a P-384 CA)', () => {
    const p384 = ca.issue({ subject: '/CN=p384', ca: true, keyType: 'ec-p384' });
    const answer = parseSpiffeBundle(bundle([{ use: 'x509-svid', ...p384.x509.publicKey.export({ format: 'jwk' }), x5c: [p384.x5c] }]));
    assert.ok(answer.ok, JSON.stringify(!answer.ok && answer.problems));
    assert.ok(parseSpiffeBundle(bundle([{ use: 'x509-svid', x5c: x509.x5c }])).ok);
  });

  it('is all or nothing: one bad key refuses the bundle, listing every problem', () => {
    const answer = parseSpiffeBundle(bundle([jwtSvidBundleKey(es), { ...jwtSvidBundleKey(ed), kid: undefined }, { ...x509, x5c: [] }]));
    assert.equal(answer.ok, false);
    if (!answer.ok) assert.deepEqual(answer.problems.map((p) => p.slice(0, 5)), ['key 1', 'key 2']);
  });
});
