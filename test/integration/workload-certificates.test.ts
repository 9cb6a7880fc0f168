// Certificate clients end to end (RFC 8705 and SPIFFE X.509-SVIDs), with real processes: one Sigil that
// terminates TLS itself (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE = the test CA) and a second
// one on the same storage and ISSUER behind the proxy-header configuration (TLS_CLIENT_CERT_HEADER,
// TLS_TRUSTED_PROXIES=127.0.0.1/32), as two instances of one deployment. The trust domain's bundle is
// served over HTTPS with an x509-svid authority. Clients and the trust domain are created through the
// admin API as an operator would (the plain-HTTP instance carries those calls); certificates reach
// /token, /introspect through the TLS handshake, or through the proxy header.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { dpopProof, generateClientKey, keyPairFromPrivateJwk, type SigningKeyPair } from '../../src/client/oauth-client.js';
import { parseGatewayConfig } from '../../src/gateway/config.js';
import { startVerifyService, type VerifyService } from '../../src/gateway/service.js';
import { createVerifier, VerifierError, type Verifier } from '../../src/verifier/index.js';
import { assertIssued, assertOAuthError, decodePayload, SecretLedger, untilReady, type RawResponse } from '../support/forge.js';
import { createTestStorage, storageEnv, type TestStorage } from '../support/infra.js';
import { startServer, type ServerProcess } from '../support/server.js';
import { bootstrapAdmin, type Admin } from '../support/sigil.js';
import { eventually } from '../support/wait.js';
import {
  createTestCa, issueX509Svid, spiffeX509Authority, startBundleServer, workloadServerEnv,
  type BundleServer, type IssuedCertificate, type TestCa,
} from '../support/workload.js';
import { thumbprintOf } from '../support/x509.js';

const ISSUER = `https://sigil-certs-${process.pid}.test`;
const API_A = 'https://api.example.com/a';
const API_B = 'https://api.example.com/b';
const TD = 'certs.example.org';
const SVID_ID = `spiffe://${TD}/ns/payments/sa/worker`;
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

function headersOf(res: IncomingMessage): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
  return h;
}

function collect(res: IncomingMessage): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => (text += d));
    res.on('error', reject);
    res.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      resolve({ status: res.statusCode!, headers: headersOf(res), text, body });
    });
  });
}

function form(fields: Record<string, string | undefined>): string {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) body.append(k, v);
  return body.toString();
}

describe('certificate clients end to end: tls_client_auth, self_signed_tls_client_auth, X.509-SVIDs, certificate-bound tokens', () => {
  let ca: TestCa;
  let storage: TestStorage;
  let bundle: BundleServer;
  /** terminates TLS itself */
  let tls: ServerProcess;
  /** behind a (pretended) TLS-terminating proxy: reads X-Client-Cert from 127.0.0.1 */
  let proxied: ServerProcess;
  let admin: Admin;
  let dpopKey: SigningKeyPair;
  const ledger = new SecretLedger();
  const ids: Record<string, string> = {};

  // certificates: the good ones, and what an attacker has
  let dnCert: IssuedCertificate;
  let dnWrong: IssuedCertificate;
  let dnReversed: IssuedCertificate;
  let sanCert: IssuedCertificate;
  let sanCert2: IssuedCertificate;
  let sanWrong: IssuedCertificate;
  let rogueCa: IssuedCertificate;
  let rogueLeaf: IssuedCertificate;
  let caAsClient: IssuedCertificate;
  let intermediate: IssuedCertificate;
  let viaIntermediate: IssuedCertificate;
  let svidIntermediate: IssuedCertificate;
  let svidViaIntermediate: IssuedCertificate;
  let selfSigned: IssuedCertificate;
  let selfOther: IssuedCertificate;
  let svid: IssuedCertificate;
  let svidTwoUris: IssuedCertificate;
  let svidOtherDomain: IssuedCertificate;
  let svidForeignAuthority: IssuedCertificate;
  let svidNoDigitalSignature: IssuedCertificate;

  /** one POST to the TLS instance, with `cert` as the TLS client certificate (none when undefined) */
  const overTls = (path: string, fields: Record<string, string | undefined>, cert?: IssuedCertificate, headers: Record<string, string> = {}, sentChain: IssuedCertificate[] = []) =>
    new Promise<RawResponse>((resolve, reject) => {
      const body = form(fields);
      const req = httpsRequest({
        host: '127.0.0.1', port: tls.port, path, method: 'POST', ca: ca.certPem, servername: 'localhost', agent: false,
        ...(cert ? { cert: cert.certPem + sentChain.map((c) => c.certPem).join(''), key: cert.keyPem } : {}),
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(body)), ...headers },
      }, (res) => void collect(res).then((r) => resolve(ledger.addResponse(r)), reject));
      req.on('error', reject);
      req.end(body);
    });

  /** one POST to the proxied instance from `localAddress`, the certificate in X-Client-Cert as nginx escapes it */
  const viaProxy = (path: string, fields: Record<string, string | undefined>, cert: IssuedCertificate | undefined, localAddress = '127.0.0.1', headers: Record<string, string> = {}) =>
    new Promise<RawResponse>((resolve, reject) => {
      const body = form(fields);
      const req = httpRequest({
        host: '127.0.0.1', port: proxied.port, path, method: 'POST', agent: false, localAddress,
        headers: {
          'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(body)),
          ...(cert ? { 'x-client-cert': encodeURIComponent(cert.certPem) } : {}), ...headers,
        },
      }, (res) => void collect(res).then((r) => resolve(ledger.addResponse(r)), reject));
      req.on('error', reject);
      req.end(body);
    });

  const proof = async () => {
    const jwt = await dpopProof(dpopKey, 'POST', `${ISSUER}/token`);
    ledger.add(jwt);
    return { dpop: jwt };
  };
  /** client_credentials with no client_assertion: the certificate authenticates the client `client_id` names */
  const cc = (client: string, extra: Record<string, string | undefined> = {}) => ({ grant_type: 'client_credentials', client_id: ids[client], ...extra });

  const createWorkloadClient = async (name: string, body: Record<string, unknown>) => {
    const res = await admin.call('POST', '/admin/clients', { name, audiences: [API_A], ...body });
    assert.equal(res.status, 201, `client ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    ids[name] = res.body.client_id as string;
    return res.body;
  };

  before(async () => {
    ca = createTestCa('Sigil certificates test CA');
    const server = ca.serverCertificate();
    // the client certificates: issued by the CA in TLS_CLIENT_CA_FILE, unless they are the attacker's
    const client = (subject: string, sans?: string[]) => ca.issue({ subject, ...(sans ? { sans } : {}), extendedKeyUsage: 'clientAuth' });
    dnCert = client('/O=Example/OU=Payments/CN=payments-worker');
    dnWrong = client('/O=Example/OU=Payments/CN=someone-else');
    // the same attributes in the other order: another DN (RFC 4514 compares RDN sequences)
    dnReversed = client('/CN=payments-worker/OU=Payments/O=Example');
    sanCert = client('/CN=worker', ['DNS:worker.example.org']);
    sanCert2 = client('/CN=worker', ['DNS:worker.example.org']);
    sanWrong = client('/CN=worker', ['DNS:other.example.org']);
    rogueCa = ca.issue({ subject: '/CN=Rogue CA', ca: true, issuer: undefined });
    rogueLeaf = ca.issue({ subject: '/O=Example/OU=Payments/CN=payments-worker', extendedKeyUsage: 'clientAuth', issuer: rogueCa });
    // a CA certificate with the registered DN, chaining to the trusted CA
    caAsClient = ca.issue({ subject: '/O=Example/OU=Payments/CN=payments-worker', ca: true });
    // the registered DN under an intermediate CA: only TLS_CLIENT_CA_FILE's root is an anchor, the client sends the intermediate
    intermediate = ca.issue({ subject: '/CN=Clients Intermediate CA', ca: true });
    viaIntermediate = ca.issue({ subject: '/O=Example/OU=Payments/CN=payments-worker', extendedKeyUsage: 'clientAuth', issuer: intermediate });
    selfSigned = ca.issue({ subject: '/CN=self-signed-worker', issuer: undefined });
    selfOther = ca.issue({ subject: '/CN=self-signed-worker', issuer: undefined });

    const authority = spiffeX509Authority(ca, TD);
    const otherAuthority = spiffeX509Authority(ca, 'other.example.org');
    svid = issueX509Svid(ca, authority, SVID_ID);
    svidTwoUris = issueX509Svid(ca, authority, [SVID_ID, `spiffe://${TD}/ns/payments/sa/other`]);
    svidOtherDomain = issueX509Svid(ca, otherAuthority, 'spiffe://other.example.org/ns/payments/sa/worker');
    // the right SPIFFE ID, signed by an authority that is not in the bundle
    svidForeignAuthority = issueX509Svid(ca, otherAuthority, SVID_ID);
    svidNoDigitalSignature = issueX509Svid(ca, authority, SVID_ID, { keyUsage: 'keyEncipherment' });
    // SPIRE's usual shape: the bundle holds the root, the agent's SVID comes with its intermediate
    svidIntermediate = ca.issue({ subject: '/O=SPIFFE/CN=intermediate', ca: true, sans: [`URI:spiffe://${TD}`], issuer: authority });
    svidViaIntermediate = issueX509Svid(ca, svidIntermediate, SVID_ID);

    bundle = await startBundleServer(ca, { extraKeys: [authority.bundleKey], refreshHint: 300 });
    storage = await createTestStorage('certs');
    const shared = { ...storageEnv(storage), ...workloadServerEnv(ca), TLS_CLIENT_CA_FILE: ca.certFile };
    tls = await startServer({ issuer: ISSUER, env: { ...shared, TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile } });
    proxied = await startServer({ issuer: ISSUER, env: { ...shared, TLS_CLIENT_CERT_HEADER: 'X-Client-Cert', TLS_TRUSTED_PROXIES: '127.0.0.1/32' } });
    await untilReady(proxied.url);

    admin = await bootstrapAdmin(proxied.url, ISSUER);
    const td = await admin.call('POST', '/admin/trust-domains', { name: TD, bundle_endpoint: bundle.endpoint });
    assert.equal(td.status, 201, `trust domain: ${td.status} ${JSON.stringify(td.body)}`);
    dpopKey = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);

    await createWorkloadClient('by-dn', { tls_client_auth_subject_dn: 'CN=payments-worker,OU=Payments,O=Example' });
    await createWorkloadClient('by-san', {
      tls_client_auth_san_dns: 'worker.example.org', token_binding: 'mtls', audiences: [API_A, API_B], serves: [API_A],
      grant_types: ['client_credentials', EXCHANGE, 'refresh_token'],
    });
    await createWorkloadClient('self-signed', { self_signed_certificates: [selfSigned.certPem] });
    await createWorkloadClient('svid', { spiffe_id: SVID_ID });
    // the TLS instance learns of the trust domain and the clients from the storage and its bus: ready
    // once it serves the client created last with an SVID of the trust domain added through the other one
    await eventually('the TLS instance to authenticate an X.509-SVID of the new trust domain', async () =>
      (await overTls('/token', cc('svid'), svid, await proof())).status === 200, { timeout: 15_000, every: 100 });
  });

  after(async () => {
    await Promise.all([tls?.stop(), proxied?.stop()]);
    await bundle?.close();
    await storage?.cleanup();
    ca?.close();
  });

  describe('tls_client_auth (RFC 8705 §2.1) over the TLS listener', () => {
    it('the registered subject DN gets a DPoP-bound token (no client_assertion, client_id given)', async () => {
      const claims = decodePayload(assertIssued(await overTls('/token', cc('by-dn'), dnCert, await proof())));
      assert.equal(claims.client_id, ids['by-dn']);
      assert.equal(claims.aud, API_A);
      assert.equal(typeof claims.cnf?.jkt, 'string');
      assert.equal(claims.cnf['x5t#S256'], undefined);
      // DPoP-bound by default: the certificate authenticates, it does not replace the proof
      assertOAuthError(await overTls('/token', cc('by-dn'), dnCert), 400, ['invalid_dpop_proof', 'invalid_request']);
    });

    it('the registered SAN with token_binding mtls gets a Bearer token bound to the certificate (cnf.x5t#S256)', async () => {
      const res = await overTls('/token', cc('by-san'), sanCert);
      const claims = decodePayload(assertIssued(res, 'Bearer'));
      assert.equal(claims.client_id, ids['by-san']);
      assert.deepEqual(claims.cnf, { 'x5t#S256': thumbprintOf(sanCert.x509) });
    });

    it('a certificate-bound client sending a DPoP proof, or no certificate, gets no token', async () => {
      assertOAuthError(await overTls('/token', cc('by-san'), sanCert, await proof()), 400, 'invalid_request');
      assertOAuthError(await overTls('/token', cc('by-san')), [400, 401], ['invalid_client', 'invalid_request']);
    });

    it('another subject DN or another SAN of the same CA is 401 invalid_client', async () => {
      assertOAuthError(await overTls('/token', cc('by-dn'), dnWrong, await proof()), 401, 'invalid_client');
      assertOAuthError(await overTls('/token', cc('by-dn'), dnReversed, await proof()), 401, 'invalid_client');
      assertOAuthError(await overTls('/token', cc('by-san'), sanWrong), 401, 'invalid_client');
      // each client's certificate names only that client
      assertOAuthError(await overTls('/token', cc('by-dn'), sanCert, await proof()), 401, 'invalid_client');
      assertOAuthError(await overTls('/token', cc('by-san'), dnCert), 401, 'invalid_client');
    });

    it('the registered DN on a certificate that does not chain to TLS_CLIENT_CA_FILE is 401 invalid_client', async () => {
      assertOAuthError(await overTls('/token', cc('by-dn'), rogueLeaf, await proof()), 401, 'invalid_client');
    });

    it('a certificate under an intermediate chains with the intermediate the client sends in the handshake, and not without it', async () => {
      assertIssued(await overTls('/token', cc('by-dn'), viaIntermediate, await proof(), [intermediate]));
      assertOAuthError(await overTls('/token', cc('by-dn'), viaIntermediate, await proof()), 401, 'invalid_client');
      // a proxy's header carries the leaf only ($ssl_client_escaped_cert): the intermediate is not there either
      assertOAuthError(await viaProxy('/token', cc('by-dn'), viaIntermediate, '127.0.0.1', await proof()), 401, 'invalid_client');
      assertIssued(await viaProxy('/token', cc('by-dn'), dnCert, '127.0.0.1', await proof()));
    });

    it('a CA certificate with the registered DN, chaining to the trusted CA, is not a client certificate: 401', async () => {
      assertOAuthError(await overTls('/token', cc('by-dn'), caAsClient, await proof()), 401, 'invalid_client');
    });

    it('a client_id naming no client, or none at all, with a good certificate is an RFC 6749 refusal', async () => {
      assertOAuthError(await overTls('/token', { grant_type: 'client_credentials', client_id: 'no-such-client' }, dnCert, await proof()), 401, 'invalid_client');
      assertOAuthError(await overTls('/token', { grant_type: 'client_credentials' }, dnCert, await proof()), [400, 401], ['invalid_client', 'invalid_request']);
    });

    it('a certificate cannot stand in for a private_key_jwt client: a jwks client named with a certificate is 401', async () => {
      const pkjwt = await admin.call('POST', '/admin/clients', { name: 'pk-jwt', audiences: [API_A], jwks: (await generateClientKey('ES256')).publicJwks });
      assert.equal(pkjwt.status, 201, JSON.stringify(pkjwt.body));
      assertOAuthError(await overTls('/token', { grant_type: 'client_credentials', client_id: pkjwt.body.client_id }, dnCert, await proof()), 401, 'invalid_client');
    });
  });

  describe('self_signed_tls_client_auth (RFC 8705 §2.2)', () => {
    it('the registered certificate gets a token; another self-signed one with the same subject is 401', async () => {
      const claims = decodePayload(assertIssued(await overTls('/token', cc('self-signed'), selfSigned, await proof())));
      assert.equal(claims.client_id, ids['self-signed']);
      assertOAuthError(await overTls('/token', cc('self-signed'), selfOther, await proof()), 401, 'invalid_client');
    });
  });

  describe('X.509-SVIDs against the trust domain bundle', () => {
    it('an SVID chaining to the bundle\'s x509-svid authority gets a token for the client whose spiffe_id matches', async () => {
      const claims = decodePayload(assertIssued(await overTls('/token', cc('svid'), svid, await proof())));
      assert.equal(claims.client_id, ids['svid']);
      assert.equal(typeof claims.cnf?.jkt, 'string');
    });

    it('an SVID signed by an intermediate of the bundle\'s authority chains with the intermediate sent in the handshake', async () => {
      assertIssued(await overTls('/token', cc('svid'), svidViaIntermediate, await proof(), [svidIntermediate]));
      assertOAuthError(await overTls('/token', cc('svid'), svidViaIntermediate, await proof()), 401, 'invalid_client');
    });

    it('an SVID with two URI SANs is 401 invalid_client', async () => {
      assertOAuthError(await overTls('/token', cc('svid'), svidTwoUris, await proof()), 401, 'invalid_client');
    });

    it('an SVID of another trust domain, or the right SPIFFE ID signed outside the bundle, is 401 invalid_client', async () => {
      assertOAuthError(await overTls('/token', cc('svid'), svidOtherDomain, await proof()), 401, 'invalid_client');
      assertOAuthError(await overTls('/token', cc('svid'), svidForeignAuthority, await proof()), 401, 'invalid_client');
    });

    it('a leaf without digitalSignature is 401 invalid_client', async () => {
      assertOAuthError(await overTls('/token', cc('svid'), svidNoDigitalSignature, await proof()), 401, 'invalid_client');
    });
  });

  describe('the proxy header (TLS_CLIENT_CERT_HEADER, TLS_TRUSTED_PROXIES=127.0.0.1/32)', () => {
    it('from the trusted proxy: the certificate in the header authenticates the client and binds its token', async () => {
      const claims = decodePayload(assertIssued(await viaProxy('/token', cc('by-san'), sanCert), 'Bearer'));
      assert.equal(claims.client_id, ids['by-san']);
      assert.equal(claims.cnf['x5t#S256'], thumbprintOf(sanCert.x509));
      assertOAuthError(await viaProxy('/token', cc('by-san'), sanWrong), 401, 'invalid_client');
    });

    it('from 127.0.0.2, not a trusted proxy, the header is refused with 400 invalid_request, at /token and /introspect', async () => {
      assertOAuthError(await viaProxy('/token', cc('by-san'), sanCert, '127.0.0.2'), 400, 'invalid_request');
      assertOAuthError(await viaProxy('/introspect', { token: 'x', client_id: ids['by-san'] }, sanCert, '127.0.0.2'), 400, 'invalid_request');
    });
  });

  describe('certificate-bound tokens after issuance', () => {
    let verifier: Verifier;
    let gateway: VerifyService;
    // the API side reaches the issuer's metadata, keys and status lists at the plain-HTTP instance
    const toInstance = (input: string | URL, init?: RequestInit) => {
      const url = String(input);
      return fetch(url.startsWith(ISSUER) ? `${proxied.url}${url.slice(ISSUER.length)}` : url, init);
    };
    before(async () => {
      verifier = createVerifier({ issuer: ISSUER, audience: API_A, fetch: toInstance, status: { events: false } });
      const config = parseGatewayConfig(JSON.stringify({ routes: [{ prefix: '/', audience: API_A }], client_certificate_header: 'X-Client-Cert' }));
      gateway = await startVerifyService({ config, issuer: ISSUER, port: 0, host: '127.0.0.1', fetch: toInstance, verifierOverrides: { status: { events: false } } });
    });
    after(async () => gateway?.close());

    const bearer = (token: string, clientCertificate?: string) =>
      ({ method: 'GET', url: `${API_A}/orders/1`, headers: { authorization: `Bearer ${token}` }, ...(clientCertificate ? { clientCertificate } : {}) }) as Parameters<Verifier>[0];

    it('sigil/verifier accepts it with the certificate it names and refuses it (401 invalid_token) with another or none', async () => {
      const token = assertIssued(await overTls('/token', cc('by-san'), sanCert), 'Bearer');
      const claims = await verifier(bearer(token, sanCert.certPem));
      assert.equal(claims.client_id, ids['by-san']);
      assert.equal(claims.cnf?.['x5t#S256'], thumbprintOf(sanCert.x509));
      for (const other of [sanCert2.certPem, undefined]) {
        await assert.rejects(verifier(bearer(token, other)), (err: unknown) => {
          assert.ok(err instanceof VerifierError, String(err));
          assert.equal(err.status, 401);
          assert.equal(err.code, 'invalid_token');
          return true;
        });
      }
    });

    it('verify-server with client_certificate_header lets it through with its certificate only', async () => {
      const token = assertIssued(await overTls('/token', cc('by-san'), sanCert), 'Bearer');
      const ask = (cert?: IssuedCertificate) => fetch(`${gateway.url}/`, {
        headers: {
          'x-original-url': `${API_A}/orders/1`, 'x-original-method': 'GET', authorization: `Bearer ${token}`,
          ...(cert ? { 'x-client-cert': encodeURIComponent(cert.certPem) } : {}),
        },
      });
      const ok = await ask(sanCert);
      assert.equal(ok.status, 200, await ok.text());
      assert.equal(ok.headers.get('x-sigil-client-id'), ids['by-san']);
      const withOther = await ask(sanCert2);
      assert.equal(withOther.status, 401);
      assert.match(withOther.headers.get('www-authenticate') ?? '', /Bearer error="invalid_token", error_description="the client certificate is not the one the access token is bound to"/);
      // without any certificate the token is refused unread (only DPoP could pass then): still 401 invalid_token
      const without = await ask();
      assert.equal(without.status, 401);
      assert.match(without.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    });

    it('introspection by the certificate-bound client shows cnf.x5t#S256 and token_type Bearer', async () => {
      const token = assertIssued(await overTls('/token', cc('by-san'), sanCert), 'Bearer');
      const res = await overTls('/introspect', { token, client_id: ids['by-san'] }, sanCert);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.active, true);
      assert.equal(res.body.token_type, 'Bearer');
      assert.deepEqual(res.body.cnf, { 'x5t#S256': thumbprintOf(sanCert.x509) });
    });

    it('the certificate-bound client revokes its token through the proxy header; introspection then shows it inactive', async () => {
      const token = assertIssued(await overTls('/token', cc('by-san'), sanCert), 'Bearer');
      const revoked = await viaProxy('/revoke', { token, client_id: ids['by-san'] }, sanCert);
      assert.equal(revoked.status, 200, revoked.text);
      const res = await overTls('/introspect', { token, client_id: ids['by-san'] }, sanCert);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.active, false);
      // and a wrong certificate at /revoke is client authentication failing, not a silent success
      assertOAuthError(await viaProxy('/revoke', { token, client_id: ids['by-san'] }, sanWrong), 401, 'invalid_client');
    });

    it('token exchange binds the new token and its refresh token to the caller\'s certificate; a refresh with another certificate is invalid_grant', async () => {
      const subject = assertIssued(await overTls('/token', cc('by-san'), sanCert), 'Bearer');
      const exchanged = await overTls('/token', {
        grant_type: EXCHANGE, client_id: ids['by-san'], subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, audience: API_B,
      }, sanCert);
      const claims = decodePayload(assertIssued(exchanged, 'Bearer'));
      assert.equal(claims.aud, API_B);
      assert.equal(claims.act?.sub, ids['by-san']);
      assert.deepEqual(claims.cnf, { 'x5t#S256': thumbprintOf(sanCert.x509) });
      const refreshToken = exchanged.body.refresh_token as string;
      assert.equal(typeof refreshToken, 'string');

      // sanCert2 authenticates the same client (same CA, same SAN) but is not the certificate the family is bound to
      const stolen = await overTls('/token', { grant_type: 'refresh_token', client_id: ids['by-san'], refresh_token: refreshToken }, sanCert2);
      assertOAuthError(stolen, 400, 'invalid_grant');
      // over the proxy with the wrong certificate: the same
      assertOAuthError(await viaProxy('/token', { grant_type: 'refresh_token', client_id: ids['by-san'], refresh_token: refreshToken }, sanCert2), 400, 'invalid_grant');

      const refreshed = await overTls('/token', { grant_type: 'refresh_token', client_id: ids['by-san'], refresh_token: refreshToken }, sanCert);
      const again = decodePayload(assertIssued(refreshed, 'Bearer'));
      assert.deepEqual(again.cnf, { 'x5t#S256': thumbprintOf(sanCert.x509) });
      assert.equal(again.aud, API_B);
      assert.notEqual(refreshed.body.refresh_token, refreshToken);
    });
  });

  it('no token, refresh token or DPoP proof appears in either process\'s logs', async () => {
    assert.ok(ledger.size > 5);
    assert.deepEqual(ledger.leaks([...tls.logs, ...proxied.logs]), []);
    for (const line of [...tls.logs, ...proxied.logs]) assert.doesNotMatch(line, /PRIVATE KEY/);
  });
});
