// sigil/verifier against a real Sigil server: a good request is accepted, and every attack is refused
// with the exact WWW-Authenticate an API must answer with (RFC 6750 §3, RFC 9449 §7.1).
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeProtectedHeader, generateKeyPair } from 'jose';
import { dpopProof, generateClientKey, requestToken } from '../../src/client/oauth-client.js';
import { createRedisReplayStore, createVerifier, verifyNodeRequest, VerifierError, type Verifier, type VerifierOptions } from '../../src/verifier/index.js';
import { b64url, decodePayload, epoch, forgeProof, signJws, unsignedJwt, untilReady } from '../support/forge.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import { eventually } from '../support/wait.js';

const AUDIENCE = 'https://api.example.com/orders';
const API = 'https://api.example.com/orders/42';
const ALGS = 'algs="ES256 EdDSA PS256 RS256"';
const ath = (token: string) => createHash('sha256').update(token).digest('base64url');

/** The refusal verify() rejects with, or a failure when it accepts. */
async function refusal(verify: Verifier, req: Parameters<Verifier>[0], opts?: Parameters<Verifier>[1]): Promise<VerifierError> {
  try {
    const claims = await verify(req, opts);
    assert.fail(`accepted: ${JSON.stringify(claims)}`);
  } catch (err) {
    if (!(err instanceof VerifierError)) throw err;
    return err;
  }
}

function assertRefused(err: VerifierError, status: number, code: string, wwwAuthenticate: string): void {
  assert.deepEqual({ status: err.status, code: err.code, wwwAuthenticate: err.wwwAuthenticate }, { status, code, wwwAuthenticate });
}

describe('sigil/verifier against a real server', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  let client: TestClient;
  const verifiers: Verifier[] = [];
  const make = (opts: Partial<VerifierOptions> = {}) => {
    const v = createVerifier({ issuer: server.issuer, audience: AUDIENCE, ...opts });
    verifiers.push(v);
    return v;
  };
  let verify: Verifier;
  const token = async (c: TestClient = client, resource = AUDIENCE) =>
    (await requestToken(tokenRequest(server.url, server.issuer, c, { resource, scope: 'orders:read' }))).access_token;
  const dpopRequest = async (t: string, c: TestClient = client, method = 'GET', url = API) => ({
    method, url, headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(c.dpopKey, method, url, { accessToken: t }) },
  });

  before(async () => {
    storage = await createTestStorage('verifier');
    server = await startServer({ reachableIssuer: true,
      env: { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix, JWKS_MAX_AGE: '2', STATUS_LIST_TTL: '60' },
    });
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, server.issuer);
    client = await createClient(admin, { audiences: [AUDIENCE, 'https://api.example.com/other'] });
    verify = make();
  });
  after(async () => {
    for (const v of verifiers) await v.close();
    await server?.stop();
    await storage?.cleanup();
  });

  it('accepts a DPoP-bound token with a fresh proof and returns its claims', async () => {
    const t = await token();
    const claims = await verify(await dpopRequest(t));
    const payload = decodePayload(t);
    assert.equal(claims.client_id, client.clientId);
    assert.equal(claims.sub, client.clientId);
    assert.equal(claims.jti, payload.jti);
    assert.equal(claims.scope, 'orders:read');
    assert.deepEqual(claims.cnf, payload.cnf);
    assert.ok(claims.aud === AUDIENCE || (Array.isArray(claims.aud) && claims.aud.includes(AUDIENCE)));
    // a Fetch API Request works the same, and the same token again with a new proof
    const req = await dpopRequest(t, client, 'POST', `${API}?page=2`);
    const fetchRequest = new Request(req.url, { method: 'POST', headers: req.headers });
    assert.equal((await verify(fetchRequest)).jti, payload.jti);
    // a hand-made record of headers, names in any case
    const capitalised = { method: 'GET', url: API, headers: { Authorization: `DPoP ${t}`, DPoP: await dpopProof(client.dpopKey, 'GET', API, { accessToken: t }) } };
    assert.equal((await verify(capitalised)).jti, payload.jti);
  });

  it('a Node http API behind the adapter: its path resolved against baseUrl, refusals answered', async () => {
    const v = make({ baseUrl: 'https://api.example.com' });
    const api = createServer((req, res) => void verifyNodeRequest(v, req, res).then((c) => c && res.end(JSON.stringify(c))));
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(api.address() as AddressInfo).port}/orders/42`;
      const t = await token();
      const ok = await fetch(at, { headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(client.dpopKey, 'GET', API, { accessToken: t }) } });
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as { client_id: string }).client_id, client.clientId);
      const refused = await fetch(at);
      assert.equal(refused.status, 401);
      assert.equal(refused.headers.get('www-authenticate'), `DPoP ${ALGS}`);
    } finally {
      await new Promise((r) => api.close(r));
    }
  });

  it('an exchanged token: the act chain and the original subject reach the API', async () => {
    const STOCK = 'https://api.example.com/stock';
    const orders = await createClient(admin, {
      name: 'orders service', scope: 'orders:read', audiences: [STOCK], serves: [AUDIENCE],
      grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
    });
    const exchanged = (await requestToken(tokenRequest(server.url, server.issuer, orders, {
      grantType: 'urn:ietf:params:oauth:grant-type:token-exchange', resource: STOCK,
      extra: { subject_token: await token(), subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' },
    }))).access_token;
    const stockApi = make({ audience: STOCK });
    const claims = await stockApi(await dpopRequest(exchanged, orders, 'GET', 'https://api.example.com/stock/1'));
    assert.equal(claims.sub, client.clientId, 'the original subject');
    assert.equal(claims.client_id, orders.clientId);
    assert.equal(claims.act?.sub, orders.clientId, 'the actor');
  });

  it('no token: 401 with a challenge and no error code', async () => {
    assertRefused(await refusal(verify, { method: 'GET', url: API, headers: {} }), 401, 'missing_token', `DPoP ${ALGS}`);
  });

  it('a DPoP-bound token sent as Bearer is refused (also when Bearer tokens are allowed)', async () => {
    const t = await token();
    assertRefused(await refusal(verify, { method: 'GET', url: API, headers: { authorization: `Bearer ${t}` } }), 401, 'invalid_token',
      `DPoP error="invalid_token", error_description="a DPoP-bound access token and a DPoP proof are required", ${ALGS}`);
    const lenient = make({ allowBearer: true });
    assertRefused(await refusal(lenient, { method: 'GET', url: API, headers: { authorization: `Bearer ${t}` } }), 401, 'invalid_token',
      `DPoP error="invalid_token", error_description="a DPoP-bound access token must be presented with the DPoP scheme", ${ALGS}, Bearer error="invalid_token", error_description="a DPoP-bound access token must be presented with the DPoP scheme"`);
  });

  it('a plain Bearer token (no cnf): accepted only when Bearer is allowed, and never with the DPoP scheme', async () => {
    const optional = await createClient(admin, { name: 'bearer client', dpop: 'optional' });
    const bearer = (await requestToken(tokenRequest(server.url, server.issuer, optional, { dpopKey: undefined, resource: AUDIENCE, scope: 'orders:read' }))).access_token;
    assert.equal(decodePayload(bearer).cnf, undefined, 'a token without cnf');
    const req = { method: 'GET', url: API, headers: { authorization: `Bearer ${bearer}` } };
    assertRefused(await refusal(verify, req), 401, 'invalid_token', `DPoP error="invalid_token", error_description="a DPoP-bound access token and a DPoP proof are required", ${ALGS}`);
    const lenient = make({ allowBearer: true });
    assert.equal((await lenient(req)).client_id, optional.clientId);
    const asDpop = { method: 'GET', url: API, headers: { authorization: `DPoP ${bearer}`, dpop: await dpopProof(optional.dpopKey, 'GET', API, { accessToken: bearer }) } };
    assertRefused(await refusal(lenient, asDpop), 401, 'invalid_token',
      `DPoP error="invalid_token", error_description="the access token is not DPoP-bound", ${ALGS}, Bearer error="invalid_token", error_description="the access token is not DPoP-bound"`);
    assertRefused(await refusal(lenient, { method: 'GET', url: API, headers: {} }), 401, 'missing_token', `DPoP ${ALGS}, Bearer`);
  });

  it('a proof for another URL or another method is refused', async () => {
    const t = await token();
    const other = { method: 'GET', url: API, headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(client.dpopKey, 'GET', 'https://api.example.com/orders/43', { accessToken: t }) } };
    assertRefused(await refusal(verify, other), 401, 'invalid_dpop_proof', `DPoP error="invalid_dpop_proof", error_description="DPoP proof htu does not match the request URL", ${ALGS}`);
    const method = { method: 'DELETE', url: API, headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(client.dpopKey, 'GET', API, { accessToken: t }) } };
    assertRefused(await refusal(verify, method), 401, 'invalid_dpop_proof', `DPoP error="invalid_dpop_proof", error_description="DPoP proof htm does not match the request method", ${ALGS}`);
    // §4.3 normalisation: case of scheme and host, the default port, and the query are not differences
    const normalised = { method: 'GET', url: `${API}?q=1`, headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(client.dpopKey, 'GET', 'HTTPS://API.example.com:443/orders/%34%32', { accessToken: t }) } };
    assert.equal((await verify(normalised)).client_id, client.clientId);
  });

  it('a replayed proof is refused', async () => {
    const t = await token();
    const req = await dpopRequest(t);
    await verify(req);
    assertRefused(await refusal(verify, req), 401, 'invalid_dpop_proof', `DPoP error="invalid_dpop_proof", error_description="the DPoP proof has been used before", ${ALGS}`);
  });

  it('two proofs, a stale proof, a wrong ath, a proof by another key', async () => {
    const t = await token();
    const one = await dpopProof(client.dpopKey, 'GET', API, { accessToken: t });
    const two = await dpopProof(client.dpopKey, 'GET', API, { accessToken: t });
    assertRefused(await refusal(verify, { method: 'GET', url: API, headers: { authorization: `DPoP ${t}`, dpop: [one, two] } }), 401, 'invalid_dpop_proof',
      `DPoP error="invalid_dpop_proof", error_description="exactly one DPoP proof is allowed", ${ALGS}`);
    const stale = await forgeProof(client.dpopKey, 'GET', API, { claims: { ath: ath(t), iat: epoch() - 120 } });
    assertRefused(await refusal(verify, { method: 'GET', url: API, headers: { authorization: `DPoP ${t}`, dpop: stale } }), 401, 'invalid_dpop_proof',
      `DPoP error="invalid_dpop_proof", error_description="DPoP proof iat is too old", ${ALGS}`);
    const wrongAth = await forgeProof(client.dpopKey, 'GET', API, { claims: { ath: ath(`${t}x`) } });
    assertRefused(await refusal(verify, { method: 'GET', url: API, headers: { authorization: `DPoP ${t}`, dpop: wrongAth } }), 401, 'invalid_dpop_proof',
      `DPoP error="invalid_dpop_proof", error_description="DPoP proof ath does not match the access token", ${ALGS}`);
    const thief = await createClient(admin, { name: 'thief' });
    const stolen = { method: 'GET', url: API, headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(thief.dpopKey, 'GET', API, { accessToken: t }) } };
    assertRefused(await refusal(verify, stolen), 401, 'invalid_dpop_proof', `DPoP error="invalid_dpop_proof", error_description="the DPoP proof key is not the token's cnf.jkt", ${ALGS}`);
    const noneProof = unsignedJwt({ alg: 'none', typ: 'dpop+jwt', jwk: client.dpopKey.publicJwk }, { htm: 'GET', htu: API, iat: epoch(), jti: randomUUID(), ath: ath(t) });
    assertRefused(await refusal(verify, { method: 'GET', url: API, headers: { authorization: `DPoP ${t}`, dpop: noneProof } }), 401, 'invalid_dpop_proof',
      `DPoP error="invalid_dpop_proof", error_description="DPoP proof must be one compact JWS with a JSON header and payload", ${ALGS}`);
  });

  it('another audience, expired, forged signature, alg none: invalid_token', async () => {
    const invalid = (d: string) => `DPoP error="invalid_token", error_description="${d}", ${ALGS}`;
    const other = await token(client, 'https://api.example.com/other');
    assertRefused(await refusal(verify, await dpopRequest(other)), 401, 'invalid_token', invalid('the access token is for another audience'));

    const t = await token();
    const later = make({ now: () => Date.now() + 3_600_000 });
    assertRefused(await refusal(later, await dpopRequest(t)), 401, 'invalid_token', invalid('the access token has expired'));

    const [h, p, s] = t.split('.') as [string, string, string];
    const forged = `${h}.${b64url({ ...decodePayload(t), scope: 'orders:read orders:write' })}.${s}`;
    assertRefused(await refusal(verify, await dpopRequest(forged)), 401, 'invalid_token', invalid('the access token signature is invalid'));
    const { privateKey } = await generateKeyPair('ES256');
    const selfSigned = await signJws({ ...decodeProtectedHeader(t) }, decodePayload(t), privateKey);
    assertRefused(await refusal(verify, await dpopRequest(selfSigned)), 401, 'invalid_token', invalid('the access token signature is invalid'));
    const none = unsignedJwt({ alg: 'none', typ: 'at+jwt' }, decodePayload(t));
    assertRefused(await refusal(verify, await dpopRequest(none)), 401, 'invalid_token', invalid('the access token is not a JWT'));
    const noneSigned = `${b64url({ alg: 'none', typ: 'at+jwt' })}.${p}.${s}`;
    assertRefused(await refusal(verify, await dpopRequest(noneSigned)), 401, 'invalid_token', invalid('the access token alg is not allowed'));
    const hs = `${b64url({ alg: 'HS256', typ: 'at+jwt', kid: decodeProtectedHeader(t).kid })}.${p}.${s}`;
    assertRefused(await refusal(verify, await dpopRequest(hs)), 401, 'invalid_token', invalid('the access token alg is not allowed'));
  });

  it('required scopes: 403 insufficient_scope naming them', async () => {
    const t = await token();
    const needy = make({ scopes: ['orders:read'] });
    assert.equal((await needy(await dpopRequest(t))).client_id, client.clientId);
    // per call: orders:write on top of the verifier's orders:read
    assertRefused(await refusal(needy, await dpopRequest(t), { scopes: ['orders:write'] }), 403, 'insufficient_scope',
      `DPoP error="insufficient_scope", error_description="the access token lacks the scope orders:write", scope="orders:read orders:write", ${ALGS}`);
  });

  it('resource-server nonces: use_dpop_nonce with a DPoP-Nonce value, then accepted', async () => {
    const t = await token();
    const withNonces = make({ dpop: { nonceSecret: 'a secret of at least sixteen bytes' } });
    const err = await refusal(withNonces, await dpopRequest(t));
    assertRefused(err, 401, 'use_dpop_nonce', `DPoP error="use_dpop_nonce", error_description="a nonce is required in the DPoP proof", ${ALGS}`);
    assert.ok(err.dpopNonce, 'a DPoP-Nonce value');
    assert.equal(err.headers['DPoP-Nonce'], err.dpopNonce);
    const req = { method: 'GET', url: API, headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(client.dpopKey, 'GET', API, { accessToken: t, nonce: err.dpopNonce }) } };
    assert.equal((await withNonces(req)).client_id, client.clientId);
  });

  it('a token signed by a new key after a rotation is accepted without a restart; unknown kids refetch once per cool-down', async () => {
    const v = make();
    // a verifier that caches the JWKS for an hour: only the unknown-kid refetch can find the new key
    const longCache = make({
      jwksRefetchCooldownSeconds: 2,
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        if (!String(input).endsWith('/jwks')) return res;
        return new Response(await res.text(), { status: res.status, headers: { 'content-type': 'application/json', 'cache-control': 'public, max-age=3600' } });
      },
    });
    await v(await dpopRequest(await token()));
    await longCache(await dpopRequest(await token()));
    assert.equal(longCache.stats.jwksFetches, 1);
    const before = decodeProtectedHeader(await token()).kid;
    const rotated = await admin.call('POST', '/admin/keys/rotate');
    assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
    const fresh = await eventually('a token signed by the new key', async () => {
      const t = await token();
      return decodeProtectedHeader(t).kid !== before && t;
    }, { timeout: 30_000 });
    assert.equal((await v(await dpopRequest(fresh))).client_id, client.clientId);
    assert.equal((await longCache(await dpopRequest(fresh))).client_id, client.clientId);
    assert.equal(longCache.stats.jwksFetches, 2, 'one refetch for the new kid');
    // junk kids within the cool-down (2 s) of that refetch: refused, and no further fetch
    const { privateKey } = await generateKeyPair('ES256');
    const junk = await Promise.all([0, 1, 2].map(async (i) => dpopRequest(await signJws({ alg: 'ES256', typ: 'at+jwt', kid: `junk-${i}` }, decodePayload(fresh), privateKey))));
    for (const req of junk) {
      assertRefused(await refusal(longCache, req), 401, 'invalid_token',
        `DPoP error="invalid_token", error_description="the access token is signed by an unknown key", ${ALGS}`);
    }
    assert.equal(longCache.stats.jwksFetches, 2, 'unknown kids do not refetch within the cool-down');
  });

  it('a proof used at one replica is refused at another sharing Redis', async () => {
    // the stores' clocks run 10 s behind: their first start (no marker yet: a possible loss) is past
    const shared = { redis: storage.redisUrl, prefix: `${storage.redisPrefix}verifier:`, now: () => Date.now() - 10_000 };
    const a = make({ dpop: { replayStore: await createRedisReplayStore(shared) } });
    const b = make({ dpop: { replayStore: await createRedisReplayStore(shared) } });
    const req = await dpopRequest(await token());
    assert.equal((await a(req)).client_id, client.clientId);
    assertRefused(await refusal(b, req), 401, 'invalid_dpop_proof', `DPoP error="invalid_dpop_proof", error_description="the DPoP proof has been used before", ${ALGS}`);
    assert.equal((await b(await dpopRequest(await token()))).client_id, client.clientId);
  });

  it('a revoked token and a revoked client are refused within 1 s (status list change stream)', async () => {
    const v = make();
    const t = await token();
    await v(await dpopRequest(t));
    await eventually('the change stream is open', async () => v.stats.statusStreamReady);
    const revokedAt = Date.now();
    const revoked = await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(t).jti, reason: 'verifier test' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    const err = await eventually('the revoked token refused', async () => {
      try {
        await v(await dpopRequest(t));
        return false;
      } catch (e) {
        return e as VerifierError;
      }
    }, { timeout: 5_000 });
    assert.ok(Date.now() - revokedAt < 1000, `refused after ${Date.now() - revokedAt} ms`);
    assertRefused(err, 401, 'invalid_token', `DPoP error="invalid_token", error_description="the access token has been revoked", ${ALGS}`);

    const victim = await createClient(admin, { name: 'to be revoked' });
    const vt = await token(victim);
    await v(await dpopRequest(vt, victim));
    const clientRevokedAt = Date.now();
    assert.equal((await admin.call('POST', `/admin/clients/${encodeURIComponent(victim.clientId)}/revoke`, { reason: 'verifier test' })).status, 200);
    await eventually('the revoked client refused', async () => {
      try {
        await v(await dpopRequest(vt, victim));
        return false;
      } catch (e) {
        return (e as VerifierError).code === 'invalid_token';
      }
    }, { timeout: 5_000 });
    assert.ok(Date.now() - clientRevokedAt < 1000, `refused after ${Date.now() - clientRevokedAt} ms`);
  });

  it('after the change stream reconnects, every cached list is fetched again', async () => {
    let streamAllowed = true;
    let cut: AbortController | undefined;
    const v = make({
      status: { backoffMs: { min: 50, max: 200 } },
      fetch: (input, init) => {
        if (!String(input).endsWith('/status-lists/events')) return fetch(input, init);
        if (!streamAllowed) return Promise.reject(new Error('the stream is cut'));
        cut = new AbortController();
        return fetch(input, { ...init, signal: AbortSignal.any([cut.signal, ...(init?.signal ? [init.signal] : [])]) });
      },
    });
    const t = await token();
    await v(await dpopRequest(t));
    await eventually('the change stream is open', async () => v.stats.statusStreamReady);
    streamAllowed = false;
    cut!.abort();
    await eventually('the change stream is down', async () => !v.stats.statusStreamReady);
    assert.equal((await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(t).jti, reason: 'verifier test' })).status, 200);
    // without the stream the cached list (ttl 60 s) still says valid: the control
    assert.equal((await v(await dpopRequest(t))).client_id, client.clientId);
    streamAllowed = true;
    const err = await eventually('refused once the stream is back', async () => {
      try {
        await v(await dpopRequest(t));
        return false;
      } catch (e) {
        return e as VerifierError;
      }
    }, { timeout: 10_000 });
    assert.equal(err.code, 'invalid_token');
    assert.ok(v.stats.statusStreamReady);
  });

  it('a change stream that served a while and ended is replaced at once, whatever the backoff', async () => {
    let ahead = 0;
    let opened = 0;
    let cut: AbortController | undefined;
    const v = make({
      now: () => Date.now() + ahead,
      dpop: { maxAgeSeconds: 300 },
      // a failing stream would wait 30 to 60 s
      status: { backoffMs: { min: 60_000, max: 60_000 } },
      fetch: (input, init) => {
        if (!String(input).endsWith('/status-lists/events')) return fetch(input, init);
        opened++;
        cut = new AbortController();
        return fetch(input, { ...init, signal: AbortSignal.any([cut.signal, ...(init?.signal ? [init.signal] : [])]) });
      },
    });
    await v(await dpopRequest(await token()));
    await eventually('the change stream is open', async () => v.stats.statusStreamReady);
    ahead = 11_000;
    cut!.abort();
    await eventually('a new stream', async () => opened === 2 && v.stats.statusStreamReady, { timeout: 5_000 });
  });

  it('without the change stream, a revoked token is refused once the list\'s ttl has passed', async () => {
    let ahead = 0;
    // the verifier's clock jumps past the list's ttl (60 s); proofs may be that old for this verifier
    const v = make({ status: { events: false }, now: () => Date.now() + ahead, dpop: { maxAgeSeconds: 300 } });
    const t = await token();
    await v(await dpopRequest(t));
    assert.equal((await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(t).jti, reason: 'verifier test' })).status, 200);
    assert.equal((await v(await dpopRequest(t))).client_id, client.clientId, 'within the ttl the cached list is used');
    const fetches = v.stats.statusListFetches;
    ahead = 61_000;
    assertRefused(await refusal(v, await dpopRequest(t)), 401, 'invalid_token', `DPoP error="invalid_token", error_description="the access token has been revoked", ${ALGS}`);
    assert.equal(v.stats.statusListFetches, fetches + 1);
  });

  it('the issuer unreachable before its first answer: 503, not an exception', async () => {
    const v = make({ fetch: () => Promise.reject(new Error('connection refused')) });
    const err = await refusal(v, await dpopRequest(await token()));
    assertRefused(err, 503, 'temporarily_unavailable', `DPoP ${ALGS}`);
  });

  it('the status list unreachable: fail closed (503 temporarily_unavailable)', async () => {
    const cut = make({ fetch: (input, init) => (String(input).includes('/status-lists/') ? Promise.reject(new Error('unreachable')) : fetch(input, init)) });
    const err = await refusal(cut, await dpopRequest(await token()));
    assertRefused(err, 503, 'temporarily_unavailable', `DPoP ${ALGS}`);
    assert.equal(err.headers['Retry-After'], '5');
  });

  it('the status list unreachable with introspection configured: the issuer is asked instead', async () => {
    // the gateway's own client, its private key kept as its operator would configure it
    const { privateJwk, publicJwks } = await generateClientKey('ES256');
    const created = await admin.call('POST', '/admin/clients', { name: 'verifier gateway', jwks: publicJwks, scope: 'orders:read', audiences: [AUDIENCE], can_introspect: true });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const gateway = { clientId: created.body.client_id as string };
    const calls: string[] = [];
    const v = make({
      fetch: (input, init) => {
        calls.push(String(input));
        return String(input).includes('/status-lists/') ? Promise.reject(new Error('unreachable')) : fetch(input, init);
      },
      status: { onUnavailable: { introspect: { clientId: gateway.clientId, privateJwk } }, events: false },
    });
    const t = await token();
    assert.equal((await v(await dpopRequest(t))).client_id, client.clientId);
    assert.ok(calls.some((u) => u.endsWith('/introspect')), 'introspection was asked');
    await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(t).jti, reason: 'verifier test' });
    assertRefused(await refusal(v, await dpopRequest(t)), 401, 'invalid_token', `DPoP error="invalid_token", error_description="the access token is not active", ${ALGS}`);
  });
});
