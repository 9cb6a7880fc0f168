// Client authentication at the token endpoint (RFC 7523 private_key_jwt): every forged, stale,
// misaddressed, unsigned or replayed assertion gets 401 invalid_client and no token.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { exportJWK, type JWK } from 'jose';
import { generateClientKey, keyPairFromPrivateJwk } from '../../src/client/oauth-client.js';
import {
  ASSERTION_TYPE, assertIssued, assertOAuthError, decodePayload, ed25519IdentityKey, epoch, forgeAssertion, forgeProof, postToken,
  rsaExponentOneKey, SecretLedger, unsignedJwt, untilReady, type ForgeOptions, type RawResponse, type WeakKey,
} from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, type Admin, type TestClient } from '../support/sigil.js';

describe('client authentication attacks (private_key_jwt)', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  let client: TestClient;
  let other: TestClient;
  let tokenUrl: string;
  const ledger = new SecretLedger();

  before(async () => {
    storage = await createTestStorage('clientauth');
    server = await startServer({ env: storageEnv(storage) });
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, server.issuer);
    client = await createClient(admin, { name: 'victim' });
    other = await createClient(admin, { name: 'other' });
    tokenUrl = `${server.issuer}/token`;
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
  });

  /** a token request whose only possible defect is the assertion: the DPoP proof is fresh and valid */
  async function send(assertion: string, who: TestClient = client, extra: { params?: Record<string, string | undefined>; headers?: Record<string, string> } = {}): Promise<RawResponse> {
    const proof = await forgeProof(who.dpopKey, 'POST', tokenUrl);
    ledger.add(assertion, proof);
    return ledger.addResponse(await postToken(`${server.url}/token`, { assertion, proof, ...extra }));
  }
  const assertion = (opts: ForgeOptions = {}, aud: string | string[] = server.issuer, who: TestClient = client) => forgeAssertion(who.key, who.clientId, aud, opts);

  it('control: a well-formed hand-made assertion gets a token', async () => {
    const res = await send(await assertion());
    const token = assertIssued(res);
    assert.equal(decodePayload(token).client_id, client.clientId);
  });

  describe('audience (draft-ietf-oauth-rfc7523bis: the issuer identifier as the sole value)', () => {
    it('accepts aud = the issuer', async () => {
      assertIssued(await send(await assertion({}, server.issuer)));
    });
    it('accepts aud = [the issuer] (a one-element array holds a sole value, rfc7523bis since -03)', async () => {
      assertIssued(await send(await assertion({}, [server.issuer])));
    });
    it('refuses aud = the token endpoint URL unless ASSERTION_AUD_TOKEN_ENDPOINT=true', async () => {
      assertOAuthError(await send(await assertion({}, `${server.issuer}/token`)), 401, 'invalid_client');
      assertOAuthError(await send(await assertion({}, [`${server.issuer}/token`])), 401, 'invalid_client');
    });
    for (const aud of ['https://evil.example.com', 'https://evil.example.com/token', 'ISSUER/introspect', 'ISSUER/token/extra', 'ISSUER/']) {
      it(`refuses aud = ${aud}`, async () => {
        const value = aud.replace('ISSUER', server.issuer);
        assertOAuthError(await send(await assertion({}, value)), 401, 'invalid_client');
      });
    }
    // audience injection: an assertion made for another authorization server that also names this one
    for (const aud of [['https://other-as.example.com', 'ISSUER/token'], ['ISSUER', 'https://other-as.example.com'], ['ISSUER', 'ISSUER'], ['ISSUER', 'ISSUER/token'], []]) {
      it(`refuses aud = ${JSON.stringify(aud)}`, async () => {
        assertOAuthError(await send(await assertion({}, aud.map((a) => a.replace('ISSUER', server.issuer)))), 401, 'invalid_client');
      });
    }
    it('refuses an assertion without aud, or with an aud that is not a string', async () => {
      assertOAuthError(await send(await assertion({ claims: { aud: undefined } })), 401, 'invalid_client');
      assertOAuthError(await send(await assertion({ claims: { aud: { issuer: server.issuer } } })), 401, 'invalid_client');
      assertOAuthError(await send(await assertion({ claims: { aud: [[server.issuer]] } })), 401, 'invalid_client');
    });
  });

  describe('typ: only a client assertion is a client assertion', () => {
    for (const typ of [undefined, 'JWT', 'jwt', 'application/jwt', 'client-authentication+jwt', 'application/client-authentication+jwt', 'Client-Authentication+JWT']) {
      it(`accepts typ ${JSON.stringify(typ)}`, async () => {
        assertIssued(await send(await assertion({ header: { typ } })));
      });
    }
    for (const typ of ['dpop+jwt', 'application/dpop+jwt', 'at+jwt', 'statuslist+jwt', 'secevent+jwt', 'logout+jwt', 'sigil-bootstrap+jwt', 'token-introspection+jwt', 'oauth-authz-req+jwt', 'JOSE', 'jwt ', '', 42]) {
      it(`refuses typ ${JSON.stringify(typ)}`, async () => {
        assertOAuthError(await send(await assertion({ header: { typ } })), 401, 'invalid_client');
      });
    }
    it('refuses a DPoP proof presented as the assertion, even one with the assertion claims (signed by the client key)', async () => {
      const t = epoch();
      const proofShaped = await forgeProof(client.key, 'POST', tokenUrl, { claims: { iss: client.clientId, sub: client.clientId, aud: server.issuer, exp: t + 60 } });
      assertOAuthError(await send(proofShaped), 401, 'invalid_client');
    });
  });

  describe('the same rules at /introspect and /revoke', () => {
    let token: string;
    before(async () => {
      token = assertIssued(await send(await assertion()));
    });
    async function authenticateAt(endpoint: 'introspect' | 'revoke', a: string): Promise<RawResponse> {
      ledger.add(a);
      const body = new URLSearchParams({ token, client_assertion_type: ASSERTION_TYPE, client_assertion: a });
      const res = await fetch(`${server.url}/${endpoint}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text, body: text ? JSON.parse(text) : undefined };
    }
    for (const endpoint of ['introspect', 'revoke'] as const) {
      it(`${endpoint}: refuses aud = the endpoint URL, the token endpoint URL, [issuer, other] and typ dpop+jwt; accepts aud = issuer`, async () => {
        for (const bad of [
          await assertion({}, `${server.issuer}/${endpoint}`),
          await assertion({}, `${server.issuer}/token`),
          await assertion({}, [server.issuer, 'https://other-as.example.com']),
          await assertion({ header: { typ: 'dpop+jwt' } }),
        ]) {
          assertOAuthError(await authenticateAt(endpoint, bad), 401, 'invalid_client');
        }
        const ok = await authenticateAt(endpoint, await assertion({}, server.issuer));
        assert.equal(ok.status, 200, ok.text);
      });
    }
  });

  describe('ASSERTION_AUD_TOKEN_ENDPOINT=true (older RFC 7523 clients)', () => {
    let legacy: ServerProcess;
    before(async () => {
      legacy = await startServer({ env: { ...storageEnv(storage), ASSERTION_AUD_TOKEN_ENDPOINT: 'true' } });
      await untilReady(legacy.url);
    });
    after(async () => {
      await legacy?.stop();
    });
    async function sendTo(aud: string | string[]): Promise<RawResponse> {
      const a = await forgeAssertion(client.key, client.clientId, aud);
      const proof = await forgeProof(client.dpopKey, 'POST', `${legacy.issuer}/token`);
      ledger.add(a, proof);
      return ledger.addResponse(await postToken(`${legacy.url}/token`, { assertion: a, proof }));
    }
    it('accepts the token endpoint URL as the sole aud value, and still the issuer', async () => {
      assertIssued(await sendTo(`${legacy.issuer}/token`));
      assertIssued(await sendTo([`${legacy.issuer}/token`]));
      assertIssued(await sendTo(legacy.issuer));
    });
    it('still refuses several values, other endpoints and other servers', async () => {
      for (const aud of [[legacy.issuer, `${legacy.issuer}/token`], `${legacy.issuer}/introspect`, ['https://other-as.example.com', `${legacy.issuer}/token`], `${server.issuer}/token`]) {
        assertOAuthError(await sendTo(aud), 401, 'invalid_client');
      }
    });
  });

  describe('signature and key', () => {
    it('refuses an assertion signed by an unregistered key that carries the client\'s kid', async () => {
      const stranger = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      const res = await send(await assertion({ header: { kid: client.key.kid }, signWith: stranger.privateKey }));
      assertOAuthError(res, 401, 'invalid_client');
    });
    it('refuses an assertion signed by an unregistered key with an unknown kid', async () => {
      const stranger = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      const res = await send(await assertion({ header: { kid: stranger.kid }, signWith: stranger.privateKey }));
      assertOAuthError(res, 401, 'invalid_client');
    });
    it('refuses an assertion signed by an unregistered key with no kid', async () => {
      const stranger = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      const res = await send(await assertion({ header: { kid: undefined }, signWith: stranger.privateKey }));
      assertOAuthError(res, 401, 'invalid_client');
    });
    it('refuses an assertion whose signature was tampered with (payload changed after signing)', async () => {
      const good = await assertion();
      const [h, , s] = good.split('.');
      const t = epoch();
      const forged = `${h}.${Buffer.from(JSON.stringify({ iss: client.clientId, sub: client.clientId, aud: server.issuer, iat: t, exp: t + 60, jti: 'tampered-' + t })).toString('base64url')}.${s}`;
      assertOAuthError(await send(forged), 401, 'invalid_client');
    });
    it('refuses alg: none (unsigned)', async () => {
      const t = epoch();
      const jwt = unsignedJwt(
        { alg: 'none', kid: client.key.kid },
        { iss: client.clientId, sub: client.clientId, aud: server.issuer, iat: t, exp: t + 60, jti: `none-${t}-${Math.random()}` },
      );
      assertOAuthError(await send(jwt), 401, 'invalid_client');
    });
    it('refuses alg: none with a copied signature segment', async () => {
      const good = await assertion();
      const [, p, s] = good.split('.');
      const jwt = `${Buffer.from(JSON.stringify({ alg: 'none', kid: client.key.kid })).toString('base64url')}.${p}.${s}`;
      assertOAuthError(await send(jwt), 401, 'invalid_client');
    });
    it('refuses HS256 keyed with the client\'s public JWK (algorithm confusion)', async () => {
      const secret = new TextEncoder().encode(JSON.stringify(client.key.publicJwk));
      assertOAuthError(await send(await assertion({ header: { alg: 'HS256' }, signWith: secret })), 401, 'invalid_client');
    });
    it('refuses HS256 keyed with the raw public key bytes (x || y)', async () => {
      const { x, y } = client.key.publicJwk;
      const secret = Buffer.concat([Buffer.from(x!, 'base64url'), Buffer.from(y!, 'base64url')]);
      assertOAuthError(await send(await assertion({ header: { alg: 'HS256' }, signWith: secret })), 401, 'invalid_client');
    });
    it('refuses HS256 keyed with any secret', async () => {
      const secret = new TextEncoder().encode('correct horse battery staple, 32+ bytes long!!');
      assertOAuthError(await send(await assertion({ header: { alg: 'HS256' }, signWith: secret })), 401, 'invalid_client');
    });
  });

  describe('claims', () => {
    it('refuses an expired assertion (exp in the past)', async () => {
      const t = epoch();
      assertOAuthError(await send(await assertion({ claims: { iat: t - 120, exp: t - 60 } })), 401, 'invalid_client');
    });
    it('refuses an assertion without exp', async () => {
      assertOAuthError(await send(await assertion({ claims: { exp: undefined } })), 401, 'invalid_client');
    });
    it('refuses an assertion that expires more than 300 s after now', async () => {
      const t = epoch();
      assertOAuthError(await send(await assertion({ claims: { iat: t, exp: t + 360 } })), 401, 'invalid_client');
    });
    it('refuses an assertion that expires in a year', async () => {
      const t = epoch();
      assertOAuthError(await send(await assertion({ claims: { iat: t, exp: t + 365 * 86400 } })), 401, 'invalid_client');
    });
    it('control: an assertion expiring within 300 s is accepted', async () => {
      const t = epoch();
      assertIssued(await send(await assertion({ claims: { iat: t, exp: t + 240 } })));
    });
    it('refuses an assertion whose iat is in the future', async () => {
      const t = epoch();
      assertOAuthError(await send(await assertion({ claims: { iat: t + 120, exp: t + 180 } })), 401, 'invalid_client');
    });
    it('refuses an assertion not yet valid (nbf in the future)', async () => {
      const t = epoch();
      assertOAuthError(await send(await assertion({ claims: { nbf: t + 120, exp: t + 180 } })), 401, 'invalid_client');
    });
    it('refuses an assertion without jti', async () => {
      assertOAuthError(await send(await assertion({ claims: { jti: undefined } })), 401, 'invalid_client');
    });
    it('refuses iss other than the client_id (sub = client_id)', async () => {
      assertOAuthError(await send(await assertion({ claims: { iss: other.clientId } })), 401, 'invalid_client');
    });
    it('refuses iss missing', async () => {
      assertOAuthError(await send(await assertion({ claims: { iss: undefined } })), 401, 'invalid_client');
    });
    it('refuses sub naming another client (iss = client_id, signed by the client\'s own key)', async () => {
      assertOAuthError(await send(await assertion({ claims: { sub: other.clientId } })), 401, 'invalid_client');
    });
    it('refuses iss = sub = another client, signed by this client\'s key (impersonation)', async () => {
      assertOAuthError(await send(await assertion({ claims: { iss: other.clientId, sub: other.clientId } })), 401, 'invalid_client');
    });
    it('refuses iss = sub = an unknown client id', async () => {
      assertOAuthError(await send(await assertion({ claims: { iss: 'no-such-client', sub: 'no-such-client' } })), 401, 'invalid_client');
    });
  });

  describe('replay', () => {
    it('refuses the second, sequential use of one assertion', async () => {
      const a = await assertion();
      assertIssued(await send(a));
      assertOAuthError(await send(a), 401, 'invalid_client');
    });
    it('refuses a second assertion reusing the jti of a used one', async () => {
      const jti = `reused-${epoch()}-${Math.random()}`;
      assertIssued(await send(await assertion({ claims: { jti } })));
      assertOAuthError(await send(await assertion({ claims: { jti } })), 401, 'invalid_client');
    });
    // the replay answer arrives while the grant works (held claims): whatever else is wrong, a
    // replayed assertion is what the request is told, as when the claim is awaited up front
    it('a replayed assertion that also asks for a forbidden scope or resource is still invalid_client', async () => {
      const a = await assertion();
      assertIssued(await send(a));
      assertOAuthError(await send(a, client, { params: { scope: 'admin:everything' } }), 401, 'invalid_client');
      assertOAuthError(await send(a, client, { params: { resource: 'https://evil.example.com' } }), 401, 'invalid_client');
    });
    it('a replayed assertion with a bad DPoP proof is still invalid_client', async () => {
      const a = await assertion();
      assertIssued(await send(a));
      const stale = await forgeProof(client.dpopKey, 'POST', tokenUrl, { claims: { iat: epoch() - 3600 } });
      ledger.add(stale);
      assertOAuthError(ledger.addResponse(await postToken(`${server.url}/token`, { assertion: a, proof: stale })), 401, 'invalid_client');
    });
    /** the request with `scope` given twice, which oidc-provider refuses before any grant runs */
    async function sendWithDuplicatedScope(a: string): Promise<{ status: number; error: string; text: string }> {
      const proof = await forgeProof(client.dpopKey, 'POST', tokenUrl);
      ledger.add(proof, a);
      const body = new URLSearchParams({
        grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: a, scope: 'x',
      });
      body.append('scope', 'y');
      const res = await fetch(`${server.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proof }, body });
      const text = await res.text();
      return { status: res.status, error: (JSON.parse(text) as { error: string }).error, text };
    }
    it('a replayed assertion refused by oidc-provider before the grant (a duplicated parameter) is still invalid_client', async () => {
      const a = await assertion();
      assertIssued(await send(a));
      const res = await sendWithDuplicatedScope(a);
      assert.deepEqual([res.status, res.error], [401, 'invalid_client'], res.text);
    });
    it('control: the same duplicated parameter without a replay is invalid_request', async () => {
      const res = await sendWithDuplicatedScope(await assertion());
      assert.deepEqual([res.status, res.error], [400, 'invalid_request'], res.text);
    });
    it('a fresh assertion with a replayed proof is invalid_dpop_proof, and the proof stays used', async () => {
      const proof = await forgeProof(client.dpopKey, 'POST', tokenUrl);
      ledger.add(proof);
      const first = await assertion();
      ledger.add(first);
      assertIssued(ledger.addResponse(await postToken(`${server.url}/token`, { assertion: first, proof })));
      for (let i = 0; i < 2; i++) {
        const again = await assertion();
        ledger.add(again);
        assertOAuthError(ledger.addResponse(await postToken(`${server.url}/token`, { assertion: again, proof })), 400, 'invalid_dpop_proof');
      }
    });
  });

  describe('other authentication methods', () => {
    it('refuses client_secret_post', async () => {
      const proof = await forgeProof(client.dpopKey, 'POST', tokenUrl);
      ledger.add(proof);
      const res = ledger.addResponse(await postToken(`${server.url}/token`, { proof, params: { client_id: client.clientId, client_secret: 'guessed-secret' } }));
      assertOAuthError(res, 401, 'invalid_client');
    });
    it('refuses client_secret_basic', async () => {
      const proof = await forgeProof(client.dpopKey, 'POST', tokenUrl);
      ledger.add(proof);
      const basic = Buffer.from(`${encodeURIComponent(client.clientId)}:guessed-secret`).toString('base64');
      const res = ledger.addResponse(await postToken(`${server.url}/token`, { proof, headers: { authorization: `Basic ${basic}` } }));
      assertOAuthError(res, 401, 'invalid_client');
    });
    it('refuses no authentication at all (client_id only)', async () => {
      const proof = await forgeProof(client.dpopKey, 'POST', tokenUrl);
      ledger.add(proof);
      const res = ledger.addResponse(await postToken(`${server.url}/token`, { proof, params: { client_id: client.clientId } }));
      assertOAuthError(res, 401, 'invalid_client');
    });
  });

  describe('RSA clients', () => {
    for (const alg of ['RS256', 'PS256'] as const) {
      it(`issues a token to an ${alg} client with a 2048-bit key`, async () => {
        const rsa = await createClient(admin, { alg, name: `rsa ${alg}` });
        assert.equal(Buffer.from(rsa.key.publicJwk.n!, 'base64url').length * 8, 2048);
        const res = await send(await assertion({}, server.issuer, rsa), rsa);
        assert.equal(decodePayload(assertIssued(res)).client_id, rsa.clientId);
      });
    }
    it('refuses HS256 keyed with an RSA client\'s public key PEM (algorithm confusion)', async () => {
      const rsa = await createClient(admin, { alg: 'RS256', name: 'rsa confusion' });
      const pem = createPublicKey({ key: rsa.key.publicJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
      const res = await send(await assertion({ header: { alg: 'HS256' }, signWith: new TextEncoder().encode(pem) }, server.issuer, rsa), rsa);
      assertOAuthError(res, 401, 'invalid_client');
    });
    it('refuses to register a client with a 1024-bit RSA key (admin API: 400 invalid_client_metadata)', async () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = (await exportJWK(privateKey)) as JWK;
      assert.equal(Buffer.from(pub.n!, 'base64url').length * 8, 1024);
      const res = await admin.call('POST', '/admin/clients', {
        name: 'weak rsa',
        jwks: { keys: [{ ...pub, kid: 'weak-1', alg: 'RS256', use: 'sig' }] },
        scope: 'orders:read',
        audiences: ['https://api.example.com/orders'],
      });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body?.error, 'invalid_client_metadata');
      assert.equal(res.body?.client_id, undefined);
      const rows = await storage.sql<{ n: string }>('SELECT count(*)::text AS n FROM clients WHERE name = $1', ['weak rsa']);
      assert.equal(rows[0]!.n, '0');
    });
  });

  describe('keys anyone can sign with (issue 10, finding 6)', () => {
    const weakKeys: Array<[string, () => WeakKey]> = [['RSA e = 1', () => rsaExponentOneKey()], ['an Ed25519 identity point', () => ed25519IdentityKey()]];
    for (const [what, make] of weakKeys) {
      it(`admin create and keys set refuse ${what} (400 invalid_client_metadata)`, async () => {
        const weak = make();
        const jwks = { keys: [{ ...weak.jwk, kid: 'weak', alg: weak.alg, use: 'sig' }] };
        const created = await admin.call('POST', '/admin/clients', { name: `weak ${what}`, jwks, audiences: ['https://api.example.com/orders'] });
        assert.equal(created.status, 400, JSON.stringify(created.body));
        assert.equal(created.body?.error, 'invalid_client_metadata');
        const set = await admin.call('PUT', `/admin/clients/${other.clientId}/jwks`, { jwks });
        assert.equal(set.status, 400, JSON.stringify(set.body));
        const rows = await storage.sql<{ n: string }>('SELECT count(*)::text AS n FROM clients WHERE name = $1', [`weak ${what}`]);
        assert.equal(rows[0]!.n, '0');
      });
      it(`an assertion forged from ${what} registered before the key rules existed gets 401, not a token`, async () => {
        const weak = make();
        const victim = await createClient(admin, { name: `stored ${what}` });
        // a key stored by an older Sigil, which accepted it
        await storage.sql('UPDATE clients SET jwks = $2 WHERE client_id = $1', [victim.clientId, JSON.stringify({ keys: [{ ...weak.jwk, kid: 'weak', alg: weak.alg, use: 'sig' }] })]);
        const t = epoch();
        const forged = weak.sign({ alg: weak.alg, kid: 'weak' }, { iss: victim.clientId, sub: victim.clientId, aud: server.issuer, iat: t, exp: t + 60, jti: `forged-${t}-${Math.random()}` });
        assertOAuthError(await send(forged, victim), 401, 'invalid_client');
      });
    }
    it('sigil init (the admin bootstrap) refuses a key anyone can sign with, before anything else', async () => {
      const weak = rsaExponentOneKey();
      const t = epoch();
      const proof = weak.sign({ alg: weak.alg, typ: 'sigil-bootstrap+jwt', jwk: weak.jwk }, { aud: `${server.issuer}/admin/bootstrap`, iat: t });
      const res = await fetch(`${server.url}/admin/bootstrap`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ proof }) });
      const body = await res.json() as { error?: string; error_description?: string };
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.match(body.error_description ?? '', /admin key is not acceptable/);
    });
  });

  it('no server log line contains an assertion, proof or token of this file', async () => {
    assert.ok(ledger.size > 20, 'the ledger should have recorded the credentials sent');
    assert.ok(server.logs.length > 0);
    const leaks = ledger.leaks(server.logs);
    assert.deepEqual(leaks, []);
  });
});
