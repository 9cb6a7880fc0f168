// Clients whose keys live at a jwks_uri, end to end: registration fetches the document once (so a bad
// one is refused with a reason), oidc-provider fetches through Sigil's SSRF-safe fetcher, and a partner
// server on loopback plays every misbehaviour. One Sigil runs with the development switch
// (JWKS_URI_ALLOW_HTTP_LOOPBACK=true), one with the defaults.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { JWK } from 'jose';
import {
  generateClientKey, keyPairFromPrivateJwk, requestToken, TokenError, type SigningKeyPair,
} from '../../src/client/oauth-client.js';
import { decodePayload, untilReady } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, type Admin } from '../support/sigil.js';
import { eventually } from '../support/wait.js';

interface Partner {
  origin: string;
  port: number;
  hits(path: string): number;
  /** what /keys/<name> serves */
  serve(name: string, jwks: unknown, headers?: Record<string, string>): void;
  close(): Promise<void>;
}

/** A partner's web server on loopback, misbehaving on request. */
async function startPartner(): Promise<Partner> {
  const counts = new Map<string, number>();
  const docs = new Map<string, { jwks: unknown; headers: Record<string, string> }>();
  const server = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    counts.set(p, (counts.get(p) ?? 0) + 1);
    const keys = /^\/keys\/([\w-]+)$/.exec(p);
    if (keys && docs.has(keys[1]!)) {
      const d = docs.get(keys[1]!)!;
      res.writeHead(200, { 'content-type': 'application/json', ...d.headers });
      return res.end(JSON.stringify(d.jwks));
    }
    switch (p) {
      case '/redirect':
        res.writeHead(302, { location: '/keys/good' });
        return res.end();
      case '/big':
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ keys: [], padding: 'x'.repeat(200 * 1024) }));
      case '/slow':
        return; // accepts, never answers
      default:
        res.writeHead(404);
        return res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    hits: (p) => counts.get(p) ?? 0,
    serve: (name, jwks, headers = {}) => docs.set(name, { jwks, headers }),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

interface Key {
  pair: SigningKeyPair;
  publicJwk: JWK;
  privateJwk: JWK;
}

async function newKey(kid?: string): Promise<Key> {
  const { privateJwk, publicJwks } = await generateClientKey('ES256');
  const priv = kid ? { ...privateJwk, kid } : privateJwk;
  return { pair: await keyPairFromPrivateJwk(priv), publicJwk: kid ? { ...publicJwks.keys[0]!, kid } : publicJwks.keys[0]!, privateJwk: priv };
}

async function register(baseUrl: string, token: string, metadata: unknown) {
  const res = await fetch(`${baseUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(metadata),
  });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as any };
}

type Outcome = { ok: true; token: string } | { ok: false; status: number; error: string | undefined; text: string };

async function tryToken(server: ServerProcess, clientId: string, key: SigningKeyPair): Promise<Outcome> {
  const dpopKey = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
  try {
    const res = await requestToken({ tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId, clientKey: key, dpopKey });
    return { ok: true, token: res.access_token };
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    return { ok: false, status: err.status, error: err.body.error, text: JSON.stringify(err.body) };
  }
}

function assertRefused(res: { status: number; body: any }, description: RegExp): void {
  assert.equal(res.status, 400, JSON.stringify(res.body));
  assert.equal(res.body.error, 'invalid_client_metadata');
  assert.match(res.body.error_description, description);
}

describe('jwks_uri clients with the development switch (http to loopback allowed)', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  let partner: Partner;

  before(async () => {
    partner = await startPartner();
    storage = await createTestStorage('jwksuri_dev');
    server = await startServer({
      env: { ...storageEnv(storage), JWKS_URI_ALLOW_HTTP_LOOPBACK: 'true', JWKS_URI_CACHE_MIN: '1', JWKS_URI_CACHE_MAX: '2' },
    });
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, server.issuer);
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
    await partner?.close();
  });

  async function initialAccessToken(uses = 1): Promise<string> {
    const res = await admin.call('POST', '/admin/registration-tokens', { uses, scope: 'orders:read', audiences: ['https://api.example.com/orders'] });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.token as string;
  }

  it('a client registered with a jwks_uri gets DPoP tokens; its document is fetched once for both', async () => {
    const k = await newKey('p1-key');
    partner.serve('p1', { keys: [k.publicJwk] }, { 'cache-control': 'max-age=300' });
    const reg = await register(server.url, await initialAccessToken(), { jwks_uri: `${partner.origin}/keys/p1`, client_name: 'jwks_uri partner' });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    assert.equal(reg.body.jwks_uri, `${partner.origin}/keys/p1`);
    assert.equal(reg.body.jwks, undefined);
    assert.equal(partner.hits('/keys/p1'), 1, 'fetched once at registration');
    const got = await tryToken(server, reg.body.client_id, k.pair);
    assert.ok(got.ok, JSON.stringify(got));
    const claims = decodePayload(got.token);
    assert.equal(claims.scope, 'orders:read');
    assert.equal(claims.aud, 'https://api.example.com/orders');
    assert.equal(typeof claims.cnf?.jkt, 'string');
    assert.equal(partner.hits('/keys/p1'), 1, 'the token request used the cached document');
  });

  it('assertions with unknown kids do not make Sigil hammer the partner', async () => {
    const k = await newKey('known');
    partner.serve('p2', { keys: [k.publicJwk] }, { 'cache-control': 'max-age=300' });
    const reg = await register(server.url, await initialAccessToken(), { jwks_uri: `${partner.origin}/keys/p2` });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    assert.ok((await tryToken(server, reg.body.client_id, k.pair)).ok);
    const before = partner.hits('/keys/p2');
    const attacker = await newKey('unknown-kid');
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => tryToken(server, reg.body.client_id, attacker.pair)));
    for (const o of outcomes) assert.ok(!o.ok && o.status === 401 && o.error === 'invalid_client', JSON.stringify(o));
    assert.ok(partner.hits('/keys/p2') - before <= 1, `refetched ${partner.hits('/keys/p2') - before} times for 20 unknown kids`);
    assert.ok((await tryToken(server, reg.body.client_id, k.pair)).ok, 'the real key still works');
  });

  it('a key the partner removes stops working once its (bounded) cache lifetime has passed', async () => {
    const k1 = await newKey('k1');
    const k2 = await newKey('k2');
    partner.serve('rot', { keys: [k1.publicJwk, k2.publicJwk] }, { 'cache-control': 'max-age=86400' });
    const reg = await register(server.url, await initialAccessToken(), { jwks_uri: `${partner.origin}/keys/rot` });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    assert.ok((await tryToken(server, reg.body.client_id, k1.pair)).ok);
    assert.ok((await tryToken(server, reg.body.client_id, k2.pair)).ok);
    partner.serve('rot', { keys: [k2.publicJwk] }, { 'cache-control': 'max-age=86400' });
    const t0 = Date.now();
    // JWKS_URI_CACHE_MAX=2 caps the partner's max-age of one day
    await eventually('k1 to be refused', async () => {
      const r = await tryToken(server, reg.body.client_id, k1.pair);
      return !r.ok && r.error === 'invalid_client';
    }, { timeout: 10_000 });
    assert.ok(Date.now() - t0 < 6000, `k1 refused only after ${Date.now() - t0} ms`);
    assert.ok((await tryToken(server, reg.body.client_id, k2.pair)).ok, 'the key still published keeps working');
  });

  it('refuses a jwks_uri that redirects, without following it', async () => {
    const before = partner.hits('/keys/good');
    assertRefused(await register(server.url, await initialAccessToken(), { jwks_uri: `${partner.origin}/redirect` }),
      /^jwks_uri answered with a redirect \(302\); redirects are not followed, register the final URL$/);
    assert.equal(partner.hits('/redirect'), 1);
    assert.equal(partner.hits('/keys/good'), before, 'the Location was not fetched');
  });

  it('refuses an oversized document', async () => {
    assertRefused(await register(server.url, await initialAccessToken(), { jwks_uri: `${partner.origin}/big` }), /^jwks_uri document is larger than 65536 bytes$/);
  });

  it('gives up on a partner that never answers instead of hanging', async () => {
    const t0 = Date.now();
    const res = await register(server.url, await initialAccessToken(), { jwks_uri: `${partner.origin}/slow` });
    const elapsed = Date.now() - t0;
    assertRefused(res, /^jwks_uri did not answer within 3000 ms$/);
    assert.ok(elapsed < 15_000, `answered after ${elapsed} ms`);
  });

  it('refuses a document with private members, a non-JWKS and a 404', async () => {
    const k = await newKey();
    partner.serve('private', { keys: [k.privateJwk] });
    partner.serve('not-jwks', { hello: 'world' });
    const token = await initialAccessToken();
    assertRefused(await register(server.url, token, { jwks_uri: `${partner.origin}/keys/private` }), /^jwks_uri document: key 0 contains private or secret members \(d\)/);
    assertRefused(await register(server.url, token, { jwks_uri: `${partner.origin}/keys/not-jwks` }), /not a JWKS/);
    assertRefused(await register(server.url, token, { jwks_uri: `${partner.origin}/keys/missing` }), /answered 404, expected 200/);
  });

  it('the switch covers loopback hosts only: plain http elsewhere and internal addresses stay refused', async () => {
    const token = await initialAccessToken();
    assertRefused(await register(server.url, token, { jwks_uri: 'http://partner.example.com/jwks' }), /must use https \(plain http is allowed only for loopback hosts\)/);
    for (const [uri, range] of [
      ['https://10.0.0.1/jwks', 'private'], ['https://192.168.1.10/jwks', 'private'], ['https://169.254.169.254/latest/meta-data/', 'link-local'],
      ['https://[fd00::1]/jwks', 'private'], ['http://10.0.0.1/jwks', 'https'],
    ] as const) {
      assertRefused(await register(server.url, token, { jwks_uri: uri }), range === 'https' ? /must use https/ : new RegExp(`is an? ${range} address`));
    }
  });

  it('oidc-provider fetches through the same fetcher: a client whose jwks_uri redirects gets invalid_client', async () => {
    // the admin API checks the URI's form only; the fetch happens at the first token request
    const created = await admin.call('POST', '/admin/clients', { name: 'redirecting', jwks_uri: `${partner.origin}/redirect`, audiences: ['https://api.example.com/orders'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const before = partner.hits('/redirect');
    const r = await tryToken(server, created.body.client_id, (await newKey()).pair);
    assert.ok(!r.ok && r.status === 401 && r.error === 'invalid_client', JSON.stringify(r));
    assert.equal(partner.hits('/redirect') - before, 1);
    await eventually('the refusal in the log', async () => server.logs.some((l) => l.includes('jwks_uri fetch refused') && l.includes('redirect (302)')));
  });
});

describe('jwks_uri clients with the default settings (https and public addresses only)', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  let partner: Partner;
  let token: string;

  before(async () => {
    partner = await startPartner();
    storage = await createTestStorage('jwksuri_default');
    server = await startServer({ env: storageEnv(storage) });
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, server.issuer);
    const res = await admin.call('POST', '/admin/registration-tokens', { uses: 1 });
    token = res.body.token;
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
    await partner?.close();
  });

  it('refuses http://, even to loopback', async () => {
    partner.serve('good', { keys: [(await newKey()).publicJwk] });
    assertRefused(await register(server.url, token, { jwks_uri: `${partner.origin}/keys/good` }), /^jwks_uri must use https$/);
  });

  it('refuses literal loopback, private, link-local and unique-local hosts, naming the range', async () => {
    for (const [uri, expected] of [
      [`https://127.0.0.1:${partner.port}/keys/good`, /host 127\.0\.0\.1 is a loopback address; Sigil fetches keys only from public addresses/],
      ['https://10.0.0.1/jwks', /host 10\.0\.0\.1 is a private address/],
      ['https://192.168.1.10/jwks', /host 192\.168\.1\.10 is a private address/],
      ['https://169.254.169.254/latest/meta-data/', /host 169\.254\.169\.254 is a link-local address/],
      ['https://[::1]/jwks', /host ::1 is a loopback address/],
      ['https://[fd00::1]/jwks', /host fd00::1 is a private address/],
      ['https://[::ffff:169.254.169.254]/jwks', /link-local address/],
      ['https://100.64.0.1/jwks', /carrier-grade NAT/],
    ] as const) {
      assertRefused(await register(server.url, token, { jwks_uri: uri }), expected);
    }
  });

  it('refuses a host name that resolves to loopback (localhost), before connecting', async () => {
    const before = partner.hits('/keys/good');
    assertRefused(await register(server.url, token, { jwks_uri: `https://localhost:${partner.port}/keys/good` }),
      /^jwks_uri host localhost resolves to (127\.0\.0\.1|::1), a loopback address; Sigil fetches keys only from public addresses$/);
    assert.equal(partner.hits('/keys/good'), before);
    const [t] = await storage.sql<{ uses_left: number }>('SELECT uses_left FROM initial_access_tokens');
    assert.equal(t!.uses_left, 1, 'refusals took no use');
  });

  it('the admin API checks jwks_uri up front the same way', async () => {
    for (const [uri, expected] of [
      ['https://10.0.0.1/jwks', /private address/],
      [`http://127.0.0.1:${partner.port}/keys/good`, /must use https/],
      ['https://169.254.169.254/jwks', /link-local address/],
      ['https://u:p@partner.example.com/jwks', /credentials/],
    ] as const) {
      const res = await admin.call('POST', '/admin/clients', { name: 'internal', jwks_uri: uri });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error, 'invalid_client_metadata');
      assert.match(res.body.error_description, expected);
    }
  });

  it('oidc-provider\'s fetch refuses a name resolving to loopback: the client gets invalid_client', async () => {
    const created = await admin.call('POST', '/admin/clients', { name: 'resolves inside', jwks_uri: `https://localhost:${partner.port}/keys/good`, audiences: ['https://api.example.com/orders'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const r = await tryToken(server, created.body.client_id, (await newKey()).pair);
    assert.ok(!r.ok && r.status === 401 && r.error === 'invalid_client', JSON.stringify(r));
    await eventually('the refusal in the log', async () => server.logs.some((l) => l.includes('jwks_uri fetch refused') && l.includes('resolves to')));
  });
});
