// DPoP proofs at the token endpoint (RFC 9449): a missing, unsigned, mistyped, misaddressed, stale,
// future-dated, private-key-carrying or replayed proof gets 400 invalid_dpop_proof and no token.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { generateClientKey, keyPairFromPrivateJwk, type KeyAlg, type SigningKeyPair } from '../../src/client/oauth-client.js';
import {
  assertIssued, assertOAuthError, decodePayload, dpopJwk, epoch, forgeAssertion, forgeProof, postToken, rfc7638Thumbprint, SecretLedger,
  unsignedJwt, untilReady, type ForgeOptions, type RawResponse,
} from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, type Admin, type TestClient } from '../support/sigil.js';

describe('DPoP proof attacks at the token endpoint', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;
  let client: TestClient;
  let optional: TestClient;
  let env: Record<string, string>;
  const servers: ServerProcess[] = [];
  const ledger = new SecretLedger();

  before(async () => {
    storage = await createTestStorage('dpop');
    env = storageEnv(storage);
    server = await startServer({ env });
    servers.push(server);
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, server.issuer);
    client = await createClient(admin, { name: 'dpop required' });
    optional = await createClient(admin, { name: 'dpop optional', dpop: 'optional' });
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await storage?.cleanup();
  });

  interface Send {
    /** the process the request reaches (default: the main server) */
    target?: ServerProcess;
    who?: TestClient;
    /** the assertion's aud (default: the target's issuer) */
    aud?: string;
  }

  /** a token request whose only possible defect is the proof: the assertion is fresh and valid */
  async function send(proof: string | undefined, opts: Send = {}): Promise<RawResponse> {
    const target = opts.target ?? server;
    const who = opts.who ?? client;
    const assertion = await forgeAssertion(who.key, who.clientId, opts.aud ?? target.issuer);
    ledger.add(assertion, proof);
    return ledger.addResponse(await postToken(`${target.url}/token`, { assertion, proof }));
  }
  /** a proof for the main server's token endpoint, addressed to the ISSUER-based URL */
  const proof = (opts: ForgeOptions = {}, key: SigningKeyPair = client.dpopKey, htm = 'POST', htu?: string) => forgeProof(key, htm, htu ?? `${server.issuer}/token`, opts);

  it('control: a hand-made proof gets a DPoP token bound to the proof key\'s RFC 7638 thumbprint', async () => {
    const res = await send(await proof());
    const token = assertIssued(res, 'DPoP');
    const jwks = await (await fetch(`${server.url}/jwks`)).json();
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: server.issuer, typ: 'at+jwt' });
    assert.deepEqual(payload.cnf, { jkt: rfc7638Thumbprint(dpopJwk(client.dpopKey)) });
  });

  for (const alg of ['EdDSA', 'PS256', 'RS256'] as KeyAlg[]) {
    it(`cnf.jkt is the RFC 7638 thumbprint of a ${alg} proof key`, async () => {
      const key = await keyPairFromPrivateJwk((await generateClientKey(alg)).privateJwk);
      const token = assertIssued(await send(await proof({}, key)));
      assert.deepEqual(decodePayload(token).cnf, { jkt: rfc7638Thumbprint(dpopJwk(key)) });
    });
  }

  describe('presence', () => {
    it('refuses a request without a proof from a client that requires DPoP', async () => {
      assertOAuthError(await send(undefined), 400, 'invalid_dpop_proof');
    });
    it('refuses an empty DPoP header', async () => {
      const assertion = await forgeAssertion(client.key, client.clientId, server.issuer);
      ledger.add(assertion);
      assertOAuthError(ledger.addResponse(await postToken(`${server.url}/token`, { assertion, headers: { dpop: '' } })), 400, 'invalid_dpop_proof');
    });
    it('refuses a proof that is not a JWT', async () => {
      assertOAuthError(await send('not-a-jwt'), 400, 'invalid_dpop_proof');
    });
    it('gives a client created with dpop optional a Bearer token (no cnf) without a proof', async () => {
      const token = assertIssued(await send(undefined, { who: optional }), 'Bearer');
      const claims = decodePayload(token);
      assert.equal(claims.client_id, optional.clientId);
      assert.equal(claims.cnf, undefined);
    });
    it('gives a client created with dpop optional a DPoP token when it sends a proof', async () => {
      const token = assertIssued(await send(await proof({}, optional.dpopKey), { who: optional }), 'DPoP');
      assert.deepEqual(decodePayload(token).cnf, { jkt: rfc7638Thumbprint(dpopJwk(optional.dpopKey)) });
    });
    it('refuses a bad proof from a dpop optional client too (a bad proof is not "no proof")', async () => {
      assertOAuthError(await send(await proof({ claims: { htm: 'GET' } }, optional.dpopKey), { who: optional }), 400, 'invalid_dpop_proof');
    });
  });

  describe('signature and header', () => {
    it('refuses alg: none', async () => {
      const jwt = unsignedJwt({ alg: 'none', typ: 'dpop+jwt', jwk: dpopJwk(client.dpopKey) }, { htm: 'POST', htu: `${server.issuer}/token`, iat: epoch(), jti: `none-${Math.random()}` });
      assertOAuthError(await send(jwt), 400, 'invalid_dpop_proof');
    });
    it('refuses HS256 keyed with the embedded public JWK', async () => {
      const secret = new TextEncoder().encode(JSON.stringify(dpopJwk(client.dpopKey)));
      assertOAuthError(await send(await proof({ header: { alg: 'HS256' }, signWith: secret })), 400, 'invalid_dpop_proof');
    });
    it('refuses HS256 with a symmetric (oct) key in the jwk header', async () => {
      const secret = new TextEncoder().encode('a shared secret that is long enough!!');
      const jwk = { kty: 'oct', k: Buffer.from(secret).toString('base64url') };
      assertOAuthError(await send(await proof({ header: { alg: 'HS256', jwk }, signWith: secret })), 400, 'invalid_dpop_proof');
    });
    for (const typ of ['JWT', 'at+jwt', 'dpop', undefined]) {
      it(`refuses typ ${typ === undefined ? '(missing)' : typ}`, async () => {
        assertOAuthError(await send(await proof({ header: { typ } })), 400, 'invalid_dpop_proof');
      });
    }
    it('refuses a proof carrying a private key (with d) in its jwk header', async () => {
      const { privateJwk } = await generateClientKey('ES256');
      const key = await keyPairFromPrivateJwk(privateJwk);
      const { kid: _k, alg: _a, use: _u, ...withD } = privateJwk;
      assert.ok(withD.d);
      assertOAuthError(await send(await proof({ header: { jwk: withD } }, key)), 400, 'invalid_dpop_proof');
    });
    it('refuses a proof without a jwk header', async () => {
      assertOAuthError(await send(await proof({ header: { jwk: undefined } })), 400, 'invalid_dpop_proof');
    });
    it('refuses a proof signed by another key than the one in its jwk header', async () => {
      const stranger = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      assertOAuthError(await send(await proof({ signWith: stranger.privateKey })), 400, 'invalid_dpop_proof');
    });
  });

  describe('htm and htu', () => {
    it('refuses htm GET on a POST', async () => {
      assertOAuthError(await send(await proof({}, client.dpopKey, 'GET')), 400, 'invalid_dpop_proof');
    });
    it('refuses a proof without htm', async () => {
      assertOAuthError(await send(await proof({ claims: { htm: undefined } })), 400, 'invalid_dpop_proof');
    });
    for (const htu of ['https://evil.example.com/token', 'http://evil.example.com/token', 'ISSUER/introspect', 'ISSUER/token/x', 'ISSUER/', 'ISSUER']) {
      it(`refuses htu = ${htu}`, async () => {
        assertOAuthError(await send(await proof({}, client.dpopKey, 'POST', htu.replace('ISSUER', server.issuer))), 400, 'invalid_dpop_proof');
      });
    }
    it('refuses htu with another scheme (https instead of the issuer\'s http)', async () => {
      const htu = `${server.issuer.replace(/^http:/, 'https:')}/token`;
      assertOAuthError(await send(await proof({}, client.dpopKey, 'POST', htu)), 400, 'invalid_dpop_proof');
    });
    it('refuses a proof without htu', async () => {
      assertOAuthError(await send(await proof({ claims: { htu: undefined } })), 400, 'invalid_dpop_proof');
    });
    it('compares htu without its query and fragment', async () => {
      assertIssued(await send(await proof({}, client.dpopKey, 'POST', `${server.issuer}/token?x=1&y=2#frag`)));
    });
  });

  describe('iat', () => {
    it('refuses a proof issued 65 s ago', async () => {
      assertOAuthError(await send(await proof({ claims: { iat: epoch() - 65 } })), 400, 'invalid_dpop_proof');
    });
    it('refuses a proof issued 10 s in the future', async () => {
      assertOAuthError(await send(await proof({ claims: { iat: epoch() + 10 } })), 400, 'invalid_dpop_proof');
    });
    it('accepts a proof issued 30 s ago', async () => {
      assertIssued(await send(await proof({ claims: { iat: epoch() - 30 } })));
    });
    it('refuses a proof without iat', async () => {
      assertOAuthError(await send(await proof({ claims: { iat: undefined } })), 400, 'invalid_dpop_proof');
    });
    it('refuses a proof without jti', async () => {
      assertOAuthError(await send(await proof({ claims: { jti: undefined } })), 400, 'invalid_dpop_proof');
    });
  });

  describe('replay', () => {
    it('refuses the same proof a second time (fresh assertions each time)', async () => {
      const p = await proof();
      assertIssued(await send(p));
      assertOAuthError(await send(p), 400, 'invalid_dpop_proof');
    });
    it('refuses a new proof that reuses the jti of a used one (same key)', async () => {
      const jti = `reused-${epoch()}-${Math.random()}`;
      assertIssued(await send(await proof({ claims: { jti } })));
      assertOAuthError(await send(await proof({ claims: { jti } })), 400, 'invalid_dpop_proof');
    });
  });

  describe('with DPOP_NONCE=required', () => {
    let nonceServer: ServerProcess;
    before(async () => {
      nonceServer = await startServer({ env: { ...env, DPOP_NONCE: 'required' } });
      servers.push(nonceServer);
      await untilReady(nonceServer.url);
    });
    const nonceProof = (opts: ForgeOptions = {}) => forgeProof(client.dpopKey, 'POST', `${nonceServer.issuer}/token`, opts);

    async function getNonce(): Promise<string> {
      const res = await send(await nonceProof(), { target: nonceServer });
      assertOAuthError(res, [400, 401], 'use_dpop_nonce');
      const nonce = res.headers.get('dpop-nonce');
      assert.ok(nonce, 'a use_dpop_nonce answer carries a DPoP-Nonce header');
      return nonce;
    }

    it('answers a proof without nonce with use_dpop_nonce and a DPoP-Nonce header', async () => {
      await getNonce();
    });
    it('accepts a fresh proof carrying the issued nonce', async () => {
      const nonce = await getNonce();
      const token = assertIssued(await send(await nonceProof({ claims: { nonce } }), { target: nonceServer }));
      assert.deepEqual(decodePayload(token).cnf, { jkt: rfc7638Thumbprint(dpopJwk(client.dpopKey)) });
    });
    it('refuses a proof with a valid nonce whose iat is 120 s old', async () => {
      const nonce = await getNonce();
      assertOAuthError(await send(await nonceProof({ claims: { nonce, iat: epoch() - 120 } }), { target: nonceServer }), [400, 401], ['invalid_dpop_proof', 'use_dpop_nonce']);
    });
    it('refuses a proof with a valid nonce whose iat is an hour old', async () => {
      const nonce = await getNonce();
      assertOAuthError(await send(await nonceProof({ claims: { nonce, iat: epoch() - 3600 } }), { target: nonceServer }), [400, 401], ['invalid_dpop_proof', 'use_dpop_nonce']);
    });
    it('refuses a proof with a made-up nonce', async () => {
      const res = await send(await nonceProof({ claims: { nonce: 'bm90LWEtcmVhbC1ub25jZS1hdC1hbGwtMDAwMDAwMDA' } }), { target: nonceServer });
      assertOAuthError(res, [400, 401], 'use_dpop_nonce');
    });
  });

  describe('two instances sharing one ISSUER', () => {
    let second: ServerProcess;
    before(async () => {
      second = await startServer({ issuer: server.issuer, env });
      servers.push(second);
      await untilReady(second.url);
      assert.notEqual(second.url, second.issuer);
    });

    it('accepts at the second instance\'s own address a proof whose htu is ISSUER/token', async () => {
      const token = assertIssued(await send(await proof(), { target: second }));
      assert.equal(decodePayload(token).iss, server.issuer);
    });
    it('refuses a proof whose htu is the second instance\'s own address', async () => {
      assertOAuthError(await send(await proof({}, client.dpopKey, 'POST', `${second.url}/token`), { target: second }), 400, 'invalid_dpop_proof');
    });
    it('refuses an assertion whose aud is the second instance\'s own token URL', async () => {
      assertOAuthError(await send(await proof(), { target: second, aud: `${second.url}/token` }), 401, 'invalid_client');
    });
    it('refuses an assertion whose aud is the second instance\'s own origin', async () => {
      assertOAuthError(await send(await proof(), { target: second, aud: second.url }), 401, 'invalid_client');
    });
    it('refuses at one instance a proof already used at the other', async () => {
      const p = await proof();
      assertIssued(await send(p, { target: server }));
      assertOAuthError(await send(p, { target: second }), 400, 'invalid_dpop_proof');
    });
  });

  it('no server log line contains an assertion, proof or token of this file', async () => {
    assert.ok(ledger.size > 20, 'the ledger should have recorded the credentials sent');
    for (const s of servers) {
      assert.ok(s.logs.length > 0);
      assert.deepEqual(ledger.leaks(s.logs), [], `leaks in the logs of ${s.url}`);
    }
  });
});
