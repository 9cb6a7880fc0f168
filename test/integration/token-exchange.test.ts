// Token exchange (RFC 8693) against real Sigil processes on one Postgres and one Redis. A service
// trades the token it received for one addressed to the next hop: only with the grant, only for a
// token addressed to an API it serves, only for one of its own audiences, within both scopes. The
// new token keeps the subject's `sub`, records each caller in a nested `act`, is bound to the
// caller's DPoP key and never outlives the subject. Revoked, foreign, expired or malformed subject
// tokens are refused. A second instance (same storage, same ISSUER) honours what the first issued.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { clientAssertion, requestToken, thumbprint } from '../../src/client/oauth-client.js';
import {
  ASSERTION_TYPE, assertOAuthError, decodePayload, SecretLedger, signJws, unsignedJwt, untilReady, type RawResponse,
} from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient, rawTokenCall, type TokenCallOptions } from '../support/sigil.js';
import { eventually, observedWithin } from '../support/wait.js';

const TX = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';

const ORDERS_API = 'https://orders.example';
const STOCK_API = 'https://stock.example';
const BILLING_API = 'https://billing.example';
const DB_API = 'https://db.example';

const now = () => Math.floor(Date.now() / 1000);

describe('token exchange (RFC 8693)', () => {
  let storage: TestStorage;
  /** the main instance (ACCESS_TOKEN_TTL default 300) */
  let a: ServerProcess;
  /** a second instance on the same storage and ISSUER, issuing shorter tokens (ACCESS_TOKEN_TTL=60) */
  let b: ServerProcess;
  /** a third instance whose tokens expire after one second (for expired subject tokens) */
  let c: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let jwks: { keys: JWK[] };
  const ledger = new SecretLedger();

  /** the end client: gets the original tokens for the orders API */
  let front: TestClient;
  /** the orders API: serves ORDERS_API, exchanges for STOCK_API (or BILLING_API), may refresh */
  let orders: TestClient;
  /** the stock API: serves STOCK_API, exchanges for DB_API */
  let stock: TestClient;
  /** serves ORDERS_API like `orders`, but does not hold the exchange grant */
  let noGrant: TestClient;
  /** an introspecting gateway */
  let gateway: TestClient;

  before(async () => {
    storage = await createTestStorage('tokenexchange');
    const env = storageEnv(storage);
    a = await startServer({ env });
    issuer = a.issuer;
    [b, c] = await Promise.all([
      startServer({ issuer, env: { ...env, ACCESS_TOKEN_TTL: '60' } }),
      startServer({ issuer, env: { ...env, ACCESS_TOKEN_TTL: '1' } }),
    ]);
    await Promise.all([untilReady(a.url), untilReady(b.url), untilReady(c.url)]);
    admin = await bootstrapAdmin(a.url, issuer);
    front = await createClient(admin, { name: 'front', scope: 'orders:read orders:write', audiences: [ORDERS_API] });
    orders = await createClient(admin, {
      name: 'orders', scope: 'orders:read stock:read', audiences: [STOCK_API, BILLING_API], serves: [ORDERS_API],
      grant_types: ['client_credentials', TX, 'refresh_token'],
    });
    stock = await createClient(admin, {
      name: 'stock', scope: 'stock:read orders:read', audiences: [DB_API], serves: [STOCK_API], grant_types: [TX],
    });
    noGrant = await createClient(admin, {
      name: 'no exchange grant', scope: 'orders:read stock:read', audiences: [STOCK_API], serves: [ORDERS_API], grant_types: ['client_credentials'],
    });
    gateway = await createClient(admin, { name: 'gateway', can_introspect: true });
    jwks = await (await fetch(`${a.url}/jwks`)).json();
  });
  after(async () => {
    for (const s of [a, b, c]) await s?.stop();
    await storage?.cleanup();
  });

  /** a fresh token of `front` for the orders API (issued by `on`, default A) */
  async function frontToken(on: ServerProcess = a, who: TestClient = front): Promise<string> {
    const t = (await requestToken(tokenRequest(on.url, issuer, who))).access_token;
    ledger.add(t);
    return t;
  }

  /** One raw token request by `who` (private_key_jwt, DPoP), on A unless told otherwise. */
  const tokenCall = (who: TestClient, params: Record<string, string | undefined>, call: TokenCallOptions = {}): Promise<RawResponse> => rawTokenCall(a, issuer, who, params, call, ledger);

  /** an exchange of `subject` by `who`, with the given extra fields (undefined removes a default) */
  function exchange(who: TestClient, subject: string | undefined, extra: Record<string, string | undefined> = {}, call: TokenCallOptions = {}): Promise<RawResponse> {
    return tokenCall(who, { grant_type: TX, subject_token: subject, subject_token_type: AT, ...extra }, call);
  }

  /** the response issued an exchanged DPoP token; returns its verified claims */
  async function assertExchanged(res: RawResponse): Promise<JWTPayload & Record<string, any>> {
    assert.equal(res.status, 200, `expected a token, got ${res.status} ${res.text}`);
    assert.equal(typeof res.body.access_token, 'string', res.text);
    assert.equal(res.body.token_type, 'DPoP', `token_type: ${res.text}`);
    assert.equal(res.body.issued_token_type, AT, `issued_token_type: ${res.text}`);
    assert.equal(typeof res.body.expires_in, 'number');
    assert.match(res.headers.get('cache-control') ?? '', /no-store/);
    const { payload } = await jwtVerify(res.body.access_token, createLocalJWKSet(jwks), { typ: 'at+jwt', issuer });
    for (const claim of ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id']) assert.ok(payload[claim] !== undefined, `claim ${claim} is missing`);
    assert.ok((payload as any).status?.status_list, 'the exchanged token names its status list entry');
    return payload as JWTPayload & Record<string, any>;
  }

  /** RFC 7662 introspection at `on` authenticated as `who` */
  async function introspect(on: ServerProcess, who: TestClient, token: string): Promise<{ status: number; body: any; text: string }> {
    const body = new URLSearchParams({ token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(who.key, who.clientId, issuer) });
    const res = await fetch(`${on.url}/introspect`, { method: 'POST', body });
    const text = await res.text();
    return { status: res.status, text, body: JSON.parse(text) };
  }

  it('discovery lists the token-exchange and refresh_token grants', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
      const meta = await (await fetch(`${a.url}${path}`)).json();
      assert.ok(Array.isArray(meta.grant_types_supported), path);
      for (const g of ['client_credentials', TX, 'refresh_token']) assert.ok(meta.grant_types_supported.includes(g), `${path} grant_types_supported lacks ${g}: ${meta.grant_types_supported}`);
    }
  });

  it('a client without the token-exchange grant is refused (400 unauthorized_client, no token), even for a token addressed to an API it serves', async () => {
    const subject = await frontToken();
    const res = await exchange(noGrant, subject);
    assertOAuthError(res, 400, 'unauthorized_client');
  });

  it('one hop: sub kept, act = the caller, client_id = the caller, bound to the caller\'s DPoP key, first registered audience, scope = the intersection, exp <= the subject\'s', async () => {
    const subject = await frontToken();
    const s = decodePayload(subject);
    const res = await exchange(orders, subject);
    const p = await assertExchanged(res);
    assert.equal(p.sub, front.clientId, 'sub is the subject token\'s sub');
    assert.deepEqual(p.act, { sub: orders.clientId }, 'act names the caller');
    assert.equal(p.client_id, orders.clientId);
    assert.deepEqual(p.cnf, { jkt: await thumbprint(orders.dpopKey) });
    assert.equal(p.aud, STOCK_API, 'default target is the caller\'s first registered audience');
    assert.equal(p.scope, 'orders:read', 'subject has orders:read orders:write, caller has orders:read stock:read');
    assert.equal(res.body.scope, 'orders:read');
    assert.equal(p.iss, issuer);
    assert.ok(p.exp! <= s.exp, `exp ${p.exp} must not be after the subject's exp ${s.exp}`);
    assert.ok(p.exp! - p.iat! <= 300);
    assert.ok(res.body.expires_in <= s.exp - p.iat!, `expires_in ${res.body.expires_in} outlives the subject`);
    assert.notEqual(p.jti, s.jti, 'a new token, not the subject');
    assert.equal(decodeProtectedHeader(res.body.access_token).typ, 'at+jwt');
  });

  it('two hops: act nests the callers (newest outermost), sub stays the original subject, each hop bound to its caller', async () => {
    const subject = await frontToken();
    const hop1 = await exchange(orders, subject);
    const p1 = await assertExchanged(hop1);
    const hop2 = await exchange(stock, hop1.body.access_token);
    const p2 = await assertExchanged(hop2);
    assert.equal(p2.sub, front.clientId);
    assert.deepEqual(p2.act, { sub: stock.clientId, act: { sub: orders.clientId } });
    assert.equal(p2.client_id, stock.clientId);
    assert.deepEqual(p2.cnf, { jkt: await thumbprint(stock.dpopKey) });
    assert.equal(p2.aud, DB_API);
    assert.equal(p2.scope, 'orders:read', 'within hop 1\'s orders:read and stock\'s stock:read orders:read');
    assert.ok(p2.exp! <= p1.exp!, `hop 2 exp ${p2.exp} must not be after hop 1's ${p1.exp}`);
    assert.ok(p2.exp! <= decodePayload(subject).exp);

    // the chain is visible to the holder at introspection
    const seen = await introspect(a, stock, hop2.body.access_token);
    assert.equal(seen.body.active, true, seen.text);
    assert.equal(seen.body.sub, front.clientId);
    assert.deepEqual(seen.body.act, { sub: stock.clientId, act: { sub: orders.clientId } });
  });

  it('subject_token_type urn:ietf:params:oauth:token-type:jwt is accepted for a Sigil access token', async () => {
    const p = await assertExchanged(await exchange(orders, await frontToken(), { subject_token_type: JWT }));
    assert.equal(p.sub, front.clientId);
  });

  it('the caller must serve an API in the subject token\'s aud (else 400 invalid_request)', async () => {
    const subject = await frontToken(); // aud = ORDERS_API, which stock does not serve
    assertOAuthError(await exchange(stock, subject), 400, 'invalid_request');
    // and a token addressed to the caller's own API only after the first hop
    const hop1 = await exchange(orders, subject);
    await assertExchanged(hop1);
    assertOAuthError(await exchange(orders, hop1.body.access_token), 400, 'invalid_request'); // aud = STOCK_API, orders serves ORDERS_API only
  });

  it('the target is chosen with audience or resource among the caller\'s registered audiences (else invalid_target)', async () => {
    assert.equal((await assertExchanged(await exchange(orders, await frontToken(), { audience: BILLING_API }))).aud, BILLING_API);
    assert.equal((await assertExchanged(await exchange(orders, await frontToken(), { resource: BILLING_API }))).aud, BILLING_API);
    assert.equal((await assertExchanged(await exchange(orders, await frontToken(), { audience: STOCK_API }))).aud, STOCK_API);
    assert.equal((await assertExchanged(await exchange(orders, await frontToken()))).aud, STOCK_API, 'default: first registered');
    for (const extra of [
      { audience: DB_API }, // another client's audience
      { resource: DB_API },
      { audience: ORDERS_API }, // the API the caller serves is not one it may call
      { audience: 'https://evil.example' },
      { resource: 'https://stock.example/' },
      { audience: BILLING_API, resource: STOCK_API }, // two different targets
    ]) {
      assertOAuthError(await exchange(orders, await frontToken(), extra), 400, 'invalid_target');
    }
  });

  it('scope must lie within both the subject\'s and the caller\'s (asking wider is invalid_scope); default is the intersection', async () => {
    // explicit, within both
    const ok = await assertExchanged(await exchange(orders, await frontToken(), { scope: 'orders:read' }));
    assert.equal(ok.scope, 'orders:read');
    // orders:write is the subject's but not the caller's; stock:read is the caller's but not the subject's
    for (const scope of ['orders:write', 'stock:read', 'orders:read orders:write', 'orders:read stock:read', 'admin']) {
      assertOAuthError(await exchange(orders, await frontToken(), { scope }), 400, 'invalid_scope');
    }
    // a narrower subject narrows the default
    const narrow = (await requestToken(tokenRequest(a.url, issuer, front, { scope: 'orders:write' }))).access_token;
    assertOAuthError(await exchange(orders, narrow, { scope: 'orders:read' }), 400, 'invalid_scope');
  });

  it('subject_token_type missing or not an access token type is invalid_request', async () => {
    const subject = await frontToken();
    for (const type of [undefined, '', 'access_token', 'urn:ietf:params:oauth:token-type:refresh_token', 'urn:ietf:params:oauth:token-type:id_token', 'urn:ietf:params:oauth:token-type:saml2']) {
      const res = await exchange(orders, subject, { subject_token_type: type });
      assertOAuthError(res, 400, 'invalid_request');
    }
  });

  it('a revoked subject token (admin POST /admin/tokens/revoke) is invalid_request', async () => {
    const subject = await frontToken();
    const { jti } = decodePayload(subject);
    await eventually(`token_events row of ${jti}`, async () => (await storage.sql('SELECT 1 FROM token_events WHERE jti = $1', [jti])).length > 0);
    await assertExchanged(await exchange(orders, subject)); // control: it works before the revocation
    const r = await admin.call('POST', '/admin/tokens/revoke', { jti, reason: 'exchange test' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assertOAuthError(await exchange(orders, subject), 400, 'invalid_request');
    // on the other instance too (within one second)
    const t0 = Date.now();
    await observedWithin('B refuses to exchange the revoked token', t0, 1000, async () => {
      const res = await exchange(orders, subject, {}, { on: b });
      if (res.status === 200) return 'B still exchanges it';
      assertOAuthError(res, 400, 'invalid_request');
      return true;
    });
  });

  it('a subject token of a revoked client is invalid_request', async () => {
    const doomed = await createClient(admin, { name: 'front, revoked', scope: 'orders:read', audiences: [ORDERS_API] });
    const subject = await frontToken(a, doomed);
    await assertExchanged(await exchange(orders, subject)); // control
    const r = await admin.call('POST', `/admin/clients/${doomed.clientId}/revoke`, { reason: 'exchange test' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assertOAuthError(await exchange(orders, subject), 400, 'invalid_request');
  });

  it('a foreign token with the same claims and header (another ES256 key, typ at+jwt), an unsigned one, or an embedded-key one is invalid_request', async () => {
    const subject = await frontToken();
    const header = decodeProtectedHeader(subject) as Record<string, unknown>;
    const claims = decodePayload(subject);
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const attackerJwk = await exportJWK(publicKey);
    const forged = [
      await signJws(header, { ...claims, jti: `${claims.jti}x` }, privateKey), // same kid, wrong key
      await signJws({ ...header, kid: 'attacker' }, claims, privateKey),
      await signJws({ ...header, jwk: attackerJwk }, claims, privateKey), // key injection
      await signJws({ ...header, jku: 'https://evil.example/jwks' }, claims, privateKey),
      unsignedJwt({ ...header, alg: 'none' }, claims),
      `${subject.split('.')[0]}.${Buffer.from(JSON.stringify({ ...claims, sub: 'someone-else' })).toString('base64url')}.${subject.split('.')[2]}`, // payload swapped
    ];
    for (const token of forged) assertOAuthError(await exchange(orders, token), 400, 'invalid_request');
    await assertExchanged(await exchange(orders, subject)); // control: the genuine one works
  });

  it('an expired subject token is invalid_request', async () => {
    const subject = await frontToken(c); // ACCESS_TOKEN_TTL=1 on C
    const { exp } = decodePayload(subject);
    // the verifier (jose, no clock tolerance) refuses once exp <= now, on this machine's clock
    await eventually('the subject token\'s exp has passed', () => now() > exp, { timeout: 5000 });
    for (const on of [a, b, c]) assertOAuthError(await exchange(orders, subject, {}, { on }), 400, 'invalid_request');
  });

  it('garbage, an empty or a missing subject_token is invalid_request', async () => {
    const rt = await exchange(orders, await frontToken());
    await assertExchanged(rt);
    const garbage = ['garbage', 'a.b.c', 'eyJhbGciOiJFUzI1NiJ9.eyJ9.sig', '', 'x'.repeat(10_000), rt.body.refresh_token as string];
    for (const token of garbage) assertOAuthError(await exchange(orders, token), 400, 'invalid_request');
    assertOAuthError(await exchange(orders, undefined), 400, 'invalid_request');
  });

  it('actor_token: a Sigil token of the caller works; one of someone else, garbage, or one without actor_token_type is invalid_request', async () => {
    const own = (await requestToken(tokenRequest(a.url, issuer, orders))).access_token;
    const withActor = await assertExchanged(await exchange(orders, await frontToken(), { actor_token: own, actor_token_type: AT }));
    assert.equal(withActor.sub, front.clientId);
    assert.equal(withActor.act.sub, orders.clientId);

    const someoneElses = await frontToken(); // sub = front, not the caller
    assertOAuthError(await exchange(orders, await frontToken(), { actor_token: someoneElses, actor_token_type: AT }), 400, 'invalid_request');
    const stocks = (await exchange(stock, (await exchange(orders, await frontToken())).body.access_token)).body.access_token as string; // sub = front, client stock
    assertOAuthError(await exchange(orders, await frontToken(), { actor_token: stocks, actor_token_type: AT }), 400, 'invalid_request');
    assertOAuthError(await exchange(orders, await frontToken(), { actor_token: 'garbage', actor_token_type: AT }), 400, 'invalid_request');
    assertOAuthError(await exchange(orders, await frontToken(), { actor_token: own }), 400, 'invalid_request');
  });

  it('no DPoP proof from a DPoP-required caller is invalid_dpop_proof', async () => {
    assertOAuthError(await exchange(orders, await frontToken(), {}, { dpopKey: null }), 400, 'invalid_dpop_proof');
  });

  it('the exchanged token never outlives a subject that expires sooner than a fresh token would (subject from a 60 s instance, exchanged on a 300 s one)', async () => {
    const subject = await frontToken(b); // ACCESS_TOKEN_TTL=60
    const s = decodePayload(subject);
    assert.ok(s.exp - s.iat <= 60);
    const res = await exchange(orders, subject); // on A, ACCESS_TOKEN_TTL=300
    const p = await assertExchanged(res);
    assert.ok(p.exp! <= s.exp, `exp ${p.exp} outlives the subject's ${s.exp}`);
    assert.ok(res.body.expires_in <= 60, `expires_in ${res.body.expires_in}`);
    // and the next hop, with a subject that is itself an exchanged token
    const hop2 = await exchange(stock, res.body.access_token);
    const p2 = await assertExchanged(hop2);
    assert.ok(p2.exp! <= p.exp!, `hop 2 exp ${p2.exp} outlives hop 1's ${p.exp}`);
    assert.ok(hop2.body.expires_in <= 60);
  });

  it('a token exchanged on one instance is active at another (same storage, same ISSUER), and can be exchanged further there', async () => {
    const hop1 = await exchange(orders, await frontToken(), {}, { on: a });
    const p1 = await assertExchanged(hop1);
    for (const who of [orders, gateway]) {
      const seen = await introspect(b, who, hop1.body.access_token);
      assert.equal(seen.status, 200, seen.text);
      assert.equal(seen.body.active, true, `B, as ${who === orders ? 'the holder' : 'a gateway'}: ${seen.text}`);
      assert.equal(seen.body.sub, front.clientId);
      assert.equal(seen.body.client_id, orders.clientId);
      assert.deepEqual(seen.body.act, { sub: orders.clientId });
    }
    const hop2 = await exchange(stock, hop1.body.access_token, {}, { on: b });
    const p2 = await assertExchanged(hop2);
    assert.equal(p2.iss, issuer);
    assert.equal(p2.sub, front.clientId);
    assert.deepEqual(p2.act, { sub: stock.clientId, act: { sub: orders.clientId } });
    assert.ok(p2.exp! <= p1.exp!);
    const back = await introspect(a, stock, hop2.body.access_token);
    assert.equal(back.body.active, true, `A: ${back.text}`);
    // a refresh token issued by A works on B as well
    assert.match(hop1.body.refresh_token ?? '', /^srt_/);
    const refreshed = await tokenCall(orders, { grant_type: 'refresh_token', refresh_token: hop1.body.refresh_token }, { on: b });
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.equal(decodePayload(refreshed.body.access_token).sub, front.clientId);
  });

  it('no credential appears in any server log', () => {
    assert.ok(ledger.size > 10);
    const leaks = ledger.leaks([...a.logs, ...b.logs, ...c.logs]);
    assert.deepEqual(leaks, []);
  });
});
