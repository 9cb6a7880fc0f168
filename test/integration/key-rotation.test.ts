// A full signing-key rotation on two instances, watched by a gateway-style verifier that caches the
// JWKS exactly as long as Cache-Control max-age allows: it must never meet an unknown kid.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { requestToken } from '../../src/client/oauth-client.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import { startPair, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import { eventually } from '../support/wait.js';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];
/** seconds the JWKS may be cached when no key change is near */
const JWKS_MAX_AGE = 2;

interface KeyView { kid: string; state: string; activates_at: string; retires_at?: string }

describe('signing-key rotation across two instances', () => {
  let storage: TestStorage;
  let a: ServerProcess;
  let b: ServerProcess;
  let admin: Admin;
  let client: TestClient;

  before(async () => {
    storage = await createTestStorage('rotation');
    // short timings so a whole rotation fits in a test: JWKS cacheable 2 s, tokens live 4 s
    const env = {
      DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix,
      JWKS_MAX_AGE: String(JWKS_MAX_AGE), ACCESS_TOKEN_TTL: '4', STATUS_LIST_TTL: '1',
    };
    ({ a, b } = await startPair(env));
    admin = await bootstrapAdmin(a.url, a.issuer);
    client = await createClient(admin);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await storage?.cleanup();
  });

  it('stages, activates and retires a key on both instances; a caching verifier never sees an unknown kid', async () => {
    const keysAt = async (url: string) => {
      const r = await admin.call('GET', '/admin/keys');
      assert.equal(r.status, 200);
      for (const k of r.body as Record<string, unknown>[]) for (const m of PRIVATE_MEMBERS) assert.ok(!(m in k), 'no private member in the key list');
      return r.body as KeyView[];
    };
    const [original] = (await keysAt(a.url)).filter((k) => k.state === 'active');
    assert.ok(original);

    // the gateway: one JWKS cache, filled from either instance, kept exactly max-age seconds
    let cache: { keys: JSONWebKeySet; until: number } | undefined;
    let fetches = 0;
    const jwks = async (url: string) => {
      if (!cache || Date.now() >= cache.until) {
        const res = await fetch(`${url}/jwks`);
        const maxAge = Number(/max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '')?.[1]);
        assert.ok(Number.isInteger(maxAge), 'the JWKS carries max-age');
        const body = (await res.json()) as JSONWebKeySet;
        for (const k of body.keys) for (const m of PRIVATE_MEMBERS) assert.ok(!(m in k), 'JWKS holds only public members');
        cache = { keys: body, until: Date.now() + maxAge * 1000 };
        fetches++;
      }
      return cache.keys;
    };

    const rotate = await admin.call('POST', '/admin/keys/rotate');
    assert.equal(rotate.status, 201, JSON.stringify(rotate.body));
    const staged = rotate.body.staged as KeyView;
    assert.equal(staged.state, 'next');
    assert.notEqual(staged.kid, original.kid);
    assert.equal((await admin.call('POST', '/admin/keys/rotate')).status, 409, 'one staged rotation at a time');

    // both instances publish the staged key (B learns it through the bus)
    for (const s of [a, b]) {
      await eventually(`${s.url} publishes the staged key`, async () => ((await (await fetch(`${s.url}/jwks`)).json()) as JSONWebKeySet).keys.some((k) => k.kid === staged.kid));
    }

    const seenKids = new Set<string>();
    let nearChange = 0;
    const retiresAt = () => Date.parse(staged.activates_at) + 6_000; // retireAfter = max(4, 2*1) + 2
    let i = 0;
    while (Date.now() < retiresAt() + 2_500) {
      const s = i++ % 2 ? b : a;
      const token = await requestToken(tokenRequest(s.url, s.issuer, client));
      const { kid } = decodeProtectedHeader(token.access_token);
      const set = await jwks(s.url);
      assert.ok(set.keys.some((k) => k.kid === kid), `the verifier's cached JWKS knows kid ${kid} (token from ${s.url})`);
      await jwtVerify(token.access_token, createLocalJWKSet(set), { issuer: a.issuer });
      seenKids.add(kid!);
      // the JWKS is never cacheable past the next key change
      const res = await fetch(`${s.url}/jwks`);
      const maxAge = Number(/max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '')?.[1]);
      const nextChange = Math.min(...[Date.parse(staged.activates_at), retiresAt()].filter((t) => t > Date.now()), Infinity);
      assert.ok(maxAge >= 0 && maxAge <= JWKS_MAX_AGE, `max-age ${maxAge} outside 0..JWKS_MAX_AGE`);
      assert.ok(Date.now() + maxAge * 1000 <= nextChange + 1000, `max-age ${maxAge} reaches past the next key change`);
      // an answer given within JWKS_MAX_AGE of a change is one the bound above actually shortens
      nearChange += Number(nextChange - Date.now() < JWKS_MAX_AGE * 1000);
      await new Promise((r) => setTimeout(r, 150));
    }
    assert.deepEqual([...seenKids].sort(), [original.kid, staged.kid].sort(), 'tokens were signed first by the old key, then by the new one');
    assert.ok(fetches > 2, 'the verifier refreshed its cache as max-age allowed');
    assert.ok(nearChange > 0, 'some JWKS answers came within max-age of a key change: the bound was exercised');

    // the schedule as every instance sees it now: the new key active, the old one retired
    const final = await keysAt(a.url);
    assert.equal(final.find((k) => k.kid === staged.kid)?.state, 'active');
    assert.equal(final.find((k) => k.kid === original.kid)?.state, 'retired');
    for (const s of [a, b]) {
      const published = ((await (await fetch(`${s.url}/jwks`)).json()) as JSONWebKeySet).keys.map((k) => k.kid);
      assert.deepEqual(published, [staged.kid], `${s.url} publishes only the new key`);
      const token = await requestToken(tokenRequest(s.url, s.issuer, client));
      assert.equal(decodeProtectedHeader(token.access_token).kid, staged.kid);
    }
  });

  it('never logs a private key', () => {
    for (const line of [...a.logs, ...b.logs]) assert.ok(!/"d":"/.test(line), 'no private JWK member in a log line');
  });
});
