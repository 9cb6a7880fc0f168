// sigil/verifier and certificate-bound access tokens (RFC 8705 §3): a token with cnf.x5t#S256 passes
// only with the certificate it names, given as PEM, DER, URL-encoded PEM (a proxy's header) or an
// X509Certificate, or taken from the TLS socket by the Node adapter; DPoP-bound and unbound tokens
// keep their rules.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { request as httpsRequest, createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { dpopProof, generateClientKey, keyPairFromPrivateJwk, thumbprint } from '../../src/client/oauth-client.js';
import { createVerifier, verifyNodeRequest, VerifierError, type Verifier } from '../../src/verifier/index.js';
import { epoch, signJws } from '../support/forge.js';
import { mintCa, mintLeaf } from '../support/x509.js';

const ISSUER = 'https://sigil.example.com';
const AUDIENCE = 'https://api.example.com';
const API = 'https://api.example.com/orders/1';

async function refusal(verify: Verifier, req: Parameters<Verifier>[0], opts?: Parameters<Verifier>[1]): Promise<VerifierError> {
  try {
    assert.fail(`accepted: ${JSON.stringify(await verify(req, opts))}`);
  } catch (err) {
    if (!(err instanceof VerifierError)) throw err;
    return err;
  }
}

describe('sigil/verifier: certificate-bound tokens (cnf.x5t#S256)', async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } as JWK;
  const ca = mintCa('/CN=API clients');
  const certA = mintLeaf(ca, { subject: '/CN=client A' });
  const certB = mintLeaf(ca, { subject: '/CN=client B' });
  const make = (allowBearer = false) => createVerifier({
    issuer: ISSUER, audience: AUDIENCE, keys: () => [jwk], dpop: { algorithms: ['ES256'] }, status: { enabled: false }, allowBearer,
    fetch: async () => { throw new Error('nothing is fetched'); },
  });
  const verify = make();
  const token = (cnf: Record<string, unknown> | undefined) => {
    const t = epoch();
    return signJws({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' }, {
      iss: ISSUER, aud: AUDIENCE, sub: 'c1', client_id: 'c1', iat: t, exp: t + 300, jti: randomUUID(), ...(cnf ? { cnf } : {}),
    }, privateKey);
  };
  const boundToA = await token({ 'x5t#S256': certA.thumbprint });
  const bearer = (t: string, clientCertificate?: unknown) => ({ method: 'GET', url: API, headers: { authorization: `Bearer ${t}` }, ...(clientCertificate !== undefined ? { clientCertificate } : {}) }) as Parameters<Verifier>[0];
  const BEARER_CHALLENGE = (description: string) => `DPoP error="invalid_token", error_description="${description}", algs="ES256", Bearer error="invalid_token", error_description="${description}"`;

  it('accepts the token with its certificate in every form: PEM, DER, URL-encoded PEM, base64 DER, X509Certificate', async () => {
    for (const form of [certA.cert, certA.x509.raw, encodeURIComponent(certA.cert), certA.x509.raw.toString('base64'), certA.x509]) {
      assert.equal((await verify(bearer(boundToA, form))).sub, 'c1');
    }
    // a Fetch Request carries no certificate: it is given in the call's options
    assert.equal((await verify(new Request(API, { headers: { authorization: `Bearer ${boundToA}` } }), { clientCertificate: certA.cert })).sub, 'c1');
  });

  it('refuses it with another certificate (same CA), with none, and with garbage, as 401 invalid_token with a Bearer challenge', async () => {
    const other = await refusal(verify, bearer(boundToA, certB.cert));
    assert.equal(other.status, 401);
    assert.equal(other.code, 'invalid_token');
    assert.equal(other.wwwAuthenticate, BEARER_CHALLENGE('the client certificate is not the one the access token is bound to'));
    const none = await refusal(make(true), bearer(boundToA));
    assert.equal(none.status, 401);
    assert.match(none.description, /bound to a client certificate and the request has none/);
    // a verifier that takes no plain Bearer tokens refuses it unread without a certificate
    assert.equal((await refusal(verify, bearer(boundToA))).code, 'invalid_token');
    assert.match((await refusal(verify, bearer(boundToA, 'not a certificate'))).description, /cannot be read/);
    assert.match((await refusal(verify, bearer(boundToA, Buffer.from('nope')))).description, /cannot be read/);
  });

  it('refuses it under the DPoP scheme, even with a valid proof and the right certificate', async () => {
    const key = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    const req = { method: 'GET', url: API, headers: { authorization: `DPoP ${boundToA}`, dpop: await dpopProof(key, 'GET', API, { accessToken: boundToA }) }, clientCertificate: certA.cert };
    assert.match((await refusal(verify, req)).description, /must be presented with the Bearer scheme/);
  });

  it('refuses a token whose cnf names a certificate and a DPoP key, or a thumbprint that is not a string', async () => {
    const key = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    const both = await token({ 'x5t#S256': certA.thumbprint, jkt: await thumbprint(key) });
    assert.match((await refusal(verify, bearer(both, certA.cert))).description, /cnf\) is malformed/);
    assert.match((await refusal(verify, bearer(await token({ 'x5t#S256': 42 }), certA.cert))).description, /cnf\) is malformed/);
  });

  it('keeps the other rules: a certificate does not make an unbound token acceptable, nor a DPoP-bound one usable as Bearer', async () => {
    const unbound = await token(undefined);
    assert.match((await refusal(verify, bearer(unbound, certA.cert))).description, /DPoP-bound access token and a DPoP proof are required/);
    const key = await keyPairFromPrivateJwk((await generateClientKey('ES256')).privateJwk);
    const dpopBound = await token({ jkt: await thumbprint(key) });
    assert.match((await refusal(verify, bearer(dpopBound, certA.cert))).description, /must be presented with the DPoP scheme/);
    // and the DPoP path is unchanged
    const req = { method: 'GET', url: API, headers: { authorization: `DPoP ${dpopBound}`, dpop: await dpopProof(key, 'GET', API, { accessToken: dpopBound }) } };
    assert.equal((await verify(req)).sub, 'c1');
  });

  it('a node:https API behind the Node adapter: the TLS client certificate is the one compared', async () => {
    const serverCert = mintLeaf(ca, { subject: '/CN=localhost', san: ['IP:127.0.0.1'], keyUsage: 'critical,digitalSignature' });
    const v = make();
    const api = createHttpsServer({ cert: serverCert.cert, key: serverCert.key, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' },
      (req, res) => void verifyNodeRequest(v, req, res, { baseUrl: AUDIENCE }).then((c) => c && res.end(JSON.stringify(c))));
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    const call = (client: typeof certA | undefined) => new Promise<{ status: number; www: string | undefined }>((resolve, reject) => {
      const req = httpsRequest({
        host: '127.0.0.1', port: (api.address() as AddressInfo).port, path: '/orders/1', ca: ca.cert, agent: false,
        headers: { authorization: `Bearer ${boundToA}` }, ...(client ? { cert: client.cert, key: client.key } : {}),
      }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, www: res.headers['www-authenticate'] }));
      });
      req.on('error', reject);
      req.end();
    });
    try {
      assert.equal((await call(certA)).status, 200);
      const wrong = await call(certB);
      assert.equal(wrong.status, 401);
      assert.match(wrong.www!, /Bearer error="invalid_token"/);
      assert.equal((await call(undefined)).status, 401);
    } finally {
      await new Promise((r) => api.close(r));
    }
  });

  it('a plain-HTTP API behind a proxy: the certificate header is read from trustedProxies only', async () => {
    const v = make();
    const opts = { baseUrl: AUDIENCE, trustedProxies: ['127.0.0.1/32'], clientCertificateHeader: 'X-Client-Cert' };
    const api = createHttpServer((req, res) => void verifyNodeRequest(v, req, res, opts).then((c) => c && res.end(JSON.stringify(c))));
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    const call = (cert: string, localAddress: string) => new Promise<number>((resolve, reject) => {
      const req = httpRequest({
        host: '127.0.0.1', port: (api.address() as AddressInfo).port, path: '/orders/1', localAddress, agent: false,
        headers: { authorization: `Bearer ${boundToA}`, 'x-client-cert': encodeURIComponent(cert) },
      }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end();
    });
    try {
      assert.equal(await call(certA.cert, '127.0.0.1'), 200);
      assert.equal(await call(certB.cert, '127.0.0.1'), 401);
      // the right certificate in the header, from an address that is not a trusted proxy: not read
      assert.equal(await call(certA.cert, '127.0.0.2'), 401);
    } finally {
      await new Promise((r) => api.close(r));
    }
  });
});
