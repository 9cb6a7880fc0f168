// RFC 7662 introspection of Sigil's JWT access tokens: a client sees its own tokens, a gateway
// (--can-introspect) sees any, anyone else learns nothing; forged, expired, revoked and junk tokens
// are {"active": false}; a caller that does not authenticate gets 401 invalid_client.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeProtectedHeader, generateKeyPair } from 'jose';
import { clientAssertion, generateClientKey, keyPairFromPrivateJwk, requestToken, thumbprint } from '../../src/client/oauth-client.js';
import { ASSERTION_TYPE, decodePayload, forgeAssertion, signJws, unsignedJwt, untilReady } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin, type TestClient } from '../support/sigil.js';
import { postForm, type Answer } from '../support/http.js';
import { eventually } from '../support/wait.js';

async function introspect(baseUrl: string, issuer: string, client: TestClient, token: string): Promise<Answer> {
  return postForm(`${baseUrl}/introspect`, {
    token,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: await clientAssertion(client.key, client.clientId, issuer),
  });
}

/** exactly `{"active": false}`: 200, JSON, and not one member more */
function assertInactive(res: Answer, what: string): void {
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/, `${what}: content type`);
  assert.deepEqual(res.body, { active: false }, `${what}: ${res.text}`);
}

describe('introspection (RFC 7662)', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let issuer: string;
  let admin: Admin;
  let owner: TestClient;
  let other: TestClient;
  let gateway: TestClient;
  let token: string;

  before(async () => {
    storage = await createTestStorage('introspection');
    server = await startServer({ env: storageEnv(storage) });
    issuer = server.issuer;
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, issuer);
    owner = await createClient(admin, { name: 'owner', scope: 'orders:read orders:write', audiences: ['https://api.example.com/orders', 'https://api.example.com/billing'] });
    other = await createClient(admin, { name: 'other' });
    gateway = await createClient(admin, { name: 'gateway', can_introspect: true });
    token = (await requestToken(tokenRequest(server.url, issuer, owner, { scope: 'orders:read', resource: 'https://api.example.com/billing' }))).access_token;
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
  });

  it('a client introspecting its own token gets it active, with every claim', async () => {
    const res = await introspect(server.url, issuer, owner, token);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json\b/);
    assert.match(res.headers.get('cache-control') ?? '', /no-store/, 'an introspection answer must not be cached');
    const claims = decodePayload(token);
    const b = res.body;
    assert.equal(b.active, true);
    assert.equal(b.sub, owner.clientId);
    assert.equal(b.client_id, owner.clientId);
    assert.equal(b.scope, 'orders:read');
    assert.deepEqual(b.aud, 'https://api.example.com/billing');
    assert.equal(b.iss, issuer);
    assert.equal(b.exp, claims.exp);
    assert.equal(b.iat, claims.iat);
    assert.equal(b.jti, claims.jti);
    assert.deepEqual(b.cnf, { jkt: await thumbprint(owner.dpopKey) });
    assert.equal(b.token_type, 'DPoP');
    assert.ok(b.exp > Math.floor(Date.now() / 1000));
  });

  it('another client\'s token: {"active": false} for a normal client, active for a --can-introspect gateway', async () => {
    assertInactive(await introspect(server.url, issuer, other, token), 'a normal client introspecting someone else\'s token');
    const res = await introspect(server.url, issuer, gateway, token);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.active, true);
    assert.equal(res.body.client_id, owner.clientId);
    assert.equal(res.body.sub, owner.clientId);
    assert.equal(res.body.jti, decodePayload(token).jti);
    assert.equal(res.body.scope, 'orders:read');
  });

  it('forged and tampered tokens are {"active": false}, for the owner and for a gateway', async () => {
    const [h, p, s] = token.split('.') as [string, string, string];
    const claims = decodePayload(token);
    const { kid } = decodeProtectedHeader(token);
    const { privateKey } = await generateKeyPair('ES256');
    const later = { ...claims, exp: claims.exp + 3600, scope: 'orders:read orders:write' };
    const forgeries: Array<[string, string]> = [
      ['same claims, signed by another key under Sigil\'s kid', await signJws({ alg: 'ES256', typ: 'at+jwt', kid }, claims, privateKey)],
      ['alg: none', unsignedJwt({ alg: 'none', typ: 'at+jwt', kid }, claims)],
      ['payload changed, signature kept', `${h}.${Buffer.from(JSON.stringify(later)).toString('base64url')}.${s}`],
      ['signature of another token', `${h}.${p}.${(await requestToken(tokenRequest(server.url, issuer, owner))).access_token.split('.')[2]}`],
      ['HS256 with the public key as secret', await signJws({ alg: 'HS256', typ: 'at+jwt', kid }, claims, new TextEncoder().encode(JSON.stringify(await (await fetch(`${server.url}/jwks`)).json())))],
      ['wrong typ (a signed JWT that is not an access token)', await signJws({ alg: 'ES256', typ: 'JWT', kid }, claims, privateKey)],
    ];
    const wrong: string[] = [];
    for (const [what, forged] of forgeries) {
      for (const client of [owner, gateway]) {
        const res = await introspect(server.url, issuer, client, forged);
        if (res.status !== 200 || JSON.stringify(res.body) !== '{"active":false}') wrong.push(`${what} (as ${client === owner ? 'owner' : 'gateway'}): ${res.status} ${res.text}`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  it('an expired token is {"active": false} (a server with ACCESS_TOKEN_TTL=1 on the same storage and issuer)', async () => {
    const short = await startServer({
      issuer,
      env: { ...storageEnv(storage), ACCESS_TOKEN_TTL: '1' },
    });
    try {
      await untilReady(short.url);
      const expiring = (await requestToken(tokenRequest(short.url, issuer, owner))).access_token;
      const claims = decodePayload(expiring);
      assert.equal(claims.exp - claims.iat, 1, 'the token lives one second');
      await eventually('the expired token introspects inactive', async () => {
        const res = await introspect(short.url, issuer, gateway, expiring);
        if (res.status === 200 && res.body?.active === false) return true;
        // while alive it is active: anything else would make "inactive" meaningless
        if (!(res.status === 200 && res.body?.active === true)) throw new Error(`while alive: ${res.status} ${res.text}`);
        return false;
      }, { every: 100 });
      assert.ok(claims.exp <= Math.floor(Date.now() / 1000), 'inactive only once expired');
      // once past exp, nobody sees it active, on either instance
      for (const base of [short.url, server.url]) {
        for (const client of [owner, gateway]) assertInactive(await introspect(base, issuer, client, expiring), `expired token at ${base}`);
      }
    } finally {
      await short.stop();
    }
  });

  it('a revoked token, and any token of a revoked client, is {"active": false}', async () => {
    const own = (await requestToken(tokenRequest(server.url, issuer, owner))).access_token;
    assert.equal((await introspect(server.url, issuer, owner, own)).body?.active, true);
    const rev = await postForm(`${server.url}/revoke`, { token: own, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(owner.key, owner.clientId, issuer) });
    assert.equal(rev.status, 200, rev.text);
    assertInactive(await introspect(server.url, issuer, owner, own), 'self-revoked token, as its owner');
    assertInactive(await introspect(server.url, issuer, gateway, own), 'self-revoked token, as a gateway');

    const adminRevoked = (await requestToken(tokenRequest(server.url, issuer, owner))).access_token;
    const res = await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(adminRevoked).jti, reason: 'test' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assertInactive(await introspect(server.url, issuer, gateway, adminRevoked), 'admin-revoked jti, as a gateway');
    assertInactive(await introspect(server.url, issuer, owner, adminRevoked), 'admin-revoked jti, as its owner');

    const doomed = await createClient(admin, { name: 'doomed' });
    const doomedToken = (await requestToken(tokenRequest(server.url, issuer, doomed))).access_token;
    assert.equal((await introspect(server.url, issuer, gateway, doomedToken)).body?.active, true);
    assert.equal((await admin.call('POST', `/admin/clients/${doomed.clientId}/revoke`, { reason: 'test' })).status, 200);
    assertInactive(await introspect(server.url, issuer, gateway, doomedToken), 'token of a revoked client, as a gateway');

    // the owner's token from before is untouched by all this
    assert.equal((await introspect(server.url, issuer, owner, token)).body?.active, true);
  });

  it('garbage and empty tokens are {"active": false}', async () => {
    const junk: Array<[string, string]> = [
      ['garbage', 'garbage'],
      ['three dot-separated segments', 'a.b.c'],
      ['an unsigned JWT with an empty signature segment', 'eyJhbGciOiJub25lIn0.eyJqdGkiOiJ4In0.'],
      ['a long string', 'A'.repeat(4000)],
      ['a JWE-shaped token (five segments)', 'eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d'],
      ['a lone JOSE header segment', 'eyJhbGciOiJFUzI1NiJ9'],
      ['an opaque token Sigil never issued', 'vGZ1h3zZQ6b2r9yHkT3Jm4pX8sL0aW5eD7cF1nB2qR'],
    ];
    const wrong: string[] = [];
    for (const [what, t] of junk) {
      for (const client of [owner, gateway]) {
        const res = await introspect(server.url, issuer, client, t);
        if (res.status !== 200 || JSON.stringify(res.body) !== '{"active":false}') wrong.push(`${what} (as ${client === owner ? 'owner' : 'gateway'}): ${res.status} ${res.text}`);
      }
    }
    assert.deepEqual(wrong, []);
    // An empty `token`: RFC 7662 §2.1 makes the parameter REQUIRED, so 400 invalid_request is as
    // right as {"active": false}; what must never happen is anything active or a 5xx.
    const empty = await introspect(server.url, issuer, gateway, '');
    if (empty.status === 200) assertInactive(empty, 'empty token');
    else {
      assert.equal(empty.status, 400, `empty token: ${empty.status} ${empty.text}`);
      assert.equal(empty.body?.error, 'invalid_request', empty.text);
    }
  });

  it('introspection without valid client authentication is 401 invalid_client, and reveals nothing', async () => {
    const stranger = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    const revoked = await createClient(admin, { name: 'revoked caller', can_introspect: true });
    assert.equal((await admin.call('POST', `/admin/clients/${revoked.clientId}/revoke`, {})).status, 200);
    const attempts: Array<[string, Record<string, string | undefined>]> = [
      ['no client authentication at all', { token }],
      ['a client_id without any credential', { token, client_id: gateway.clientId }],
      ['an assertion signed by a key the client does not have', { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(stranger, gateway.clientId, issuer) }],
      ['an assertion of an unknown client', { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(stranger, 'no-such-client', issuer) }],
      ['an assertion of a revoked client', { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(revoked.key, revoked.clientId, issuer) }],
      ['an expired assertion', { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await forgeAssertion(gateway.key, gateway.clientId, issuer, { claims: { iat: Math.floor(Date.now() / 1000) - 600, exp: Math.floor(Date.now() / 1000) - 300 } }) }],
      ['an assertion for another audience', { token, client_assertion_type: ASSERTION_TYPE, client_assertion: await clientAssertion(gateway.key, gateway.clientId, 'https://elsewhere.example') }],
    ];
    const wrong: string[] = [];
    for (const [what, fields] of attempts) {
      const res = await postForm(`${server.url}/introspect`, fields);
      if (res.status !== 401 || res.body?.error !== 'invalid_client') wrong.push(`${what}: ${res.status} ${res.text}`);
      if (res.body && 'active' in res.body) wrong.push(`${what}: the answer has an "active" member: ${res.text}`);
      if (res.text.includes(owner.clientId) || res.text.includes(decodePayload(token).jti)) wrong.push(`${what}: the answer leaks the token's claims: ${res.text}`);
    }
    assert.deepEqual(wrong, [], 'RFC 7662 §2.1 / RFC 6749 §5.2: failed or missing client authentication is 401 invalid_client');
  });

  it('the answer for a token the caller may not see is byte-for-byte the answer for garbage (no oracle)', async () => {
    const revokedToken = (await requestToken(tokenRequest(server.url, issuer, owner))).access_token;
    await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(revokedToken).jti });
    const answers = new Map<string, string>();
    for (const [what, t] of [['a live token of another client', token], ['a revoked token of another client', revokedToken], ['garbage', 'garbage'], ['a JWT-shaped garbage', 'a.b.c']] as const) {
      const res = await introspect(server.url, issuer, other, t);
      assert.equal(res.status, 200, `${what}: ${res.text}`);
      answers.set(what, res.text);
      for (const secret of [owner.clientId, decodePayload(token).jti, 'orders:read', 'api.example.com']) {
        assert.ok(!res.text.includes(secret), `${what}: the answer mentions ${secret}: ${res.text}`);
      }
    }
    assert.equal(new Set(answers.values()).size, 1, `all the same: ${JSON.stringify([...answers])}`);
    assert.equal([...answers.values()][0], '{"active":false}');
  });
});
