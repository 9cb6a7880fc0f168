// Sigil's DPoP proof check (src/tokens/dpop-proof.ts, node:crypto, hand-parsed) against jose's
// jwtVerify with EmbeddedJWK on the same generated proofs, valid and mutated. Where both decide
// (JWS shape, header, algorithm, embedded key, signature, exp/nbf) they must agree; where Sigil
// checks more (htm, htu, the iat window, jti, ath, nonces, key rules, sizes, text rules) jose must
// accept the proof and Sigil refuse it for exactly that reason.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { EmbeddedJWK, jwtVerify } from 'jose';
import { generateClientKey, keyPairFromPrivateJwk, type KeyAlg, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { MAX_JSON_DEPTH } from '../../src/input/input-limits.js';
import { DpopProofError, DpopProofVerifier, PROOF_MAX_AGE_SECONDS, PROOF_MAX_SKEW_SECONDS, type ProofExpectations } from '../../src/tokens/dpop-proof.js';
import { b64url, dpopJwk, ed25519IdentityKey, rsaExponentOneKey, signJws, unsignedJwt, type WeakKey } from '../support/forge.js';

const ALGS: readonly KeyAlg[] = ['ES256', 'EdDSA', 'PS256', 'RS256'];
const URL_ = 'https://sigil.example/token';
const NOW = 1_900_000_000;
const ACCESS_TOKEN = 'an-access-token';

/** What a mutation must do to the two verdicts. */
type Expected =
  | { both: 'accept' | 'refuse' }
  /** both decide, and the right answer is not obvious from the mutation (random typ, members): they agree */
  | { both: 'agree' }
  /** jose accepts, Sigil refuses, and says this */
  | { sigilOnly: RegExp };

interface Keys {
  pair: Record<KeyAlg, SigningKeyPair>;
  /** the private JWK of each pair, as a careless client would embed it */
  privateJwk: Record<KeyAlg, Record<string, unknown>>;
  other: SigningKeyPair;
  rsa1024: SigningKeyPair;
  /** keys anyone can sign with (made once: an RSA key takes a while) */
  rsaExponentOne: WeakKey;
  ed25519Identity: WeakKey;
}

interface Params {
  alg: KeyAlg;
  jti: string;
  extraClaims: Record<string, string | number | boolean>;
  extraHeader: Record<string, string | number | boolean>;
  kid: string | undefined;
  iatOffset: number;
  text: string;
  size: number;
  method: string;
  path: string;
}

interface Mutation {
  name: string;
  expected: Expected;
  /** the proof, and what the request it came with expects */
  build(keys: Keys, p: Params): Promise<{ proof: string; expect?: Partial<ProofExpectations> }>;
}

const claimsOf = (p: Params, over: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ ...p.extraClaims, htm: 'POST', htu: URL_, iat: NOW, jti: p.jti, ...over });
const headerOf = (pair: SigningKeyPair, p: Params, over: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ ...p.extraHeader, alg: pair.alg, typ: 'dpop+jwt', jwk: { ...dpopJwk(pair), ...(p.kid ? { kid: p.kid } : {}) }, ...over });

const SIGNING: Record<KeyAlg, AlgorithmIdentifier | RsaPssParams | EcdsaParams> = {
  ES256: { name: 'ECDSA', hash: 'SHA-256' }, EdDSA: { name: 'Ed25519' }, PS256: { name: 'RSA-PSS', saltLength: 32 }, RS256: { name: 'RSASSA-PKCS1-v1_5' },
};

/** A JWS over exactly this header and payload (WebCrypto, not jose: jose would refuse to sign some of them). */
async function signRaw(header: Record<string, unknown>, payload: unknown, by: SigningKeyPair): Promise<string> {
  const input = `${b64url(header)}.${b64url(payload)}`;
  const signature = await crypto.subtle.sign(SIGNING[by.alg], by.privateKey, new TextEncoder().encode(input));
  return `${input}.${Buffer.from(signature).toString('base64url')}`;
}

/** a proof signed by the key of `p.alg`, with header and claims changed as given (undefined removes) */
async function signed(keys: Keys, p: Params, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, by?: SigningKeyPair): Promise<string> {
  const pair = keys.pair[p.alg];
  return signRaw(headerOf(pair, p, header), claimsOf(p, claims), by ?? pair);
}

const proofOnly = (build: (keys: Keys, p: Params) => Promise<string> | string) =>
  async (keys: Keys, p: Params) => ({ proof: await build(keys, p) });

const MUTATIONS: Mutation[] = [
  // both decide
  { name: 'valid', expected: { both: 'accept' }, build: proofOnly((k, p) => signed(k, p)) },
  { name: 'valid, typ application/dpop+jwt in any case', expected: { both: 'accept' }, build: proofOnly((k, p) => signed(k, p, {}, { typ: 'Application/DPoP+JWT' })) },
  { name: 'valid, exp ahead', expected: { both: 'accept' }, build: proofOnly((k, p) => signed(k, p, { exp: NOW + 60 })) },
  { name: 'valid, with the access token hash', expected: { both: 'accept' }, build: async (k, p) => ({ proof: await signed(k, p, { ath: createHash('sha256').update(ACCESS_TOKEN).digest('base64url') }), expect: { accessToken: ACCESS_TOKEN } }) },
  { name: 'random typ', expected: { both: 'agree' }, build: proofOnly((k, p) => signed(k, p, {}, { typ: p.text })) },
  { name: 'typ jwt', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, {}, { typ: 'JWT' })) },
  { name: 'no typ', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, {}, { typ: undefined })) },
  { name: 'alg none', expected: { both: 'refuse' }, build: proofOnly((k, p) => unsignedJwt(headerOf(k.pair[p.alg], p, { alg: 'none' }), claimsOf(p))) },
  { name: 'HS256 with the key as secret', expected: { both: 'refuse' }, build: proofOnly((k, p) => signJws(headerOf(k.pair[p.alg], p, { alg: 'HS256' }), claimsOf(p), new TextEncoder().encode(JSON.stringify(dpopJwk(k.pair[p.alg]))))) },
  { name: 'alg ES384 (not allowed)', expected: { both: 'refuse' }, build: proofOnly((k, p) => `${b64url(headerOf(k.pair[p.alg], p, { alg: 'ES384' }))}.${b64url(claimsOf(p))}.${'A'.repeat(128)}`) },
  { name: 'private key embedded', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, {}, { jwk: k.privateJwk[p.alg] })) },
  { name: 'no jwk', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, {}, { jwk: undefined })) },
  { name: 'jwk of another key type than the alg', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, {}, { jwk: dpopJwk(k.pair[p.alg === 'ES256' ? 'EdDSA' : 'ES256']) })) },
  { name: 'jwk use enc', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, {}, { jwk: { ...dpopJwk(k.pair[p.alg]), use: 'enc' } })) },
  { name: 'jwk alg other than the header alg', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, {}, { jwk: { ...dpopJwk(k.pair[p.alg]), alg: p.alg === 'RS256' ? 'PS256' : 'RS256' } })) },
  { name: 'crit', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, {}, { crit: ['x_ext'], x_ext: true })) },
  { name: 'signature bits flipped', expected: { both: 'refuse' }, build: proofOnly(async (k, p) => flipSignature(await signed(k, p))) },
  { name: 'signed by another key than the embedded one', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, { ...p, alg: 'ES256' }, {}, {}, k.other)) },
  { name: 'payload changed after signing', expected: { both: 'refuse' }, build: proofOnly(async (k, p) => {
    const [h, , s] = (await signed(k, p)).split('.');
    return `${h}.${b64url(claimsOf(p, { jti: `${p.jti}x` }))}.${s}`;
  }) },
  { name: 'expired', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, { exp: NOW - 1 - Math.abs(p.iatOffset) })) },
  { name: 'not yet valid (nbf)', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, { nbf: NOW + 1 + Math.abs(p.iatOffset) })) },
  { name: 'exp not a number', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, { exp: String(NOW + 60) })) },
  { name: 'iat not a number', expected: { both: 'refuse' }, build: proofOnly((k, p) => signed(k, p, { iat: String(NOW) })) },
  { name: 'payload not an object', expected: { both: 'refuse' }, build: proofOnly((k, p) => {
    const pair = k.pair[p.alg];
    return signRaw(headerOf(pair, p), [claimsOf(p)], pair);
  }) },
  { name: 'two segments', expected: { both: 'refuse' }, build: proofOnly(async (k, p) => (await signed(k, p)).split('.').slice(0, 2).join('.')) },
  { name: 'extra header members', expected: { both: 'accept' }, build: proofOnly((k, p) => signed(k, { ...p, extraHeader: { ...p.extraHeader, x_note: p.text.replace(/[^ -~]/g, '') } })) },
  // Sigil checks more
  { name: 'wrong htm', expected: { sigilOnly: /htm mismatch/ }, build: proofOnly((k, p) => signed(k, p, { htm: p.method })) },
  { name: 'wrong htu', expected: { sigilOnly: /htu mismatch/ }, build: proofOnly((k, p) => signed(k, p, { htu: `https://sigil.example${p.path}` })) },
  { name: 'htu of another host', expected: { sigilOnly: /htu mismatch/ }, build: proofOnly((k, p) => signed(k, p, { htu: 'https://elsewhere.example/token' })) },
  { name: 'stale iat', expected: { sigilOnly: /iat is too old/ }, build: proofOnly((k, p) => signed(k, p, { iat: NOW - PROOF_MAX_AGE_SECONDS - 1 - Math.abs(p.iatOffset) })) },
  { name: 'iat ahead', expected: { sigilOnly: /iat is in the future/ }, build: proofOnly((k, p) => signed(k, p, { iat: NOW + PROOF_MAX_SKEW_SECONDS + 1 + Math.abs(p.iatOffset) })) },
  { name: 'no iat', expected: { sigilOnly: /must have a numeric iat/ }, build: proofOnly((k, p) => signed(k, p, { iat: undefined })) },
  { name: 'no jti', expected: { sigilOnly: /must have a jti string/ }, build: proofOnly((k, p) => signed(k, p, { jti: undefined })) },
  { name: 'empty jti', expected: { sigilOnly: /must have a jti string/ }, build: proofOnly((k, p) => signed(k, p, { jti: '' })) },
  { name: 'jti a number', expected: { sigilOnly: /must have a jti string/ }, build: proofOnly((k, p) => signed(k, p, { jti: p.size })) },
  { name: 'jti holding U+0000', expected: { sigilOnly: /payload contains U\+0000/ }, build: proofOnly((k, p) => signed(k, p, { jti: `${p.jti}\u0000` })) },
  { name: 'claims nested too deep', expected: { sigilOnly: /payload is nested deeper than/ }, build: proofOnly((k, p) => signed(k, p, { x_deep: nested(MAX_JSON_DEPTH + 1) })) },
  { name: 'oversized', expected: { sigilOnly: /must be one compact JWS/ }, build: proofOnly((k, p) => signed(k, p, { x_pad: 'x'.repeat(p.size) })) },
  { name: 'no ath with an access token', expected: { sigilOnly: /ath mismatch/ }, build: async (k, p) => ({ proof: await signed(k, p), expect: { accessToken: ACCESS_TOKEN } }) },
  { name: 'ath of another token', expected: { sigilOnly: /ath mismatch/ }, build: async (k, p) => ({ proof: await signed(k, p, { ath: createHash('sha256').update(`${ACCESS_TOKEN}${p.jti}`).digest('base64url') }), expect: { accessToken: ACCESS_TOKEN } }) },
  { name: 'nonce where nonces are not in use', expected: { sigilOnly: /nonces are not in use/ }, build: proofOnly((k, p) => signed(k, p, { nonce: p.jti })) },
  { name: 'jwk kid with a control character', expected: { sigilOnly: /jwk has a kid that is not 1 to/ }, build: proofOnly((k, p) => signed(k, { ...p, kid: `k\u001b]0;${p.jti}` })) },
  { name: 'RSA key with e = 1 (signs anything)', expected: { sigilOnly: /jwk has the RSA exponent e = "AQ"/ }, build: proofOnly(({ rsaExponentOne: weak }, p) => weak.sign({ alg: weak.alg, typ: 'dpop+jwt', jwk: weak.jwk }, claimsOf(p))) },
  { name: 'Ed25519 key of small order (signs anything)', expected: { sigilOnly: /jwk is an Ed25519 point of small order/ }, build: proofOnly(({ ed25519Identity: weak }, p) => weak.sign({ alg: weak.alg, typ: 'dpop+jwt', jwk: weak.jwk }, claimsOf(p))) },
  // jose has the same floor (its checkKeyLength)
  { name: '1024-bit RSA key', expected: { both: 'refuse' }, build: proofOnly((k, p) => signRaw(headerOf(k.rsa1024, p), claimsOf(p), k.rsa1024)) },
];

/** The first signature character changed: it carries whole bits (the last one may carry padding only). */
function flipSignature(jws: string): string {
  const [h, p, s] = jws.split('.') as [string, string, string];
  return `${h}.${p}.${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}`;
}

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

type Verdict = { ok: true } | { ok: false; reason: string };

function sigilVerdict(proof: string, expect: Partial<ProofExpectations>): Verdict {
  const verifier = new DpopProofVerifier({ algorithms: ALGS });
  try {
    verifier.verify(proof, { method: 'POST', url: URL_, now: NOW, ...expect });
    return { ok: true };
  } catch (err) {
    if (!(err instanceof DpopProofError)) throw err; // anything else is a crash, not a refusal
    return { ok: false, reason: err.message };
  }
}

async function joseVerdict(proof: string): Promise<Verdict> {
  try {
    await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [...ALGS], currentDate: new Date(NOW * 1000) });
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `${(err as { code?: string }).code ?? ''} ${(err as Error).message}` };
  }
}

interface Tally {
  proofs: number;
  agreedAccept: number;
  agreedRefuse: number;
  sigilOnly: number;
  byMutation: Map<string, number>;
}

/** Both verdicts on one proof, checked against what its mutation must do; counted. */
async function judge(mutation: Mutation, keys: Keys, p: Params, tally: Tally): Promise<void> {
  const { proof, expect = {} } = await mutation.build(keys, p);
  const sigil = sigilVerdict(proof, expect);
  const jose = await joseVerdict(proof);
  const what = `${mutation.name} (${p.alg}): sigil ${JSON.stringify(sigil)}, jose ${JSON.stringify(jose)}`;
  tally.proofs++;
  tally.byMutation.set(mutation.name, (tally.byMutation.get(mutation.name) ?? 0) + 1);
  const { expected } = mutation;
  if ('sigilOnly' in expected) {
    assert.ok(jose.ok, `jose should accept: ${what}`);
    assert.ok(!sigil.ok && expected.sigilOnly.test(sigil.reason), `Sigil should refuse with ${expected.sigilOnly}: ${what}`);
    tally.sigilOnly++;
    return;
  }
  assert.equal(sigil.ok, jose.ok, `disagreement on ${what}`);
  if (expected.both !== 'agree') assert.equal(sigil.ok, expected.both === 'accept', what);
  if (sigil.ok) tally.agreedAccept++;
  else tally.agreedRefuse++;
}

const printable = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_.~ABCXYZ'.split('')), minLength: 1, maxLength: 24 });

const paramsArb: fc.Arbitrary<Params> = fc.record({
  alg: fc.constantFrom(...ALGS),
  jti: printable,
  extraClaims: fc.dictionary(printable.map((s) => `x_${s}`), fc.oneof(printable, fc.integer(), fc.boolean()), { maxKeys: 4 }),
  extraHeader: fc.dictionary(printable.map((s) => `x_${s}`), fc.oneof(printable, fc.integer(), fc.boolean()), { maxKeys: 3 }),
  kid: fc.option(printable, { nil: undefined }),
  iatOffset: fc.integer({ min: 0, max: 100_000 }),
  text: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('dpop+jwt', 'DPOP+JWT', 'application/dpop+jwt', 'application/DPoP+jwt', 'dpop', 'at+jwt', 'application/json', 'dpop+jwt ', ' dpop+jwt', 'app/dpop+jwt')),
  size: fc.integer({ min: 8200, max: 20_000 }),
  method: fc.constantFrom('GET', 'PUT', 'DELETE', 'post', 'Post', 'PATCH', ''),
  path: fc.constantFrom('/token/', '/Token', '/introspect', '', '/token/x', '/tok%65n'),
});

const DEFAULTS: Omit<Params, 'alg'> = {
  jti: 'j1', extraClaims: {}, extraHeader: {}, kid: undefined, iatOffset: 0, text: 'jwt', size: 9000, method: 'GET', path: '/introspect',
};

describe('DPoP proof check: Sigil against jose (jwtVerify + EmbeddedJWK)', async () => {
  const generated = Object.fromEntries(await Promise.all(ALGS.map(async (alg) => {
    const { kid: _kid, alg: _alg, use: _use, ...privateJwk } = (await generateClientKey(alg)).privateJwk;
    return [alg, { pair: await keyPairFromPrivateJwk({ ...privateJwk, alg }), privateJwk }] as const;
  }))) as Record<KeyAlg, { pair: SigningKeyPair; privateJwk: Record<string, unknown> }>;
  const pairOf = async (alg: KeyAlg) => keyPairFromPrivateJwk((await generateClientKey(alg)).privateJwk);
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'jwk' });
  const keys: Keys = {
    pair: Object.fromEntries(ALGS.map((alg) => [alg, generated[alg].pair])) as Record<KeyAlg, SigningKeyPair>,
    privateJwk: Object.fromEntries(ALGS.map((alg) => [alg, generated[alg].privateJwk])) as Record<KeyAlg, Record<string, unknown>>,
    other: await pairOf('ES256'),
    rsa1024: await keyPairFromPrivateJwk({ ...rsa1024, alg: 'RS256', kid: randomUUID() }),
    rsaExponentOne: rsaExponentOneKey(),
    ed25519Identity: ed25519IdentityKey(),
  };
  const tally: Tally = { proofs: 0, agreedAccept: 0, agreedRefuse: 0, sigilOnly: 0, byMutation: new Map() };

  it('every mutation, with every algorithm', async () => {
    for (const mutation of MUTATIONS) {
      for (const alg of ALGS) await judge(mutation, keys, { ...DEFAULTS, alg }, tally);
    }
  });

  it('generated proofs (fast-check, seeded): agreement where both decide, Sigil refusing for its own reasons', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...MUTATIONS), paramsArb, async (mutation, p) => judge(mutation, keys, p, tally)),
      { numRuns: 500, seed: 20261202 },
    );
  });

  it('the tally: every mutation judged, in every category', (t) => {
    t.diagnostic(`proofs ${tally.proofs}: agreed accept ${tally.agreedAccept}, agreed refuse ${tally.agreedRefuse}, refused by Sigil alone ${tally.sigilOnly}`);
    for (const m of MUTATIONS) assert.ok((tally.byMutation.get(m.name) ?? 0) >= ALGS.length, m.name);
    assert.ok(tally.agreedAccept > 0 && tally.agreedRefuse > 0 && tally.sigilOnly > 0);
  });
});
