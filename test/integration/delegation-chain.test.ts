// Revocation follows the whole delegation chain (issue 10, findings 1-5), against real Sigil processes
// on one Postgres and one Redis. Whatever was derived from a token — tokens exchanged from it, a
// refresh family born of its exchange, the access tokens that family produced and the tokens
// exchanged from those — ends no later than it and dies with it; revoking a client reaches every token
// naming it as holder, subject or actor; a refresh racing its family's revocation never leaves a live
// token; delegation depth is bounded; an actor_token must be a live token bound to the caller's key.
// Each revocation is checked on the other instance within one second: introspection inactive AND
// status-list bit 1 (read with the independent decoder in test/support).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { clientAssertion, generateClientKey, keyPairFromPrivateJwk, requestToken, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { ASSERTION_TYPE, assertOAuthError, decodePayload, SecretLedger, untilReady, type RawResponse } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { postForm, type Answer } from '../support/http.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { adminSession, bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient, rawTokenCall } from '../support/sigil.js';
import { statusBit, statusRef } from '../support/status-list-decoder.js';
import { eventually, observedWithin } from '../support/wait.js';

const TX = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const ORDERS_API = 'https://orders.example';
const STOCK_API = 'https://stock.example';
const DB_API = 'https://db.example';

/** CONTRACT.md: "on every instance within one second" */
const PROPAGATION_MS = 1000;
/** ACCESS_TOKEN_TTL of the short-lived instance, whose tokens expire during a test */
const SHORT_TTL = 2;

const now = () => Math.floor(Date.now() / 1000);

describe('revocation follows the delegation chain', () => {
  let storage: TestStorage;
  let a: ServerProcess;
  /** a second instance on the same storage and ISSUER: where every revocation is observed */
  let b: ServerProcess;
  /** a third instance issuing SHORT_TTL-second access tokens */
  let short: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let gateway: TestClient;
  const ledger = new SecretLedger();

  before(async () => {
    storage = await createTestStorage('chain');
    const env = storageEnv(storage);
    a = await startServer({ env });
    issuer = a.issuer;
    [b, short] = await Promise.all([
      startServer({ issuer, env }),
      startServer({ issuer, env: { ...env, ACCESS_TOKEN_TTL: String(SHORT_TTL) } }),
    ]);
    await Promise.all([untilReady(a.url), untilReady(b.url), untilReady(short.url)]);
    admin = await bootstrapAdmin(a.url, issuer);
    gateway = await createClient(admin, { name: 'gateway', can_introspect: true });
  });
  after(async () => {
    for (const s of [a, b, short]) await s?.stop();
    await storage?.cleanup();
  });

  /** A → B → C: front's token for ORDERS_API, orders exchanges it for STOCK_API, stock for DB_API. */
  interface Chain {
    front: TestClient;
    orders: TestClient;
    stock: TestClient;
  }

  /** fresh clients per test: one test's client revocations never touch another's tokens */
  async function chain(): Promise<Chain> {
    const grants = ['client_credentials', TX, 'refresh_token'];
    const front = await createClient(admin, { name: 'front', scope: 'orders:read', audiences: [ORDERS_API] });
    const orders = await createClient(admin, { name: 'orders', scope: 'orders:read', audiences: [STOCK_API], serves: [ORDERS_API], grant_types: grants });
    const stock = await createClient(admin, { name: 'stock', scope: 'orders:read', audiences: [DB_API], serves: [STOCK_API], grant_types: grants });
    return { front, orders, stock };
  }

  const tokenCall = (who: TestClient, params: Record<string, string | undefined>, on: ServerProcess = a, dpopKey: SigningKeyPair = who.dpopKey): Promise<RawResponse> =>
    rawTokenCall(on, issuer, who, params, { dpopKey }, ledger);

  async function rootToken(who: TestClient, on: ServerProcess = a): Promise<string> {
    const t = (await requestToken(tokenRequest(on.url, issuer, who))).access_token;
    ledger.add(t);
    return t;
  }

  /** `who` exchanges `subject`; returns the access token and, when it holds the grant, the refresh token */
  async function exchange(who: TestClient, subject: string, on: ServerProcess = a): Promise<{ access: string; refresh: string }> {
    const res = await tokenCall(who, { grant_type: TX, subject_token: subject, subject_token_type: AT }, on);
    assert.equal(res.status, 200, `exchange by ${who.record.name}: ${res.text}`);
    return { access: res.body.access_token, refresh: res.body.refresh_token };
  }

  function refresh(who: TestClient, token: string, on: ServerProcess = a): Promise<RawResponse> {
    return tokenCall(who, { grant_type: 'refresh_token', refresh_token: token }, on);
  }

  async function refreshed(who: TestClient, token: string, on: ServerProcess = a): Promise<{ access: string; refresh: string }> {
    const res = await refresh(who, token, on);
    assert.equal(res.status, 200, `refresh: ${res.text}`);
    return { access: res.body.access_token, refresh: res.body.refresh_token };
  }

  async function introspect(on: ServerProcess, who: TestClient, token: string): Promise<Answer> {
    return postForm(`${on.url}/introspect`, { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(who.key, who.clientId, issuer) });
  }

  async function revoke(on: ServerProcess, who: TestClient, token: string): Promise<Answer> {
    return postForm(`${on.url}/revoke`, { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(who.key, who.clientId, issuer) });
  }

  /** poll until `check` holds; it must hold within PROPAGATION_MS of t0 */
  const within = (what: string, t0: number, check: () => Promise<boolean | string>) => observedWithin(what, t0, PROPAGATION_MS, check);

  /** on `on`: the token introspects inactive (as a gateway) and its status bit is 1, within a second of t0 */
  function dead(on: ServerProcess, t0: number, tokens: Record<string, string>): Promise<unknown[]> {
    return Promise.all(Object.entries(tokens).flatMap(([name, token]) => [
      within(`${name}: introspection inactive`, t0, async () => {
        const r = await introspect(on, gateway, token);
        return r.status === 200 && r.body?.active === false ? true : `${r.status} ${r.text.slice(0, 200)}`;
      }),
      within(`${name}: status bit 1`, t0, async () => {
        const bit = await statusBit(on.url, statusRef(token));
        return bit === 1 ? true : `bit ${bit}`;
      }),
    ]));
  }

  async function alive(on: ServerProcess, tokens: Record<string, string>): Promise<void> {
    for (const [name, token] of Object.entries(tokens)) {
      const r = await introspect(on, gateway, token);
      assert.equal(r.body?.active, true, `${name} should be active: ${r.text}`);
      assert.equal(await statusBit(on.url, statusRef(token)), 0, `${name}: status bit 0`);
    }
  }

  /**
   * The refresh is refused at once on each instance in turn (the decision is made in Postgres, so no
   * propagation delay), and the refresh token introspects inactive. Never presented concurrently: two
   * simultaneous uses would be refused as reuse whether or not the revocation reached the family.
   */
  async function refreshRefused(who: TestClient, token: string): Promise<void> {
    for (const on of [a, b]) assertOAuthError(await refresh(who, token, on), 400, 'invalid_grant');
    const seen = await introspect(a, gateway, token);
    assert.deepEqual(seen.body, { active: false }, `the refresh token introspects inactive: ${seen.text}`);
  }

  /** one admin token for several calls on `on`: a revocation that races without a token request first */
  function adminSessionOn(on: ServerProcess): ReturnType<typeof adminSession> {
    return adminSession(on.url, issuer, admin.key);
  }

  async function untilRecorded(jti: string): Promise<void> {
    await eventually(`token_events row of ${jti}`, async () => (await storage.sql("SELECT 1 FROM token_events WHERE jti = $1 AND outcome = 'issued'", [jti])).length > 0);
  }

  describe('finding 1: what was derived from a token never outlives it', () => {
    it('a refresh family born of an exchange ends no later than its subject token\'s exp, and so do the access tokens it produces', async () => {
      const c = await chain();
      const subject = await rootToken(c.front);
      const { exp } = decodePayload(subject);
      const e = await exchange(c.orders, subject);
      const rt = await introspect(a, c.orders, e.refresh);
      assert.equal(rt.body?.active, true, rt.text);
      assert.ok(rt.body.exp <= exp, `family exp ${rt.body.exp} after the subject's ${exp}`);
      const r1 = await refreshed(c.orders, e.refresh, b);
      assert.ok(decodePayload(r1.access).exp <= exp, `refreshed access token exp ${decodePayload(r1.access).exp} after the subject's ${exp}`);
      const r2 = await refreshed(c.orders, r1.refresh);
      assert.ok(decodePayload(r2.access).exp <= exp);
    });

    it('once the subject token has expired, the family is refused on every instance', async () => {
      const c = await chain();
      const subject = await rootToken(c.front, short); // SHORT_TTL seconds
      const { exp } = decodePayload(subject);
      const e = await exchange(c.orders, subject);
      assert.ok(decodePayload(e.access).exp <= exp);
      await eventually('the subject token to expire', async () => now() > exp, { timeout: (SHORT_TTL + 5) * 1000 });
      for (const on of [a, b]) {
        const r = await refresh(c.orders, e.refresh, on);
        assertOAuthError(r, 400, 'invalid_grant');
      }
      assert.deepEqual((await introspect(a, c.orders, e.refresh)).body, { active: false });
    });

    it('revoking the subject token (admin, by jti) kills the family, its access tokens and every token exchanged from them, on B within a second', async () => {
      const c = await chain();
      const subject = await rootToken(c.front);
      const e = await exchange(c.orders, subject, a); // orders: access token + family
      const r1 = await refreshed(c.orders, e.refresh, b); // the family's next access token, on B
      const fromRefreshed = await exchange(c.stock, r1.access, b); // exchanged from a refresh-issued token
      const fromFirst = await exchange(c.stock, e.access, a); // exchanged from the family's first token
      const derived = { 'exchanged token': e.access, 'refresh-issued token': r1.access, 'exchanged from the refresh-issued token': fromRefreshed.access, 'exchanged from the exchanged token': fromFirst.access };
      await alive(b, derived);
      const { jti } = decodePayload(subject);
      await untilRecorded(jti);

      const res = await admin.call('POST', '/admin/tokens/revoke', { jti, reason: 'chain test' });
      const t0 = Date.now();
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await Promise.all([
        dead(b, t0, { subject, ...derived }),
        refreshRefused(c.orders, r1.refresh),
        refreshRefused(c.stock, fromRefreshed.refresh), // stock's own family, two hops down
      ]);
      // and nothing derived from it can be exchanged any more
      assertOAuthError(await tokenCall(c.stock, { grant_type: TX, subject_token: r1.access, subject_token_type: AT }, b), 400, 'invalid_request');
      const audit = await storage.sql<{ details: { derived_tokens?: number } }>("SELECT details FROM audit_log WHERE action = 'token.revoke' AND target = $1", [jti]);
      assert.equal(audit[0]?.details?.derived_tokens, 4, `audited with the derived tokens: ${JSON.stringify(audit)}`);
    });

    it('RFC 7009 revocation of an exchanged token by its holder reaches the tokens exchanged from it (its sibling family lives on)', async () => {
      const c = await chain();
      const e = await exchange(c.orders, await rootToken(c.front));
      const next = await exchange(c.stock, e.access, b);
      const nextRefreshed = await refreshed(c.stock, next.refresh, b);
      const res = await revoke(b, c.orders, e.access);
      const t0 = Date.now();
      assert.equal(res.status, 200, res.text);
      await Promise.all([
        dead(a, t0, { 'the revoked token': e.access, 'exchanged from it': next.access, 'its refresh-issued successor': nextRefreshed.access }),
        refreshRefused(c.stock, nextRefreshed.refresh),
      ]);
      // the family that came with it was derived from the subject token, not from it
      await refreshed(c.orders, e.refresh, a);
    });
  });

  describe('finding 2: revoking a client reaches tokens naming it as subject or actor', () => {
    it('A → B → C, C holding a refresh token: revoking A sets the status bit of B\'s and C\'s tokens on B within a second, and C\'s refresh dies', async () => {
      const c = await chain();
      const aToken = await rootToken(c.front);
      const bToken = await exchange(c.orders, aToken, a);
      const cToken = await exchange(c.stock, bToken.access, b);
      const cRefreshed = await refreshed(c.stock, cToken.refresh, a);
      await alive(b, { 'B\'s token': bToken.access, 'C\'s token': cToken.access, 'C\'s refreshed token': cRefreshed.access });

      const res = await admin.call('POST', `/admin/clients/${c.front.clientId}/revoke`, { reason: 'chain test' });
      const t0 = Date.now();
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await Promise.all([
        dead(b, t0, { 'A\'s token': aToken, 'B\'s token': bToken.access, 'C\'s token': cToken.access, 'C\'s refreshed token': cRefreshed.access }),
        refreshRefused(c.stock, cRefreshed.refresh),
        refreshRefused(c.orders, bToken.refresh),
      ]);
    });

    it('revoking the middle actor B reaches C\'s tokens and family; A\'s own token lives on', async () => {
      const c = await chain();
      const aToken = await rootToken(c.front);
      const bToken = await exchange(c.orders, aToken, b);
      const cToken = await exchange(c.stock, bToken.access, a);
      const cRefreshed = await refreshed(c.stock, cToken.refresh, b);

      const res = await admin.call('POST', `/admin/clients/${c.orders.clientId}/revoke`, { reason: 'chain test' });
      const t0 = Date.now();
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await Promise.all([
        dead(b, t0, { 'B\'s token': bToken.access, 'C\'s token (actor B)': cToken.access, 'C\'s refreshed token (actor B)': cRefreshed.access }),
        refreshRefused(c.stock, cRefreshed.refresh),
      ]);
      await alive(b, { 'A\'s own token': aToken });
    });
  });

  describe('finding 3: a refresh racing a family revocation never leaves a live token', () => {
    it('40 races of a refresh on A against RFC 7009 revocation of its refresh token on B: every token a successful refresh returned is dead', async (t) => {
      const c = await chain();
      const rounds = 40;
      let winners = 0;
      const families = await Promise.all(Array.from({ length: rounds }, async () => exchange(c.orders, await rootToken(c.front))));
      for (const [i, f] of families.entries()) {
        const [res, revoked] = await Promise.all([refresh(c.orders, f.refresh, a), revoke(b, c.orders, f.refresh)]);
        const t0 = Date.now();
        assert.equal(revoked.status, 200, revoked.text);
        if (res.status !== 200) {
          assertOAuthError(res, 400, 'invalid_grant');
          continue;
        }
        // the refresh won the race: what it returned must die with the family
        winners++;
        await dead(a, t0, { [`race ${i}: the refreshed access token`]: res.body.access_token });
        assertOAuthError(await refresh(c.orders, res.body.refresh_token, a), 400, 'invalid_grant');
      }
      t.diagnostic(`${winners} of ${rounds} refreshes got a token before the revocation`);
    });
  });

  describe('findings 1-2: an exchange racing a revocation of its chain never leaves a live token', () => {
    it('30 races of an exchange on A against the revocation of its subject token on B: every token the exchange returned is dead', async (t) => {
      const c = await chain();
      const rounds = 30;
      const subjects = await Promise.all(Array.from({ length: rounds }, () => rootToken(c.front)));
      await Promise.all(subjects.map((s) => untilRecorded(decodePayload(s).jti)));
      let winners = 0;
      for (const [i, subject] of subjects.entries()) {
        const adminOnB = await adminSessionOn(b);
        const [res, revoked] = await Promise.all([
          tokenCall(c.orders, { grant_type: TX, subject_token: subject, subject_token_type: AT }, a),
          adminOnB('POST', '/admin/tokens/revoke', { jti: decodePayload(subject).jti, reason: 'race' }),
        ]);
        const t0 = Date.now();
        assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
        if (res.status !== 200) {
          assertOAuthError(res, 400, 'invalid_request');
          continue;
        }
        winners++;
        await Promise.all([
          dead(a, t0, { [`race ${i}: the exchanged token`]: res.body.access_token }),
          refreshRefused(c.orders, res.body.refresh_token),
        ]);
      }
      t.diagnostic(`${winners} of ${rounds} exchanges got a token before the revocation`);
    });

    it('20 races of an exchange on A against the revocation of the subject\'s client on B: every token the exchange returned is dead', async (t) => {
      const rounds = 20;
      let winners = 0;
      for (let i = 0; i < rounds; i++) {
        const c = await chain();
        const subject = await rootToken(c.front);
        const adminOnB = await adminSessionOn(b);
        const [res, revoked] = await Promise.all([
          tokenCall(c.orders, { grant_type: TX, subject_token: subject, subject_token_type: AT }, a),
          adminOnB('POST', `/admin/clients/${c.front.clientId}/revoke`, { reason: 'race' }),
        ]);
        const t0 = Date.now();
        assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
        if (res.status !== 200) {
          assertOAuthError(res, 400, 'invalid_request');
          continue;
        }
        winners++;
        await Promise.all([
          dead(a, t0, { [`race ${i}: the exchanged token`]: res.body.access_token }),
          refreshRefused(c.orders, res.body.refresh_token),
        ]);
      }
      t.diagnostic(`${winners} of ${rounds} exchanges got a token before the revocation`);
    });
  });

  describe('finding 4: delegation depth is bounded (MAX_DELEGATION_DEPTH, default 5)', () => {
    it('five hops are exchanged; a sixth is invalid_request', async () => {
      const apis = Array.from({ length: 7 }, (_, i) => `https://hop${i}.example`);
      const front = await createClient(admin, { name: 'hop front', scope: 'orders:read', audiences: [apis[0]!] });
      const hops = await Promise.all(Array.from({ length: 6 }, (_, i) => createClient(admin, {
        name: `hop ${i + 1}`, scope: 'orders:read', audiences: [apis[i + 1]!], serves: [apis[i]!], grant_types: [TX],
      })));
      let token = await rootToken(front);
      for (const [i, hop] of hops.slice(0, 5).entries()) {
        token = (await exchange(hop, token, i % 2 ? b : a)).access;
        let depth = 0;
        for (let act = decodePayload(token).act; act; act = act.act) depth++;
        assert.equal(depth, i + 1);
      }
      for (const on of [a, b]) {
        const res = await tokenCall(hops[5]!, { grant_type: TX, subject_token: token, subject_token_type: AT }, on);
        assertOAuthError(res, 400, 'invalid_request');
        assert.match(res.body.error_description ?? '', /delegation/i);
      }
    });
  });

  describe('finding 5: actor_token must be a live token the caller holds', () => {
    async function actorExchange(c: Chain, actorToken: string, dpopKey?: SigningKeyPair): Promise<RawResponse> {
      return tokenCall(c.orders, {
        grant_type: TX, subject_token: await rootToken(c.front), subject_token_type: AT, actor_token: actorToken, actor_token_type: AT,
      }, a, dpopKey);
    }

    it('the caller\'s own token bound to its DPoP key works; bound to another key, or presented with a proof of another key, is invalid_request', async () => {
      const c = await chain();
      const own = await rootToken(c.orders);
      assert.equal((await actorExchange(c, own)).status, 200);
      const otherKey = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      // a token of the caller bound to a key the request's proof is not made with
      const elsewhere = (await requestToken(tokenRequest(a.url, issuer, c.orders, { dpopKey: otherKey }))).access_token;
      ledger.add(elsewhere);
      const r1 = await actorExchange(c, elsewhere);
      assertOAuthError(r1, 400, 'invalid_request');
      assert.match(r1.body.error_description ?? '', /DPoP key/);
      // the caller's own token, but the request is proven with another key
      assertOAuthError(await actorExchange(c, own, otherKey), 400, 'invalid_request');
    });

    it('a Bearer (unbound) token of the caller is invalid_request', async () => {
      const c = await chain();
      const loose = await createClient(admin, {
        name: 'loose', scope: 'orders:read', audiences: [STOCK_API], serves: [ORDERS_API], grant_types: ['client_credentials', TX], dpop: 'optional',
      });
      const bearer = (await requestToken({ ...tokenRequest(a.url, issuer, loose), dpopKey: undefined })).access_token;
      ledger.add(bearer);
      assert.equal(decodePayload(bearer).cnf, undefined, 'a Bearer token');
      const res = await tokenCall(loose, {
        grant_type: TX, subject_token: await rootToken(c.front), subject_token_type: AT, actor_token: bearer, actor_token_type: AT,
      });
      assertOAuthError(res, 400, 'invalid_request');
    });

    it('a revoked or an expired actor token is invalid_request', async () => {
      const c = await chain();
      const own = await rootToken(c.orders);
      const res = await revoke(a, c.orders, own);
      assert.equal(res.status, 200);
      assertOAuthError(await actorExchange(c, own), 400, 'invalid_request');
      const expiring = await rootToken(c.orders, short);
      const { exp } = decodePayload(expiring);
      await eventually('the actor token to expire', async () => now() > exp, { timeout: (SHORT_TTL + 5) * 1000 });
      assertOAuthError(await actorExchange(c, expiring), 400, 'invalid_request');
    });
  });

  it('no credential appears in any server log', () => {
    assert.ok(ledger.size > 10);
    assert.deepEqual(ledger.leaks([...a.logs, ...b.logs, ...short.logs]), []);
  });
});
