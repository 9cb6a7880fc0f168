// Differential: sigil/verifier and oauth4webapi's validateJwtAccessToken (RFC 9068 + RFC 9449, the
// standards-strict reference) must agree, accept or refuse, on a generated set of requests against a
// real Sigil server. Every request carries a fresh proof (oauth4webapi keeps no replay record), no
// token is revoked (it reads no status list), and the mutations stay where both libraries decide the
// same rule: a proof's age is generated as either clearly fresh or clearly too old for both (this
// library's window is 60 s, oauth4webapi's 300 s).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { generateKeyPair } from 'jose';
import * as oauth from 'oauth4webapi';
import { requestToken, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { createVerifier, VerifierError, type Verifier } from '../../src/verifier/index.js';
import { b64url, decodePayload, dpopJwk, epoch, forgeProof, signJws, unsignedJwt, untilReady } from '../support/forge.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type TestClient } from '../support/sigil.js';
import { createHash } from 'node:crypto';

const AUDIENCE = 'https://api.example.com/orders';
const URL_ = 'https://api.example.com/orders/7';
const sha = (s: string) => createHash('sha256').update(s).digest('base64url');

/** Each mutation changes one thing of a valid request; several may be combined. */
const MUTATIONS = [
  'bearer_scheme', 'no_proof', 'two_proofs', 'htu_other_path', 'htu_other_host', 'htu_query_and_case', 'htm_other', 'ath_wrong', 'ath_missing',
  'iat_old', 'iat_future', 'iat_recent', 'proof_typ', 'proof_alg_none', 'proof_other_key', 'proof_private_jwk', 'proof_bad_signature', 'proof_no_jti',
  'token_other_audience', 'token_forged_payload', 'token_self_signed', 'token_alg_none', 'token_typ_jwt', 'token_expired',
] as const;
type Mutation = (typeof MUTATIONS)[number];

describe('sigil/verifier agrees with oauth4webapi validateJwtAccessToken', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let client: TestClient;
  let thief: SigningKeyPair;
  let tokens: { good: string; otherAudience: string };
  let as: oauth.AuthorizationServer;
  let verify: Verifier;
  let later: Verifier;

  before(async () => {
    storage = await createTestStorage('differential');
    server = await startServer({ reachableIssuer: true, env: { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix } });
    await untilReady(server.url);
    const admin = await bootstrapAdmin(server.url, server.issuer);
    client = await createClient(admin, { audiences: [AUDIENCE, 'https://api.example.com/other'] });
    thief = (await createClient(admin, { name: 'thief' })).dpopKey;
    const get = (resource: string) => requestToken(tokenRequest(server.url, server.issuer, client, { resource })).then((t) => t.access_token);
    tokens = { good: await get(AUDIENCE), otherAudience: await get('https://api.example.com/other') };
    as = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as oauth.AuthorizationServer;
    verify = createVerifier({ issuer: server.issuer, audience: AUDIENCE });
    later = createVerifier({ issuer: server.issuer, audience: AUDIENCE, now: () => Date.now() + 3_600_000 });
  });
  after(async () => {
    await verify?.close();
    await later?.close();
    await server?.stop();
    await storage?.cleanup();
  });

  async function build(mutations: Set<Mutation>): Promise<{ method: string; url: string; headers: Record<string, string | string[]> }> {
    const has = (m: Mutation) => mutations.has(m);
    let token = has('token_other_audience') ? tokens.otherAudience : tokens.good;
    const [h, p, s] = token.split('.') as [string, string, string];
    const claims = decodePayload(token);
    if (has('token_forged_payload')) token = `${h}.${b64url({ ...claims, scope: 'orders:admin' })}.${s}`;
    if (has('token_self_signed')) token = await signJws({ alg: 'ES256', typ: 'at+jwt', kid: JSON.parse(Buffer.from(h, 'base64url').toString()).kid }, claims, (await generateKeyPair('ES256')).privateKey);
    if (has('token_alg_none')) token = unsignedJwt({ alg: 'none', typ: 'at+jwt' }, claims);
    if (has('token_typ_jwt')) token = `${b64url({ ...JSON.parse(Buffer.from(h, 'base64url').toString()), typ: 'JWT' })}.${p}.${s}`;

    const method = has('htm_other') ? 'GET' : 'POST';
    const key = has('proof_other_key') ? thief : client.dpopKey;
    const htu = has('htu_other_path') ? 'https://api.example.com/orders/8'
      : has('htu_other_host') ? 'https://evil.example.com/orders/7'
      : has('htu_query_and_case') ? 'HTTPS://API.EXAMPLE.COM/orders/7?x=1#f' : URL_;
    const proofClaims: Record<string, unknown> = {
      ath: has('ath_wrong') ? sha(`${token}.`) : has('ath_missing') ? undefined : sha(token),
      iat: epoch() + (has('iat_old') ? -400 : has('iat_future') ? 400 : has('iat_recent') ? -20 : 0),
      jti: has('proof_no_jti') ? undefined : randomUUID(),
    };
    const header: Record<string, unknown> = {};
    if (has('proof_typ')) header.typ = 'jwt';
    if (has('proof_private_jwk')) header.jwk = { ...dpopJwk(key), d: 'AAAA' };
    let proof = await forgeProof(key, 'POST', htu, { claims: proofClaims, header });
    if (has('proof_alg_none')) proof = unsignedJwt({ alg: 'none', typ: 'dpop+jwt', jwk: dpopJwk(key) }, { htm: 'POST', htu, ...proofClaims });
    if (has('proof_bad_signature')) proof = `${proof.slice(0, -6)}AAAAAA`;
    const headers: Record<string, string | string[]> = { authorization: `${has('bearer_scheme') ? 'Bearer' : 'DPoP'} ${token}` };
    if (!has('no_proof')) headers.dpop = has('two_proofs') ? [proof, await forgeProof(key, 'POST', htu, { claims: { ...proofClaims, jti: randomUUID() } })] : proof;
    return { method, url: `${URL_}?page=1`, headers };
  }

  it('the same decision on every generated request', async () => {
    const cases = fc.sample(fc.subarray([...MUTATIONS], { minLength: 0, maxLength: 3 }), { seed: 20261202, numRuns: 160 });
    // every single mutation and the valid request, whatever the sample holds
    cases.push([], ...MUTATIONS.map((m) => [m]));
    let accepted = 0;
    for (const list of cases) {
      const mutations = new Set(list);
      const req = await build(mutations);
      const expired = mutations.has('token_expired');
      const ours = await (expired ? later : verify)(req).then(() => true, (err: unknown) => {
        if (err instanceof VerifierError) return false;
        throw err;
      });
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) for (const x of [v].flat()) headers.append(k, x);
      const theirs = await oauth.validateJwtAccessToken(as, new Request(req.url, { method: req.method, headers }), AUDIENCE, {
        [oauth.allowInsecureRequests]: true,
        requireDPoP: true,
        ...(expired ? { [oauth.clockSkew]: 3600 } : {}),
      }).then(() => true, () => false);
      assert.equal(ours, theirs, `mutations [${[...mutations].join(', ')}]: sigil/verifier ${ours ? 'accepts' : 'refuses'}, oauth4webapi ${theirs ? 'accepts' : 'refuses'}`);
      if (ours) accepted++;
    }
    assert.ok(accepted >= 3, `valid requests were generated too (${accepted} accepted of ${cases.length})`);
  });
});
