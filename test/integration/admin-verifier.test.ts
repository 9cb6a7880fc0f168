// The admin API checks its caller with sigil/verifier (issue 12: one implementation of the checks):
// its refusals carry the verifier's challenges (RFC 6750 §3, RFC 9449 §7.1), a revoked admin token is
// refused from the revocation list in-process, a used proof is refused by the server's replay guard.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { dpopProof, requestToken } from '../../src/client/oauth-client.js';
import { decodePayload, untilReady } from '../support/forge.js';
import { createTestStorage, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, type Admin } from '../support/sigil.js';

const ALGS = 'algs="ES256 EdDSA PS256 RS256"';

describe('the admin API on sigil/verifier', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;

  before(async () => {
    storage = await createTestStorage('adminverify');
    server = await startServer({ env: { DATABASE_URL: storage.databaseUrl, REDIS_URL: storage.redisUrl, REDIS_PREFIX: storage.redisPrefix } });
    await untilReady(server.url);
    admin = await bootstrapAdmin(server.url, server.issuer);
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
  });

  const adminToken = async () => (await requestToken({
    tokenEndpoint: `${server.url}/token`, htu: `${server.issuer}/token`, issuer: server.issuer, clientId: 'sigil-admin', clientKey: admin.key, dpopKey: admin.key,
    resource: `${server.issuer}/admin`, scope: 'sigil:admin',
  })).access_token;
  const call = async (token: string, opts: { scheme?: string; proof?: string } = {}) => {
    const res = await fetch(`${server.url}/admin/clients`, {
      headers: { authorization: `${opts.scheme ?? 'DPoP'} ${token}`, dpop: opts.proof ?? await dpopProof(admin.key, 'GET', `${server.issuer}/admin/clients`, { accessToken: token }) },
    });
    return { status: res.status, wwwAuthenticate: res.headers.get('www-authenticate'), body: await res.json() as { error?: string; error_description?: string } };
  };

  it('no token: 401, a challenge without an error (RFC 6750 §3.1), the JSON body still says invalid_token', async () => {
    const res = await fetch(`${server.url}/admin/clients`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), `DPoP ${ALGS}`);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_token');
  });

  it('accepts the auth scheme in any case (RFC 9110 §11.1); refuses a used proof with the verifier\'s challenge', async () => {
    const token = await adminToken();
    const proof = await dpopProof(admin.key, 'GET', `${server.issuer}/admin/clients`, { accessToken: token });
    assert.equal((await call(token, { scheme: 'dpop', proof })).status, 200);
    const replayed = await call(token, { proof });
    assert.deepEqual(replayed, {
      status: 401,
      wwwAuthenticate: `DPoP error="invalid_dpop_proof", error_description="the DPoP proof has been used before", ${ALGS}`,
      body: { error: 'invalid_dpop_proof', error_description: 'the DPoP proof has been used before' },
    });
  });

  it('a Bearer presentation of the DPoP-bound admin token is refused', async () => {
    const res = await call(await adminToken(), { scheme: 'Bearer' });
    assert.equal(res.status, 401);
    assert.equal(res.body.error, 'invalid_token');
    assert.match(res.wwwAuthenticate ?? '', /^DPoP error="invalid_token", error_description="[^"]+", algs="ES256 EdDSA PS256 RS256"$/);
  });

  it('an admin token revoked through the admin API is refused at once, from the revocation list in this process', async () => {
    const doomed = await adminToken();
    assert.equal((await call(doomed)).status, 200);
    assert.equal((await admin.call('POST', '/admin/tokens/revoke', { jti: decodePayload(doomed).jti, reason: 'admin verifier test' })).status, 200);
    assert.deepEqual(await call(doomed), {
      status: 401,
      wwwAuthenticate: `DPoP error="invalid_token", error_description="the access token has been revoked", ${ALGS}`,
      body: { error: 'invalid_token', error_description: 'the access token has been revoked' },
    });
    // another admin token still works
    assert.equal((await call(await adminToken())).status, 200);
  });
});
