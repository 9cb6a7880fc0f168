// The workload authentication middleware alone (src/workload/workload-auth.ts), behind Sigil's real
// body guard, in front of a stand-in for oidc-provider that reads the body as oidc-provider does
// (ctx.req's iterator, checked against Content-Length): which requests it leaves alone (and that it
// asks nothing of the trust store for them), what body it hands on, and the certificate path with a
// stand-in CertificateAuthenticator (mTLS's, absent in this branch).
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { parse as parseForm } from 'node:querystring';
import Koa, { type Context } from 'koa';
import { createLogger } from '../../src/log.js';
import type { Refusal } from '../../src/oidc/provider.js';
import { bodyGuard } from '../../src/server/middleware.js';
import type { CertificateAuthenticator, PresentedCertificate, WorkloadVerdict } from '../../src/workload/types.js';
import { JWT_BEARER_ASSERTION_TYPE, JWT_SPIFFE_ASSERTION_TYPE } from '../../src/workload/types.js';
import { workloadAuthentication, type WorkloadAuthDeps } from '../../src/workload/workload-auth.js';
import { authority, MemoryClientIndex, MemoryTrust, mint, workloadClient, type Authority } from '../support/workload-doubles.js';

const ISSUER = 'https://sigil.example';
const SVID_ID = 'spiffe://example.org/ns/a';

interface Seen {
  body: Record<string, unknown>;
  workload: WorkloadVerdict | undefined;
}

describe('workload authentication middleware', () => {
  let server: ReturnType<Koa['listen']>;
  let base: string;
  let td: Authority;
  let trust: MemoryTrust;
  let index: MemoryClientIndex;
  let federations = false;
  let certificates: CertificateAuthenticator | undefined;
  let seen: Seen | undefined;
  const refusals: Refusal[] = [];
  const fakeCertificate = { thumbprint: 'x5t', via: 'proxy', chain: [] } as unknown as PresentedCertificate;

  before(async () => {
    td = await authority('k1');
    const deps: WorkloadAuthDeps = {
      issuer: ISSUER,
      get trust() { return trust; },
      get clients() { return index; },
      svidMaxLifetimeSeconds: 900,
      federationsConfigured: () => federations,
      get certificates() { return certificates; },
      findClient: async (id) => index.clients.find((c) => c.clientId === id),
      onRefused: (_ctx, r) => refusals.push(r),
      log: createLogger('silent'),
    } as WorkloadAuthDeps;
    const app = new Koa();
    app.use(bodyGuard());
    app.use((ctx, next) => {
      if (ctx.get('x-cert')) ctx.state.clientCertificate = fakeCertificate;
      return next();
    });
    app.use(workloadAuthentication(deps, (ctx: Context) => (ctx.path === '/token' ? 'token' : ctx.path === '/introspect' ? 'introspection' : undefined)));
    // oidc-provider's way of reading the body (lib/shared/selective_body.js)
    app.use(async (ctx) => {
      const chunks: Buffer[] = [];
      for await (const chunk of (ctx.req as unknown as { iterator(o: object): AsyncIterable<Buffer> }).iterator({ destroyOnReturn: false })) chunks.push(chunk);
      const body = Buffer.concat(chunks);
      assert.equal(body.length, ctx.request.length, 'Content-Length matches the body handed on');
      seen = { body: { ...parseForm(body.toString()) }, workload: ctx.state.workload as WorkloadVerdict | undefined };
      ctx.body = { ok: true };
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => server.close());

  beforeEach(() => {
    trust = new MemoryTrust();
    trust.addDomain('example.org', [td.publicJwk]);
    index = new MemoryClientIndex().add(workloadClient('c-a', { kind: 'spiffe', spiffeId: SVID_ID }));
    federations = false;
    certificates = undefined;
    seen = undefined;
    refusals.length = 0;
  });

  const post = async (path: string, form: Record<string, string>, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
  };
  const svid = (claims: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return mint(td, { sub: SVID_ID, aud: ISSUER, exp: now + 60, ...claims });
  };

  it('hands on the body without the SVID, with client_id = the matched client, and the verdict', async () => {
    const res = await post('/token', { grant_type: 'client_credentials', scope: 'a b', client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: await svid(), client_id: SVID_ID, resource: 'https://api.example/x?y=1&z' });
    assert.equal(res.status, 200);
    assert.deepEqual(seen?.body, { grant_type: 'client_credentials', scope: 'a b', resource: 'https://api.example/x?y=1&z', client_id: 'c-a' });
    assert.deepEqual(seen?.workload, { clientId: 'c-a', method: 'spiffe_jwt', identity: SVID_ID });
  });

  it('leaves a private_key_jwt request untouched and asks the trust store nothing while no federation is configured', async () => {
    const form = { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION_TYPE, client_assertion: await svid({ iss: 'c-x', sub: 'c-x' }) };
    assert.equal((await post('/token', form)).status, 200);
    assert.deepEqual(seen?.body, form);
    assert.equal(seen?.workload, undefined);
    assert.deepEqual(trust.asked, []);
  });

  it('with federations configured, asks once whether the iss is one, and hands a non-federated assertion on untouched', async () => {
    federations = true;
    const form = { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION_TYPE, client_assertion: await svid({ iss: 'c-x', sub: 'c-x' }) };
    assert.equal((await post('/token', form)).status, 200);
    assert.deepEqual(seen?.body, form);
    assert.deepEqual(trust.asked, ['federation:c-x']);
  });

  it('does nothing on other endpoints', async () => {
    const res = await post('/other', { client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: 'x' });
    assert.equal(res.status, 200);
    assert.equal(seen?.body.client_assertion, 'x');
  });

  it('refuses with 401 invalid_client and records the refusal at /token (reason, no client id, never the SVID)', async () => {
    const token = await svid({ aud: `${ISSUER}/token` });
    const res = await post('/token', { grant_type: 'client_credentials', client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: token });
    assert.equal(res.status, 401);
    assert.equal(res.body.error, 'invalid_client');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(seen, undefined, 'the request went no further');
    assert.equal(refusals.length, 1);
    assert.equal(refusals[0]!.error, 'invalid_client');
    assert.equal(refusals[0]!.clientId, undefined);
    assert.equal(refusals[0]!.grantType, 'client_credentials');
    assert.ok(!JSON.stringify(refusals).includes(token.split('.')[2]!));
  });

  it('refuses a jwt-spiffe request without an assertion, and one with duplicated parameters goes on for oidc-provider to refuse', async () => {
    assert.equal((await post('/token', { client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE })).status, 401);
    const body = `client_assertion_type=${encodeURIComponent(JWT_SPIFFE_ASSERTION_TYPE)}&client_assertion=${await svid()}&client_assertion=${await svid()}`;
    const res = await fetch(`${base}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    assert.equal(res.status, 200);
    assert.equal(seen?.workload, undefined);
  });

  it('answers 503 with Retry-After when the trust store is away, at introspection too (not recorded as a token refusal)', async () => {
    trust.failure = new Error('down');
    const res = await post('/introspect', { token: 't', client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: await svid() });
    assert.equal(res.status, 503);
    assert.equal(res.body.error, 'temporarily_unavailable');
    assert.equal(res.headers.get('retry-after'), '1');
    assert.equal(refusals.length, 0);
  });

  describe('the certificate path (mTLS)', () => {
    beforeEach(() => {
      index.add(workloadClient('c-tls', { kind: 'tls', subjectDn: 'CN=a' }), workloadClient('c-tls-revoked', { kind: 'tls', subjectDn: 'CN=a' }, { status: 'revoked' }));
    });

    it('is skipped when no authenticator is wired (the request goes on without a verdict)', async () => {
      assert.equal((await post('/token', { client_id: 'c-tls' }, { 'x-cert': '1' })).status, 200);
      assert.equal(seen?.workload, undefined);
    });

    it('authenticates a certificate-bound client named by client_id with the authenticator\'s verdict', async () => {
      certificates = { authenticate: async (client, presented) => ({ clientId: client.clientId, method: 'tls_client_auth', identity: 'CN=a', certificate: presented }) };
      assert.equal((await post('/token', { client_id: 'c-tls', grant_type: 'client_credentials' }, { 'x-cert': '1' })).status, 200);
      assert.equal(seen?.workload?.clientId, 'c-tls');
      assert.deepEqual(seen?.body, { grant_type: 'client_credentials', client_id: 'c-tls' });
    });

    it('refuses when the authenticator says why not, or answers for another client', async () => {
      certificates = { authenticate: async () => ({ problem: 'the certificate does not chain to TLS_CLIENT_CA_FILE' }) };
      const res = await post('/token', { client_id: 'c-tls' }, { 'x-cert': '1' });
      assert.equal(res.status, 401);
      assert.match(String(res.body.error_description), /does not chain/);
      certificates = { authenticate: async () => ({ clientId: 'c-a', method: 'tls_client_auth', identity: 'CN=a' }) };
      assert.equal((await post('/token', { client_id: 'c-tls' }, { 'x-cert': '1' })).status, 401);
    });

    it('leaves a revoked or key-registered client, and a request without a certificate, to oidc-provider', async () => {
      certificates = { authenticate: async () => assert.fail('not asked') };
      for (const [id, cert] of [['c-tls-revoked', true], ['c-unknown', true], ['c-tls', false]] as const) {
        assert.equal((await post('/token', { client_id: id }, cert ? { 'x-cert': '1' } : {})).status, 200);
        assert.equal(seen?.workload, undefined);
      }
    });
  });
});

