// Refresh tokens of token exchange against real Sigil processes on one Postgres and one Redis: a
// client holding both grants gets one (srt_...), each use rotates it, a used one presented again
// revokes the whole family (every access token it produced too, on every instance within one
// second), it works only for its holder and with the DPoP key it was issued to, a family dies with
// its expiry or a revoked client, only a hash of it is stored, and of concurrent uses exactly
// one gets a successor while the others revoke the family as reuse. Introspection (RFC 7662) and
// revocation (RFC 7009) accept it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import {
  clientAssertion, generateClientKey, keyPairFromPrivateJwk, requestToken, thumbprint,
} from '../../src/client/oauth-client.js';
import { ASSERTION_TYPE, decodePayload, SecretLedger, type RawResponse } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { postForm, type Answer } from '../support/http.js';
import { startPair, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient, rawTokenCall, type TokenCallOptions } from '../support/sigil.js';
import { eventually, observedWithin } from '../support/wait.js';

const TX = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const ORDERS_API = 'https://orders.example';
const STOCK_API = 'https://stock.example';

/** CONTRACT.md: a revocation is honoured "on every instance within one second" */
const PROPAGATION_MS = 1000;
const FAMILY_TTL_B = 60;

const now = () => Math.floor(Date.now() / 1000);

describe('refresh tokens (rotation, reuse detection, binding)', () => {
  let storage: TestStorage;
  let a: ServerProcess;
  /** a second instance on the same storage and ISSUER, with REFRESH_TOKEN_TTL=60 */
  let b: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let jwks: { keys: JWK[] };
  let gateway: TestClient;
  const ledger = new SecretLedger();

  before(async () => {
    storage = await createTestStorage('refresh');
    const env = storageEnv(storage);
    ({ a, b, issuer } = await startPair(env, { ...env, REFRESH_TOKEN_TTL: String(FAMILY_TTL_B) }));
    admin = await bootstrapAdmin(a.url, issuer);
    gateway = await createClient(admin, { name: 'gateway', can_introspect: true });
    jwks = await (await fetch(`${a.url}/jwks`)).json();
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await storage?.cleanup();
  });

  interface Cast {
    /** the end client whose token is exchanged */
    front: TestClient;
    /** the exchanging service: the exchange grant and refresh_token */
    holder: TestClient;
  }

  /** fresh clients per test, so one test's revocations never touch another's */
  async function cast(holderGrants = ['client_credentials', TX, 'refresh_token']): Promise<Cast> {
    const front = await createClient(admin, { name: 'front', scope: 'orders:read orders:write', audiences: [ORDERS_API] });
    const holder = await createClient(admin, {
      name: 'orders service', scope: 'orders:read stock:read', audiences: [STOCK_API], serves: [ORDERS_API], grant_types: holderGrants,
    });
    return { front, holder };
  }

  /** One raw token request by `who` (private_key_jwt, DPoP), on A unless told otherwise. */
  const tokenCall = (who: TestClient, params: Record<string, string | undefined>, call: TokenCallOptions = {}): Promise<RawResponse> => rawTokenCall(a, issuer, who, params, call, ledger);

  /** front gets a token, holder exchanges it: the start of a family */
  async function startFamily(c: Cast, on: ServerProcess = a): Promise<{ access: string; refresh: string; subject: string; res: RawResponse }> {
    const subject = (await requestToken(tokenRequest(on.url, issuer, c.front))).access_token;
    ledger.add(subject);
    const res = await tokenCall(c.holder, { grant_type: TX, subject_token: subject, subject_token_type: AT }, { on });
    assert.equal(res.status, 200, `exchange: ${res.text}`);
    assert.equal(typeof res.body.refresh_token, 'string', `a refresh token: ${res.text}`);
    return { access: res.body.access_token, refresh: res.body.refresh_token, subject, res };
  }

  function refresh(who: TestClient, token: string, call: TokenCallOptions = {}, extra: Record<string, string> = {}): Promise<RawResponse> {
    return tokenCall(who, { grant_type: 'refresh_token', refresh_token: token, ...extra }, call);
  }

  /** a refused token request: an error status and body, and no token of either kind */
  function assertRefused(res: RawResponse, errors: string[], statuses = [400, 401]): void {
    const what = `${res.status} ${res.text}`;
    assert.ok(statuses.includes(res.status), `expected ${statuses.join('/')}, got ${what}`);
    assert.ok(errors.includes(res.body?.error), `expected ${errors.join(' or ')}, got ${what}`);
    assert.equal(res.body.access_token, undefined, what);
    assert.equal(res.body.refresh_token, undefined, what);
  }

  /** a successful rotation; returns the new pair */
  function assertRotated(res: RawResponse, previous: string): { access: string; refresh: string } {
    assert.equal(res.status, 200, `refresh: ${res.text}`);
    assert.equal(res.body.token_type, 'DPoP');
    assert.equal(typeof res.body.access_token, 'string');
    assert.match(res.body.refresh_token ?? '', /^srt_/, `a new refresh token: ${res.text}`);
    assert.notEqual(res.body.refresh_token, previous, 'the refresh token rotates');
    assert.match(res.headers.get('cache-control') ?? '', /no-store/);
    return { access: res.body.access_token, refresh: res.body.refresh_token };
  }

  async function introspect(on: ServerProcess, who: TestClient, token: string, hint?: string): Promise<Answer> {
    return postForm(`${on.url}/introspect`, {
      token, ...(hint ? { token_type_hint: hint } : {}), client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(who.key, who.clientId, issuer),
    });
  }

  async function revoke(on: ServerProcess, who: TestClient, token: string, hint?: string): Promise<Answer> {
    return postForm(`${on.url}/revoke`, {
      token, ...(hint ? { token_type_hint: hint } : {}), client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(who.key, who.clientId, issuer),
    });
  }

  async function assertActive(on: ServerProcess, who: TestClient, token: string, what: string): Promise<any> {
    const r = await introspect(on, who, token);
    assert.equal(r.status, 200, `${what}: ${r.text}`);
    assert.equal(r.body?.active, true, `${what} should be active: ${r.text}`);
    return r.body;
  }

  async function assertInactive(on: ServerProcess, who: TestClient, token: string, what: string): Promise<void> {
    const r = await introspect(on, who, token);
    assert.equal(r.status, 200, `${what}: ${r.text}`);
    assert.deepEqual(r.body, { active: false }, `${what} should be inactive: ${r.text}`);
  }

  /** poll until `check` holds; it must hold within PROPAGATION_MS of t0 */
  const within = (what: string, t0: number, check: () => Promise<boolean | string>) => observedWithin(what, t0, PROPAGATION_MS, check);

  it('a client holding the exchange grant and refresh_token gets an srt_ refresh token; one without refresh_token gets none', async () => {
    const withRefresh = await cast();
    const f = await startFamily(withRefresh);
    assert.match(f.refresh, /^srt_[A-Za-z0-9_-]{20,}$/);
    assert.equal(f.res.body.issued_token_type, AT);

    const without = await cast(['client_credentials', TX]);
    const subject = (await requestToken(tokenRequest(a.url, issuer, without.front))).access_token;
    const res = await tokenCall(without.holder, { grant_type: TX, subject_token: subject, subject_token_type: AT });
    assert.equal(res.status, 200, res.text);
    assert.equal(typeof res.body.access_token, 'string');
    assert.equal(res.body.refresh_token, undefined, `no refresh token without the refresh_token grant: ${res.text}`);
    // and it cannot use the refresh_token grant at all
    const denied = await refresh(without.holder, f.refresh);
    assertRefused(denied, ['unauthorized_client'], [400]); // RFC 6749 §5.2
  });

  it('rotation: each use returns a new refresh token and a new access token with the same sub, act, aud, scope and DPoP binding; it works on the other instance too; the used one stops working', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const first = decodePayload(f.access);
    const r1 = assertRotated(await refresh(c.holder, f.refresh), f.refresh);
    const r2 = assertRotated(await refresh(c.holder, r1.refresh, { on: b }), r1.refresh); // the next one on B
    const r3 = assertRotated(await refresh(c.holder, r2.refresh), r2.refresh);
    const jtis = new Set([first.jti]);
    for (const r of [r1, r2, r3]) {
      const { payload: p } = await jwtVerify(r.access, createLocalJWKSet(jwks), { typ: 'at+jwt', issuer });
      assert.equal(p.sub, c.front.clientId, 'sub kept');
      assert.deepEqual(p.act, { sub: c.holder.clientId }, 'act kept');
      assert.equal(p.client_id, c.holder.clientId);
      assert.equal(p.aud, first.aud);
      assert.equal(p.scope, first.scope);
      assert.deepEqual(p.cnf, { jkt: await thumbprint(c.holder.dpopKey) });
      assert.ok(!jtis.has(p.jti!), 'a new access token each time');
      jtis.add(p.jti!);
      await assertActive(a, c.holder, r.access, 'a refreshed access token');
    }
    assert.equal(new Set([f.refresh, r1.refresh, r2.refresh, r3.refresh]).size, 4);
    // the used one stops working (on either instance)
    assertRefused(await refresh(c.holder, r1.refresh), ['invalid_grant'], [400]);
    assertRefused(await refresh(c.holder, f.refresh, { on: b }), ['invalid_grant'], [400]);
  });

  it('a refresh may narrow the scope but not widen it', async () => {
    const c = await cast();
    const f = await startFamily(c); // scope orders:read
    assertRefused(await refresh(c.holder, f.refresh, {}, { scope: 'orders:read stock:read' }), ['invalid_scope'], [400]);
    const r = assertRotated(await refresh(c.holder, f.refresh, {}, { scope: 'orders:read' }), f.refresh);
    assert.equal(decodePayload(r.access).scope, 'orders:read');
  });

  it('reuse of a used refresh token is invalid_grant and revokes the family: the newest refresh token is refused, every access token of the family is inactive (also on B within 1 s); audited', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const r1 = assertRotated(await refresh(c.holder, f.refresh), f.refresh);
    const r2 = assertRotated(await refresh(c.holder, r1.refresh), r1.refresh);
    const family = [f.access, r1.access, r2.access];
    // B has seen them all active (its caches are warm)
    for (const t of family) {
      await assertActive(a, c.holder, t, 'before the reuse (A)');
      await assertActive(b, c.holder, t, 'before the reuse (B)');
    }

    const reuse = await refresh(c.holder, r1.refresh); // an attacker replays a stolen, used token
    const t0 = Date.now();
    assertRefused(reuse, ['invalid_grant'], [400]);

    // the newest one, which the legitimate holder still has, is refused too
    assertRefused(await refresh(c.holder, r2.refresh), ['invalid_grant'], [400]);
    assertRefused(await refresh(c.holder, r2.refresh, { on: b }), ['invalid_grant'], [400]);
    for (const [i, t] of family.entries()) await assertInactive(a, c.holder, t, `A: access token ${i} of the family`);
    await Promise.all(family.map((t, i) => within(`B: access token ${i} of the family inactive`, t0, async () => {
      const r = await introspect(b, c.holder, t);
      return r.status === 200 && r.body?.active === false ? true : r.text;
    })));
    // and the newest refresh token is inactive at introspection
    const rt = await introspect(a, c.holder, r2.refresh);
    assert.deepEqual(rt.body, { active: false });

    // recorded: a family_revoked security event and an audit row for the holder's family
    const events = await storage.sql<{ target: string; client_id: string; reason: string | null }>(
      "SELECT target, client_id, reason FROM security_events WHERE kind = 'family_revoked' AND client_id = $1", [c.holder.clientId]);
    assert.equal(events.length, 1, JSON.stringify(events));
    const familyId = events[0]!.target;
    const rows = await storage.sql<{ family_id: string }>('SELECT DISTINCT family_id FROM refresh_tokens WHERE client_id = $1', [c.holder.clientId]);
    assert.deepEqual(rows.map((r) => r.family_id), [familyId], 'the event names the family of these refresh tokens');
    const audit = await storage.sql<{ action: string }>('SELECT action FROM audit_log WHERE target = $1', [familyId]);
    assert.ok(audit.length >= 1, 'an audit_log row for the family revocation');
    // each access token of the family is on the revocation list
    for (const t of family) {
      const jti = decodePayload(t).jti;
      const revoked = await storage.sql("SELECT 1 FROM security_events WHERE kind = 'token_revoked' AND target = $1", [jti]);
      assert.equal(revoked.length, 1, `token_revoked event for ${jti}`);
    }
  });

  it('a proof made with another DPoP key is refused, and the token still works with the right key afterwards', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const other = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    assertRefused(await refresh(c.holder, f.refresh, { dpopKey: other }), ['invalid_grant', 'invalid_dpop_proof'], [400]);
    assertRefused(await refresh(c.holder, f.refresh, { dpopKey: other, on: b }), ['invalid_grant', 'invalid_dpop_proof'], [400]);
    assertRotated(await refresh(c.holder, f.refresh), f.refresh);
  });

  it('no DPoP proof is refused, and the token still works with a proof afterwards', async () => {
    const c = await cast();
    const f = await startFamily(c);
    assertRefused(await refresh(c.holder, f.refresh, { dpopKey: null }), ['invalid_dpop_proof', 'invalid_grant'], [400]);
    assertRotated(await refresh(c.holder, f.refresh), f.refresh);
  });

  it('another client presenting the refresh token gets invalid_grant, with its own DPoP key or with the holder\'s', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const thief = await createClient(admin, {
      name: 'thief', scope: 'orders:read stock:read', audiences: [STOCK_API], serves: [ORDERS_API], grant_types: ['client_credentials', TX, 'refresh_token'],
    });
    assertRefused(await refresh(thief, f.refresh), ['invalid_grant'], [400]);
    assertRefused(await refresh(thief, f.refresh, { dpopKey: c.holder.dpopKey }), ['invalid_grant'], [400]);
    assertRefused(await refresh(thief, f.refresh, { dpopKey: c.holder.dpopKey, on: b }), ['invalid_grant'], [400]);
  });

  it('a refresh token of an expired family is refused (family_expires_at moved into the past)', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const r1 = assertRotated(await refresh(c.holder, f.refresh), f.refresh);
    const updated = await storage.sql("UPDATE refresh_tokens SET family_expires_at = now() - interval '1 second' WHERE client_id = $1 RETURNING 1", [c.holder.clientId]);
    assert.ok(updated.length >= 2);
    assertRefused(await refresh(c.holder, r1.refresh), ['invalid_grant'], [400]);
    assertRefused(await refresh(c.holder, r1.refresh, { on: b }), ['invalid_grant'], [400]);
    assert.deepEqual((await introspect(a, c.holder, r1.refresh)).body, { active: false });
  });

  it('a family lives at most REFRESH_TOKEN_TTL seconds and no longer than its subject token, and rotation does not extend it', async () => {
    const c = await cast();
    const before = now();
    const f = await startFamily(c, b); // B: REFRESH_TOKEN_TTL=60
    const seen = await assertActive(b, c.holder, f.refresh, 'the refresh token');
    assert.ok(seen.exp <= now() + FAMILY_TTL_B, `family exp ${seen.exp} beyond ${FAMILY_TTL_B} s`);
    assert.ok(seen.exp >= before + FAMILY_TTL_B - 5, `family exp ${seen.exp} unexpectedly short`);
    // rotate in a later second than the family began in: a rotation that restarted the family's clock
    // would then move exp (polled, not slept: at most one second, half a second on average)
    await eventually('a second later than the family began', () => now() > seen.exp - FAMILY_TTL_B);
    const r1 = assertRotated(await refresh(c.holder, f.refresh, { on: b }), f.refresh);
    const next = await assertActive(b, c.holder, r1.refresh, 'the rotated refresh token');
    assert.equal(next.exp, seen.exp, 'the family expiry stays where it was');
    // on A (REFRESH_TOKEN_TTL 86400) the subject token expires first: the family ends with it
    const d = await startFamily(await cast());
    const dSeen = await introspect(a, gateway, d.refresh);
    assert.equal(dSeen.body.exp, decodePayload(d.subject).exp, 'a family never outlives the token it was exchanged from');
  });

  it('revoking the holder (admin API) refuses its refresh tokens', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const res = await admin.call('POST', `/admin/clients/${c.holder.clientId}/revoke`, { reason: 'refresh test' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assertRefused(await refresh(c.holder, f.refresh), ['invalid_client', 'invalid_grant']);
    const t0 = Date.now();
    await within('B refuses the revoked holder', t0, async () => {
      const r = await refresh(c.holder, f.refresh, { on: b });
      return r.status !== 200 && ['invalid_client', 'invalid_grant'].includes(r.body?.error) && !r.body.access_token ? true : r.text;
    });
    assert.deepEqual((await introspect(a, gateway, f.refresh)).body, { active: false });
  });

  it('revoking the subject\'s client (admin API) refuses the refresh tokens exchanged from its token', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const r1 = assertRotated(await refresh(c.holder, f.refresh), f.refresh);
    const res = await admin.call('POST', `/admin/clients/${c.front.clientId}/revoke`, { reason: 'refresh test' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assertRefused(await refresh(c.holder, r1.refresh), ['invalid_grant'], [400]);
    const t0 = Date.now();
    await within('B refuses it too', t0, async () => {
      const r = await refresh(c.holder, r1.refresh, { on: b });
      return r.status === 400 && r.body?.error === 'invalid_grant' ? true : r.text;
    });
  });

  it('refresh tokens are stored only hashed: no column of any refresh_tokens row (nor any other table) holds the token or its random part', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const r1 = assertRotated(await refresh(c.holder, f.refresh), f.refresh);
    const tokens = [f.refresh, r1.refresh];
    const needles = tokens.flatMap((t) => [t, t.slice('srt_'.length), t.slice('srt_'.length, 'srt_'.length + 16), Buffer.from(t.slice(4), 'base64url').toString('hex')]);
    const rows = await storage.sql<Record<string, unknown>>('SELECT * FROM refresh_tokens');
    assert.ok(rows.length >= 2);
    for (const row of rows) {
      for (const [column, value] of Object.entries(row)) {
        const text = typeof value === 'string' ? value : JSON.stringify(value) ?? '';
        for (const n of needles) assert.ok(!text.includes(n), `refresh_tokens.${column} holds (part of) a refresh token`);
      }
    }
    // nowhere else in the database either
    const tables = await storage.sql<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'");
    for (const { table_name } of tables) {
      const dump = await storage.sql<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM "${table_name}" t`);
      for (const { row } of dump) for (const n of needles) assert.ok(!row.includes(n), `table ${table_name} holds (part of) a refresh token`);
    }
    // nor in Redis
    let cursor = '0';
    do {
      const [next, keys] = await storage.redis.scan(cursor, 'MATCH', `${storage.redisPrefix}*`, 'COUNT', 1000);
      for (const key of keys) {
        assert.ok(!needles.some((n) => key.includes(n)), `redis key ${key} holds a refresh token`);
        const type = await storage.redis.type(key);
        if (type === 'string') {
          const v = (await storage.redis.get(key)) ?? '';
          assert.ok(!needles.some((n) => v.includes(n)), `redis value of ${key} holds a refresh token`);
        }
      }
      cursor = next;
    } while (cursor !== '0');
  });

  it('RFC 7009 revocation with a wrong token_type_hint (access_token) still revokes the refresh token\'s family', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const res = await revoke(a, c.holder, f.refresh, 'access_token');
    assert.equal(res.status, 200, res.text);
    assertRefused(await refresh(c.holder, f.refresh), ['invalid_grant'], [400]);
    await assertInactive(a, c.holder, f.access, 'the access token of the revoked family');
  });

  for (const [n, split] of [[2, false], [10, false], [10, true]] as const) {
    it(`${n} simultaneous uses of the same refresh token${split ? ', split across both instances,' : ''} yield exactly one new token, and the family is revoked as reuse`, async () => {
      const c = await cast();
      const f = await startFamily(c);
      const results = await Promise.all(Array.from({ length: n }, (_, i) => refresh(c.holder, f.refresh, { on: split && i % 2 ? b : a })));
      // one rotation commits (the family's lock serialises them); every other use finds the token
      // consumed: that is reuse, refused, and it revokes the family, the winner's tokens included
      const ok = results.filter((r) => r.status === 200);
      assert.equal(ok.length, 1, `${ok.length} of ${n} concurrent uses got a token: ${results.map((r) => r.status).join(',')}`);
      for (const r of results) if (r.status !== 200) assertRefused(r, ['invalid_grant'], [400]);
      const winner = ok[0]!;
      // in storage too: the family holds the first token and its one successor
      const rows = await storage.sql('SELECT 1 FROM refresh_tokens WHERE client_id = $1', [c.holder.clientId]);
      assert.equal(rows.length, 2, `${rows.length} refresh tokens stored for one family after ${n} concurrent uses`);
      const revoked = await storage.sql("SELECT 1 FROM security_events WHERE kind = 'family_revoked' AND client_id = $1", [c.holder.clientId]);
      assert.equal(revoked.length, 1, 'the losing uses revoked the family as reuse');
      assertRefused(await refresh(c.holder, winner.body.refresh_token), ['invalid_grant'], [400]);
      const t0 = Date.now();
      await Promise.all([a, b].map((on) => within(`${on === a ? 'A' : 'B'}: the winner's access token of the revoked family inactive`, t0, async () => {
        const seen = await introspect(on, c.holder, winner.body.access_token);
        return seen.status === 200 && seen.body?.active === false ? true : seen.text;
      })));
      await assertInactive(a, c.holder, f.access, 'the first access token of a revoked family');
    });
  }

  it('introspection of a refresh token: the holder sees it active (token_type refresh_token, client_id, exp); another client learns nothing; a gateway sees it', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const stranger = await createClient(admin, { name: 'stranger' });
    for (const on of [a, b]) {
      const seen = await assertActive(on, c.holder, f.refresh, 'the refresh token, by its holder');
      assert.equal(seen.token_type, 'refresh_token');
      assert.equal(seen.client_id, c.holder.clientId);
      assert.equal(typeof seen.exp, 'number');
      assert.ok(seen.exp > now());
      assert.equal(seen.sub, c.front.clientId);
      assert.deepEqual((await introspect(on, stranger, f.refresh)).body, { active: false }, 'another client learns nothing');
      const g = await assertActive(on, gateway, f.refresh, 'the refresh token, by a gateway');
      assert.equal(g.token_type, 'refresh_token');
      // a token_type_hint, right or wrong, changes nothing (RFC 7662 §2.1)
      for (const hint of ['refresh_token', 'access_token']) {
        const hinted = await introspect(on, c.holder, f.refresh, hint);
        assert.equal(hinted.body?.active, true, `hint ${hint}: ${hinted.text}`);
        assert.equal(hinted.body.token_type, 'refresh_token');
      }
    }
    // a used one is inactive
    assertRotated(await refresh(c.holder, f.refresh), f.refresh);
    assert.deepEqual((await introspect(a, c.holder, f.refresh)).body, { active: false });
  });

  it('RFC 7009 revocation of a refresh token by its holder revokes the family: its access tokens become inactive and the refresh token is refused; another client\'s attempt changes nothing', async () => {
    const c = await cast();
    const f = await startFamily(c);
    const r1 = assertRotated(await refresh(c.holder, f.refresh), f.refresh);
    const stranger = await createClient(admin, { name: 'stranger' });
    const byStranger = await revoke(a, stranger, r1.refresh);
    assert.ok(byStranger.status === 200 || byStranger.status === 400, byStranger.text);
    await assertActive(a, c.holder, r1.access, 'after a stranger\'s revocation attempt');
    await assertActive(a, c.holder, r1.refresh, 'the refresh token after a stranger\'s revocation attempt');

    const res = await revoke(a, c.holder, r1.refresh);
    const t0 = Date.now();
    assert.equal(res.status, 200, res.text);
    assertRefused(await refresh(c.holder, r1.refresh), ['invalid_grant'], [400]);
    for (const t of [f.access, r1.access]) await assertInactive(a, c.holder, t, 'an access token of the revoked family');
    await Promise.all([f.access, r1.access].map((t) => within('B: access token of the revoked family inactive', t0, async () => {
      const r = await introspect(b, c.holder, t);
      return r.status === 200 && r.body?.active === false ? true : r.text;
    })));
    assertRefused(await refresh(c.holder, r1.refresh, { on: b }), ['invalid_grant'], [400]);
  });

  it('no refresh token appears in any server log', () => {
    assert.ok(ledger.size > 10);
    assert.deepEqual(ledger.leaks([...a.logs, ...b.logs]), []);
  });
});
