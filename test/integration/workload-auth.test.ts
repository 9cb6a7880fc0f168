// Workload identity client authentication through the whole stack, in process: startSigil on real
// Postgres and Redis, the real oidc-provider and grants, and the workload middleware wired through
// startSigil's `workload` option with an in-memory trust configuration (trust-fetch's WorkloadTrust
// stands here) and an index over the real client store (trust-admin's WorkloadClientIndex stands here).
//
// LEAD, after the merge: replace MemoryTrust / storeIndex with the real WorkloadTrust and
// WorkloadClientIndex (and create the clients through the admin API / CLI once trust-admin's names
// are fixed); the assertions below stay as they are. The test bundle endpoint over HTTPS and the
// stand-in Kubernetes issuer belong to trust-fetch's end-to-end test.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { generateClientKey, keyPairFromPrivateJwk, type SigningKeyPair } from '../../src/client/oauth-client.js';
import type { ClientRecord, ClientStore } from '../../src/clients/client-store.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startSigil, type RunningSigil } from '../../src/sigil.js';
import { parseSpiffePattern, spiffeIdMatches } from '../../src/workload/spiffe-id.js';
import { JWT_SPIFFE_ASSERTION_TYPE, type WorkloadBinding, type WorkloadClientIndex } from '../../src/workload/types.js';
import { ASSERTION_TYPE, assertIssued, assertOAuthError, decodePayload, forgeAssertion, forgeProof, postToken, type RawResponse } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { eventually } from '../support/wait.js';
import { authority, MemoryTrust, mint, type Authority } from '../support/workload-doubles.js';

const SVID_ID = 'spiffe://example.org/ns/payments/sa/api';
const K8S = 'https://kubernetes.example';
const SA = 'system:serviceaccount:payments:api';
const API = 'https://api.example';

/** the index trust-admin will provide, here over the real client store: matching is spiffe-id.ts's */
function storeIndex(store: ClientStore): WorkloadClientIndex {
  return {
    async bySpiffeId(id) {
      return (await store.list()).filter((c) => {
        if (c.status !== 'active' || c.workload?.kind !== 'spiffe') return false;
        const p = parseSpiffePattern(c.workload.spiffeId);
        return p.ok && spiffeIdMatches(p.value, id);
      });
    },
    async byFederatedSubject(issuer, subject) {
      return (await store.list()).filter((c) => c.status === 'active' && c.workload?.kind === 'federated' && c.workload.issuer === issuer && c.workload.subject === subject);
    },
  };
}

describe('workload identity client authentication, in process with the real provider', () => {
  let storage: TestStorage;
  let keysDir: string;
  let sigil: RunningSigil;
  let store!: ClientStore;
  let issuer: string;
  let td: Authority;
  let k8sKey: Authority;
  let dpop: SigningKeyPair;
  const trust = new MemoryTrust();
  const logLines: string[] = [];
  /** every assertion sent: none may appear in a log line */
  const sent: string[] = [];

  const newClient = async (clientId: string, credential: { workload: WorkloadBinding } | { jwks: { keys: object[] } }, extra: Partial<ClientRecord> = {}) => {
    const created = await store.create({
      clientId, name: clientId, scope: [], audiences: [API], serves: [], grantTypes: ['client_credentials'], dpopRequired: true,
      canIntrospect: false, isAdmin: false, tokenBinding: 'dpop', ...(credential as object), ...extra,
    } as ClientRecord);
    assert.ok(created, `client ${clientId} was created`);
  };

  const svid = (claims: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return mint(td, { sub: SVID_ID, aud: issuer, exp: now + 300, iat: now, ...claims });
  };

  const call = async (endpoint: string, params: Record<string, string | undefined>, proof = true): Promise<RawResponse> => {
    for (const v of [params.client_assertion]) if (v) sent.push(v);
    return postToken(`${sigil.url}${endpoint}`, {
      params: { grant_type: endpoint === '/token' ? 'client_credentials' : undefined, ...params },
      ...(proof ? { proof: await forgeProof(dpop, 'POST', `${issuer}/token`) } : {}),
    });
  };
  const withSvid = async (assertion: string, extra: Record<string, string | undefined> = {}) =>
    call('/token', { client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: assertion, ...extra });

  before(async () => {
    storage = await createTestStorage('wl');
    keysDir = await mkdtemp(path.join(tmpdir(), 'sigil-wl-'));
    issuer = `http://sigil-wl-${process.pid}.test`;
    td = await authority('td-1');
    k8sKey = await authority('k8s-1', 'RS256', 'sig');
    trust.addDomain('example.org', [td.publicJwk]);
    dpop = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    const config = loadConfig({ ...storageEnv(storage), ISSUER: issuer, PORT: '0', HOST: '127.0.0.1', SIGIL_KEYS_DIR: keysDir, LOG_LEVEL: 'info' });
    const sink = new Writable({ write(chunk, _enc, done) { logLines.push(...String(chunk).split('\n').filter(Boolean)); done(); } });
    sigil = await startSigil(config, createLogger('info', sink), {
      workload: ({ clients }) => {
        store = clients;
        return { trust, clients: storeIndex(clients), federationsConfigured: () => trust.federations.size > 0 };
      },
    });
    await newClient('c-svid', { workload: { kind: 'spiffe', spiffeId: SVID_ID } }, { grantTypes: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', 'refresh_token'], serves: [API] });
    await newClient('c-other-workload', { workload: { kind: 'spiffe', spiffeId: 'spiffe://example.org/ns/other' } });
    await newClient('c-k8s', { workload: { kind: 'federated', issuer: K8S, subject: SA, claims: {} } });
  });

  after(async () => {
    await sigil?.close();
    await storage?.cleanup();
    await rm(keysDir, { recursive: true, force: true });
  });

  it('issues a DPoP-bound token to the client a JWT-SVID matches, and again for the same SVID (no one-time jti)', async () => {
    const token = await svid();
    const first = decodePayload(assertIssued(await withSvid(token)));
    assert.equal(first.client_id, 'c-svid');
    assert.equal(first.sub, 'c-svid');
    assert.equal(typeof first.cnf?.jkt, 'string');
    // the draft's form: client_id = the SPIFFE ID; and Sigil's client id
    assert.equal(decodePayload(assertIssued(await withSvid(token, { client_id: SVID_ID }))).client_id, 'c-svid');
    assert.equal(decodePayload(assertIssued(await withSvid(token, { client_id: 'c-svid' }))).client_id, 'c-svid');
  });

  it('keeps the DPoP proof one-time for an SVID client: the same proof twice is refused', async () => {
    const proof = await forgeProof(dpop, 'POST', `${issuer}/token`);
    const token = await svid();
    sent.push(token);
    const params = { client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: token };
    assertIssued(await postToken(`${sigil.url}/token`, { params, proof }));
    const again = await postToken(`${sigil.url}/token`, { params, proof });
    assert.notEqual(again.status, 200, again.text);
  });

  it('refuses an SVID made for the token endpoint URL: 401 invalid_client, counted and logged with the reason, never the SVID', async () => {
    const res = await withSvid(await svid({ aud: `${issuer}/token` }));
    assertOAuthError(res, 401, 'invalid_client');
    assert.match(res.body.error_description, /aud must be/);
    const line = await eventually('the refusal logged with its reason', () =>
      logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'token.refused' && /aud must be/.test(String(l.reason))));
    assert.equal(line.error, 'invalid_client');
    // recorded in token_events (written behind the answer)
    const row = await eventually('the refusal recorded', async () =>
      (await storage.sql<{ error: string }>(`SELECT error FROM token_events WHERE outcome = 'refused' AND reason LIKE '%aud must be%' LIMIT 1`))[0]);
    assert.equal(row.error, 'invalid_client');
  });

  describe('fails closed for a workload-bound client', () => {
    it('named by client_id alone, without any credential', async () => {
      assertOAuthError(await call('/token', { client_id: 'c-svid' }), 401, 'invalid_client');
    });

    it('with a private_key_jwt assertion for it (signed by any key)', async () => {
      const key = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      assertOAuthError(await call('/token', { client_assertion_type: ASSERTION_TYPE, client_assertion: await forgeAssertion(key, 'c-svid', issuer) }), 401, 'invalid_client');
    });

    it('with a valid SVID of another workload and a forged client_id', async () => {
      assertOAuthError(await withSvid(await svid(), { client_id: 'c-other-workload' }), 401, 'invalid_client');
    });

    it('with an SVID whose SPIFFE ID matches no client', async () => {
      assertOAuthError(await withSvid(await svid({ sub: 'spiffe://example.org/ns/payments' })), 401, 'invalid_client');
    });

    it('when the trust configuration cannot be read: 503 temporarily_unavailable with Retry-After', async () => {
      trust.failure = new Error('down');
      try {
        const res = await withSvid(await svid());
        assertOAuthError(res, 503, 'temporarily_unavailable');
        assert.equal(res.headers.get('retry-after'), '1');
      } finally {
        trust.failure = undefined;
      }
    });
  });

  it('authenticates at introspection and revocation too', async () => {
    const token = assertIssued(await withSvid(await svid()));
    const introspected = await call('/introspect', { client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: await svid(), token }, false);
    assert.equal(introspected.status, 200, introspected.text);
    assert.equal(introspected.body.active, true);
    assert.equal(introspected.body.client_id, 'c-svid');
    const revoked = await call('/revoke', { client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: await svid(), token }, false);
    assert.equal(revoked.status, 200, revoked.text);
    assertOAuthError(await call('/introspect', { client_id: 'c-svid', token }, false), 401, 'invalid_client');
  });

  it('exchanges a token and refreshes with an SVID: act names the workload\'s client', async () => {
    const subject = assertIssued(await withSvid(await svid()));
    const res = await withSvid(await svid(), {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subject,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', audience: API,
    });
    const exchanged = decodePayload(assertIssued(res));
    assert.equal(exchanged.client_id, 'c-svid');
    assert.equal(exchanged.act?.sub, 'c-svid');
    const refreshToken = res.body.refresh_token as string;
    assert.equal(typeof refreshToken, 'string', 'a caller holding refresh_token gets one with the exchange');
    const refreshed = decodePayload(assertIssued(await withSvid(await svid(), { grant_type: 'refresh_token', refresh_token: refreshToken })));
    assert.equal(refreshed.client_id, 'c-svid');
    assert.equal(refreshed.act?.sub, 'c-svid');
  });

  describe('with a federation configured', () => {
    before(() => {
      trust.addFederation(K8S, [k8sKey.publicJwk], { maxLifetimeSeconds: 3600 });
    });

    it('issues a token for a Kubernetes projected service-account token (aud = [issuer], no typ, no jti)', async () => {
      const now = Math.floor(Date.now() / 1000);
      const sa = await mint(k8sKey, { iss: K8S, sub: SA, aud: [issuer], iat: now, nbf: now, exp: now + 3600 }, { typ: undefined });
      const res = await call('/token', { client_assertion_type: ASSERTION_TYPE, client_assertion: sa });
      assert.equal(decodePayload(assertIssued(res)).client_id, 'c-k8s');
      assertIssued(await call('/token', { client_assertion_type: ASSERTION_TYPE, client_assertion: sa }));
    });

    it('refuses a Kubernetes token for another audience', async () => {
      const now = Math.floor(Date.now() / 1000);
      const sa = await mint(k8sKey, { iss: K8S, sub: SA, aud: ['https://kubernetes.default.svc'], iat: now, exp: now + 600 }, { typ: undefined });
      assertOAuthError(await call('/token', { client_assertion_type: ASSERTION_TYPE, client_assertion: sa }), 401, 'invalid_client');
    });

    it('refuses a token from an issuer that was removed', async () => {
      const now = Math.floor(Date.now() / 1000);
      const sa = await mint(k8sKey, { iss: K8S, sub: SA, aud: [issuer], iat: now, exp: now + 600 }, { typ: undefined });
      const saved = trust.federations.get(K8S)!;
      trust.federations.delete(K8S);
      trust.addFederation('https://someone-else.example', []);
      try {
        // no longer a federation: oidc-provider's private_key_jwt path, where no client has that id
        assertOAuthError(await call('/token', { client_assertion_type: ASSERTION_TYPE, client_assertion: sa }), 401, 'invalid_client');
      } finally {
        trust.federations.delete('https://someone-else.example');
        trust.federations.set(K8S, saved);
      }
    });

    it('leaves private_key_jwt clients untouched', async () => {
      const key = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      const clientId = `c-keys-${randomUUID().slice(0, 8)}`;
      await newClient(clientId, { jwks: { keys: [key.publicJwk] } });
      const res = await call('/token', { client_assertion_type: ASSERTION_TYPE, client_assertion: await forgeAssertion(key, clientId, issuer) });
      assert.equal(decodePayload(assertIssued(res)).client_id, clientId);
    });
  });

  it('announces spiffe_jwt in discovery', async () => {
    const md = await (await fetch(`${sigil.url}/.well-known/oauth-authorization-server`)).json() as Record<string, string[]>;
    assert.ok(md.token_endpoint_auth_methods_supported?.includes('spiffe_jwt'));
    assert.ok(md.introspection_endpoint_auth_methods_supported?.includes('spiffe_jwt'));
    assert.ok(!md.token_endpoint_auth_methods_supported?.includes('tls_client_auth'));
  });

  it('writes no assertion into any log line', () => {
    assert.ok(sent.length > 5);
    for (const line of logLines) for (const jwt of sent) assert.ok(!line.includes(jwt.split('.')[2]!), `a log line carries an assertion: ${line.slice(0, 200)}`);
  });
});
