// The admin gate on sigil/verifier, with the server's replay guard and client store stubbed: what
// each refusal of the gate's own looks like, and that a storage outage met by the proof's replay
// claim is the server's usual 503 (Retry-After: 1), not a verifier challenge.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Koa from 'koa';
import { dpopProof, generateClientKey, keyPairFromPrivateJwk, thumbprint, type SigningKeyPair } from '../../src/client/oauth-client.js';
import type { ClientStore } from '../../src/clients/client-store.js';
import { adminGate } from '../../src/server/admin-api.js';
import { createResourceServer } from '../../src/server/resource-server.js';
import { StorageUnavailable } from '../../src/storage/errors.js';
import type { ClaimVerdict, ReplayGuard } from '../../src/storage/replay-guard.js';
import { epoch, signJws } from '../support/forge.js';

const ISSUER = 'https://sigil.example.com';
const ALGS = 'algs="ES256 EdDSA PS256 RS256"';

describe('the admin gate on sigil/verifier', () => {
  let guardAnswer: () => Promise<ClaimVerdict>;
  let isAdmin = true;
  let signing: { privateKey: CryptoKey; jwk: JWK };
  let admin: SigningKeyPair;
  let jkt: string;
  let server: ReturnType<Koa['listen']>;
  let base: string;

  before(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    signing = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } };
    admin = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    jkt = await thumbprint(admin);
    const jwks = [signing.jwk];
    const replay = { claim: () => guardAnswer() } as unknown as ReplayGuard;
    const clients = { find: async (id: string) => ({ clientId: id, status: 'active', isAdmin }) } as unknown as ClientStore;
    const resourceServer = createResourceServer({
      issuer: ISSUER, audience: `${ISSUER}/admin`, scopes: ['sigil:admin'], tokenAlgorithms: ['ES256'],
      proofAlgorithms: ['ES256', 'EdDSA', 'PS256', 'RS256'], publicJwks: () => jwks, isRevoked: () => false, replay,
    });
    const gate = adminGate({ issuer: ISSUER, clients, resourceServer });
    const handler = gate.admin(async (ctx, actor) => {
      ctx.body = { actor };
    });
    const app = new Koa();
    app.use((ctx, next) => handler(ctx, {}, next) as Promise<void>);
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const call = async (claims: Record<string, unknown> = {}) => {
    const t = epoch();
    const token = await signJws({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' }, {
      iss: ISSUER, aud: `${ISSUER}/admin`, sub: 'sigil-admin', client_id: 'sigil-admin', scope: 'sigil:admin', iat: t, exp: t + 300, jti: randomUUID(), cnf: { jkt }, ...claims,
    }, signing.privateKey);
    const res = await fetch(`${base}/admin/clients`, {
      headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(admin, 'GET', `${ISSUER}/admin/clients`, { accessToken: token }) },
    });
    return { status: res.status, www: res.headers.get('www-authenticate'), retryAfter: res.headers.get('retry-after'), body: await res.json() as Record<string, string> };
  };

  it('lets the admin through: the operation gets the client id', async () => {
    guardAnswer = async () => 'free';
    isAdmin = true;
    assert.deepEqual((await call()).body, { actor: 'sigil-admin' });
  });

  it('the replay store unreachable: 503 temporarily_unavailable, Retry-After 1, as every storage outage', async () => {
    guardAnswer = async () => {
      throw new StorageUnavailable('redis');
    };
    assert.deepEqual(await call(), {
      status: 503, www: null, retryAfter: '1',
      body: { error: 'temporarily_unavailable', error_description: 'the server cannot reach its storage; retry shortly' },
    });
  });

  it('a proof dated before a loss of replay records: refused as possibly used', async () => {
    guardAnswer = async () => 'predates-loss';
    const res = await call();
    assert.equal(res.status, 401);
    assert.equal(res.body.error, 'invalid_dpop_proof');
  });

  it('a client that is not an active admin: 401 invalid_token in the verifier\'s challenge', async () => {
    guardAnswer = async () => 'free';
    isAdmin = false;
    const res = await call();
    isAdmin = true;
    assert.deepEqual([res.status, res.www, res.body.error], [401, `DPoP error="invalid_token", error_description="the token's client is not an active admin", ${ALGS}`, 'invalid_token']);
  });

  it('no admin scope: 403 insufficient_scope naming the scope (RFC 6750 §3)', async () => {
    guardAnswer = async () => 'free';
    const res = await call({ scope: 'orders:read' });
    assert.equal(res.status, 403);
    assert.equal(res.www, `DPoP error="insufficient_scope", error_description="the access token lacks the scope sigil:admin", scope="sigil:admin", ${ALGS}`);
    assert.equal(res.body.error, 'insufficient_scope');
  });
});
