// Workload identity end to end, with a trust domain the suite builds for itself: two real Sigil
// processes on one Postgres and one Redis behind one ISSUER, SPIFFE bundle endpoints over HTTPS with
// the suite's test CA, a stand-in Kubernetes service-account issuer (OIDC discovery + JWKS), and
// everything configured as an operator would: the walk-through through the real `sigil` CLI, the rest
// through the admin API. Workloads authenticate with JWT-SVIDs and service-account tokens and get
// DPoP-bound tokens; the attacks of issue 13 are refused with 401 invalid_client and an RFC 6749 body.
//
// The servers refresh bundles fast (SPIFFE_BUNDLE_REFRESH_MIN=1, refresh hint 1) and keep a bundle
// that cannot be refreshed only briefly (SPIFFE_BUNDLE_MAX_STALENESS), so removing a key from the
// bundle, or taking the endpoint down, shows within seconds: every such wait polls, none sleeps.
// Certificates (mTLS, X.509-SVIDs) are tested elsewhere.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateClientKey, keyPairFromPrivateJwk, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { readAdminKey } from '../../src/cli/admin-key.js';
import { JWT_SPIFFE_ASSERTION_TYPE } from '../../src/workload/types.js';
import { jsonOf, sigil, tempDir, type CliOptions } from '../cli/harness.js';
import {
  ASSERTION_TYPE, assertIssued, assertOAuthError, decodePayload, dpopJwk, epoch, forgeAssertion, forgeProof, postToken, rfc7638Thumbprint, SecretLedger, type RawResponse,
} from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startPair, type Pair, type ServerProcess } from '../support/server.js';
import { adminWithKey, createClient, rawTokenCall, type Admin } from '../support/sigil.js';
import { eventually, observedWithin } from '../support/wait.js';
import {
  createTestCa, forgedJwtSvid, generateSigningKey, mintJwtSvid, startBundleServer, startServiceAccountIssuer, workloadServerEnv,
  type BundleServer, type JwtSvidOptions, type ServiceAccountIssuer, type ServiceAccountTokenOptions, type TestCa, type TestSigningKey,
} from '../support/workload.js';

const PAYMENTS = 'spiffe://example.org/ns/payments/sa/api';
const PAY_PREFIX = 'spiffe://example.org/ns/pay/*';
const SA = 'system:serviceaccount:payments:api';
const API = 'https://api.example/payments';
const CI_SUBJECT = 'repo:org/app:ref:refs/heads/main';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** the issue: "refused within a second on every instance" */
const PROPAGATION_MS = 1000;
/** SPIFFE_BUNDLE_MAX_STALENESS of the servers: small, yet wide enough to see a stale bundle served */
const MAX_STALENESS_S = 4;

describe('workload identity end to end: two instances, a test trust domain, a stand-in Kubernetes issuer', () => {
  let ca: TestCa;
  let storage: TestStorage;
  let pair: Pair;
  let bundle: BundleServer;
  let otherBundle: BundleServer;
  let k8s: ServiceAccountIssuer;
  let svidKey: TestSigningKey;
  /** in example.org's bundle until a test removes it */
  let retiringKey: TestSigningKey;
  /** other.org's key */
  let otherKey: TestSigningKey;
  let admin: Admin;
  let work: { dir: string; remove(): Promise<void> };
  let cli: CliOptions;
  let dpopKey: SigningKeyPair;
  const ids: Record<string, string> = {};
  /** every SVID, assertion, proof and token sent or received: none may reach a log line */
  const ledger = new SecretLedger();

  const servers = (): ServerProcess[] => [pair.a, pair.b];

  // ------------------------------------------------------------ credentials and calls

  async function svid(opts: Partial<JwtSvidOptions> = {}): Promise<string> {
    const jwt = await mintJwtSvid({ spiffeId: PAYMENTS, aud: pair.issuer, key: svidKey, ...opts });
    ledger.add(jwt);
    return jwt;
  }

  async function saToken(opts: Partial<ServiceAccountTokenOptions> = {}, issuer = k8s): Promise<string> {
    const jwt = await issuer.mintServiceAccountToken({ sub: SA, aud: [pair.issuer], ...opts });
    ledger.add(jwt);
    return jwt;
  }

  async function proof(key = dpopKey): Promise<string> {
    const jwt = await forgeProof(key, 'POST', `${pair.issuer}/token`);
    ledger.add(jwt);
    return jwt;
  }

  /** POST to `endpoint` of `on` with a client assertion of `type`; at /token with a fresh DPoP proof unless one is given */
  async function call(on: ServerProcess, endpoint: '/token' | '/introspect' | '/revoke', type: string, assertion: string,
    params: Record<string, string | undefined> = {}, dpop?: string): Promise<RawResponse> {
    const res = await postToken(`${on.url}${endpoint}`, {
      params: { grant_type: endpoint === '/token' ? 'client_credentials' : undefined, client_assertion_type: type, client_assertion: assertion, ...params },
      proof: endpoint === '/token' ? (dpop ?? await proof()) : undefined,
    });
    return ledger.addResponse(res);
  }
  const withSvid = (on: ServerProcess, assertion: string, params: Record<string, string | undefined> = {}, dpop?: string) =>
    call(on, '/token', JWT_SPIFFE_ASSERTION_TYPE, assertion, params, dpop);
  const withSa = (on: ServerProcess, assertion: string) => call(on, '/token', ASSERTION_TYPE, assertion);

  /** 401 invalid_client, an RFC 6749 §5.2 body, and (when given) the reason in error_description */
  function refused(res: RawResponse, reason?: RegExp): void {
    assertOAuthError(res, 401, 'invalid_client');
    if (reason) assert.match(res.body.error_description ?? '', reason);
  }

  /** the same assertion refused by both instances, each with a fresh DPoP proof */
  async function refusedByBoth(assertion: string, reason?: RegExp, type = JWT_SPIFFE_ASSERTION_TYPE): Promise<void> {
    for (const on of servers()) refused(await call(on, '/token', type, assertion), reason);
  }

  /** both instances refuse what `send` sends, seen within PROPAGATION_MS of t0 (when the removing call returned) */
  async function refusedEverywhereWithin(what: string, t0: number, send: (on: ServerProcess) => Promise<RawResponse>, reason?: RegExp): Promise<void> {
    await observedWithin(`both instances refuse ${what}`, t0, PROPAGATION_MS, async () => {
      const answers = await Promise.all(servers().map(send));
      if (answers.some((r) => r.status === 200)) return answers.map((r) => r.status).join(',');
      for (const res of answers) refused(res, reason);
      return true;
    });
  }

  // ------------------------------------------------------------ the world

  before(async () => {
    ca = createTestCa();
    [svidKey, retiringKey, otherKey, dpopKey] = await Promise.all([
      generateSigningKey('ES256'), generateSigningKey('ES256'), generateSigningKey('ES256'),
      generateClientKey('ES256').then(({ privateJwk }) => keyPairFromPrivateJwk(privateJwk)),
    ]);
    [bundle, otherBundle, k8s] = await Promise.all([
      startBundleServer(ca, { jwtKeys: [svidKey, retiringKey], refreshHint: 1 }),
      startBundleServer(ca, { jwtKeys: [otherKey], refreshHint: 1 }),
      startServiceAccountIssuer(ca),
    ]);
    storage = await createTestStorage('wlid');
    pair = await startPair({
      ...storageEnv(storage), ...workloadServerEnv(ca),
      SPIFFE_BUNDLE_REFRESH_MIN: '1', SPIFFE_BUNDLE_MAX_STALENESS: String(MAX_STALENESS_S),
    });

    // the README's walk-through, through the real CLI against instance A
    work = await tempDir('wlid');
    cli = { url: pair.a.url, cwd: work.dir, keysDir: path.join(work.dir, 'keys') };
    jsonOf(await sigil(['init', '--json'], cli));
    assert.equal(jsonOf(await sigil(['trust-domains', 'add', 'example.org', '--bundle-endpoint', bundle.endpoint, '--json'], cli)).name, 'example.org');
    assert.equal(jsonOf(await sigil(['trust-domains', 'add', 'other.org', '--bundle-endpoint', otherBundle.endpoint, '--json'], cli)).name, 'other.org');
    assert.equal(jsonOf(await sigil(['federations', 'add', '--issuer', k8s.issuer, '--json'], cli)).issuer, k8s.issuer);
    const payments = jsonOf(await sigil(['clients', 'create', '--name', 'payments', '--spiffe-id', PAYMENTS, '--audience', API, '--serves', API,
      '--grant-types', `client_credentials,${EXCHANGE},refresh_token`, '--json'], cli));
    assert.equal(payments.token_endpoint_auth_method, 'spiffe_jwt');
    ids.payments = payments.client_id;
    const sa = jsonOf(await sigil(['clients', 'create', '--name', 'payments-k8s', '--federated-subject', k8s.issuer, SA, '--audience', API, '--json'], cli));
    assert.equal(sa.token_endpoint_auth_method, 'federated_jwt');
    ids.k8s = sa.client_id;
    // a CI job (GitHub Actions' shape: a repository subject and required claims), through the same stand-in issuer
    const ci = jsonOf(await sigil(['clients', 'create', '--name', 'deploy', '--federated-subject', k8s.issuer, CI_SUBJECT,
      '--require-claim', 'repository=org/app', '--require-claim', 'ref=refs/heads/main', '--audience', API, '--json'], cli));
    ids.deploy = ci.client_id;
    const shown = await sigil(['clients', 'show', ids.payments], cli);
    assert.equal(shown.code, 0, shown.stderr);
    assert.ok(shown.stdout.includes(PAYMENTS), `clients show displays the binding: ${shown.stdout}`);

    // the rest through the admin API, with the key `sigil init` wrote
    const key = await readAdminKey(path.join(cli.keysDir!, 'admin.private.jwk.json'));
    assert.ok(key, 'sigil init wrote the admin key');
    admin = adminWithKey(pair.a.url, pair.issuer, key);
    for (const [name, spiffeId] of [['pay', PAY_PREFIX], ['doomed', 'spiffe://example.org/ns/doomed/sa/api']] as const) {
      const res = await admin.call('POST', '/admin/clients', { name, spiffe_id: spiffeId, audiences: [API] });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      ids[name] = res.body.client_id;
    }
  });

  after(async () => {
    await pair?.a.stop();
    await pair?.b.stop();
    await storage?.cleanup();
    await Promise.all([bundle?.close(), otherBundle?.close(), k8s?.close()]);
    await work?.remove();
    ca?.close();
  });

  // ------------------------------------------------------------ happy paths

  it('a JWT-SVID gets a DPoP-bound token (cnf.jkt) on either instance, and the same SVID again with new proofs', async () => {
    const jwt = await svid();
    const jkt = rfc7638Thumbprint(dpopJwk(dpopKey));
    for (const on of [pair.a, pair.b, pair.a]) {
      const claims = decodePayload(assertIssued(await withSvid(on, jwt)));
      assert.equal(claims.client_id, ids.payments);
      assert.equal(claims.aud, API);
      assert.equal(claims.cnf?.jkt, jkt);
    }
    // DPoP is required of it as of any client: without a proof, no (bearer) token
    const bare = ledger.addResponse(await postToken(`${pair.b.url}/token`, { params: { client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE, client_assertion: jwt } }));
    assertOAuthError(bare, 400, ['invalid_request', 'invalid_dpop_proof']);
  });

  it('the same DPoP proof twice is refused, on the same instance and on the other', async () => {
    const jwt = await svid();
    const once = await proof();
    assertIssued(await withSvid(pair.a, jwt, {}, once));
    for (const on of servers()) {
      const again = await withSvid(on, jwt, {}, once);
      assertOAuthError(again, [400, 401], ['invalid_dpop_proof', 'use_dpop_nonce']);
    }
  });

  it('a Kubernetes projected service-account token (aud = the issuer) gets a token, reused on both instances', async () => {
    const jwt = await saToken();
    for (const on of servers()) {
      const claims = decodePayload(assertIssued(await withSa(on, jwt)));
      assert.equal(claims.client_id, ids.k8s);
      assert.equal(claims.cnf?.jkt, rfc7638Thumbprint(dpopJwk(dpopKey)));
    }
  });

  it('a CI job\'s token gets a token only with the required claims', async () => {
    const main = await saToken({ sub: CI_SUBJECT, claims: { repository: 'org/app', ref: 'refs/heads/main' } });
    assert.equal(decodePayload(assertIssued(await withSa(pair.b, main))).client_id, ids.deploy);
    await refusedByBoth(await saToken({ sub: CI_SUBJECT, claims: { repository: 'org/app', ref: 'refs/heads/evil' } }), /claim "ref" is not the required value/, ASSERTION_TYPE);
    await refusedByBoth(await saToken({ sub: CI_SUBJECT, claims: { repository: 'org/app' } }), /lacks the required claim "ref"/, ASSERTION_TYPE);
    await refusedByBoth(await saToken({ sub: CI_SUBJECT, claims: { repository: 'org/fork', ref: 'refs/heads/main' } }), /claim "repository" is not the required value/, ASSERTION_TYPE);
  });

  it('token exchange by the workload client (act.sub = its client_id) and refresh, with SVIDs', async () => {
    const subject = assertIssued(await withSvid(pair.a, await svid()));
    const res = await withSvid(pair.b, await svid(), {
      grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, audience: API,
    });
    const exchanged = decodePayload(assertIssued(res));
    assert.equal(exchanged.client_id, ids.payments);
    assert.equal(exchanged.act?.sub, ids.payments);
    const refreshToken = res.body.refresh_token as string;
    assert.equal(typeof refreshToken, 'string', 'the exchange hands out a refresh token to a client allowed refresh_token');
    const refreshed = decodePayload(assertIssued(await withSvid(pair.a, await svid(), { grant_type: 'refresh_token', refresh_token: refreshToken })));
    assert.equal(refreshed.client_id, ids.payments);
    assert.equal(refreshed.act?.sub, ids.payments);
  });

  it('introspection and revocation authenticated with an SVID', async () => {
    const token = assertIssued(await withSvid(pair.a, await svid()));
    const active = await call(pair.b, '/introspect', JWT_SPIFFE_ASSERTION_TYPE, await svid(), { token });
    assert.equal(active.status, 200, active.text);
    assert.equal(active.body.active, true);
    assert.equal(active.body.client_id, ids.payments);
    const revoked = await call(pair.a, '/revoke', JWT_SPIFFE_ASSERTION_TYPE, await svid(), { token });
    assert.equal(revoked.status, 200, revoked.text);
    const gone = await call(pair.b, '/introspect', JWT_SPIFFE_ASSERTION_TYPE, await svid(), { token });
    assert.equal(gone.status, 200, gone.text);
    assert.equal(gone.body.active, false);
    // and an attack there too: an SVID for the token endpoint URL does not authenticate an introspection
    refused(await call(pair.b, '/introspect', JWT_SPIFFE_ASSERTION_TYPE, await svid({ aud: `${pair.issuer}/token` }), { token }), /aud must be/);
  });

  it('takes client_id as the draft allows (absent, the SPIFFE ID, or Sigil\'s client id) and refuses one naming another client', async () => {
    const jwt = await svid();
    for (const clientId of [PAYMENTS, ids.payments]) {
      assert.equal(decodePayload(assertIssued(await withSvid(pair.a, jwt, { client_id: clientId }))).client_id, ids.payments);
    }
    refused(await withSvid(pair.b, jwt, { client_id: ids.pay }), /client_id .* is not the client SPIFFE ID .* is bound to/);
  });

  it('leaves private_key_jwt clients as they were, with federations configured', async () => {
    const keyed = await createClient(admin, { name: 'keyed', audiences: [API] });
    for (const on of servers()) assertIssued(await rawTokenCall(on, pair.issuer, keyed, {}, {}, ledger));
  });

  it('announces spiffe_jwt in discovery on both instances', async () => {
    for (const on of servers()) {
      const md = await (await fetch(`${on.url}/.well-known/oauth-authorization-server`)).json() as Record<string, string[]>;
      assert.ok(md.token_endpoint_auth_methods_supported?.includes('spiffe_jwt'), JSON.stringify(md.token_endpoint_auth_methods_supported));
      assert.ok(md.introspection_endpoint_auth_methods_supported?.includes('spiffe_jwt'));
      assert.ok(md.revocation_endpoint_auth_methods_supported?.includes('spiffe_jwt'));
    }
  });

  // ------------------------------------------------------------ attacks (issue 13)

  it('refuses an SVID of another trust domain, and one signed by another trust domain\'s key', async () => {
    // other.org is configured and its SVID is genuine, but no client is bound to its IDs
    await refusedByBoth(await svid({ spiffeId: 'spiffe://other.org/ns/payments/sa/api', key: otherKey }), /no active client is bound to SPIFFE ID/);
    // other.org's key claiming an example.org ID: by its own kid, then by the kid of example.org's key
    await refusedByBoth(await svid({ key: otherKey }), /names no ES256 key of the bundle of trust domain "example.org"/);
    await refusedByBoth(await forgedJwtSvid.otherKey({ spiffeId: PAYMENTS, aud: pair.issuer, key: otherKey, claimKid: svidKey.kid }), /signature does not verify/);
    // a trust domain that is not configured at all
    await refusedByBoth(await svid({ spiffeId: 'spiffe://elsewhere.org/ns/payments/sa/api' }), /elsewhere\.org is not a configured SPIFFE trust domain/);
  });

  it('fails closed for a workload-bound client named by client_id alone, or with a private_key_jwt assertion for it', async () => {
    for (const on of servers()) {
      refused(ledger.addResponse(await postToken(`${on.url}/token`, { params: { client_id: ids.payments }, proof: await proof() })));
      const key = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
      const forged = await forgeAssertion(key, ids.payments!, pair.issuer);
      ledger.add(forged);
      refused(await call(on, '/token', ASSERTION_TYPE, forged));
    }
  });

  it('refuses an SVID signed by a key removed from the bundle, once the bundle is refreshed', async () => {
    const jwt = await svid({ key: retiringKey });
    for (const on of servers()) assertIssued(await withSvid(on, jwt));
    bundle.set({ jwtKeys: [svidKey] });
    for (const on of servers()) {
      await eventually(`${on === pair.a ? 'A' : 'B'} refuses the removed key`, async () => {
        const res = await withSvid(on, jwt);
        if (res.status === 200) return false;
        refused(res, /names no ES256 key of the bundle/);
        return true;
      });
    }
    // the key that stayed still works
    for (const on of servers()) assertIssued(await withSvid(on, await svid()));
  });

  it('refuses an SVID for the wrong audience: the token endpoint URL, the listening address, another server, several values', async () => {
    for (const aud of [`${pair.issuer}/token`, pair.a.url, `${pair.issuer}/`, 'https://other-server.example', [pair.issuer, 'https://other-server.example'], [pair.issuer, pair.issuer]]) {
      await refusedByBoth(await svid({ aud }), /aud must be/);
    }
    // counted and logged with the reason (never the SVID: see the last test), recorded in token_events
    const line = await eventually('A logged the refusal with its reason', () => pair.a.logs.map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return undefined;
      }
    }).find((l) => l?.event === 'token.refused' && /aud must be/.test(String(l.reason))));
    assert.equal(line.error, 'invalid_client');
    const row = await eventually('the refusal recorded', async () =>
      (await storage.sql<{ error: string }>("SELECT error FROM token_events WHERE outcome = 'refused' AND reason LIKE '%aud must be%' LIMIT 1"))[0]);
    assert.equal(row.error, 'invalid_client');
  });

  it('refuses a SPIFFE ID bound to no client, and the prefix edge cases', async () => {
    // control: an ID under /ns/pay/ is the pay client's
    assert.equal(decodePayload(assertIssued(await withSvid(pair.b, await svid({ spiffeId: 'spiffe://example.org/ns/pay/sa/api' })))).client_id, ids.pay);
    for (const spiffeId of [
      'spiffe://example.org/ns/unknown/sa/api',
      'spiffe://example.org/ns/payments', // shares characters with /ns/pay/*, but not a path segment
      'spiffe://example.org/ns/pay', // the prefix itself is not under it
      'spiffe://example.org/ns/payments/sa/api/extra', // an exact binding is not a prefix
      'spiffe://example.org/ns/payments/sa', // nor is its parent
    ]) {
      await refusedByBoth(await svid({ spiffeId }), /no active client is bound to SPIFFE ID/);
    }
  });

  it('refuses an expired SVID, a not-yet-valid one, and one that lives longer than SVID_MAX_LIFETIME', async () => {
    const t = epoch();
    await refusedByBoth(await svid({ iat: t - 400, exp: t - 60 }), /has expired/);
    await refusedByBoth(await svid({ nbf: t + 120, exp: t + 300 }), /not yet valid/);
    await refusedByBoth(await svid({ iat: t + 120, exp: t + 300 }), /iat is in the future/);
    await refusedByBoth(await svid({ exp: t + 3600 }), /SVID_MAX_LIFETIME/);
    await refusedByBoth(await svid({ claims: { exp: undefined } }), /must have an exp/);
  });

  it('refuses alg none and HS256 (keyed with the bundle key\'s public JWK)', async () => {
    const none = forgedJwtSvid.none({ spiffeId: PAYMENTS, aud: pair.issuer, kid: svidKey.kid });
    ledger.add(none);
    await refusedByBoth(none);
    const hs256 = await forgedJwtSvid.hs256({ spiffeId: PAYMENTS, aud: pair.issuer, key: svidKey });
    ledger.add(hs256);
    await refusedByBoth(hs256);
  });

  it('refuses a Kubernetes token for another audience, of an unbound service account, or signed by a key the issuer does not publish', async () => {
    await refusedByBoth(await saToken({ aud: ['https://kubernetes.default.svc'] }), /aud must be/, ASSERTION_TYPE);
    await refusedByBoth(await saToken({ aud: [pair.issuer, 'https://kubernetes.default.svc'] }), /aud must be/, ASSERTION_TYPE);
    await refusedByBoth(await saToken({ sub: 'system:serviceaccount:payments:intruder' }), /no active client is bound/, ASSERTION_TYPE);
    await refusedByBoth(await saToken({ key: otherKey, kid: k8s.keys[0]!.kid, alg: 'ES256' }), undefined, ASSERTION_TYPE);
    const t = epoch();
    await refusedByBoth(await saToken({ iat: t - 700, nbf: t - 700, exp: t - 100 }), /has expired/, ASSERTION_TYPE);
    // longer-lived than the federation's maximum (3600 s by default)
    await refusedByBoth(await saToken({ iat: t, exp: t + 7200 }), /lives 7200 seconds, longer than the 3600 seconds/, ASSERTION_TYPE);
  });

  it('refuses on both instances within a second a federated token whose issuer was removed on A', async () => {
    const ci = await startServiceAccountIssuer(ca);
    try {
      const fed = await admin.call('POST', '/admin/federations', { issuer: ci.issuer });
      assert.equal(fed.status, 201, JSON.stringify(fed.body));
      const client = await admin.call('POST', '/admin/clients', { name: 'ci', federated_subject: { issuer: ci.issuer, subject: SA }, audiences: [API] });
      assert.equal(client.status, 201, JSON.stringify(client.body));
      const jwt = await saToken({}, ci);
      for (const on of servers()) {
        await eventually('the new federation is used', async () => (await withSa(on, jwt)).status === 200);
      }
      const removed = await admin.call('POST', '/admin/federations/remove', { issuer: ci.issuer });
      assert.equal(removed.status, 200, JSON.stringify(removed.body));
      const t0 = Date.now();
      assert.deepEqual(removed.body.affected_clients, [client.body.client_id]);
      await refusedEverywhereWithin('the removed issuer\'s token', t0, (on) => withSa(on, jwt));
    } finally {
      await ci.close();
    }
  });

  it('keeps serving a bundle whose endpoint went down until SPIFFE_BUNDLE_MAX_STALENESS, then refuses naming the reason', async () => {
    const jwt = await svid();
    const from = pair.a.logs.length;
    bundle.set({ status: 503 });
    try {
      // A notices on a request (a refresh is due every second) and says so once; every request is
      // served from the kept bundle meanwhile, and after it
      let refusedWhileStale: RawResponse | undefined;
      await eventually('A found the bundle endpoint down', async () => {
        const res = await withSvid(pair.a, jwt);
        if (res.status !== 200) refusedWhileStale ??= res;
        return pair.a.logs.slice(from).some((l) => l.includes('SPIFFE bundle refresh failed; the last good bundle is used until the staleness bound') && l.includes('example.org'));
      });
      assert.equal(refusedWhileStale?.text, undefined, 'the last good bundle is used while the endpoint is down');
      assertIssued(await withSvid(pair.a, jwt));
      for (const on of servers()) {
        await eventually('the stale bundle is refused past the bound', async () => {
          const res = await withSvid(on, jwt);
          if (res.status === 200) return false;
          refused(res, /SPIFFE bundle of trust domain example\.org has not been refreshed since .* SPIFFE_BUNDLE_MAX_STALENESS \(4 s\)/);
          return true;
        }, { timeout: (MAX_STALENESS_S + 10) * 1000 });
      }
      assert.ok(pair.a.logs.slice(from).some((l) => l.includes('SPIFFE trust domain fails closed')), 'fail closed is logged');
    } finally {
      bundle.set({ status: 200 });
    }
    // back once the endpoint answers again
    for (const on of servers()) await eventually('the bundle is used again', async () => (await withSvid(on, jwt)).status === 200);
  });

  it('refuses a revoked workload client on both instances', async () => {
    const jwt = await svid({ spiffeId: 'spiffe://example.org/ns/doomed/sa/api' });
    for (const on of servers()) assertIssued(await withSvid(on, jwt));
    const run = await sigil(['clients', 'revoke', ids.doomed!, '--reason', 'workload retired', '--json'], cli);
    assert.equal(jsonOf(run).status, 'revoked');
    for (const on of servers()) {
      await eventually('the revoked client is refused', async () => {
        const res = await withSvid(on, jwt);
        if (res.status === 200) return false;
        refused(res, /no active client is bound to SPIFFE ID/);
        return true;
      });
    }
  });

  it('refuses on both instances within a second an SVID of a trust domain that was removed on B', async () => {
    const bound = await admin.call('POST', '/admin/clients', { name: 'other-api', spiffe_id: 'spiffe://other.org/ns/api', audiences: [API] });
    assert.equal(bound.status, 201, JSON.stringify(bound.body));
    const jwt = await svid({ spiffeId: 'spiffe://other.org/ns/api', key: otherKey });
    for (const on of servers()) await eventually('the new client is found', async () => (await withSvid(on, jwt)).status === 200);
    const onB = adminWithKey(pair.b.url, pair.issuer, admin.key);
    const removed = await onB.call('POST', '/admin/trust-domains/remove', { name: 'other.org' });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    const t0 = Date.now();
    assert.deepEqual(removed.body.affected_clients, [bound.body.client_id]);
    await refusedEverywhereWithin('the removed trust domain\'s SVID', t0, (on) => withSvid(on, jwt), /other\.org is not a configured SPIFFE trust domain/);
  });

  it('writes no SVID, assertion, proof or token into either server\'s log', () => {
    assert.ok(ledger.size > 50, `the ledger holds what was sent (${ledger.size})`);
    for (const on of servers()) assert.deepEqual(ledger.leaks(on.logs), []);
  });
});
