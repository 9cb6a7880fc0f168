import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { requestToken, thumbprint } from '../../src/client/oauth-client.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, createClient, tokenRequest, type Admin } from '../support/sigil.js';
import { decodePayload } from '../support/forge.js';
import { eventually, settlesWithin } from '../support/wait.js';

describe('client_credentials: happy paths', () => {
  let storage: TestStorage;
  let server: ServerProcess;
  let admin: Admin;

  before(async () => {
    storage = await createTestStorage('happy');
    server = await startServer({ env: storageEnv(storage) });
    admin = await bootstrapAdmin(server.url, server.issuer);
  });
  after(async () => {
    await server?.stop();
    await storage?.cleanup();
  });

  for (const alg of ['ES256', 'EdDSA'] as const) {
    it(`issues a DPoP-bound RFC 9068 token to a ${alg} client, with every claim`, async () => {
      const client = await createClient(admin, { alg, scope: 'orders:read orders:write', audiences: ['https://api.example.com/orders', 'https://api.example.com/billing'] });
      const res = await requestToken(tokenRequest(server.url, server.issuer, client, { scope: 'orders:read' }));
      assert.equal(res.token_type, 'DPoP');
      assert.equal(res.expires_in, 300);
      assert.equal(res.scope, 'orders:read');

      const jwks = await (await fetch(`${server.url}/jwks`)).json();
      const { payload, protectedHeader } = await jwtVerify(res.access_token, createLocalJWKSet(jwks), { typ: 'at+jwt', issuer: server.issuer });
      assert.equal(protectedHeader.alg, 'ES256');
      assert.equal(payload.sub, client.clientId);
      assert.equal(payload.client_id, client.clientId);
      assert.equal(payload.aud, 'https://api.example.com/orders', 'default audience is the first registered one');
      assert.equal(payload.scope, 'orders:read');
      assert.equal(payload.exp! - payload.iat!, 300);
      assert.equal(typeof payload.jti, 'string');
      assert.deepEqual(payload.cnf, { jkt: await thumbprint(client.dpopKey) });
      assert.ok(decodeProtectedHeader(res.access_token).kid);
    });
  }

  for (const alg of ['EdDSA', 'PS256'] as const) {
    it(`with SIGNING_ALG=${alg}, tokens are signed with ${alg} and verify with the published JWKS`, async () => {
      const own = await createTestStorage(`sign${alg.toLowerCase()}`);
      const signer = await startServer({ env: { DATABASE_URL: own.databaseUrl, REDIS_URL: own.redisUrl, REDIS_PREFIX: own.redisPrefix, SIGNING_ALG: alg } });
      try {
        const ownAdmin = await bootstrapAdmin(signer.url, signer.issuer);
        const client = await createClient(ownAdmin);
        const res = await requestToken(tokenRequest(signer.url, signer.issuer, client));
        const jwks = (await (await fetch(`${signer.url}/jwks`)).json()) as { keys: Array<Record<string, unknown>> };
        assert.ok(jwks.keys.every((k) => k.d === undefined && k.p === undefined), 'the JWKS holds public keys only');
        const { payload, protectedHeader } = await jwtVerify(res.access_token, createLocalJWKSet(jwks as never), { typ: 'at+jwt', issuer: signer.issuer, algorithms: [alg] });
        assert.equal(protectedHeader.alg, alg);
        assert.equal(payload.client_id, client.clientId);
      } finally {
        await signer.stop();
        await own.cleanup();
      }
    });
  }

  it('honours an explicit registered resource and grants every allowed scope when none is asked', async () => {
    const client = await createClient(admin, { scope: 'a b', audiences: ['https://one.example', 'https://two.example'] });
    const res = await requestToken(tokenRequest(server.url, server.issuer, client, { resource: 'https://two.example' }));
    const jwks = await (await fetch(`${server.url}/jwks`)).json();
    const { payload } = await jwtVerify(res.access_token, createLocalJWKSet(jwks));
    assert.equal(payload.aud, 'https://two.example');
    assert.equal(payload.scope, 'a b');
  });

  it('records the issued token in token_events without waiting on it', async () => {
    const client = await createClient(admin);
    // token_events held under an exclusive lock: a token endpoint that waited on the write (or on
    // anything reading that table) would hang until the lock goes; Sigil's must answer regardless
    const holder = new pg.Client({ connectionString: storage.databaseUrl });
    await holder.connect();
    let jti: string;
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE token_events IN ACCESS EXCLUSIVE MODE');
      const res = await settlesWithin(requestToken(tokenRequest(server.url, server.issuer, client)), 5000, 'a token request while token_events is locked');
      jti = decodePayload(res.access_token).jti;
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    // and the record follows once the table is free again
    const rows = await eventually('the token_events row', async () => {
      const r = await storage.sql<{ client_id: string }>('SELECT client_id FROM token_events WHERE jti = $1 AND outcome = $2', [jti, 'issued']);
      return r.length ? r : undefined;
    });
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.client_id, client.clientId);
  });
});
