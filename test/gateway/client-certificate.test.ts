// verify-server and certificate-bound tokens: the gateway passes the API client's certificate in the
// configured `client_certificate_header`; a token bound to certificate A passes only with A.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { GatewayConfigError, parseGatewayConfig } from '../../src/gateway/config.js';
import { startVerifyService, type VerifyService } from '../../src/gateway/service.js';
import { epoch, signJws } from '../support/forge.js';
import { mintCa, mintLeaf } from '../support/x509.js';

const ISSUER = 'https://sigil.example.com';
const AUDIENCE = 'https://api.example.com';

describe('verify-server: client_certificate_header', () => {
  let service: VerifyService;
  let privateKey: CryptoKey;
  let jwk: JWK;
  const ca = mintCa('/CN=API clients');
  const certA = mintLeaf(ca, { subject: '/CN=A' });
  const certB = mintLeaf(ca, { subject: '/CN=B' });

  before(async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    privateKey = pair.privateKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } as JWK;
    // the issuer, as the verifier fetches it: discovery and keys only
    const issuerFetch = async (input: string | URL | Request) => {
      const url = String(input);
      if (url === `${ISSUER}/.well-known/oauth-authorization-server`) {
        return Response.json({ issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`, dpop_signing_alg_values_supported: ['ES256'] });
      }
      if (url === `${ISSUER}/jwks`) return Response.json({ keys: [jwk] });
      return new Response('not found', { status: 404 });
    };
    const config = parseGatewayConfig(JSON.stringify({ routes: [{ prefix: '/', audience: AUDIENCE }], client_certificate_header: 'X-Client-Cert' }));
    service = await startVerifyService({ config, issuer: ISSUER, port: 0, host: '127.0.0.1', fetch: issuerFetch, verifierOverrides: { status: { enabled: false } } });
  });
  after(async () => service?.close());

  const token = (cnf: Record<string, unknown>) => {
    const t = epoch();
    return signJws({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' }, { iss: ISSUER, aud: AUDIENCE, sub: 'c1', client_id: 'c1', iat: t, exp: t + 300, jti: randomUUID(), cnf }, privateKey);
  };
  const ask = (t: string, certificate?: string | string[]) => fetch(`${service.url}/`, {
    headers: {
      'x-original-url': 'https://api.example.com/orders/1', 'x-original-method': 'GET', authorization: `Bearer ${t}`,
      ...(certificate === undefined ? {} : { 'x-client-cert': Array.isArray(certificate) ? certificate.join(', ') : certificate }),
    },
  });

  it('lets a token bound to certificate A through with A (nginx $ssl_client_escaped_cert form)', async () => {
    const res = await ask(await token({ 'x5t#S256': certA.thumbprint }), encodeURIComponent(certA.cert));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-sigil-client-id'), 'c1');
  });

  it('refuses it with certificate B, and without a certificate: 401 invalid_token with a Bearer challenge', async () => {
    const t = await token({ 'x5t#S256': certA.thumbprint });
    const withB = await ask(t, encodeURIComponent(certB.cert));
    assert.equal(withB.status, 401);
    assert.match(withB.headers.get('www-authenticate')!, /Bearer error="invalid_token", error_description="the client certificate is not the one the access token is bound to"/);
    assert.equal(((await withB.json()) as { error: string }).error, 'invalid_token');
    const without = await ask(t);
    assert.equal(without.status, 401);
    assert.match(without.headers.get('www-authenticate')!, /invalid_token/);
    const garbage = await ask(t, 'not-a-certificate!');
    assert.equal(garbage.status, 401);
  });

  it('refuses a header that is not one certificate header', async () => {
    const t = await token({ 'x5t#S256': certA.thumbprint });
    // two values joined by the HTTP stack: not one certificate
    const res = await ask(t, [encodeURIComponent(certA.cert), encodeURIComponent(certB.cert)]);
    assert.equal(res.status, 401);
  });

  it('the config takes a header name of its own', () => {
    const routes = [{ prefix: '/', audience: AUDIENCE }];
    assert.equal(parseGatewayConfig(JSON.stringify({ routes, client_certificate_header: 'X-SSL-Cert' })).clientCertificateHeader, 'x-ssl-cert');
    assert.equal(parseGatewayConfig(JSON.stringify({ routes })).clientCertificateHeader, undefined);
    for (const bad of ['Authorization', 'X-Original-URL', 'bad header', 42]) {
      assert.throws(() => parseGatewayConfig(JSON.stringify({ routes, client_certificate_header: bad })), GatewayConfigError);
    }
  });
});
